// The Kafka event bus on librdkafka's C API.
//
// Producer: one idempotent producer per bus (acks=all), shared by publish() and the dead-letter
// writes of the consumers. publish() enqueues every record and then waits for all delivery
// reports, so a batch costs one round of acknowledgements, not one flush per record.
//
// Consumers: one rd_kafka consumer and one thread per subscription. Handlers run on that thread,
// so a partition's records are handled one at a time in offset order. Offsets are committed only
// for handled records (asynchronously every commit_interval, synchronously on revoke and close).
// A retry pauses only the record's partition and redelivers the held record after a backoff.
// What a handler's outcome means (advance, retry after which delay, dead-letter) is decided by
// bus/delivery.hpp, the same for the embedded bus.

#include "ecom/bus/kafka_bus.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "consumer_worker.hpp"
#include "delivery.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/periodic_task.hpp"
#include "ecom/db/database.hpp"
#include "kafka_common.hpp"

namespace ecom::bus {
namespace {

using namespace kafka;
using Clock = std::chrono::steady_clock;

// Connection errors repeat with every reconnect attempt while a broker is away; healthy() and
// the health-check log report the outage, so each client logs them at most every 30 s.
class ErrorThrottle {
 public:
  bool quiet(rd_kafka_resp_err_t err) {
    if (err != RD_KAFKA_RESP_ERR__TRANSPORT && err != RD_KAFKA_RESP_ERR__RESOLVE) return false;
    int64_t now =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
            .count();
    int64_t last = last_ms_.load();
    if (last != 0 && now - last < 30'000) return true;
    return !last_ms_.compare_exchange_strong(last, now);
  }

 private:
  std::atomic<int64_t> last_ms_{0};
};

// --- producer -----------------------------------------------------------------------------------

// Delivery reports of one publish() call. Owned by the waiting caller, or by the last delivery
// report when the caller stopped waiting.
struct Batch {
  std::mutex mu;
  std::condition_variable cv;
  size_t outstanding = 0;
  bool abandoned = false;
  size_t failed = 0;
  rd_kafka_resp_err_t first_err = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string first_topic;
};

// One record to produce; `headers` passes to librdkafka on success.
struct OutRecord {
  const std::string* topic;
  std::string_view key;
  std::string_view value;
  rd_kafka_headers_t* headers;
};

class Producer final {
 public:
  static Result<std::shared_ptr<Producer>> create(const KafkaBusOptions& options) {
    std::shared_ptr<Producer> p(new Producer(options));
    std::map<std::string, std::string> preset = {
        {"enable.idempotence", "true"},
        {"acks", "all"},
        {"compression.type", options.compression},
        {"linger.ms", std::to_string(options.linger_ms)},
        {"batch.num.messages", std::to_string(options.batch_num_messages)},
        {"batch.size", std::to_string(options.batch_size_bytes)},
        {"message.timeout.ms", std::to_string(options.delivery_timeout.count())},
        // The same key lands in the same partition as with the Java clients.
        {"partitioner", "murmur2_random"},
        // Topics are provisioned; a record for an unknown topic fails instead of creating it.
        {"allow.auto.create.topics", "false"},
    };
    auto conf = make_conf(options, ClientKind::kProducer, preset);
    if (!conf) return conf.error();
    rd_kafka_conf_set_opaque(conf->get(), p.get());
    rd_kafka_conf_set_dr_msg_cb(conf->get(), &Producer::on_delivery);
    rd_kafka_conf_set_error_cb(conf->get(), &Producer::on_error);
    auto rk = make_client(RD_KAFKA_PRODUCER, std::move(conf).value());
    if (!rk) return rk.error();
    p->rk_ = std::move(rk).value();
    p->poller_.start();
    p->checker_.start();  // the first metadata request at once
    return p;
  }

  ~Producer() {
    checker_.stop();
    if (rk_) {
      // Records of abandoned batches still get their delivery reports here.
      rd_kafka_resp_err_t err = rd_kafka_flush(rk_.get(), 10'000);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        log::warn(kTag, "producer closed with {} undelivered records",
                  rd_kafka_outq_len(rk_.get()));
    }
    poller_.stop();  // after the flush, as before: reports of the flush may still be served
    rk_.reset();
  }

