#include "ecom/bus/embedded_bus.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "consumer_worker.hpp"
#include "delivery.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/periodic_task.hpp"
#include "ecom/db/database.hpp"

namespace ecom::bus {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::string_view kTag{"bus"};

// "partition" and "offset" are SQL keywords, hence quoted throughout.
constexpr std::array<std::string_view, 3> kSchema{
    // v1
    R"sql(
CREATE TABLE IF NOT EXISTS records(
  topic TEXT NOT NULL,
  "partition" INTEGER NOT NULL,
  "offset" INTEGER NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  ts INTEGER NOT NULL,
  headers TEXT,
  PRIMARY KEY(topic, "partition", "offset"));
CREATE TABLE IF NOT EXISTS log_end(
  topic TEXT NOT NULL,
  "partition" INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,
  PRIMARY KEY(topic, "partition")) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets(
  grp TEXT NOT NULL,
  topic TEXT NOT NULL,
  "partition" INTEGER NOT NULL,
  committed INTEGER NOT NULL,
  PRIMARY KEY(grp, topic, "partition")) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members(
  grp TEXT NOT NULL,
  member_id TEXT NOT NULL,
  heartbeat_ms INTEGER NOT NULL,
  PRIMARY KEY(grp, member_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ownership(
  grp TEXT NOT NULL,
  topic TEXT NOT NULL,
  "partition" INTEGER NOT NULL,
  owner TEXT NOT NULL,
  PRIMARY KEY(grp, topic, "partition")) WITHOUT ROWID;
)sql",
    // v2: the file's partition count, fixed at creation. Key-to-partition mapping (and so
    // per-key order) depends on it, so every process must use the same.
    "CREATE TABLE IF NOT EXISTS bus_meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // v3: which incarnation (subscription object) of a member heartbeats. Static members keep
    // their id across restarts; this tells a restarted process from a stale one still running.
    "ALTER TABLE members ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';",
};

constexpr std::string_view kInsertRecord{
    R"(INSERT INTO records(topic, "partition", "offset", key, value, ts, headers) )"
    "VALUES(?, ?, ?, ?, ?, ?, ?)"};
constexpr std::string_view kSelectLogEnd{
    R"(SELECT next_offset FROM log_end WHERE topic=? AND "partition"=?)"};
constexpr std::string_view kUpsertLogEnd{
    R"(INSERT INTO log_end(topic, "partition", next_offset) VALUES(?, ?, ?) )"
    R"(ON CONFLICT(topic, "partition") DO UPDATE SET next_offset=excluded.next_offset)"};
constexpr std::string_view kTopicLogEnds{
    R"(SELECT "partition", next_offset FROM log_end WHERE topic=?)"};
constexpr std::string_view kFetch{
    R"(SELECT "offset", key, value FROM records WHERE topic=? AND "partition"=? )"
    R"(AND "offset">=? ORDER BY "offset" LIMIT ?)"};
// Commits an offset only while `owner` still owns the partition and no other incarnation took
// its member id over: a member that was evicted (and whose partitions moved on), or a static
// member replaced by a newer process, cannot overwrite the new owner's progress.
constexpr std::string_view kCommitIfOwner{
    R"(INSERT INTO group_offsets(grp, topic, "partition", committed) SELECT ?1, ?2, ?3, ?4 )"
    R"(WHERE EXISTS(SELECT 1 FROM ownership WHERE grp=?1 AND topic=?2 AND "partition"=?3 )"
    R"(AND owner=?5) AND NOT EXISTS(SELECT 1 FROM members WHERE grp=?1 AND member_id=?5 )"
    R"(AND incarnation<>?6) ON CONFLICT(grp, topic, "partition") )"
    R"(DO UPDATE SET committed=excluded.committed)"};
constexpr std::string_view kSelectCommitted{
    R"(SELECT committed FROM group_offsets WHERE grp=? AND topic=? AND "partition"=?)"};
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

/// Appends records to partition logs inside one write transaction, tracking each touched
/// partition's log end so that a batch costs one INSERT per record plus one UPSERT per partition.
class Appender {
 public:
  Appender(db::Tx& tx, int partitions) : tx_(tx), partitions_(partitions), ts_(now_ms()) {}

  /// Appends one record; returns its partition.
  int append(std::string_view topic, std::string_view key, std::string_view value,
             const std::string* headers) {
    const int partition = partition_for(key, partitions_);
    End& end = end_of(topic, partition);
    auto s = tx_.stmt(kInsertRecord);
    s.bind_all(topic, partition, end.next, key, value, ts_);
    if (headers != nullptr) {
      s.bind(7, *headers);
    } else {
      s.bind_null(7);
    }
    s.exec();
    ++end.next;
    return partition;
  }

  void finish() {
    for (const End& e : ends_) {
      tx_.stmt(kUpsertLogEnd).bind_all(e.topic, e.partition, e.next).exec();
    }
  }

 private:
  struct End {
    std::string topic;
    int partition;
    int64_t next;
  };

  End& end_of(std::string_view topic, int partition) {
    // Batches touch few partitions: a linear scan beats hashing the topic per record.
    for (End& e : ends_) {
      if (e.partition == partition && e.topic == topic) return e;
    }
    auto s = tx_.stmt(kSelectLogEnd);
    s.bind_all(topic, partition);
    int64_t next = s.step() ? s.col_int(0) : 0;
    ends_.push_back(End{std::string(topic), partition, next});
    return ends_.back();
  }

  db::Tx& tx_;
  int partitions_;
  int64_t ts_;
  std::vector<End> ends_;
};

/// What every bus object of one file shares: the connection and the in-process wake-up.
struct Core {
  EmbeddedBusOptions opt;
  std::unique_ptr<db::Database> db;
  std::mutex mu;
  std::condition_variable cv;
  uint64_t generation = 0;  ///< bumped after every local commit that added records

  void wake() {
    {
      std::lock_guard lock(mu);
      ++generation;
    }
    cv.notify_all();
  }
  uint64_t current_generation() {
    std::lock_guard lock(mu);
    return generation;
  }

  /// Static members of this bus object, (group, instance_id): each may be live only once.
  std::mutex instances_mu;
  std::set<std::pair<std::string, std::string>> instances;

  bool register_instance(const std::string& group, const std::string& instance) {
    std::lock_guard lock(instances_mu);
    return instances.emplace(group, instance).second;
  }
  void release_instance(const std::string& group, const std::string& instance) {
    std::lock_guard lock(instances_mu);
    instances.erase({group, instance});
  }
};

std::string headers_json(std::string_view reason, std::string_view topic, int partition,
                         int64_t offset, int attempts, std::string_view group,
                         std::string_view member) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  auto str = [&w](std::string_view key, std::string_view v) {
    w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
    w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
  };
  w.StartObject();
  str("reason", reason);
  str("topic", topic);
  w.Key("partition");
  w.Int(partition);
  w.Key("offset");
  w.Int64(offset);
  w.Key("attempts");
  w.Int(attempts);
  str("group", group);
  str("member", member);
  str("failedAt", now_rfc3339());
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

/// One subscription: a member of its consumer group, with one thread that heartbeats,
/// rebalances, fetches and calls the handler.
///
/// A static member (instance_id set) uses the instance id as its member id, so a restarted
/// process finds its previous incarnation's membership and partitions and resumes them at its
/// first heartbeat. The incarnation id tells the two apart: the newer one wins, and the older,
/// if it is still running, is fenced (stops; its commits and its leave() are refused).
class Consumer final : public ConsumerWorker {
 public:
  /// A static member's (group, instance_id) must already be registered in `core`; the consumer
  /// releases it when its thread ends.
  Consumer(std::shared_ptr<Core> core, SubscriptionOptions opt, Handler handler)
      : core_(std::move(core)),
        opt_(std::move(opt)),
        handler_(std::move(handler)),
        incarnation_(new_uuid()),
        member_id_(opt_.instance_id.empty() ? incarnation_ : opt_.instance_id),
        registered_(!opt_.instance_id.empty()) {
    if (opt_.max_attempts < 1) opt_.max_attempts = 1;
    opt_.initial_backoff = std::max(opt_.initial_backoff, milliseconds(1));
    opt_.max_backoff = std::max(opt_.max_backoff, opt_.initial_backoff);
    policy_ = DeliveryPolicy::of(opt_);
  }

  // The thread has ended by now (see consumer_worker.hpp); it released the instance unless it
  // never started.
  ~Consumer() override { release_instance(); }

 protected:
  void wake() override {
    // Under the lock, so that a loop between its stop check and its wait cannot miss it.
    { std::lock_guard lock(core_->mu); }
    core_->cv.notify_all();
  }

 private:
  using PartKey = std::pair<std::string, int>;

  struct Row {
    int64_t offset;
    std::string key;
    std::string value;
  };

  struct Part {
    std::string topic;
    int partition = 0;
    int64_t position = 0;   ///< next offset to deliver
    int64_t committed = 0;  ///< last offset known committed
    int64_t log_end = 0;    ///< last known end of the partition log
    std::deque<Row> buffer;
    int attempt = 1;  ///< attempt number of buffer.front()
    Clock::time_point retry_at{};
    bool lost = false;  ///< ownership went to another member
  };

  struct Claim {
    PartKey key;
    int64_t committed;
  };

  struct Plan {
    bool evicted = false;
    bool fenced = false;  ///< another incarnation took this static member id over
    std::vector<Claim> claims;
    std::vector<PartKey> dropped;  ///< released or lost
  };

  void run() override {
    log::debug(kTag, "member {} joining group {}", member_id_, opt_.group);
    next_heartbeat_ = Clock::now();
    const auto poll = std::max(core_->opt.poll_interval, milliseconds(1));
    while (!stopping()) {
      if (Clock::now() >= next_heartbeat_) {
        heartbeat();
        next_heartbeat_ = Clock::now() + core_->opt.heartbeat_interval;
      }
      const uint64_t seen = core_->current_generation();
      bool progressed = false;
      if (!owned_.empty()) {
        refresh_log_ends();
        progressed = serve_all();
        commit_all();
        std::erase_if(owned_, [](const auto& kv) { return kv.second.lost; });
      }
      if (progressed) continue;

      auto until = std::min(next_heartbeat_, Clock::now() + poll);
      for (const auto& [key, part] : owned_) {
        if (part.retry_at > Clock::time_point{}) until = std::min(until, part.retry_at);
      }
      std::unique_lock lock(core_->mu);
      core_->cv.wait_until(lock, until, [&] { return stopping() || core_->generation != seen; });
    }
    leave();
    release_instance();
    // Whatever the handler holds goes now, on a thread the bus joins.
    handler_ = nullptr;
  }

  void release_instance() {
    if (registered_.exchange(false)) core_->release_instance(opt_.group, opt_.instance_id);
  }

  // --- delivery ---------------------------------------------------------------------------

  void refresh_log_ends() {
    auto r = core_->db->read([&](db::Tx& tx) -> Status {
      for (const auto& topic : opt_.topics) {
        auto s = tx.stmt(kTopicLogEnds);
        s.bind(1, topic);
        while (s.step()) {
          auto it = owned_.find(PartKey{topic, static_cast<int>(s.col_int(0))});
          if (it != owned_.end()) it->second.log_end = s.col_int(1);
        }
      }
      return {};
    });
    if (!r) log::warn(kTag, "group {}: reading log ends failed: {}", opt_.group, r.error().message);
  }

  bool fetch(Part& p) {
    auto r = core_->db->read([&](db::Tx& tx) -> Status {
      auto s = tx.stmt(kFetch);
      s.bind_all(p.topic, p.partition, p.position, core_->opt.batch_size);
      while (s.step()) p.buffer.push_back(Row{s.col_int(0), s.col_text(1), s.col_text(2)});
      return {};
    });
    if (r && !p.buffer.empty() && p.buffer.front().offset > p.position) {
      // Offsets are dense, so a gap at the position is what retention deleted.
      if (p.position > 0) {
        log::warn(kTag,
                  "group {}: {}[{}] offsets {}..{} were deleted by retention before being "
                  "consumed; continuing at the oldest retained offset {}",
                  opt_.group, p.topic, p.partition, p.position, p.buffer.front().offset - 1,
                  p.buffer.front().offset);
      } else {
        log::debug(kTag, "group {}: {}[{}] starts at the oldest retained offset {}", opt_.group,
                   p.topic, p.partition, p.buffer.front().offset);
      }
    }
    if (!r) {
      log::warn(kTag, "group {}: fetching {}[{}] failed: {}", opt_.group, p.topic, p.partition,
                r.error().message);
      return false;
    }
    return !p.buffer.empty();
  }

  /// What one pass handled of a partition.
  struct Handled {
    Part* part;
    size_t acked = 0;                ///< records acknowledged, from the front of the buffer
    std::optional<Outcome> stopped;  ///< the outcome of buffer[acked], when not an ack
    bool poison = false;             ///< buffer[acked] does not decode
  };

  /// One pass over the owned partitions: handles what is buffered (or fetched) of each, all of
  /// it inside one batch of the subscriber's store (group commit), then settles the outcomes.
  /// True when any partition moved on. Offsets are committed by the caller.
  bool serve_all() {
    std::vector<Handled> handled;
    size_t budget = static_cast<size_t>(std::max(1, opt_.max_batch));
    auto handle_pass = [&] {
      const auto now = Clock::now();
      for (auto& [key, part] : owned_) {
        if (stopping() || budget == 0 || Clock::now() >= next_heartbeat_) break;
        Part& p = part;
        if (p.lost || p.retry_at > now) continue;
        p.retry_at = {};
        if (p.buffer.empty() && (p.log_end <= p.position || !fetch(p))) continue;
        handled.push_back(handle_run(p, budget));
      }
    };
    Status st;
    if (opt_.store != nullptr) {
      st = opt_.store->run(handle_pass);
    } else {
      handle_pass();
    }
    if (!st) {
      // Nothing of the pass is durable: every partition starts again from its first record.
      log::warn(kTag, "group {}: committing handled records failed ({}), retrying", opt_.group,
                st.error().message);
      for (auto& h : handled) h.part->retry_at = Clock::now() + opt_.initial_backoff;
      return false;
    }
    bool progressed = false;
    for (auto& h : handled) progressed |= settle(h);
    return progressed;
  }

  /// Handles records of `p` from the front of its buffer until one is not simply acknowledged,
  /// the buffer ends or the budget does. Nothing moves: settle() does that once it is durable.
  Handled handle_run(Part& p, size_t& budget) {
    Handled h{&p};
    // The heartbeat is due: a slow handler must not hold the store (and the membership) longer.
    while (h.acked < p.buffer.size() && budget > 0 && !stopping() &&
           Clock::now() < next_heartbeat_) {
      const Row& row = p.buffer[h.acked];
      auto decoded = decode_envelope(row.value);
      if (!decoded) {
        h.stopped = Outcome::dead_letter("poison pill: " + decoded.error().message);
        h.poison = true;
        break;
      }
      Message msg{p.topic,
                  p.partition,
                  row.offset,
                  row.key,
                  std::move(decoded).value(),
                  h.acked == 0 ? p.attempt : 1};
      --budget;
      Outcome out = call_handler(handler_, msg);
      if (out.disposition != Disposition::kAck) {
        h.stopped = std::move(out);
        break;
      }
      ++h.acked;
    }
    return h;
  }

  /// Moves a partition past what its run acknowledged, then settles the record it stopped at: a
  /// dead-letter (which commits the offset past it, so only after the run is durable) or a retry.
  bool settle(Handled& h) {
    Part& p = *h.part;
    for (size_t i = 0; i < h.acked; ++i) advance(p);
    bool progressed = h.acked > 0;
    if (!h.stopped || p.buffer.empty()) return progressed;
    const Row& row = p.buffer.front();
    const Decision d = decide(*h.stopped, p.attempt, policy_);
    switch (d.action) {
      case Decision::Action::kAdvance:  // a run stops only at a record it did not ack
        advance(p);
        return true;
      case Decision::Action::kDeadLetter:
        if (!dead_letter(p, row, d.reason, h.poison ? 0 : p.attempt)) return progressed;
        advance(p);
        return true;
      case Decision::Action::kRetry:
        log::debug(kTag, "group {}: {}[{}]@{} attempt {} failed ({}), retry in {} ms", opt_.group,
                   p.topic, p.partition, row.offset, p.attempt, d.reason, d.delay.count());
        ++p.attempt;
        p.retry_at = Clock::now() + d.delay;
        return progressed;
    }
    return progressed;
  }

  static void advance(Part& p) {
    p.position = p.buffer.front().offset + 1;
    p.attempt = 1;
    p.buffer.pop_front();
  }

  /// Commits the progress of every partition that moved, in one transaction.
  void commit_all() {
    std::vector<Part*> moved;
    for (auto& [key, part] : owned_) {
      if (part.position != part.committed && !part.lost) moved.push_back(&part);
    }
    if (moved.empty()) return;
    auto r = core_->db->transaction([&](db::Tx& tx) -> Result<std::vector<bool>> {
      std::vector<bool> mine;
      for (Part* p : moved) mine.push_back(commit_offset(tx, p->topic, p->partition, p->position));
      return mine;
    });
    if (!r) {
      log::warn(kTag, "group {}: committing offsets failed: {}", opt_.group, r.error().message);
      return;
    }
    for (size_t i = 0; i < moved.size(); ++i) {
      Part& p = *moved[i];
      if ((*r)[i]) {
        p.committed = p.position;
      } else {
        log::warn(kTag, "group {}: member {} lost {}[{}]", opt_.group, member_id_, p.topic,
                  p.partition);
        p.lost = true;
      }
    }
  }

  bool commit_offset(db::Tx& tx, const std::string& topic, int partition, int64_t position) {
    return tx.stmt(kCommitIfOwner)
               .bind_all(opt_.group, topic, partition, position, member_id_, incarnation_)
               .exec() > 0;
  }

  /// Copies the record to `<topic>.dlq` and commits past it, in one transaction. False when the
  /// store failed: the record stays and the partition backs off.
  bool dead_letter(Part& p, const Row& row, const std::string& reason, int attempts) {
    const std::string headers =
        headers_json(reason, p.topic, p.partition, row.offset, attempts, opt_.group, member_id_);
    const std::string dlq = dlq_topic(p.topic);
    auto r = core_->db->transaction([&](db::Tx& tx) -> Result<bool> {
      Appender app(tx, core_->opt.partitions);
      app.append(dlq, row.key, row.value, &headers);
      app.finish();
      return commit_offset(tx, p.topic, p.partition, row.offset + 1);
    });
    if (!r) {
      log::error(kTag, "group {}: dead-lettering {}[{}]@{} failed: {}", opt_.group, p.topic,
                 p.partition, row.offset, r.error().message);
      p.retry_at = Clock::now() + policy_.backoff.after(1);
      return false;
    }
    log::warn(kTag, "group {}: {}[{}]@{} dead-lettered to {}: {}", opt_.group, p.topic, p.partition,
              row.offset, dlq, reason);
    core_->wake();
    if (*r) {
      p.committed = row.offset + 1;
    } else {
      p.lost = true;
    }
    return true;
  }

  // --- membership ---------------------------------------------------------------------------

  int64_t load_committed(db::Tx& tx, const PartKey& k) {
    auto s = tx.stmt(kSelectCommitted);
    s.bind_all(opt_.group, k.first, k.second);
    return s.step() ? s.col_int(0) : 0;
  }

  /// Refreshes membership and moves partition ownership towards the deterministic assignment:
  /// live members sorted by id, member i takes partitions p with p % n == i. A partition is
  /// claimed only when unowned or owned by a member that is gone, so no two live members ever
  /// own the same partition.
  void heartbeat() {
    const int partitions = core_->opt.partitions;
    const int64_t timeout = core_->opt.session_timeout.count();
    auto r = core_->db->transaction([&](db::Tx& tx) -> Result<Plan> {
      Plan plan;
      const int64_t now = now_ms();
      {
        auto s = tx.stmt("SELECT incarnation FROM members WHERE grp=? AND member_id=?");
        s.bind_all(opt_.group, member_id_);
        if (!s.step()) {
          plan.evicted = joined_;
        } else if (s.col_view(0) != incarnation_) {
          // Before joining: a previous incarnation (typically of a crashed process) whose
          // membership and partitions this one now resumes. After: this one was replaced.
          if (joined_) {
            plan.fenced = true;
            return plan;
          }
          log::info(kTag, "group {}: static member {} resumes its previous incarnation", opt_.group,
                    member_id_);
        }
      }
      tx.stmt(
            "INSERT INTO members(grp, member_id, heartbeat_ms, incarnation) VALUES(?, ?, ?, ?) "
            "ON CONFLICT(grp, member_id) DO UPDATE SET heartbeat_ms=excluded.heartbeat_ms, "
            "incarnation=excluded.incarnation")
          .bind_all(opt_.group, member_id_, now, incarnation_)
          .exec();
      // Both directions, so that a wall-clock jump cannot make a dead member immortal.
      tx.stmt("DELETE FROM members WHERE grp=? AND (heartbeat_ms < ? OR heartbeat_ms > ?)")
          .bind_all(opt_.group, now - timeout, now + timeout)
          .exec();
      std::vector<std::string> live;
      {
        auto s = tx.stmt("SELECT member_id FROM members WHERE grp=? ORDER BY member_id");
        s.bind(1, opt_.group);
        while (s.step()) live.push_back(s.col_text(0));
      }
      const auto me = std::find(live.begin(), live.end(), member_id_);
      const int n = static_cast<int>(live.size());
      const int index = static_cast<int>(me - live.begin());
      auto is_live = [&](const std::string& id) {
        return std::binary_search(live.begin(), live.end(), id);
      };

      for (const auto& topic : opt_.topics) {
        std::map<int, std::string> owners;
        {
          auto s = tx.stmt(R"(SELECT "partition", owner FROM ownership WHERE grp=? AND topic=?)");
          s.bind_all(opt_.group, topic);
          while (s.step()) owners.emplace(static_cast<int>(s.col_int(0)), s.col_text(1));
        }
        for (int p = 0; p < partitions; ++p) {
          PartKey key{topic, p};
          const auto it = owners.find(p);
          const bool db_mine = it != owners.end() && it->second == member_id_;
          const auto held = plan.evicted ? owned_.end() : owned_.find(key);
          const bool have = held != owned_.end();
          const bool target = p % n == index;
          if (target && db_mine) {
            if (!have) plan.claims.push_back({key, load_committed(tx, key)});
          } else if (target && (it == owners.end() || !is_live(it->second))) {
            tx.stmt(R"(INSERT INTO ownership(grp, topic, "partition", owner) VALUES(?, ?, ?, ?) )"
                    R"(ON CONFLICT(grp, topic, "partition") DO UPDATE SET owner=excluded.owner)")
                .bind_all(opt_.group, topic, p, member_id_)
                .exec();
            if (have) plan.dropped.push_back(key);
            plan.claims.push_back({key, load_committed(tx, key)});
          } else if (db_mine) {
            // Not ours any more: commit progress before letting go, so the next owner
            // continues exactly where this member stopped.
            if (have) commit_offset(tx, topic, p, held->second.position);
            tx.stmt(
                  R"(DELETE FROM ownership WHERE grp=? AND topic=? AND "partition"=? AND owner=?)")
                .bind_all(opt_.group, topic, p, member_id_)
                .exec();
            if (have) plan.dropped.push_back(key);
          } else if (have) {
            plan.dropped.push_back(std::move(key));
          }
        }
      }
      return plan;
    });
    if (!r) {
      log::warn(kTag, "group {}: heartbeat of member {} failed: {}", opt_.group, member_id_,
                r.error().message);
      return;
    }
    Plan& plan = *r;
    if (plan.fenced) {
      log::error(kTag,
                 "group {}: static member {} was taken over by another subscription with the "
                 "same instance_id (two processes configured alike?); this one stops consuming",
                 opt_.group, member_id_);
      owned_.clear();
      request_stop();
      return;
    }
    if (plan.evicted) {
      log::warn(kTag, "group {}: member {} was evicted (silent longer than {} ms); rejoined",
                opt_.group, member_id_, timeout);
      owned_.clear();
    }
    joined_ = true;
    for (const auto& key : plan.dropped) owned_.erase(key);
    for (auto& c : plan.claims) {
      Part part;
      part.topic = c.key.first;
      part.partition = c.key.second;
      part.position = part.committed = c.committed;
      owned_.insert_or_assign(c.key, std::move(part));
    }
    if (!plan.claims.empty() || !plan.dropped.empty()) {
      std::string list;
      for (const auto& [key, part] : owned_) {
        if (!list.empty()) list += ',';
        list += key.first + "[" + std::to_string(key.second) + "]";
      }
      log::debug(kTag, "group {}: member {} owns {}", opt_.group, member_id_, list);
    }
  }

  /// Commits progress, releases partitions and leaves the group, in one transaction. A fenced
  /// static member leaves nothing: its id belongs to the newer incarnation now.
  void leave() {
    auto r = core_->db->transaction([&](db::Tx& tx) -> Status {
      {
        auto s = tx.stmt("SELECT 1 FROM members WHERE grp=? AND member_id=? AND incarnation<>?");
        s.bind_all(opt_.group, member_id_, incarnation_);
        if (s.step()) return {};
      }
      for (const auto& [key, part] : owned_) {
        if (part.position != part.committed) {
          commit_offset(tx, part.topic, part.partition, part.position);
        }
      }
      tx.stmt("DELETE FROM ownership WHERE grp=? AND owner=?")
          .bind_all(opt_.group, member_id_)
          .exec();
      tx.stmt("DELETE FROM members WHERE grp=? AND member_id=?")
          .bind_all(opt_.group, member_id_)
          .exec();
      return {};
    });
    if (!r) {
      log::warn(kTag, "group {}: member {} could not leave cleanly: {}", opt_.group, member_id_,
                r.error().message);
    }
    owned_.clear();
  }

  std::shared_ptr<Core> core_;
  SubscriptionOptions opt_;
  DeliveryPolicy policy_;
  Handler handler_;
  const std::string incarnation_;  ///< unique per subscription object
  const std::string member_id_;    ///< the instance id of a static member, else incarnation_
  std::atomic<bool> registered_;   ///< holds (group, instance_id) in core_->instances
  // Touched by the consumer thread only.
  std::map<PartKey, Part> owned_;
  bool joined_ = false;
  Clock::time_point next_heartbeat_{};
};

bool is_dlq(std::string_view topic) {
  constexpr std::string_view kSuffix{".dlq"};
  return topic.size() > kSuffix.size() && topic.substr(topic.size() - kSuffix.size()) == kSuffix;
}

/// Deletes records past their topic's retention on one background task. Only a prefix of each
/// partition log goes (oldest offsets first, up to the first record still within retention), so
/// a log stays a dense offset range and a clock that went back never punches holes into it.
///
/// A pass runs each retention_check_interval on the bus's clock, the first one interval after
/// opening; a partition with more than one chunk to delete is worked through in the same pass,
/// pausing (on the clock) between chunks.
class RetentionJanitor final {
 public:
  explicit RetentionJanitor(std::shared_ptr<Core> core)
      : core_(std::move(core)),
        task_("bus.retention", *core_->opt.clock, core_->opt.retention_check_interval,
              [this](int64_t now) { return step(now); }) {
    task_.start(core_->opt.retention_check_interval);
  }
  // The task stops (joins) first: its step uses core_ and the pass state.
  ~RetentionJanitor() { task_.stop(); }
  RetentionJanitor(const RetentionJanitor&) = delete;
  RetentionJanitor& operator=(const RetentionJanitor&) = delete;

 private:
  struct Chunk {
    int64_t deleted = 0;
    bool more = false;  ///< a full chunk went: the partition may hold more expired records
  };

  /// One turn: a new pass when none is under way, then chunks of its partitions until one
  /// needs a pause (returned as the delay: the task runs this again after it) or the pass is done.
  std::optional<milliseconds> step(int64_t now) {
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

  using Work = std::deque<std::tuple<std::string, int, int64_t>>;

  /// Takes this interval's lease; returns the partitions whose oldest record expired, with their
  /// cutoff (the rest cost no write), or nullopt when there is nothing to do or it failed.
  std::optional<Work> plan(int64_t now) {
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

  static Chunk delete_chunk(db::Tx& tx, const std::string& topic, int partition, int64_t cutoff) {
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

  std::shared_ptr<Core> core_;
  // The pass under way; touched by the task's step only.
  std::optional<Work> pending_;
  int64_t total_ = 0;
  PeriodicTask task_;  // last: stops before the members its step uses go
};

class EmbeddedBus final : public EventBus {
 public:
  explicit EmbeddedBus(std::shared_ptr<Core> core) : core_(std::move(core)) {
    if (core_->opt.retention.count() >= 0 || core_->opt.dlq_retention.count() >= 0) {
      janitor_ = std::make_unique<RetentionJanitor>(core_);
    }
  }

  ~EmbeddedBus() override {
    janitor_.reset();
    workers_.close_all();
  }

  using EventBus::publish;

  Status publish(std::span<const Record> records) override {
    if (records.empty()) return {};
    for (const auto& r : records) {
      if (r.topic.empty())
        return Error{ErrorCode::kValidationFailed, "record topic is empty", "topic"};
    }
    auto st = core_->db->transaction([&](db::Tx& tx) -> Status {
      Appender app(tx, core_->opt.partitions);
      for (const auto& r : records) app.append(r.topic, r.key, r.value, nullptr);
      app.finish();
      return {};
    });
    if (st) core_->wake();
    return st;
  }

  Result<std::unique_ptr<Subscription>> subscribe(SubscriptionOptions options,
                                                  Handler handler) override {
    if (options.group.empty()) {
      return Error{ErrorCode::kValidationFailed, "subscription group is empty", "group"};
    }
    if (options.topics.empty()) {
      return Error{ErrorCode::kValidationFailed, "subscription has no topics", "topics"};
    }
    for (const auto& t : options.topics) {
      if (t.empty())
        return Error{ErrorCode::kValidationFailed, "subscription topic is empty", "topics"};
    }
    if (!handler)
      return Error{ErrorCode::kValidationFailed, "subscription handler is empty", "handler"};
    std::sort(options.topics.begin(), options.topics.end());
    options.topics.erase(std::unique(options.topics.begin(), options.topics.end()),
                         options.topics.end());
    if (options.instance_id.empty()) options.instance_id = core_->opt.instance_id;
    if (!options.instance_id.empty()) {
      if (auto st = check_instance_id(options.instance_id); !st) return st.error();
      // Two live subscriptions with one member id would take its partitions from each other.
      if (!core_->register_instance(options.group, options.instance_id)) {
        return Error{ErrorCode::kConfigInvalid,
                     "group \"" + options.group +
                         "\" already has a live subscription with "
                         "instance_id \"" +
                         options.instance_id + "\" on this bus",
                     "instance_id"};
      }
    }

    auto consumer = std::make_shared<Consumer>(core_, std::move(options), std::move(handler));
    ConsumerWorker::start(consumer);  // a throw releases the instance with the consumer
    workers_.add(consumer);
    return std::unique_ptr<Subscription>(new WorkerSubscription(std::move(consumer)));
  }

  bool healthy() override { return core_->db->healthy(); }

  std::string_view kind() const noexcept override { return "embedded"; }

 private:
  std::shared_ptr<Core> core_;
  ConsumerWorkers workers_;
  std::unique_ptr<RetentionJanitor> janitor_;
};

Status check_options(const EmbeddedBusOptions& o) {
  auto invalid = [](std::string field, std::string message) {
    return Error{ErrorCode::kConfigInvalid, "embedded_bus." + field + ": " + message, field};
  };
  if (o.path.empty()) return invalid("path", "must not be empty");
  if (o.partitions < 1 || o.partitions > 1024) return invalid("partitions", "must be 1..1024");
  if (o.batch_size < 1) return invalid("batch_size", "must be positive");
  if (o.poll_interval.count() < 1) return invalid("poll_interval", "must be positive");
  if (o.heartbeat_interval.count() < 1) return invalid("heartbeat_interval", "must be positive");
  if (o.session_timeout <= o.heartbeat_interval) {
    return invalid("session_timeout", "must be longer than heartbeat_interval");
  }
  if (o.retention.count() == 0) {
    return invalid("retention", "must be positive, or negative for ever");
  }
  if (o.dlq_retention.count() == 0) {
    return invalid("dlq_retention", "must be positive, or negative for ever");
  }
  if (o.retention_check_interval.count() < 1) {
    return invalid("retention_check_interval", "must be positive");
  }
  if (o.clock == nullptr) return invalid("clock", "must not be null");
  if (auto st = check_instance_id(o.instance_id); !st) return st.error();
  return {};
}

}  // namespace

Result<std::unique_ptr<EventBus>> make_embedded_bus(EmbeddedBusOptions options) {
  if (auto st = check_options(options); !st) return st.error();
  auto db = db::Database::open(options.path);
  if (!db) return db.error();
  if (auto st = (*db)->migrate("embedded_bus", kSchema); !st) return st.error();
  auto stored = (*db)->transaction([&](db::Tx& tx) -> Result<int64_t> {
    tx.stmt("INSERT OR IGNORE INTO bus_meta(name, value) VALUES('partitions', ?)")
        .bind(1, options.partitions)
        .exec();
    auto s = tx.stmt("SELECT value FROM bus_meta WHERE name='partitions'");
    return s.step() ? s.col_int(0) : int64_t{options.partitions};
  });
  if (!stored) return stored.error();
  if (*stored != options.partitions) {
    log::warn(kTag, "{} was created with {} partitions per topic; using that, not {}", options.path,
              *stored, options.partitions);
    options.partitions = static_cast<int>(*stored);
  }
  auto core = std::make_shared<Core>();
  core->opt = std::move(options);
  core->db = std::move(db).value();
  return std::unique_ptr<EventBus>(new EmbeddedBus(std::move(core)));
}

}  // namespace ecom::bus
