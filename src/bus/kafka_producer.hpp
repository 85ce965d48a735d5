#pragma once
// The Kafka bus's producer: one idempotent producer per bus (acks=all), shared by publish() and
// the dead-letter writes of the consumers. Private to src/bus.

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "ecom/bus/kafka_bus.hpp"
#include "ecom/core/periodic_task.hpp"
#include "ecom/core/result.hpp"
#include "kafka_common.hpp"

namespace ecom::bus::kafka {

/// How long librdkafka may try to deliver a record.
enum class Delivery {
  /// Until the broker acknowledges it (message.timeout.ms infinite): what a relay's records
  /// need. A record that timed out could leave a gap that a later record of its partition
  /// overtakes (librdkafka bumps the idempotent epoch past it), and consumers that recognise a
  /// republished record by its source sequence (SourceMark) would then drop the retry as a copy.
  kUntilAcknowledged,
  /// Within KafkaBusOptions::delivery_timeout: dead-letter copies, whose writer falls back to
  /// waiting and trying again rather than holding its partition for ever.
  kBounded,
};

// One record to produce; `headers` passes to librdkafka on success.
struct OutRecord {
  const std::string* topic;
  std::string_view key;
  std::string_view value;
  rd_kafka_headers_t* headers;
};

/// produce() enqueues every record and then waits for all delivery reports, so a batch costs
/// one round of acknowledgements, not one flush per record.
class Producer final {
 public:
  static Result<std::shared_ptr<Producer>> create(const KafkaBusOptions& options);

  ~Producer();

  /// Produces all records and waits for all delivery reports. kBounded records are all reported
  /// within delivery_timeout. kUntilAcknowledged ones are waited for delivery_timeout: records
  /// still unacknowledged then stay queued and are delivered once the brokers answer, and the
  /// caller gets a retryable error (a caller that publishes them again sends copies, which
  /// consumers recognise by their source sequence).
  Status produce(std::span<OutRecord> records, Delivery delivery = Delivery::kUntilAcknowledged);

  /// Brokers answered the last metadata request and no fatal error happened.
  bool healthy() const noexcept { return metadata_ok_.load() && !fatal_.load(); }

 private:
  explicit Producer(const KafkaBusOptions& options);

  // The handle of a kBounded topic, made once with its own message.timeout.ms.
  rd_kafka_topic_t* bounded_topic(const std::string& name);

  static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*);
  static void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque);

  // A cheap metadata request (brokers only) tells whether the cluster answers; once every
  // health_interval (on options.clock), the first right after start.
  void check_health();

  KafkaBusOptions options_;
  HandlePtr rk_;
  std::atomic<bool> metadata_ok_{false};
  std::atomic<bool> fatal_{false};
  ErrorThrottle throttle_;
  std::mutex topics_mu_;
  std::map<std::string, rd_kafka_topic_t*, std::less<>> bounded_topics_;  // destroyed before rk_
  // Both stopped in the destructor, the health check first, the poller after the flush.
  PeriodicTask poller_;
  PeriodicTask checker_;
};

/// Adds header `name` unless `value` is empty.
void add_header(rd_kafka_headers_t* h, const char* name, std::string_view value);

/// CloudEvents Kafka binding: the attributes of the envelope in `value` as ce_ headers (owned by
/// the caller), or null when `value` is not an envelope (still produced, only without them).
rd_kafka_headers_t* cloudevents_headers(std::string_view value);

}  // namespace ecom::bus::kafka
