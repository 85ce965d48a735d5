// Handlers run on the consumer's thread, so a partition's records are handled one at a time in
// offset order. Offsets are committed only for handled records (asynchronously every
// commit_interval, synchronously on revoke and close). A retry pauses only the record's partition
// and redelivers the held record after a backoff. What a handler's outcome means (advance, retry
// after which delay, dead-letter) is decided by bus/delivery.hpp, the same for the embedded bus.

#include "kafka_consumer.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "consumer_metrics.hpp"
#include "delivery.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/log.hpp"

namespace ecom::bus::kafka {
namespace {

using Clock = std::chrono::steady_clock;

using TopicPartition = std::pair<std::string, int32_t>;

// A record copied out of librdkafka, kept while it waits for a retry.
struct Held {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<Envelope> envelope;  // empty: the value is not a valid envelope
  std::string decode_error;
  std::string source;  // kSourceHeader of a relayed record, else empty
  int64_t seq = 0;     // kSeqHeader
};

struct PartitionState {
  int64_t next = -1;       // offset after the last handled record; -1: none handled yet
  int64_t committed = -1;  // last `next` the group coordinator acknowledged
  bool paused = false;     // paused in librdkafka while a record waits for its retry
  bool dropped = false;    // records arrived while paused and were dropped: seek on resume
  std::optional<Held> held;
  int attempt = 0;        // attempts made on `held`
  bool dlq_only = false;  // the handler is done; only the dead-letter write must be retried
  int dlq_failures = 0;   // failed dead-letter writes of `held`, for the backoff
  std::string reason;     // why `held` is waiting
  Clock::time_point due;
  ConsumerMetrics::Topic* metrics = nullptr;
  PartitionLag lag;
  // The highest seq handled per relayed source (SourceMark): stored with the position, loaded
  // on assignment. Only with a store.
  std::map<std::string, int64_t, std::less<>> marks;
  // The offset the store holds for the partition as far as this consumer knows (-1: none):
  // saves are fenced on it (ConsumedPosition::expected), so two replicas that both believe they
  // own the partition for a moment never both apply a record.
  int64_t stored = -1;
};

std::vector<SourceMark> marks_of(const PartitionState& st) {
  std::vector<SourceMark> out;
  out.reserve(st.marks.size());
  for (const auto& [source, seq] : st.marks) out.push_back(SourceMark{source, seq});
  return out;
}

// `h` is done with (handled or dead-lettered): its source's mark covers it from now on.
void raise_mark(PartitionState& st, const Held& h) {
  if (h.source.empty()) return;
  auto [it, fresh] = st.marks.try_emplace(h.source, h.seq);
  if (!fresh) it->second = std::max(it->second, h.seq);
}

// One member of a consumer group and everything its thread touches; the thread's lifetime
// follows consumer_worker.hpp. librdkafka's callbacks get this object as their opaque: they are
// served by rd_kafka_consumer_poll and rd_kafka_consumer_close, on the worker's thread only.
class KafkaConsumer final : public ConsumerWorker {
 public:
  KafkaConsumer(const KafkaBusOptions& options, SubscriptionOptions sub, Handler handler,
                std::shared_ptr<Producer> producer, std::shared_ptr<SubscriptionHealth> health)
      : options_(options),
        sub_(std::move(sub)),
        policy_(DeliveryPolicy::of(sub_)),
        handler_(std::move(handler)),
        metrics_(sub_.group, sub_.topics),
        producer_(std::move(producer)),
        health_(std::move(health)) {}