  /// Produces all records and waits for all delivery reports.
  Status produce(std::span<OutRecord> records) {
    if (records.empty()) return {};
    if (fatal_.load()) {
      for (auto& r : records)
        if (r.headers != nullptr) rd_kafka_headers_destroy(r.headers);
      return Error{ErrorCode::kUnavailable,
                   "the Kafka producer hit a fatal error; restart ecomd",
                   {},
                   false};
    }
    auto* batch = new Batch();
    Clock::time_point enqueue_deadline = Clock::now() + options_.delivery_timeout;
    std::optional<Error> enqueue_error;
    size_t i = 0;
    for (; i < records.size(); ++i) {
      auto& r = records[i];
      {
        std::lock_guard lock(batch->mu);
        ++batch->outstanding;
      }
      rd_kafka_resp_err_t err;
      while (true) {
        err = rd_kafka_producev(
            rk_.get(), RD_KAFKA_V_TOPIC(r.topic->c_str()),
            RD_KAFKA_V_KEY(r.key.empty() ? nullptr : const_cast<char*>(r.key.data()), r.key.size()),
            RD_KAFKA_V_VALUE(const_cast<char*>(r.value.data()), r.value.size()),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(r.headers),
            RD_KAFKA_V_OPAQUE(batch), RD_KAFKA_V_END);
        // A full local queue drains as the brokers acknowledge; wait rather than fail.
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL || Clock::now() > enqueue_deadline) break;
        rd_kafka_poll(rk_.get(), 20);
      }
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        r.headers = nullptr;  // owned by librdkafka now
        continue;
      }
      {
        std::lock_guard lock(batch->mu);
        --batch->outstanding;
      }
      // Stop here: producing later records after a gap would reorder them on the retry.
      enqueue_error = kafka_error(fmt::format("cannot enqueue a record for {}", *r.topic), err,
                                  delivery_retryable(err));
      break;
    }
    for (; i < records.size(); ++i) {
      if (records[i].headers != nullptr) rd_kafka_headers_destroy(records[i].headers);
      records[i].headers = nullptr;
    }

    // librdkafka reports every record within message.timeout.ms; the margin covers slow callbacks.
    Clock::time_point deadline =
        Clock::now() + options_.delivery_timeout + std::chrono::seconds(30);
    std::unique_lock lock(batch->mu);
    bool done = batch->cv.wait_until(lock, deadline, [&] { return batch->outstanding == 0; });
    if (!done) {
      batch->abandoned = true;  // the last delivery report frees it
      lock.unlock();
      return Error{
          ErrorCode::kUnavailable, "timed out waiting for Kafka delivery reports", {}, true};
    }
    size_t failed = batch->failed;
    rd_kafka_resp_err_t first = batch->first_err;
    std::string topic = batch->first_topic;
    lock.unlock();
    delete batch;
    if (failed > 0) {
      return kafka_error(fmt::format("{} of {} records not acknowledged by Kafka (first on {})",
                                     failed, records.size(), topic),
                         first, delivery_retryable(first));
    }
    if (enqueue_error) return *enqueue_error;
    return {};
  }

  /// Brokers answered the last metadata request and no fatal error happened.
  bool healthy() const noexcept { return metadata_ok_.load() && !fatal_.load(); }

