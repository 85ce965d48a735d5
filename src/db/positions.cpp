// Database as the BatchScope of a consumer: where each group stands, kept in the same store (and
// so the same transaction) as the effects of the records it consumed.

#include <fmt/format.h>

#include <array>
#include <utility>

#include "ecom/db/database.hpp"

namespace ecom::db {
namespace {

constexpr std::array<std::string_view, 2> kPositionsSchema{
    // "partition" is an SQL keyword, hence quoted.
    "CREATE TABLE IF NOT EXISTS consumer_positions("
    "  grp TEXT NOT NULL,"
    "  topic TEXT NOT NULL,"
    "  \"partition\" INTEGER NOT NULL,"
    "  next_offset INTEGER NOT NULL,"
    "  PRIMARY KEY(grp, topic, \"partition\")) WITHOUT ROWID;",
    // v2: the highest sequence handled per producing source and partition (SourceMark). A row
    // per source that ever wrote to the partition: a handful, not one per record.
    "CREATE TABLE IF NOT EXISTS consumer_source_marks("
    "  grp TEXT NOT NULL,"
    "  topic TEXT NOT NULL,"
    "  \"partition\" INTEGER NOT NULL,"
    "  source TEXT NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  PRIMARY KEY(grp, topic, \"partition\", source)) WITHOUT ROWID;",
};

constexpr std::string_view kUpsert{
    "INSERT INTO consumer_positions(grp, topic, \"partition\", next_offset) VALUES(?, ?, ?, ?) "
    "ON CONFLICT(grp, topic, \"partition\") DO UPDATE SET next_offset=excluded.next_offset"};
// Fenced saves (ConsumedPosition::expected).
constexpr std::string_view kInsertFirst{
    "INSERT INTO consumer_positions(grp, topic, \"partition\", next_offset) VALUES(?, ?, ?, ?) "
    "ON CONFLICT(grp, topic, \"partition\") DO NOTHING"};
constexpr std::string_view kUpdateFrom{
    "UPDATE consumer_positions SET next_offset = ? WHERE grp = ? AND topic = ? AND "
    "\"partition\" = ? AND next_offset = ?"};
constexpr std::string_view kSelect{
    "SELECT topic, \"partition\", next_offset FROM consumer_positions WHERE grp=? "
    "ORDER BY topic, \"partition\""};
constexpr std::string_view kUpsertMark{
    "INSERT INTO consumer_source_marks(grp, topic, \"partition\", source, seq) "
    "VALUES(?, ?, ?, ?, ?) "
    "ON CONFLICT(grp, topic, \"partition\", source) DO UPDATE SET seq=excluded.seq"};
constexpr std::string_view kSelectMarks{
    "SELECT topic, \"partition\", source, seq FROM consumer_source_marks WHERE grp=? "
    "ORDER BY topic, \"partition\", source"};

}  // namespace

Status Database::ensure_positions() {
  if (positions_ready_.load(std::memory_order_acquire)) return {};
  // Concurrent first calls both migrate; migrate() applies the step once.
  if (auto st = migrate("consumer_positions", kPositionsSchema); !st) return st;
  positions_ready_.store(true, std::memory_order_release);
  return {};
}

Status Database::save_positions(std::string_view group,
                                std::span<const ConsumedPosition> positions) {
  if (positions.empty()) return {};
  if (auto st = ensure_positions(); !st) return st;
  // Returns the position another consumer moved, if any (nothing written then).
  auto write = [&](Tx& tx) -> const ConsumedPosition* {
    for (const auto& p : positions) {
      if (!p.expected) {
        tx.stmt(kUpsert).bind_all(group, p.topic, p.partition, p.next).exec();
      } else if (*p.expected < 0) {
        if (tx.stmt(kInsertFirst).bind_all(group, p.topic, p.partition, p.next).exec() != 1)
          return &p;
      } else if (tx.stmt(kUpdateFrom)
                     .bind_all(p.next, group, p.topic, p.partition, *p.expected)
                     .exec() != 1) {
        return &p;
      }
      for (const auto& m : p.marks)
        tx.stmt(kUpsertMark).bind_all(group, p.topic, p.partition, m.source, m.seq).exec();
    }
    return nullptr;
  };
  auto moved = [&](const ConsumedPosition& p) {
    return fmt::format(
        "group {}: the stored position of {}[{}] is no longer {}: another consumer of the group "
        "handled the partition since",
        group, p.topic, p.partition, *p.expected);
  };
  if (!in_batch()) {
    return transaction([&](Tx& tx) -> Status {
      if (const auto* p = write(tx)) return Error{ErrorCode::kConflict, moved(*p), "", true};
      return {};
    });
  }
  // In the batch's own transaction, not a savepoint of it: effects without their position would
  // be applied again after a crash, so a failed write fails the whole batch.
  if (auto st = batch_status(); !st) return st;
  try {
    Tx tx(*this);
    if (const auto* p = write(tx)) {
      batch_failed_ = true;
      batch_fenced_ = true;
      batch_error_ = moved(*p);
      return Error{ErrorCode::kConflict, batch_error_, "", true};
    }
    return {};
  } catch (const DbError& e) {
    batch_failed_ = true;
    batch_error_ = "saving consumer positions: " + e.message;
    batch_fault_ = e.fault;
    return to_error(e);
  }
}

Result<std::vector<ConsumedPosition>> Database::load_positions(std::string_view group) {
  if (auto st = ensure_positions(); !st) return st.error();
  return read([&](Tx& tx) -> Result<std::vector<ConsumedPosition>> {
    std::vector<ConsumedPosition> out;
    auto s = tx.stmt(kSelect);
    s.bind(1, group);
    while (s.step()) {
      out.push_back(
          ConsumedPosition{s.col_text(0), static_cast<int>(s.col_int(1)), s.col_int(2), {}});
    }
    // Both lists are sorted by (topic, partition): one merge pass. A mark without a position
    // (none is saved that way) is dropped.
    auto m = tx.stmt(kSelectMarks);
    m.bind(1, group);
    size_t i = 0;
    while (m.step()) {
      const std::string_view topic = m.col_view(0);
      const auto partition = static_cast<int>(m.col_int(1));
      while (i < out.size() && std::pair<std::string_view, int>(out[i].topic, out[i].partition) <
                                   std::pair<std::string_view, int>(topic, partition))
        ++i;
      if (i == out.size()) break;
      if (out[i].topic != topic || out[i].partition != partition) continue;
      out[i].marks.push_back(SourceMark{m.col_text(2), m.col_int(3)});
    }
    return out;
  });
}

}  // namespace ecom::db