  /// Creates the consumer and subscribes; the loop starts with ConsumerWorker::start.
  Status open() {
    int session = static_cast<int>(options_.session_timeout.count());
    std::map<std::string, std::string> preset = {
        {"group.id", sub_.group},
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        {"partition.assignment.strategy", "cooperative-sticky"},
        {"auto.offset.reset", "earliest"},
        {"session.timeout.ms", std::to_string(session)},
        // Members notice a rebalance at their next heartbeat: keep that short.
        {"heartbeat.interval.ms", std::to_string(std::max(100, session / 10))},
        {"enable.partition.eof", "false"},
        {"allow.auto.create.topics", "false"},
    };
    // Static membership: a restarted member re-owns its partitions without a rebalance.
    if (!sub_.instance_id.empty()) preset["group.instance.id"] = sub_.instance_id;
    auto conf = make_conf(options_, ClientKind::kConsumer, preset);
    if (!conf) return conf.error();
    rd_kafka_conf_set_opaque(conf->get(), this);
    rd_kafka_conf_set_rebalance_cb(conf->get(), &KafkaConsumer::on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(conf->get(), &KafkaConsumer::on_commit);
    rd_kafka_conf_set_error_cb(conf->get(), &KafkaConsumer::on_error);
    auto rk = make_client(RD_KAFKA_CONSUMER, std::move(conf).value());
    if (!rk) return rk.error();
    rk_ = std::move(rk).value();
    rd_kafka_poll_set_consumer(rk_.get());
    rd_kafka_topic_partition_list_t* topics =
        rd_kafka_topic_partition_list_new(static_cast<int>(sub_.topics.size()));
    for (const auto& t : sub_.topics)
      rd_kafka_topic_partition_list_add(topics, t.c_str(), RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(rk_.get(), topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      rk_.reset();
      return kafka_error("cannot subscribe", err, false);
    }
    log::info(kTag, "group {} subscribing to {}", sub_.group, fmt::join(sub_.topics, ","));
    return {};
  }

 private:
  void run() override {
    auto last_commit = Clock::now();
    auto last_lag = Clock::now();
    while (!stopping()) {
      serve_due_retries();
      if (uncommitted_ >= kCommitBatch || Clock::now() - last_commit >= options_.commit_interval) {
        commit(false, nullptr);
        last_commit = Clock::now();
      }
      metrics_.flush();
      if (Clock::now() - last_lag >= kLagInterval) {
        update_lag();
        last_lag = Clock::now();
      }
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_.get(), poll_timeout_ms());
      if (m == nullptr) continue;
      std::vector<MessagePtr> run;
      run.emplace_back(m, &rd_kafka_message_destroy);
      // What is already fetched joins the run. Collected before handling starts, so rebalance
      // callbacks (which commit offsets) never see a half-done batch.
      const size_t limit = sub_.store != nullptr ? std::max(1, sub_.max_batch) : 1;
      while (run.size() < limit) {
        rd_kafka_message_t* more = rd_kafka_consumer_poll(rk_.get(), 0);
        if (more == nullptr) break;
        run.emplace_back(more, &rd_kafka_message_destroy);
      }
      const auto started = Clock::now();
      handle_run(run);
      metrics_.batch(run.size(), Clock::now() - started);
    }
    // Shutdown: commit what was handled, then leave the group cleanly (which revokes and
    // commits once more through the rebalance callback).
    commit(true, nullptr);
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(rk_.get());
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
      log::warn(kTag, "group {}: close: {}", sub_.group, rd_kafka_err2str(err));
    parts_.clear();
    rk_.reset();
    health_->joined = false;
    health_->closed = true;
    // Whatever the handler holds goes now, on a thread the bus joins.
    handler_ = nullptr;
    log::info(kTag, "group {} left", sub_.group);
  }

  // High watermark (librdkafka's copy from the last fetch response: no broker round trip) less
  // the committed offset, or the fetch position while nothing was committed since assignment.
  void update_lag() {
    for (const auto& [tp, st] : parts_) {
      int64_t low = 0, high = 0;
      if (rd_kafka_get_watermark_offsets(rk_.get(), tp.first.c_str(), tp.second, &low, &high) !=
              RD_KAFKA_RESP_ERR_NO_ERROR ||
          high < 0)
        continue;
      int64_t base = st.committed;
      if (base < 0) {
        rd_kafka_topic_partition_list_t* l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, tp.first.c_str(), tp.second);
        if (rd_kafka_position(rk_.get(), l) == RD_KAFKA_RESP_ERR_NO_ERROR)
          base = l->elems[0].offset;
        rd_kafka_topic_partition_list_destroy(l);
      }
      if (base >= 0) st.lag.set(high - std::max(base, low));
    }
  }

  int poll_timeout_ms() const {
    auto wait = std::chrono::milliseconds(100);
    auto now = Clock::now();
    for (const auto& [tp, st] : parts_) {
      if (!st.held) continue;
      auto until = std::chrono::duration_cast<std::chrono::milliseconds>(st.due - now);
      wait = std::min(wait, std::max(until, std::chrono::milliseconds(0)));
    }
    return static_cast<int>(wait.count());
  }

  void on_consume_error(const rd_kafka_message_t* m) {
    std::string where = m->rkt != nullptr ? rd_kafka_topic_name(m->rkt) : "";
    if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
        m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
      if (warned_topics_.insert(where).second)
        log::warn(kTag, "group {}: topic {} does not exist (run `ecomd topics create`)", sub_.group,
                  where);
      return;
    }
    log::warn(kTag, "group {}: consume error{}{}: {}", sub_.group, where.empty() ? "" : " on ",
              where, rd_kafka_message_errstr(m));
  }

