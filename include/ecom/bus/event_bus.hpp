#pragma once
/// The event bus: the only channel between modules. Topics map one-to-one to Kafka topics; the
/// model is Kafka's (partitions chosen by key, consumer groups, offsets committed after
/// processing), so the embedded and Kafka implementations are interchangeable.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/core/batch_scope.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/result.hpp"

namespace ecom::bus {

/// A record to publish: the value is an encoded envelope, the key its subject.
struct Record {
  std::string topic;
  std::string key;
  std::string value;
  /// Optional: who produced it and its place in that producer's sequence (an outbox's id and
  /// row seq). The embedded bus appends a record of a source only once, however often it is
  /// published; the Kafka bus sends them as headers, and its consumers skip a copy whose seq is
  /// at or below the mark they stored for its source and partition (SourceMark). Records of a
  /// source must be published in seq order.
  std::string source;
  int64_t seq = 0;
};

/// A delivered event.
struct Message {
  std::string topic;
  int partition = 0;
  int64_t offset = 0;
  std::string key;
  Envelope envelope;
  int attempt = 1;  ///< 1 on first delivery, counting retries of this record in this consumer
  /// True when the consumer core guarantees this event reaches the handler's effects once: the
  /// offset is stored with them (BatchScope), and a copy under another offset is recognised by
  /// its source sequence (Record::source) — by the embedded log at append, by the Kafka consumer
  /// against its stored marks. The handler then needs no inbox claim for it. False for a record
  /// without a source (or a subscription without a store): the handler's inbox decides.
  bool once = false;
};

/// What a handler decided about a message.
enum class Disposition {
  kAck,         ///< processed (or deliberately ignored): commit and move on
  kRetry,       ///< transient failure: redeliver later with backoff, blocking only this partition
  kDeadLetter,  ///< can never succeed: copy to `<topic>.dlq` and move on
};

/// A handler's result with a reason for logs and the dead-letter headers.
struct Outcome {
  Disposition disposition = Disposition::kAck;
  std::string reason;
  static Outcome ack() { return {}; }
  static Outcome retry(std::string why) { return {Disposition::kRetry, std::move(why)}; }
  static Outcome dead_letter(std::string why) { return {Disposition::kDeadLetter, std::move(why)}; }
};

/// Called on a bus thread, one message at a time per partition, in offset order. Must not throw.
using Handler = std::function<Outcome(const Message&)>;

/// What and how to consume.
struct SubscriptionOptions {
  std::string group;                ///< consumer group, e.g. "ecomd-order"
  std::vector<std::string> topics;  ///< topics to consume
  int max_attempts = 5;             ///< retries before a message is dead-lettered
  std::chrono::milliseconds initial_backoff{100};
  std::chrono::milliseconds max_backoff{10'000};
  /// Static membership (Kafka's group.instance.id): a member id stable across restarts, so a
  /// restarted process re-owns its partitions at once instead of after the session timeout.
  /// Empty: a dynamic member, as before. Unique per group; characters [a-zA-Z0-9._-], at most
  /// 249 (Kafka's rule). The embedded bus falls back to EmbeddedBusOptions::instance_id.
  std::string instance_id;
  /// Group commit: the subscriber's store. When set, the bus calls the handler for a run of
  /// fetched messages inside one `store->run()`, so the handlers' transactions on that store
  /// share one commit; the run's offsets are committed only after it. Handlers must then do all
  /// of a message's durable work in that store (which they do: inbox, state and outbox).
  BatchScope* store = nullptr;
  /// Most messages handled in one batch (bounds how long other users of the store wait).
  int max_batch = 128;
};

/// A live subscription; closing (or destroying) it commits what was processed and leaves the group.
class Subscription {
 public:
  virtual ~Subscription() = default;
  /// Stops delivery; returns after the in-flight handler call finished. Idempotent.
  virtual void close() = 0;
};

/// The bus. Thread-safe: publish and subscribe may be called from any thread.
class EventBus {
 public:
  virtual ~EventBus() = default;
  /// Publishes records and returns once all are durable (embedded: committed to its store;
  /// Kafka: acknowledged by the brokers). Per-key order is the order within and across calls.
  virtual Status publish(std::span<const Record> records) = 0;
  /// Publishes one event keyed by its subject.
  Status publish(std::string_view topic, const Envelope& e) {
    Record r{std::string(topic), e.subject, encode_envelope(e)};
    return publish(std::span<const Record>(&r, 1));
  }
  /// Starts consuming on background threads.
  virtual Result<std::unique_ptr<Subscription>> subscribe(SubscriptionOptions options,
                                                          Handler handler) = 0;
  /// True when the bus can publish (store open / brokers reachable).
  virtual bool healthy() = 0;
  /// Implementation name, "embedded" or "kafka".
  virtual std::string_view kind() const noexcept = 0;
};

/// Number of partitions a topic has on the embedded bus; the Kafka bus reads it from metadata.
inline constexpr int kDefaultPartitions = 8;
/// Stable partition for a key (FNV-1a, so that every process agrees).
int partition_for(std::string_view key, int partitions) noexcept;
/// Name of the dead-letter topic of `topic`.
inline std::string dlq_topic(std::string_view topic) { return std::string(topic) + ".dlq"; }

}  // namespace ecom::bus
