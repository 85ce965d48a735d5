#pragma once
/// The Kafka bus (librdkafka inside src/bus only).

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ecom/bus/event_bus.hpp"
#include "ecom/core/config.hpp"
#include "ecom/core/result.hpp"

namespace ecom::bus {

/// Settings of the Kafka bus (config section `kafka`).
struct KafkaBusOptions {
  std::string bootstrap_servers = "127.0.0.1:9092";
  std::string client_id = "ecomd";
  int partitions = kDefaultPartitions;  ///< for topics this process creates
  int replication_factor = 1;           ///< for topics this process creates
  /// librdkafka properties passed through (security.protocol, sasl.*, ssl.*, linger.ms, ...).
  std::map<std::string, std::string> properties;
};

/// Reads the `kafka` config section (unknown keys fail with CONFIG_INVALID).
Result<KafkaBusOptions> kafka_options_from_config(const ConfigSection& section);
/// Connects producer and admin client; consumers are made per subscription.
Result<std::unique_ptr<EventBus>> make_kafka_bus(KafkaBusOptions options);
/// Creates the topics (and their .dlq twins) that do not exist yet.
Status create_topics(const KafkaBusOptions& options, const std::vector<std::string>& topics);

}  // namespace ecom::bus