 private:
  explicit Producer(const KafkaBusOptions& options)
      : options_(options),
        // Not a timed loop but a blocking one: each step is one rd_kafka_poll that returns as soon
        // as a delivery report or error callback was served, or after 100 ms. Period 0: the next
        // poll starts right away, so reports are served with the same latency as the old
        // `while (!stop) rd_kafka_poll(rk, 100)`, and stop() waits for at most one poll.
        poller_("kafka.poll", SystemClock::instance(), std::chrono::milliseconds(0),
                [this](int64_t) -> std::optional<std::chrono::milliseconds> {
                  rd_kafka_poll(rk_.get(), 100);
                  return std::chrono::milliseconds(0);
                }),
        checker_("kafka.health", *options_.clock, options_.health_interval,
                 [this](int64_t) -> std::optional<std::chrono::milliseconds> {
                   check_health();
                   return std::nullopt;
                 }) {}

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    auto* b = static_cast<Batch*>(m->_private);
    if (b == nullptr) return;
    bool free_it = false;
    {
      std::lock_guard lock(b->mu);
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && b->failed++ == 0) {
        b->first_err = m->err;
        b->first_topic = m->rkt != nullptr ? rd_kafka_topic_name(m->rkt) : "";
      }
      if (--b->outstanding == 0) {
        if (b->abandoned) {
          free_it = true;
        } else {
          b->cv.notify_all();
        }
      }
    }
    if (free_it) delete b;
  }

  static void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
    auto* self = static_cast<Producer*>(opaque);
    auto code = static_cast<rd_kafka_resp_err_t>(err);
    if (code == RD_KAFKA_RESP_ERR__FATAL) {
      char buf[512];
      rd_kafka_fatal_error(rk, buf, sizeof(buf));
      self->fatal_ = true;
      log::error(kTag, "producer fatal error: {}", buf);
      return;
    }
    if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) self->metadata_ok_ = false;
    if (self->throttle_.quiet(code)) return;
    log::warn(kTag, "producer: {} ({})", reason, rd_kafka_err2name(code));
  }

  // A cheap metadata request (brokers only) tells whether the cluster answers; once every
  // health_interval (on options.clock), the first right after start.
  void check_health() {
    const rd_kafka_metadata_t* md = nullptr;
    int timeout = static_cast<int>(std::min<int64_t>(options_.health_interval.count(), 5'000));
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk_.get(), 0, nullptr, &md, timeout);
    bool ok = err == RD_KAFKA_RESP_ERR_NO_ERROR && md != nullptr && md->broker_cnt > 0;
    if (md != nullptr) rd_kafka_metadata_destroy(md);
    bool was = metadata_ok_.exchange(ok);
    if (was != ok) {
      if (ok) {
        log::info(kTag, "brokers at {} answer", options_.bootstrap_servers);
      } else {
        log::warn(kTag, "brokers at {} do not answer: {}", options_.bootstrap_servers,
                  rd_kafka_err2str(err));
      }
    }
  }

  KafkaBusOptions options_;
  HandlePtr rk_;
  std::atomic<bool> metadata_ok_{false};
  std::atomic<bool> fatal_{false};
  ErrorThrottle throttle_;
  // Both stopped in the destructor, the health check first, the poller after the flush.
  PeriodicTask poller_;
  PeriodicTask checker_;
};

struct HeadersDeleter {
  void operator()(rd_kafka_headers_t* h) const noexcept {
    if (h != nullptr) rd_kafka_headers_destroy(h);
  }
};

void add_header(rd_kafka_headers_t* h, const char* name, std::string_view value) {
  if (value.empty()) return;
  rd_kafka_header_add(h, name, -1, value.data(), static_cast<ssize_t>(value.size()));
}

// CloudEvents Kafka binding: the attributes as ce_ headers next to the structured value.
rd_kafka_headers_t* cloudevents_headers(std::string_view value) {
  auto env = decode_envelope(value);
  if (!env) return nullptr;  // still produced, only without ce_ headers
  const Envelope& e = env.value();
  rd_kafka_headers_t* h = rd_kafka_headers_new(10);
  add_header(h, "content-type", "application/cloudevents+json; charset=UTF-8");
  add_header(h, "ce_specversion", e.specversion);
  add_header(h, "ce_id", e.id);
  add_header(h, "ce_source", e.source);
  add_header(h, "ce_type", e.type);
  add_header(h, "ce_time", e.time);
  add_header(h, "ce_subject", e.subject);
  add_header(h, "ce_correlationid", e.correlation_id);
  add_header(h, "ce_causationid", e.causation_id);
  add_header(h, "ce_traceparent", e.traceparent);
  return h;
}

// --- consumer -----------------------------------------------------------------------------------

