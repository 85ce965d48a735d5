#include "embedded_consumer.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "consumer_metrics.hpp"
#include "delivery.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/log.hpp"
#include "embedded_membership.hpp"

namespace ecom::bus::embedded {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

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

/// One subscription: a member of its consumer group (Membership), with one thread that
/// heartbeats, rebalances, fetches and calls the handler.
class Consumer final : public ConsumerWorker {
 public:
  /// A static member's (group, instance_id) must already be registered in `core`; the consumer
  /// releases it when its thread ends.
  Consumer(std::shared_ptr<Core> core, SubscriptionOptions opt, Handler handler)
      : core_(std::move(core)),
        opt_(std::move(opt)),
        handler_(std::move(handler)),
        metrics_(opt_.group, opt_.topics),
        membership_(core_, opt_.group, opt_.topics, opt_.instance_id),
        registered_(!opt_.instance_id.empty()) {
    if (opt_.max_attempts < 1) opt_.max_attempts = 1;
    opt_.initial_backoff = std::max(opt_.initial_backoff, milliseconds(1));
    opt_.max_backoff = std::max(opt_.max_backoff, opt_.initial_backoff);
    policy_ = DeliveryPolicy::of(opt_);
    waiter_.topics = opt_.topics;
    std::sort(waiter_.topics.begin(), waiter_.topics.end());
    core_->add_waiter(waiter_);
  }

  // The thread has ended by now (see consumer_worker.hpp); it released the instance unless it
  // never started.
  ~Consumer() override {
    core_->remove_waiter(waiter_);
    release_instance();
  }

 protected:
  void wake() override {
    // Under the lock (in Core::wake), so that a loop between its stop check and its wait cannot
    // miss it.
    core_->wake(waiter_);
  }

 private:
  using Row = LogRecord;

  /// A dead letter whose write failed: the handler is done with it, only the write is left.
  struct Unwritten {
    std::string reason;
    int attempts;
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
    bool lost = false;                   ///< ownership went to another member
    std::optional<Unwritten> unwritten;  ///< of buffer.front(), retried at retry_at
    int dlq_failures = 0;                ///< failed writes of `unwritten`, for the backoff
    ConsumerMetrics::Topic* metrics = nullptr;
    PartitionLag lag;
  };