  static Held copy(const rd_kafka_message_t* m) {
    Held h;
    h.topic = rd_kafka_topic_name(m->rkt);
    h.partition = m->partition;
    h.offset = m->offset;
    if (m->key != nullptr) h.key.assign(static_cast<const char*>(m->key), m->key_len);
    if (m->payload != nullptr) h.value.assign(static_cast<const char*>(m->payload), m->len);
    rd_kafka_headers_t* hdrs = nullptr;
    if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs != nullptr) {
      const char* name;
      const void* value;
      size_t size;
      for (size_t i = 0;
           rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
           ++i) {
        h.headers.emplace_back(name, value != nullptr
                                         ? std::string(static_cast<const char*>(value), size)
                                         : std::string());
      }
    }
    std::string_view seq;
    for (const auto& [name, value] : h.headers) {
      if (name == kSourceHeader) h.source = value;
      if (name == kSeqHeader) seq = value;
    }
    // A source without a readable seq is treated as no source: the handler's inbox decides.
    if (!h.source.empty() &&
        (seq.empty() || std::from_chars(seq.data(), seq.data() + seq.size(), h.seq).ptr !=
                            seq.data() + seq.size()))
      h.source.clear();
    auto env = decode_envelope(h.value);
    if (env) {
      h.envelope = std::move(env).value();
    } else {
      h.decode_error = env.error().message;
    }
    return h;
  }

  using MessagePtr = std::unique_ptr<rd_kafka_message_t, void (*)(rd_kafka_message_t*)>;