/// What the bus sees of a subscription, for healthy().
struct SubscriptionHealth {
  std::atomic<bool> joined{false};
  std::atomic<bool> closed{false};
};

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
};

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
    while (!stopping()) {
      serve_due_retries();
      if (uncommitted_ >= kCommitBatch || Clock::now() - last_commit >= options_.commit_interval) {
        commit(false, nullptr);
        last_commit = Clock::now();
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
      handle_run(run);
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
    };
    std::map<TopicPartition, Start> starts;
    for (const auto& m : run) {
      if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
      TopicPartition tp{rd_kafka_topic_name(m->rkt), m->partition};
      auto it = parts_.find(tp);
      if (it != parts_.end()) starts.try_emplace(tp, Start{m->offset, it->second.next});
    }
    batching_ = true;
    Status st = sub_.store->run(handle_all);
    batching_ = false;
    if (st) return;
    log::warn(kTag,
              "group {}: committing a batch of {} handled records failed ({}); handling them "
              "again",
              sub_.group, run.size(), st.error().message);
    for (const auto& [tp, start] : starts) {
      auto it = parts_.find(tp);
      if (it == parts_.end()) continue;
      PartitionState& ps = it->second;
      ps.next = start.next;
      ps.held.reset();
      ps.dropped = false;
      if (ps.paused) set_paused(tp, false);
      ps.paused = false;
      seek(tp, start.next >= 0 ? start.next : start.first_offset);
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
      std::string why = "undecodable envelope: " + h.decode_error;
      dead_letter_after_batch(tp, st, std::move(h), attempt, why);
      return;
    }
    Message msg;
    msg.topic = std::string_view(h.topic).substr(
        h.topic.starts_with(options_.topic_prefix) ? options_.topic_prefix.size() : 0);
    msg.partition = h.partition;
    msg.offset = h.offset;
    msg.key = h.key;
    msg.envelope = *h.envelope;
    msg.attempt = attempt;
    Decision d = decide(call_handler(handler_, msg), attempt, policy_);
    switch (d.action) {
      case Decision::Action::kAdvance:
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

  void dead_letter(const TopicPartition& tp, PartitionState& st, Held h, int attempts,
                   std::string reason) {  // by value: callers pass st.reason, changed below
    std::string dlq = dlq_topic(h.topic);
    rd_kafka_headers_t* hdrs = rd_kafka_headers_new(h.headers.size() + 6);
    for (const auto& [k, v] : h.headers)
      rd_kafka_header_add(hdrs, k.c_str(), -1, v.data(), static_cast<ssize_t>(v.size()));
    add_header(hdrs, "ecom_error", reason.empty() ? std::string("dead-lettered") : reason);
    add_header(hdrs, "ecom_original_topic", h.topic);
    add_header(hdrs, "ecom_original_partition", std::to_string(h.partition));
    add_header(hdrs, "ecom_original_offset", std::to_string(h.offset));
    add_header(hdrs, "ecom_attempts", std::to_string(attempts));
    add_header(hdrs, "ecom_consumer_group", sub_.group);
    OutRecord r{&dlq, h.key, h.value, hdrs};
    Status st_dlq = producer_->produce(std::span<OutRecord>(&r, 1));
    if (!st_dlq) {
      // The record must not be skipped without a dead-letter copy: keep it and try again later.
      wait_for_retry(tp, st, std::move(h), attempts,
                     fmt::format("dead-letter write to {} failed ({}), after: {}", dlq,
                                 st_dlq.error().message, reason),
                     true, policy_.backoff.after(++st.dlq_failures));
      st.reason = std::move(reason);  // the original error goes into ecom_error next time
      return;
    }
    log::warn(kTag, "group {}: {}[{}]@{} dead-lettered to {} after {} attempt(s): {}", sub_.group,
              tp.first, tp.second, h.offset, dlq, attempts, reason);
    done(st, h.offset);
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

  static void on_rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t* parts, void* opaque) {
    auto* self = static_cast<KafkaConsumer*>(opaque);
    bool cooperative = std::strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    rd_kafka_error_t* error = nullptr;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
      for (int i = 0; i < parts->cnt; ++i)
        self->parts_[{parts->elems[i].topic, parts->elems[i].partition}] = PartitionState{};
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

  KafkaBusOptions options_;
  SubscriptionOptions sub_;
  DeliveryPolicy policy_;
  Handler handler_;
  std::shared_ptr<Producer> producer_;
  std::shared_ptr<SubscriptionHealth> health_;
  HandlePtr rk_;
  // Touched only by the consumer thread (callbacks are served by rd_kafka_consumer_poll).
  std::map<TopicPartition, PartitionState> parts_;
  int uncommitted_ = 0;
  bool batching_ = false;  // handle_run() is inside a store batch
  bool commit_inflight_ = false;
  bool commit_failing_ = false;
  Clock::time_point commit_sent_;
  int assigns_to_hold_ = 0;
  Clock::time_point hold_until_;
  std::set<std::string> warned_topics_;
  ErrorThrottle throttle_;
};

// --- the bus ------------------------------------------------------------------------------------

class KafkaEventBus final : public EventBus {
 public:
  KafkaEventBus(KafkaBusOptions options, std::shared_ptr<Producer> producer)
      : options_(std::move(options)), producer_(std::move(producer)) {}

  // Consumer threads end before the bus does, including those closed by their own handler.
  ~KafkaEventBus() override { workers_.close_all(); }

  Status publish(std::span<const Record> records) override {
    std::vector<std::string> names;  // prefixed topic names; reserved so pointers stay valid
    if (!options_.topic_prefix.empty()) {
      names.reserve(records.size());
      for (const auto& r : records) names.push_back(options_.topic_prefix + r.topic);
    }
    std::vector<OutRecord> out;
    out.reserve(records.size());
    for (size_t i = 0; i < records.size(); ++i) {
      const Record& r = records[i];
      out.push_back(OutRecord{names.empty() ? &r.topic : &names[i], r.key, r.value,
                              cloudevents_headers(r.value)});
    }
    return producer_->produce(out);
  }

  Result<std::unique_ptr<Subscription>> subscribe(SubscriptionOptions options,
                                                  Handler handler) override {
    if (options.group.empty())
      return Error{ErrorCode::kValidationFailed, "a subscription needs a consumer group", "group",
                   false};
    if (options.topics.empty())
      return Error{ErrorCode::kValidationFailed, "a subscription needs topics", "topics", false};
    if (!handler)
      return Error{ErrorCode::kValidationFailed, "a subscription needs a handler", {}, false};
    if (options.instance_id.empty()) options.instance_id = options_.instance_id;
    if (auto st = check_instance_id(options.instance_id); !st) return st.error();
    options.group = options_.group_prefix + options.group;
    for (auto& t : options.topics) t = options_.topic_prefix + t;
    auto health = std::make_shared<SubscriptionHealth>();
    auto consumer = std::make_shared<KafkaConsumer>(options_, std::move(options),
                                                    std::move(handler), producer_, health);
    if (auto st = consumer->open(); !st) return st.error();
    ConsumerWorker::start(consumer);
    workers_.add(consumer);
    {
      std::lock_guard lock(mu_);
      std::erase_if(subs_, [](const std::weak_ptr<SubscriptionHealth>& w) {
        auto s = w.lock();
        return !s || s->closed;
      });
      subs_.push_back(health);
    }
    return std::unique_ptr<Subscription>(new WorkerSubscription(std::move(consumer)));
  }

  bool healthy() override {
    if (!producer_->healthy()) return false;
    std::lock_guard lock(mu_);
    for (const auto& w : subs_) {
      auto s = w.lock();
      if (s && !s->closed && !s->joined) return false;
    }
    return true;
  }

  std::string_view kind() const noexcept override { return "kafka"; }

 private:
  KafkaBusOptions options_;
  std::shared_ptr<Producer> producer_;
  std::mutex mu_;
  std::vector<std::weak_ptr<SubscriptionHealth>> subs_;
  ConsumerWorkers workers_;
};

}  // namespace

Result<std::unique_ptr<EventBus>> make_kafka_bus(KafkaBusOptions options) {
  if (options.bootstrap_servers.empty())
    return Error{ErrorCode::kConfigInvalid, "kafka bootstrap servers are empty (--brokers)",
                 "kafka.bootstrap_servers", false};
  if (options.clock == nullptr)
    return Error{ErrorCode::kConfigInvalid, "kafka clock is null", "kafka.clock", false};
  auto producer = Producer::create(options);
  if (!producer) return producer.error();
  log::info(kTag, "bus on {} (compression {}, linger {} ms)", options.bootstrap_servers,
            options.compression, options.linger_ms);
  return std::unique_ptr<EventBus>(
      std::make_unique<KafkaEventBus>(std::move(options), std::move(producer).value()));
}

}  // namespace ecom::bus
