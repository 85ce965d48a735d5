#pragma once
// The Kafka bus's consumer: one rd_kafka consumer and one thread per subscription. Private to
// src/bus.

#include <atomic>
#include <memory>

#include "consumer_worker.hpp"
#include "ecom/bus/event_bus.hpp"
#include "ecom/bus/kafka_bus.hpp"
#include "ecom/core/result.hpp"
#include "kafka_producer.hpp"

namespace ecom::bus::kafka {

/// What the bus sees of a subscription, for healthy().
struct SubscriptionHealth {
  std::atomic<bool> joined{false};
  std::atomic<bool> closed{false};
};

/// Creates the consumer of one subscription (group and topics already prefixed) and subscribes;
/// the loop starts with ConsumerWorker::start. Dead letters go out through `producer`.
Result<std::shared_ptr<ConsumerWorker>> open_consumer(const KafkaBusOptions& options,
                                                      SubscriptionOptions sub, Handler handler,
                                                      std::shared_ptr<Producer> producer,
                                                      std::shared_ptr<SubscriptionHealth> health);

}  // namespace ecom::bus::kafka
