// Database as the BatchScope of a consumer: where each group stands, kept in the same store (and
// so the same transaction) as the effects of the records it consumed.

#include <array>

#include "ecom/db/database.hpp"

namespace ecom::db {
namespace {

constexpr std::array<std::string_view, 1> kPositionsSchema{
    // "partition" is an SQL keyword, hence quoted.
    "CREATE TABLE IF NOT EXISTS consumer_positions("
    "  grp TEXT NOT NULL,"
    "  topic TEXT NOT NULL,"
    "  \"partition\" INTEGER NOT NULL,"
    "  next_offset INTEGER NOT NULL,"
    "  PRIMARY KEY(grp, topic, \"partition\")) WITHOUT ROWID;",
};

constexpr std::string_view kUpsert{
    "INSERT INTO consumer_positions(grp, topic, \"partition\", next_offset) VALUES(?, ?, ?, ?) "
    "ON CONFLICT(grp, topic, \"partition\") DO UPDATE SET next_offset=excluded.next_offset"};
constexpr std::string_view kSelect{
    "SELECT topic, \"partition\", next_offset FROM consumer_positions WHERE grp=? "
    "ORDER BY topic, \"partition\""};

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
  auto write = [&](Tx& tx) {
    for (const auto& p : positions) {
      tx.stmt(kUpsert).bind_all(group, p.topic, p.partition, p.next).exec();
    }
  };
  if (!in_batch()) {
    return transaction([&](Tx& tx) -> Status {
      write(tx);
      return {};
    });
  }
  // In the batch's own transaction, not a savepoint of it: effects without their position would
  // be applied again after a crash, so a failed write fails the whole batch.
  if (auto st = batch_status(); !st) return st;
  try {
    Tx tx(*this);
    write(tx);
    return {};
  } catch (const DbError& e) {
    batch_failed_ = true;
    batch_error_ = "saving consumer positions: " + e.message;
    batch_error_rc_ = e.code;
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
      out.push_back(ConsumedPosition{s.col_text(0), static_cast<int>(s.col_int(1)), s.col_int(2)});
    }
    return out;
  });
}

}  // namespace ecom::db
