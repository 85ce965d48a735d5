// The Kafka event bus on librdkafka's C API: the producer is kafka_producer, a subscription's
// consumer kafka_consumer; this file prefixes topics and groups, checks subscriptions and wires
// them.

#include "ecom/bus/kafka_bus.hpp"

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "consumer_worker.hpp"
#include "delivery.hpp"
#include "ecom/core/log.hpp"
#include "kafka_common.hpp"
#include "kafka_consumer.hpp"
#include "kafka_producer.hpp"

namespace ecom::bus {
namespace {

using namespace kafka;

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
      rd_kafka_headers_t* headers = cloudevents_headers(r.value);
      if (!r.source.empty()) {
        // Consumers recognise a republished copy by these (SourceMark, kafka_consumer.cpp).
        if (headers == nullptr) headers = rd_kafka_headers_new(2);
        add_header(headers, kSourceHeader, r.source);
        add_header(headers, kSeqHeader, std::to_string(r.seq));
      }
      out.push_back(OutRecord{names.empty() ? &r.topic : &names[i], r.key, r.value, headers});
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
    std::string thread = consumer_thread_name(options.group);
    options.group = options_.group_prefix + options.group;
    for (auto& t : options.topics) t = options_.topic_prefix + t;
    auto health = std::make_shared<SubscriptionHealth>();
    auto opened =
        open_consumer(options_, std::move(options), std::move(handler), producer_, health);
    if (!opened) return opened.error();
    auto consumer = std::move(opened).value();
    ConsumerWorker::start(consumer, std::move(thread));
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
