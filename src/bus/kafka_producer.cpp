#include "kafka_producer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "ecom/core/envelope.hpp"
#include "ecom/core/log.hpp"

namespace ecom::bus::kafka {
namespace {

using Clock = std::chrono::steady_clock;

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

}  // namespace

Result<std::shared_ptr<Producer>> Producer::create(const KafkaBusOptions& options) {
  std::shared_ptr<Producer> p(new Producer(options));
  std::map<std::string, std::string> preset = {
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"compression.type", options.compression},
      {"linger.ms", std::to_string(options.linger_ms)},
      {"batch.num.messages", std::to_string(options.batch_num_messages)},
      {"batch.size", std::to_string(options.batch_size_bytes)},
      // Infinite for what publish() sends (Delivery::kUntilAcknowledged); dead-letter copies
      // get delivery_timeout through their own topic configuration (bounded_topic).
      {"message.timeout.ms", "0"},
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

Producer::~Producer() {
  checker_.stop();
  if (rk_) {
    // Records of abandoned batches still get their delivery reports here.
    rd_kafka_resp_err_t err = rd_kafka_flush(rk_.get(), 10'000);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
      log::warn(kTag, "producer closed with {} undelivered records", rd_kafka_outq_len(rk_.get()));
  }
  poller_.stop();  // after the flush, as before: reports of the flush may still be served
  for (auto& [name, rkt] : bounded_topics_) rd_kafka_topic_destroy(rkt);
  bounded_topics_.clear();
  rk_.reset();
}

rd_kafka_topic_t* Producer::bounded_topic(const std::string& name) {
  std::lock_guard lock(topics_mu_);
  if (auto it = bounded_topics_.find(name); it != bounded_topics_.end()) return it->second;
  rd_kafka_topic_conf_t* conf = rd_kafka_topic_conf_new();
  char err[256];
  const std::string timeout = std::to_string(options_.delivery_timeout.count());
  if (rd_kafka_topic_conf_set(conf, "message.timeout.ms", timeout.c_str(), err, sizeof(err)) !=
      RD_KAFKA_CONF_OK) {
    // Checked by the option's range at start-up; kept as a fallback rather than a crash.
    log::warn(kTag, "message.timeout.ms {} for {}: {}", timeout, name, err);
  }
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk_.get(), name.c_str(), conf);  // owns conf
  if (rkt == nullptr) return nullptr;
  bounded_topics_.emplace(name, rkt);
  return rkt;
}

Status Producer::produce(std::span<OutRecord> records, Delivery delivery) {
  if (records.empty()) return {};
  if (fatal_.load()) {
    for (auto& r : records)
      if (r.headers != nullptr) rd_kafka_headers_destroy(r.headers);
    return Error{
        ErrorCode::kUnavailable, "the Kafka producer hit a fatal error; restart ecomd", {}, false};
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
    rd_kafka_topic_t* rkt = delivery == Delivery::kBounded ? bounded_topic(*r.topic) : nullptr;
    if (delivery == Delivery::kBounded && rkt == nullptr) {
      {
        std::lock_guard lock(batch->mu);
        --batch->outstanding;
      }
      enqueue_error = kafka_error(fmt::format("cannot make a topic handle for {}", *r.topic),
                                  rd_kafka_last_error(), true);
      break;
    }
    rd_kafka_resp_err_t err;
    while (true) {
      void* key = r.key.empty() ? nullptr : const_cast<char*>(r.key.data());
      void* value = const_cast<char*>(r.value.data());
      // RD_KAFKA_V_* expand to argument pairs: one call per way of naming the topic.
      if (rkt != nullptr) {
        err = rd_kafka_producev(
            rk_.get(), RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_KEY(key, r.key.size()),
            RD_KAFKA_V_VALUE(value, r.value.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(r.headers), RD_KAFKA_V_OPAQUE(batch), RD_KAFKA_V_END);
      } else {
        err = rd_kafka_producev(
            rk_.get(), RD_KAFKA_V_TOPIC(r.topic->c_str()), RD_KAFKA_V_KEY(key, r.key.size()),
            RD_KAFKA_V_VALUE(value, r.value.size()), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_HEADERS(r.headers), RD_KAFKA_V_OPAQUE(batch), RD_KAFKA_V_END);
      }
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

  // librdkafka reports a kBounded record within message.timeout.ms (the margin covers slow
  // callbacks); a kUntilAcknowledged one may stay queued past this wait, see produce().
  Clock::time_point deadline =
      Clock::now() + options_.delivery_timeout +
      (delivery == Delivery::kBounded ? std::chrono::seconds(30) : std::chrono::seconds(0));
  std::unique_lock lock(batch->mu);
  bool done = batch->cv.wait_until(lock, deadline, [&] { return batch->outstanding == 0; });
  if (!done) {
    batch->abandoned = true;  // the last delivery report frees it
    lock.unlock();
    return Error{ErrorCode::kUnavailable, "timed out waiting for Kafka delivery reports", {}, true};
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

Producer::Producer(const KafkaBusOptions& options)
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

void Producer::on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
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

void Producer::on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque) {
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

void Producer::check_health() {
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

}  // namespace ecom::bus::kafka