  void run() override {
    log::debug(kTag, "member {} joining group {}", membership_.member_id(), opt_.group);
    next_heartbeat_ = Clock::now();
    const auto poll = std::max(core_->opt.poll_interval, milliseconds(1));
    while (!stopping()) {
      if (Clock::now() >= next_heartbeat_) {
        heartbeat();
        next_heartbeat_ = Clock::now() + core_->opt.heartbeat_interval;
      }
      {
        // Records committed from here on set it again, so the wait below cannot miss them.
        std::lock_guard lock(core_->mu);
        waiter_.signalled = false;
      }
      bool progressed = false;
      if (!owned_.empty()) {
        refresh_log_ends();
        progressed = serve_all();
        commit_all();
        std::erase_if(owned_, [](const auto& kv) { return kv.second.lost; });
        // Per pass, not per record: the log ends were just read, the offsets just committed.
        for (const auto& [key, part] : owned_) part.lag.set(part.log_end - part.committed);
        metrics_.flush();
      }
      if (progressed) continue;

      auto until = std::min(next_heartbeat_, Clock::now() + poll);
      for (const auto& [key, part] : owned_) {
        if (part.retry_at > Clock::time_point{}) until = std::min(until, part.retry_at);
      }
      std::unique_lock lock(core_->mu);
      waiter_.cv.wait_until(lock, until, [&] { return stopping() || waiter_.signalled; });
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
        for_each_log_end(tx, topic, [&](int partition, int64_t log_end) {
          auto it = owned_.find(PartKey{topic, partition});
          if (it != owned_.end()) it->second.log_end = log_end;
        });
      }
      return {};
    });
    if (!r) log::warn(kTag, "group {}: reading log ends failed: {}", opt_.group, r.error().message);
  }

  bool fetch(Part& p) {
    auto r = core_->db->read([&](db::Tx& tx) -> Status {
      read_records(tx, p.topic, p.partition, p.position, core_->opt.batch_size, p.buffer);
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
    // Outside the store batch: a dead letter is written only for work already durable.
    bool progressed = write_due_dead_letters();
    std::vector<Handled> handled;
    size_t budget = static_cast<size_t>(std::max(1, opt_.max_batch));
    auto handle_pass = [&] {
      const auto now = Clock::now();
      for (auto& [key, part] : owned_) {
        if (stopping() || budget == 0 || Clock::now() >= next_heartbeat_) break;
        Part& p = part;
        if (!due(p, now)) continue;
        p.retry_at = {};
        if (p.buffer.empty() && !fetch(p)) continue;
        handled.push_back(handle_run(p, budget));
      }
      if (opt_.store != nullptr) save_positions(handled);
    };
    Status st;
    const auto started = Clock::now();
    // An empty batch would still take the store's write lock from its HTTP writers.
    if (opt_.store != nullptr && has_work()) {
      st = opt_.store->run(handle_pass);
    } else if (opt_.store != nullptr) {
      return progressed;
    } else {
      handle_pass();
    }
    size_t records = 0;
    for (const auto& h : handled) records += h.acked + (h.stopped ? 1 : 0);
    metrics_.batch(records, Clock::now() - started);
    if (!st) {
      // Nothing of the pass is durable: every partition starts again from its first record.
      if (!batch_failing_) {
        log::warn(kTag, "group {}: committing handled records failed ({}); retrying until it works",
                  opt_.group, st.error().message);
      }
      batch_failing_ = true;
      for (auto& h : handled) h.part->retry_at = Clock::now() + opt_.initial_backoff;
      return progressed;
    }
    if (batch_failing_ && !handled.empty()) {
      log::info(kTag, "group {}: committing handled records again", opt_.group);
      batch_failing_ = false;
    }
    for (auto& h : handled) progressed |= settle(h);
    return progressed;
  }

  /// True when `p` has a record to hand over at `now`: buffered or in the log, and neither
  /// waiting for a retry or a dead-letter write nor lost.
  static bool due(const Part& p, Clock::time_point now) {
    if (p.lost || p.retry_at > now || p.unwritten) return false;
    return !p.buffer.empty() || p.log_end > p.position;
  }

  /// True when some partition has a record to hand over now.
  bool has_work() const {
    const auto now = Clock::now();
    return std::any_of(owned_.begin(), owned_.end(),
                       [&](const auto& kv) { return due(kv.second, now); });
  }

  /// Inside the store's batch: where the handled runs end, durable with their effects.
  void save_positions(const std::vector<Handled>& handled) {
    std::vector<ConsumedPosition> positions;
    for (const auto& h : handled) {
      if (h.acked == 0) continue;
      const Part& p = *h.part;
      positions.push_back(ConsumedPosition{p.topic, p.partition, p.buffer[h.acked - 1].offset + 1});
    }
    if (auto st = opt_.store->save_positions(opt_.group, positions); !st) {
      log::warn(kTag, "group {}: saving positions failed: {}", opt_.group, st.error().message);
    }
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
        metrics_.undecodable(p.metrics);
        break;
      }
      Message msg{p.topic, p.partition, row.offset, row.key, std::move(decoded).value(),
                  h.acked == 0 ? p.attempt : 1,
                  // With the position stored with the effects, an offset is handled once.
                  row.once && opt_.store != nullptr};
      --budget;
      Outcome out = metrics_.call(p.metrics, handler_, msg);
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
    p.dlq_failures = 0;
    p.buffer.pop_front();
  }

  /// Retries the dead-letter writes that failed, once their backoff passed, without calling the
  /// handler again: it already answered, and its work may be durable (as on Kafka). True when
  /// any partition moved on.
  bool write_due_dead_letters() {
    bool progressed = false;
    const auto now = Clock::now();
    for (auto& [key, p] : owned_) {
      if (stopping()) break;
      if (!p.unwritten || p.lost || p.retry_at > now) continue;
      const Unwritten u = std::move(*p.unwritten);
      p.unwritten.reset();
      p.retry_at = {};
      if (!dead_letter(p, p.buffer.front(), u.reason, u.attempts)) continue;  // waits again
      advance(p);
      progressed = true;
    }
    return progressed;
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
      for (Part* p : moved)
        mine.push_back(membership_.commit_offset(tx, p->topic, p->partition, p->position));
      return mine;
    });
    if (!r) {
      // Once per outage (a full disk fails every pass), not once per pass.
      if (!commit_failing_) {
        log::warn(kTag, "group {}: committing offsets failed ({}); will keep trying", opt_.group,
                  r.error().message);
      }
      commit_failing_ = true;
      return;
    }
    if (commit_failing_) log::info(kTag, "group {}: committing offsets again", opt_.group);
    commit_failing_ = false;
    for (size_t i = 0; i < moved.size(); ++i) {
      Part& p = *moved[i];
      if ((*r)[i]) {
        p.committed = p.position;
      } else {
        log::warn(kTag, "group {}: member {} lost {}[{}]", opt_.group, membership_.member_id(),
                  p.topic, p.partition);
        p.lost = true;
      }
    }
  }

  /// Copies the record to `<topic>.dlq` and commits past it, in one transaction. False when the
  /// store failed: the record stays, and only this write is retried after a growing backoff.
  bool dead_letter(Part& p, const Row& row, const std::string& reason, int attempts) {
    const std::string headers = headers_json(reason, p.topic, p.partition, row.offset, attempts,
                                             opt_.group, membership_.member_id());
    const std::string dlq = dlq_topic(p.topic);
    auto r = core_->db->transaction([&](db::Tx& tx) -> Result<bool> {
      Appender app(tx, core_->opt.partitions);
      app.append(dlq, row.key, row.value, &headers);
      app.finish();
      return membership_.commit_offset(tx, p.topic, p.partition, row.offset + 1);
    });
    if (!r) {
      const auto delay = policy_.backoff.after(++p.dlq_failures);
      log::error(kTag, "group {}: dead-lettering {}[{}]@{} failed: {}; retrying the write in {} ms",
                 opt_.group, p.topic, p.partition, row.offset, r.error().message, delay.count());
      p.unwritten = Unwritten{reason, attempts};
      p.retry_at = Clock::now() + delay;
      return false;
    }
    log::warn(kTag, "group {}: {}[{}]@{} dead-lettered to {}: {}", opt_.group, p.topic, p.partition,
              row.offset, dlq, reason);
    // Else the store's position, which wins on the next claim, would hand it over once more.
    if (opt_.store != nullptr) {
      const ConsumedPosition past{p.topic, p.partition, row.offset + 1};
      if (auto st = opt_.store->save_positions(opt_.group, std::span(&past, 1)); !st) {
        log::warn(kTag, "group {}: saving the position past a dead letter failed: {}", opt_.group,
                  st.error().message);
      }
    }
    metrics_.dead_lettered(p.metrics);
    core_->wake(std::vector<std::string_view>{dlq});
    if (*r) {
      p.committed = row.offset + 1;
    } else {
      p.lost = true;
    }
    return true;
  }

  // --- membership ---------------------------------------------------------------------------

  /// Heartbeats and applies what the membership changed to the partitions held.
  void heartbeat() {
    Positions held;
    for (const auto& [key, part] : owned_) held.emplace(key, part.position);
    auto plan = membership_.heartbeat(held);
    if (!plan) return;
    if (plan->fenced) {
      owned_.clear();
      request_stop();
      return;
    }
    if (plan->evicted) owned_.clear();
    for (const auto& key : plan->dropped) owned_.erase(key);
    const auto stored = plan->claims.empty() ? std::map<PartKey, int64_t>{} : stored_positions();
    for (auto& c : plan->claims) {
      Part part;
      part.topic = c.key.first;
      part.partition = c.key.second;
      part.position = part.committed = c.committed;
      if (auto it = stored.find(c.key); it != stored.end()) part.position = it->second;
      part.metrics = metrics_.topic(part.topic);
      part.lag = metrics_.lag(part.topic, part.partition);
      owned_.insert_or_assign(c.key, std::move(part));
    }
    if (!plan->claims.empty() || !plan->dropped.empty()) {
      std::string list;
      for (const auto& [key, part] : owned_) {
        if (!list.empty()) list += ',';
        list += key.first + "[" + std::to_string(key.second) + "]";
      }
      log::debug(kTag, "group {}: member {} owns {}", opt_.group, membership_.member_id(), list);
    }
  }

  /// The subscriber's store's positions of this group, where the log has them (see BatchScope):
  /// they win over the bus's committed offsets, which lag them after a crash between the two
  /// commits. A position past the log's end means the bus file is not the one the store
  /// consumed (replaced, or recreated): the bus's offsets are used then.
  std::map<PartKey, int64_t> stored_positions() {
    std::map<PartKey, int64_t> out;
    if (opt_.store == nullptr) return out;
    auto loaded = opt_.store->load_positions(opt_.group);
    if (!loaded) {
      log::warn(kTag, "group {}: reading stored positions failed ({}); using the bus's offsets",
                opt_.group, loaded.error().message);
      return out;
    }
    std::map<PartKey, int64_t> ends;
    auto r = core_->db->read([&](db::Tx& tx) -> Status {
      for (const auto& topic : opt_.topics) {
        for_each_log_end(tx, topic, [&](int partition, int64_t end) {
          ends[PartKey{topic, partition}] = end;
        });
      }
      return {};
    });
    if (!r) return out;
    for (auto& pos : *loaded) {
      PartKey key{pos.topic, pos.partition};
      auto end = ends.find(key);
      const int64_t log_end = end == ends.end() ? 0 : end->second;
      if (pos.next > log_end) {
        log::warn(kTag,
                  "group {}: the store is at offset {} of {}[{}], past the log's end {} (a new "
                  "bus file?); starting at the bus's committed offset",
                  opt_.group, pos.next, pos.topic, pos.partition, log_end);
        continue;
      }
      out.emplace(std::move(key), pos.next);
    }
    return out;
  }

  /// Commits progress and leaves the group (see Membership::leave).
  void leave() {
    Positions progress;
    for (const auto& [key, part] : owned_) {
      if (part.position != part.committed) progress.emplace(key, part.position);
    }
    membership_.leave(progress);
    owned_.clear();
  }

  std::shared_ptr<Core> core_;
  Waiter waiter_;  // registered with core_ for the consumer's lifetime
  SubscriptionOptions opt_;
  DeliveryPolicy policy_;
  Handler handler_;
  ConsumerMetrics metrics_;
  Membership membership_;
  std::atomic<bool> registered_;  ///< holds (group, instance_id) in core_->instances
  // Touched by the consumer thread only.
  std::map<PartKey, Part> owned_;
  Clock::time_point next_heartbeat_{};
  bool commit_failing_ = false;  // logged the current outage of offset commits
  bool batch_failing_ = false;   // logged the current outage of store batches
};

}  // namespace

std::shared_ptr<ConsumerWorker> make_consumer(std::shared_ptr<Core> core,
                                              SubscriptionOptions options, Handler handler) {
  return std::make_shared<Consumer>(std::move(core), std::move(options), std::move(handler));
}

}  // namespace ecom::bus::embedded
