#include "embedded_retention.hpp"

#include <algorithm>
#include <string_view>
#include <utility>

#include "ecom/core/log.hpp"

namespace ecom::bus::embedded {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Retention: the head of a partition log, and deleting a prefix of it.
constexpr std::string_view kLogHead{
    R"(SELECT "offset", ts FROM records WHERE topic=? AND "partition"=? )"
    R"(ORDER BY "offset" LIMIT ?)"};
constexpr std::string_view kLogHeads{
    R"(SELECT e.topic, e."partition", (SELECT r.ts FROM records r WHERE r.topic=e.topic )"
    R"(AND r."partition"=e."partition" ORDER BY r."offset" LIMIT 1) FROM log_end e)"};
constexpr std::string_view kDeleteThrough{
    R"(DELETE FROM records WHERE topic=? AND "partition"=? AND "offset"<=?)"};
// One retention pass per file and interval, whichever process sharing the file runs it. A value
// in the future (the wall clock went back) does not block passes forever.
constexpr std::string_view kRetentionLease{
    "INSERT INTO bus_meta(name, value) VALUES('retention_pass_ms', ?1) "
    "ON CONFLICT(name) DO UPDATE SET value=excluded.value "
    "WHERE bus_meta.value <= ?2 OR bus_meta.value > ?1"};

// Records deleted per retention transaction: a prefix of one partition, so contiguous pages,
// about 5 us a record; a publisher waiting for the connection (or the file lock) waits a few
// milliseconds at most, not a whole pass.
constexpr int kRetentionChunk = 512;
// Between chunks the janitor pauses twice as long as the chunk took (at least this), so that it
// holds the write lock a third of the time at most: writers of this process get the connection,
// and writers of other processes are not pushed into long SQLite busy-handler sleeps.
constexpr milliseconds kRetentionMinPause{2};
constexpr milliseconds kRetentionMaxPause{1'000};

bool is_dlq(std::string_view topic) {
  constexpr std::string_view kSuffix{".dlq"};
  return topic.size() > kSuffix.size() && topic.substr(topic.size() - kSuffix.size()) == kSuffix;
}

}  // namespace

RetentionJanitor::RetentionJanitor(std::shared_ptr<Core> core)
    : core_(std::move(core)),
      task_("bus.retention", *core_->opt.clock, core_->opt.retention_check_interval,
            [this](int64_t now) { return step(now); }) {
  task_.start(core_->opt.retention_check_interval);
}

std::optional<milliseconds> RetentionJanitor::step(int64_t now) {
  if (!pending_) {
    pending_ = plan(now);
    total_ = 0;
    if (!pending_) return std::nullopt;
  }
  while (!pending_->empty()) {
    const auto& [topic, partition, cutoff] = pending_->front();
    const auto started = Clock::now();
    auto r = core_->db->transaction(
        [&](db::Tx& tx) -> Result<Chunk> { return delete_chunk(tx, topic, partition, cutoff); });
    const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - started);
    if (!r) {
      log::warn(kTag, "retention of {}[{}] failed: {}", topic, partition, r.error().message);
      pending_.reset();  // the rest waits for the next pass, as before
      return std::nullopt;
    }
    total_ += r->deleted;
    if (r->more) return std::clamp(2 * took, kRetentionMinPause, kRetentionMaxPause);
    pending_->pop_front();
  }
  if (total_ > 0) {
    log::debug(kTag, "retention deleted {} records from {}", total_, core_->opt.path);
  }
  pending_.reset();
  return std::nullopt;
}

std::optional<RetentionJanitor::Work> RetentionJanitor::plan(int64_t now) {
  const int64_t interval = core_->opt.retention_check_interval.count();
  auto cutoff_of = [&](std::string_view topic) -> std::optional<int64_t> {
    const milliseconds keep = is_dlq(topic) ? core_->opt.dlq_retention : core_->opt.retention;
    if (keep.count() < 0) return std::nullopt;
    return now - keep.count();
  };
  auto parts = core_->db->transaction([&](db::Tx& tx) -> Result<Work> {
    Work out;
    if (tx.stmt(kRetentionLease).bind_all(now, now - interval).exec() == 0) return out;
    auto s = tx.stmt(kLogHeads);
    while (s.step()) {
      if (s.col_null(2)) continue;
      const auto cutoff = cutoff_of(s.col_view(0));
      if (cutoff && s.col_int(2) < *cutoff) {
        out.emplace_back(s.col_text(0), static_cast<int>(s.col_int(1)), *cutoff);
      }
    }
    return out;
  });
  if (!parts) {
    log::warn(kTag, "retention pass on {} failed: {}", core_->opt.path, parts.error().message);
    return std::nullopt;
  }
  if (parts->empty()) return std::nullopt;
  return std::move(parts).value();
}

RetentionJanitor::Chunk RetentionJanitor::delete_chunk(db::Tx& tx, const std::string& topic,
                                                       int partition, int64_t cutoff) {
  Chunk chunk;
  int64_t last = -1;
  int seen = 0;
  bool blocked = false;
  {
    auto s = tx.stmt(kLogHead);
    s.bind_all(topic, partition, kRetentionChunk);
    while (s.step()) {
      if (s.col_int(1) >= cutoff) {
        blocked = true;
        break;
      }
      last = s.col_int(0);
      ++seen;
    }
  }
  if (last < 0) return chunk;
  chunk.deleted = tx.stmt(kDeleteThrough).bind_all(topic, partition, last).exec();
  chunk.more = !blocked && seen == kRetentionChunk;
  return chunk;
}

}  // namespace ecom::bus::embedded