  // Handles polled messages; with a store, inside one batch of it (group commit). If that batch
  // does not commit, nothing of it is durable: the partitions go back to where the run started.
  void handle_run(const std::vector<MessagePtr>& run) {
    auto handle_all = [&] {
      for (const auto& m : run) {
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
          on_consume_error(m.get());
        } else {
          on_message(m.get());
        }
      }
    };
    if (sub_.store == nullptr) {
      handle_all();
      return;
    }
    struct Start {
      int64_t first_offset;
      int64_t next;
      std::map<std::string, int64_t, std::less<>> marks;
      int64_t stored;
    };
    std::map<TopicPartition, Start> starts;
    for (const auto& m : run) {
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
      TopicPartition tp{rd_kafka_topic_name(m->rkt), m->partition};
      auto it = parts_.find(tp);
      if (it != parts_.end() && !starts.contains(tp))
        starts.emplace(tp, Start{m->offset, it->second.next, it->second.marks, it->second.stored});
    }
    // The positions reached go into the same batch as the effects (see BatchScope).
    auto handle_and_save = [&] {
      handle_all();
      std::vector<ConsumedPosition> reached;
      for (const auto& [tp, start] : starts) {
        auto it = parts_.find(tp);
        if (it == parts_.end() || it->second.next < 0 || it->second.next == start.next) continue;
        reached.push_back(ConsumedPosition{tp.first, tp.second, it->second.next,
                                           marks_of(it->second), it->second.stored});
      }
      if (auto saved = sub_.store->save_positions(sub_.group, reached); !saved) {
        if (saved.error().code != ErrorCode::kConflict)
          log::warn(kTag, "group {}: saving positions failed: {}", sub_.group,
                    saved.error().message);
        return;
      }
      for (const auto& p : reached) parts_[{p.topic, p.partition}].stored = p.next;
    };
    batching_ = true;
    Status st = sub_.store->run(handle_and_save);
    batching_ = false;
    if (st) {
      if (batch_failing_) log::info(kTag, "group {}: committing handled records again", sub_.group);
      batch_failing_ = false;
      return;
    }
    // Once per outage (a full disk fails every batch), not once per batch.
    if (!batch_failing_ && st.error().code != ErrorCode::kConflict) {
      log::warn(kTag,
                "group {}: committing a batch of {} handled records failed ({}); handling them "
                "again until it works",
                sub_.group, run.size(), st.error().message);
    }
    batch_failing_ = true;
    for (const auto& [tp, start] : starts) {
      auto it = parts_.find(tp);
      if (it == parts_.end()) continue;
      PartitionState& ps = it->second;
      ps.next = start.next;
      ps.marks = start.marks;
      ps.stored = start.stored;
      ps.held.reset();
      ps.dropped = false;
      if (ps.paused) set_paused(tp, false);
      ps.paused = false;
      seek(tp, start.next >= 0 ? start.next : start.first_offset);
    }
    if (st.error().code == ErrorCode::kConflict) {
      batch_failing_ = false;  // not an outage: another replica is ahead
      std::vector<TopicPartition> fenced;
      for (const auto& [tp, start] : starts) fenced.push_back(tp);
      return resume_from_store(fenced, st.error().message);
    }
    // Whatever failed the commit (a full disk, an I/O error) is unlikely to be gone at once.
    std::this_thread::sleep_for(sub_.initial_backoff);
  }

  void on_message(const rd_kafka_message_t* m) {
    // Closed (perhaps by the handler itself): the rest of the run is left to the next owner.
    if (stopping()) return;
    TopicPartition tp{rd_kafka_topic_name(m->rkt), m->partition};
    auto found = parts_.find(tp);
    if (found == parts_.end()) return;  // revoked since it was fetched: the new owner handles it
    PartitionState& st = found->second;
    if (st.paused) {
      st.dropped = true;  // fetched before the pause took effect; refetched after the retry
      return;
    }
    if (st.next >= 0 && m->offset < st.next) return;  // already handled (after a seek)
    process(tp, st, copy(m), 1);
  }

  // Inside a store batch a dead-letter waits until the batch is durable: its copy would otherwise
  // be written (and the offset moved past it) for work a failed batch undoes. It is parked like a
  // retry that only has the dead-letter write left, due at once, and settled by
  // serve_due_retries() after the batch; a failed batch drops it with the rest.
  void dead_letter_after_batch(const TopicPartition& tp, PartitionState& st, Held h, int attempts,
                               std::string reason) {
    if (!batching_) {
      dead_letter(tp, st, std::move(h), attempts, std::move(reason));
      return;
    }
    wait_for_retry(tp, st, std::move(h), attempts, std::move(reason), true,
                   std::chrono::milliseconds(0));
  }

  // Runs the handler for attempt `attempt` and acts on its outcome.
  void process(const TopicPartition& tp, PartitionState& st, Held h, int attempt) {
    if (!h.envelope) {
      metrics_.undecodable(st.metrics);
      std::string why = "undecodable envelope: " + h.decode_error;
      dead_letter_after_batch(tp, st, std::move(h), attempt, why);
      return;
    }
    // A record of a relayed source at or below its mark is a copy of one whose effects are
    // durable (or that was dead-lettered): a relay republished it under a new offset.
    const bool marked = sub_.store != nullptr && batching_ && !h.source.empty();
    if (marked) {
      auto it = st.marks.find(h.source);
      if (it != st.marks.end() && h.seq <= it->second) {
        log::debug(kTag, "group {}: {}[{}]@{} is a copy of {} seq {}; skipped", sub_.group,
                   tp.first, tp.second, h.offset, h.source, h.seq);
        done(st, h.offset);
        return;
      }
    }
    Message msg;
    msg.topic = std::string_view(h.topic).substr(
        h.topic.starts_with(options_.topic_prefix) ? options_.topic_prefix.size() : 0);
    msg.partition = h.partition;
    msg.offset = h.offset;
    msg.key = h.key;
    msg.envelope = *h.envelope;
    msg.attempt = attempt;
    // Its mark is saved with the effects in this batch, so no inbox row is needed for it.
    msg.once = marked;
    Decision d = decide(metrics_.call(st.metrics, handler_, msg), attempt, policy_);
    switch (d.action) {
      case Decision::Action::kAdvance:
        if (marked) raise_mark(st, h);
        done(st, h.offset);
        return;
      case Decision::Action::kRetry:
        wait_for_retry(tp, st, std::move(h), attempt, std::move(d.reason), false, d.delay);
        return;
      case Decision::Action::kDeadLetter:
        dead_letter_after_batch(tp, st, std::move(h), attempt, std::move(d.reason));
        return;
    }
  }

  void done(PartitionState& st, int64_t offset) {
    st.next = offset + 1;
    st.dlq_failures = 0;
    ++uncommitted_;
  }

  void wait_for_retry(const TopicPartition& tp, PartitionState& st, Held h, int attempt,
                      std::string reason, bool dlq_only, std::chrono::milliseconds delay) {
    log::warn(kTag, "group {}: {}[{}]@{} attempt {} {}; retrying in {} ms", sub_.group, tp.first,
              tp.second, h.offset, attempt, reason, delay.count());
    if (!st.paused) set_paused(tp, true);
    st.paused = true;
    st.held = std::move(h);
    st.attempt = attempt;
    st.dlq_only = dlq_only;
    st.reason = std::move(reason);
    st.due = Clock::now() + delay;
  }

  // A dead letter larger than this that the producer or the broker refuses for good (a record
  // near the broker's message.max.bytes grows past it with our headers) is written as its first
  // kDeadLetterPrefix bytes, so that it still reaches the DLQ and the partition moves on.
  static constexpr size_t kDeadLetterPrefix = 64 * 1024;

  void dead_letter(const TopicPartition& tp, PartitionState& st, Held h, int attempts,
                   std::string reason) {  // by value: callers pass st.reason, changed below
    std::string dlq = dlq_topic(h.topic);
    size_t header_bytes = 0;
    for (const auto& [k, v] : h.headers) header_bytes += k.size() + v.size();
    const auto produce_copy = [&](bool truncated) {
      rd_kafka_headers_t* hdrs = rd_kafka_headers_new(h.headers.size() + 8);
      // A truncated copy keeps the original headers only when they are small themselves.
      if (!truncated || header_bytes <= kDeadLetterPrefix / 4)
        for (const auto& [k, v] : h.headers) {
          // Renamed: a copy re-driven to its topic is a new record, not one its mark covers.
          if (k == kSourceHeader || k == kSeqHeader) continue;
          rd_kafka_header_add(hdrs, k.c_str(), -1, v.data(), static_cast<ssize_t>(v.size()));
        }
      if (!h.source.empty()) {
        add_header(hdrs, "ecom_original_source", h.source);
        add_header(hdrs, "ecom_original_seq", std::to_string(h.seq));
      }
      add_header(hdrs, "ecom_error", reason.empty() ? std::string("dead-lettered") : reason);
      add_header(hdrs, "ecom_original_topic", h.topic);
      add_header(hdrs, "ecom_original_partition", std::to_string(h.partition));
      add_header(hdrs, "ecom_original_offset", std::to_string(h.offset));
      add_header(hdrs, "ecom_attempts", std::to_string(attempts));
      add_header(hdrs, "ecom_consumer_group", sub_.group);
      std::string_view value = h.value;
      if (truncated) {
        add_header(hdrs, "ecom_truncated", "true");
        add_header(hdrs, "ecom_original_size", std::to_string(h.value.size()));
        value = value.substr(0, kDeadLetterPrefix);
      }
      OutRecord r{&dlq, h.key, value, hdrs};
      return producer_->produce(std::span<OutRecord>(&r, 1), Delivery::kBounded);
    };
    Status st_dlq = produce_copy(false);
    bool truncated = false;
    if (!st_dlq && !st_dlq.error().retryable && h.value.size() + header_bytes > kDeadLetterPrefix) {
      log::warn(kTag,
                "group {}: {}[{}]@{}: its dead-letter copy of {} bytes was refused ({}); "
                "writing its first {} bytes",
                sub_.group, tp.first, tp.second, h.offset, h.value.size(), st_dlq.error().message,
                kDeadLetterPrefix);
      st_dlq = produce_copy(true);
      truncated = true;
    }
    if (!st_dlq) {
      // The record must not be skipped without a dead-letter copy: keep it and try again later.
      wait_for_retry(tp, st, std::move(h), attempts,
                     fmt::format("dead-letter write to {} failed ({}), after: {}", dlq,
                                 st_dlq.error().message, reason),
                     true, policy_.backoff.after(++st.dlq_failures));
      st.reason = std::move(reason);  // the original error goes into ecom_error next time
      return;
    }
    log::warn(kTag, "group {}: {}[{}]@{} dead-lettered to {}{} after {} attempt(s): {}", sub_.group,
              tp.first, tp.second, h.offset, dlq, truncated ? " (truncated)" : "", attempts,
              reason);
    metrics_.dead_lettered(st.metrics);
    done(st, h.offset);
    // Else the store's position, which wins at the next assignment, would hand it over again
    // (and a republished copy of it would be handled).
    if (sub_.store != nullptr) {
      raise_mark(st, h);
      save_position(tp, st, "the position past a dead letter");
    }
  }

  void serve_due_retries() {
    auto now = Clock::now();
    for (auto& [tp, st] : parts_) {
      if (stopping()) return;
      if (!st.held || st.due > now) continue;
      Held h = std::move(*st.held);
      st.held.reset();
      if (st.dlq_only) {
        st.dlq_only = false;
        dead_letter(tp, st, std::move(h), st.attempt, st.reason);
      } else if (sub_.store != nullptr) {
        retry_in_batch(tp, st, std::move(h));
      } else {
        process(tp, st, std::move(h), st.attempt + 1);
      }
      if (st.held) continue;  // waiting again
      if (st.dropped && st.next >= 0) seek(tp, st.next);
      st.dropped = false;
      st.paused = false;
      set_paused(tp, false);
    }
  }

  // A retry with a store runs in a batch of its own, like a fetched run: its effects, its
  // position and its source mark are durable together (a copy of it republished later is then
  // recognised by the mark, and needs no inbox row). A batch that does not commit leaves the
  // record waiting, as if the attempt had failed.
  void retry_in_batch(const TopicPartition& tp, PartitionState& st, Held h) {
    const int attempt = st.attempt + 1;
    const int64_t next_before = st.next;
    const auto marks_before = st.marks;
    const int64_t stored_before = st.stored;
    Held again = h;  // only on the retry path: a copy for a batch that fails
    auto handle_and_save = [&] {
      process(tp, st, std::move(h), attempt);
      if (st.next != next_before && st.next >= 0) save_position(tp, st, "positions");
    };
    batching_ = true;
    Status ok = sub_.store->run(handle_and_save);
    batching_ = false;
    if (ok) return;
    st.next = next_before;
    st.marks = marks_before;
    st.stored = stored_before;
    if (ok.error().code == ErrorCode::kConflict) {
      st.held.reset();
      return resume_from_store({tp}, ok.error().message);
    }
    log::warn(kTag, "group {}: committing the retry of {}[{}]@{} failed ({}); retrying", sub_.group,
              tp.first, tp.second, again.offset, ok.error().message);
    wait_for_retry(tp, st, std::move(again), attempt - 1, "its batch did not commit", false,
                   sub_.initial_backoff);
  }

  // Stores where `tp` stands (offset and marks): in the batch when called inside one.
  void save_position(const TopicPartition& tp, PartitionState& st, std::string_view what) {
    const ConsumedPosition at{tp.first, tp.second, st.next, marks_of(st), st.stored};
    auto saved = sub_.store->save_positions(sub_.group, std::span(&at, 1));
    if (saved) {
      st.stored = st.next;  // inside a batch that fails, handle_run() puts it back
      return;
    }
    if (saved.error().code == ErrorCode::kConflict) {
      // Inside a batch, the batch fails with it and handle_run() resumes from the store.
      if (!batching_) resume_from_store({tp}, saved.error().message);
      return;
    }
    log::warn(kTag, "group {}: saving {} failed: {}", sub_.group, what, saved.error().message);
  }

  // Another consumer of the group moved these partitions' stored positions on (see
  // PartitionState::stored): what this one handled since its last save was rolled back, and it
  // goes on from where the store says, as a new owner would. If the group took the partitions
  // away, the revoke follows.
  void resume_from_store(const std::vector<TopicPartition>& tps, const std::string& why) {
    log::warn(kTag, "{}; going on from the stored position", why);
    auto stored = sub_.store->load_positions(sub_.group);
    for (const auto& tp : tps) {
      auto it = parts_.find(tp);
      if (it == parts_.end()) continue;
      PartitionState& ps = it->second;
      ps.held.reset();
      ps.dropped = false;
      if (ps.paused) set_paused(tp, false);
      ps.paused = false;
      if (!stored) continue;  // the next batch's save fails the same way, and tries again
      for (const auto& pos : *stored) {
        if (pos.topic != tp.first || pos.partition != tp.second) continue;
        ps.next = pos.next;
        ps.stored = pos.next;
        ps.marks.clear();
        for (const auto& m : pos.marks) ps.marks.emplace(m.source, m.seq);
        seek(tp, pos.next);
      }
    }
  }

  void set_paused(const TopicPartition& tp, bool pause) {
    rd_kafka_topic_partition_list_t* l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, tp.first.c_str(), tp.second);
    rd_kafka_resp_err_t err =
        pause ? rd_kafka_pause_partitions(rk_.get(), l) : rd_kafka_resume_partitions(rk_.get(), l);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
      log::warn(kTag, "group {}: {} {}[{}]: {}", sub_.group, pause ? "pause" : "resume", tp.first,
                tp.second, rd_kafka_err2str(err));
    rd_kafka_topic_partition_list_destroy(l);
  }

  void seek(const TopicPartition& tp, int64_t offset) {
    rd_kafka_topic_partition_list_t* l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, tp.first.c_str(), tp.second)->offset = offset;
    if (rd_kafka_error_t* e = rd_kafka_seek_partitions(rk_.get(), l, 5'000)) {
      log::warn(kTag, "group {}: seek {}[{}] to {}: {}", sub_.group, tp.first, tp.second, offset,
                rd_kafka_error_string(e));
      rd_kafka_error_destroy(e);
    }
    rd_kafka_topic_partition_list_destroy(l);
  }

  // Commits handled offsets of the assigned partitions (or of `only`).
  void commit(bool sync, const rd_kafka_topic_partition_list_t* only) {
    if (!rk_) return;
    rd_kafka_topic_partition_list_t* l = rd_kafka_topic_partition_list_new(8);
    for (const auto& [tp, st] : parts_) {
      if (st.next < 0 || st.next <= st.committed) continue;
      if (only != nullptr &&
          rd_kafka_topic_partition_list_find(only, tp.first.c_str(), tp.second) == nullptr)
        continue;
      rd_kafka_topic_partition_list_add(l, tp.first.c_str(), tp.second)->offset = st.next;
    }
    // One async commit at a time: while the coordinator is away, commits would only pile up.
    bool skip =
        !sync && ((commit_inflight_ && Clock::now() - commit_sent_ < std::chrono::seconds(30)) ||
                  commits_held());
    if (l->cnt > 0 && !skip) {
      if (!sync) {
        commit_inflight_ = true;
        commit_sent_ = Clock::now();
      }
      rd_kafka_resp_err_t err = rd_kafka_commit(rk_.get(), l, sync ? 0 : 1);
      if (sync) {
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          mark_committed(l);
        } else if (err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
          log::warn(kTag, "group {}: commit failed: {}", sub_.group, rd_kafka_err2str(err));
        }
      } else if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        commit_inflight_ = false;
      }
      uncommitted_ = 0;
    }
    rd_kafka_topic_partition_list_destroy(l);
  }

  // librdkafka 2.0 treats an ILLEGAL_GENERATION answer to a commit sent during a cooperative
  // rebalance as a lost assignment (librdkafka issue #4059, fixed in 2.10), which hands the
  // partitions over without their offsets and so redelivers records. A revoke always starts a
  // follow-up rebalance, so async commits wait until it assigned (the revoke itself commits
  // synchronously, which is safe inside the callback).
  bool commits_held() {
    if (assigns_to_hold_ == 0) return false;
    if (Clock::now() < hold_until_) return true;
    assigns_to_hold_ = 0;
    return false;
  }

  void mark_committed(const rd_kafka_topic_partition_list_t* l) {
    for (int i = 0; i < l->cnt; ++i) {
      const auto& p = l->elems[i];
      if (p.err != RD_KAFKA_RESP_ERR_NO_ERROR || p.offset < 0) continue;
      auto it = parts_.find({p.topic, p.partition});
      if (it != parts_.end()) it->second.committed = std::max(it->second.committed, p.offset);
    }
  }

  static void on_commit(rd_kafka_t*, rd_kafka_resp_err_t err,
                        rd_kafka_topic_partition_list_t* offsets, void* opaque) {
    auto* self = static_cast<KafkaConsumer*>(opaque);
    self->commit_inflight_ = false;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (offsets != nullptr) self->mark_committed(offsets);
      self->commit_failing_ = false;
    } else if (err != RD_KAFKA_RESP_ERR__NO_OFFSET && !self->commit_failing_) {
      // Logged once per outage; the offsets stay pending and go out with the next commit.
      self->commit_failing_ = true;
      log::warn(kTag, "group {}: committing offsets failed ({}); will keep trying",
                self->sub_.group, rd_kafka_err2str(err));
    }
  }

  static void on_error(rd_kafka_t*, int err, const char* reason, void* opaque) {
    auto* self = static_cast<KafkaConsumer*>(opaque);
    auto code = static_cast<rd_kafka_resp_err_t>(err);
    if (self->throttle_.quiet(code)) return;
    log::warn(kTag, "group {}: {} ({})", self->sub_.group, reason, rd_kafka_err2name(code));
  }

  static std::string describe(const rd_kafka_topic_partition_list_t* l) {
    std::string out;
    for (int i = 0; i < l->cnt; ++i)
      out += fmt::format("{}{}[{}]", i == 0 ? "" : ",", l->elems[i].topic, l->elems[i].partition);
    return out.empty() ? "nothing" : out;
  }

  // Sets the start offset of each assigned partition whose position the subscriber's store has
  // (see BatchScope): it wins over the group's committed offset, which lags it after a crash
  // between the two commits, or is older than the store's own effects. A position past the log's
  // end (a recreated topic) makes the consumer start per auto.offset.reset, as a committed one.
  // Returns what was stored, marks included, for the partitions' states.
  std::vector<ConsumedPosition> start_at_stored_positions(rd_kafka_topic_partition_list_t* parts) {
    if (sub_.store == nullptr || parts->cnt == 0) return {};
    auto stored = sub_.store->load_positions(sub_.group);
    if (!stored) {
      log::warn(kTag,
                "group {}: reading stored positions failed ({}); starting at the committed "
                "offsets",
                sub_.group, stored.error().message);
      return {};
    }
    for (const auto& pos : *stored) {
      for (int i = 0; i < parts->cnt; ++i) {
        auto& e = parts->elems[i];
        if (e.partition == pos.partition && pos.topic == e.topic) e.offset = pos.next;
      }
    }
    return std::move(stored).value();
  }

  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t* parts, void* opaque) {
    auto* self = static_cast<KafkaConsumer*>(opaque);
    bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t* error = nullptr;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      const auto stored = self->start_at_stored_positions(parts);
      for (int i = 0; i < parts->cnt; ++i) {
        PartitionState ps;
        ps.metrics = self->metrics_.topic(parts->elems[i].topic);
        ps.lag = self->metrics_.lag(parts->elems[i].topic, parts->elems[i].partition);
        for (const auto& pos : stored) {
          if (pos.partition != parts->elems[i].partition || pos.topic != parts->elems[i].topic)
            continue;
          for (const auto& m : pos.marks) ps.marks.emplace(m.source, m.seq);
          ps.stored = pos.next;
        }
        self->parts_[{parts->elems[i].topic, parts->elems[i].partition}] = std::move(ps);
      }
      if (cooperative) {
        error = rd_kafka_incremental_assign(rk, parts);
      } else {
        rd_kafka_assign(rk, parts);
      }
      // A partition revoked while it waited for a retry may come back still paused.
      rd_kafka_resume_partitions(rk, parts);
      self->health_->joined = true;
      if (self->assigns_to_hold_ > 0) --self->assigns_to_hold_;
      log::info(kTag, "group {}: assigned {}", self->sub_.group, describe(parts));
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
      bool lost = rd_kafka_assignment_lost(rk) != 0;
      // Offsets of a lost assignment belong to the new owner now; only a clean revoke commits.
      if (!lost) self->commit(true, parts);
      for (int i = 0; i < parts->cnt; ++i)
        self->parts_.erase({parts->elems[i].topic, parts->elems[i].partition});
      if (cooperative) {
        error = rd_kafka_incremental_unassign(rk, parts);
      } else {
        rd_kafka_assign(rk, nullptr);
      }
      if (lost) self->health_->joined = false;
      if (cooperative && !lost) {
        // This rebalance's assign callback and the follow-up rebalance's.
        self->assigns_to_hold_ = 2;
        self->hold_until_ = Clock::now() + self->options_.session_timeout + std::chrono::seconds(5);
      }
      log::info(kTag, "group {}: {} {}", self->sub_.group, lost ? "lost" : "revoked",
                describe(parts));
    } else {
      log::warn(kTag, "group {}: rebalance error: {}", self->sub_.group, rd_kafka_err2str(err));
      rd_kafka_assign(rk, nullptr);
      self->parts_.clear();
      self->health_->joined = false;
    }
    if (error != nullptr) {
      log::warn(kTag, "group {}: rebalance: {}", self->sub_.group, rd_kafka_error_string(error));
      rd_kafka_error_destroy(error);
    }
  }

  static constexpr int kCommitBatch = 1000;
  // How often the lag gauges are refreshed: local reads, but one per partition held.
  static constexpr std::chrono::milliseconds kLagInterval{1'000};

  KafkaBusOptions options_;
  SubscriptionOptions sub_;
  DeliveryPolicy policy_;
  Handler handler_;
  ConsumerMetrics metrics_;
  std::shared_ptr<Producer> producer_;
  std::shared_ptr<SubscriptionHealth> health_;
  HandlePtr rk_;
  // Touched only by the consumer thread (callbacks are served by rd_kafka_consumer_poll).
  std::map<TopicPartition, PartitionState> parts_;
  int uncommitted_ = 0;
  bool batching_ = false;  // handle_run() is inside a store batch
  bool commit_inflight_ = false;
  bool commit_failing_ = false;
  bool batch_failing_ = false;  // logged the current outage of store batches
  Clock::time_point commit_sent_;
  int assigns_to_hold_ = 0;
  Clock::time_point hold_until_;
  std::set<std::string> warned_topics_;
  ErrorThrottle throttle_;
};

}  // namespace

Result<std::shared_ptr<ConsumerWorker>> open_consumer(const KafkaBusOptions& options,
                                                      SubscriptionOptions sub, Handler handler,
                                                      std::shared_ptr<Producer> producer,
                                                      std::shared_ptr<SubscriptionHealth> health) {
  auto consumer = std::make_shared<KafkaConsumer>(options, std::move(sub), std::move(handler),
                                                  std::move(producer), std::move(health));
  if (auto st = consumer->open(); !st) return st.error();
  return std::shared_ptr<ConsumerWorker>(std::move(consumer));
}

}  // namespace ecom::bus::kafka
