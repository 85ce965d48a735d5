#pragma once
/// The Kafka bus (librdkafka inside src/bus only) and topic provisioning. See docs/kafka.md.

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/bus/event_bus.hpp"
#include "ecom/core/config.hpp"
#include "ecom/core/periodic_task.hpp"
#include "ecom/core/result.hpp"

namespace ecom::bus {

/// How one topic is created. Its `<name>.dlq` twin gets the same partitions and replication.
struct TopicSpec {
  std::string name;
  int partitions = 3;
  int replication_factor = 1;
  int64_t retention_ms = 7LL * 24 * 3600 * 1000;      ///< topic config retention.ms
  int64_t dlq_retention_ms = 7LL * 24 * 3600 * 1000;  ///< retention.ms of the .dlq twin
  bool dlq = true;                                    ///< also provision `<name>.dlq`
  std::map<std::string, std::string> config;          ///< further topic configs, passed as given
};

/// The topics to provision (config/topics.json or the `topics` config section).
struct TopicsConfig {
  TopicSpec defaults;             ///< applied to every topic, name empty
  std::vector<TopicSpec> topics;  ///< always includes every name of topics::kAll
};

/// ecomd's own topics (topics::kAll) with `defaults`.
TopicsConfig default_topics_config(const TopicSpec& defaults = {});
/// Parses a topics object: `{"defaults": {...}, "topics": {"<name>": {...}, ...}}` where each
/// topic object may set partitions, replication_factor, retention_ms, dlq_retention_ms, dlq and
/// config. Topics of topics::kAll that it does not name get the defaults. Errors: CONFIG_INVALID.
Result<TopicsConfig> topics_config_from_section(const ConfigSection& section);
/// Reads and parses a topics file (JSON with comments), e.g. config/topics.json.
Result<TopicsConfig> load_topics_config(const std::string& path);

/// Settings of the Kafka bus (config section `kafka`). Plain data; copy freely.
struct KafkaBusOptions {
  std::string bootstrap_servers = "127.0.0.1:9092";
  std::string client_id = "ecomd";
  /// Prepended to every Kafka topic name (e.g. "staging."), so several deployments or test runs
  /// can share a cluster; handlers still see the plain names of topics::kAll.
  std::string topic_prefix;
  /// Prepended to every consumer group id (e.g. "staging-").
  std::string group_prefix;
  // Producer.
  std::string compression = "lz4";   ///< compression.type: none, gzip, snappy, lz4, zstd
  int linger_ms = 1;                 ///< linger.ms: wait this long to fill a batch
  int batch_num_messages = 10'000;   ///< batch.num.messages
  int batch_size_bytes = 1'000'000;  ///< batch.size
  /// message.timeout.ms: how long a record may wait for an acknowledgement, retries included,
  /// before publish() gives up on it with a retryable error.
  std::chrono::milliseconds delivery_timeout{30'000};
  // Consumers.
  std::chrono::milliseconds session_timeout{10'000};  ///< session.timeout.ms
  std::chrono::milliseconds commit_interval{500};  ///< processed offsets are committed this often
  // Readiness.
  std::chrono::milliseconds health_interval{2'000};  ///< how often broker metadata is requested
  /// The clock health_interval is measured on (a ManualClock in tests). Never null.
  Clock* clock = &SystemClock::instance();
  /// librdkafka properties for producer, consumers and admin client (security.protocol,
  /// sasl.*, ssl.*, ...), applied after the settings above, so they may override them.
  std::map<std::string, std::string> properties;
  std::map<std::string, std::string> producer_properties;  ///< producer only, applied last
  std::map<std::string, std::string> consumer_properties;  ///< consumers only, applied last
  /// group.instance.id for subscriptions that set no SubscriptionOptions::instance_id (static
  /// membership: a restarted process gets its partitions back without a rebalance); empty: dynamic.
  std::string instance_id;
  /// Topics for ensure_topics / run_topics_command.
  TopicsConfig topics = default_topics_config();
  // Kept for callers of create_topics(): defaults for topics named there.
  int partitions = 3;
  int replication_factor = 1;
};

/// Reads the `kafka` config section; unknown keys, wrongly-typed values and librdkafka
/// properties it rejects fail with CONFIG_INVALID. `topics_file` is resolved against `base_dir`
/// when relative; without a topics file the built-in topic list is used.
Result<KafkaBusOptions> kafka_options_from_config(const ConfigSection& section,
                                                  const std::string& base_dir = {});
/// Everything from the settings: the `kafka` section, the `topics` section (if present, it wins
/// over `kafka.topics_file`; relative files resolve against the config file's directory) and
/// `settings.brokers` (--brokers / ECOMD_BROKERS), which overrides kafka.bootstrap_servers.
Result<KafkaBusOptions> kafka_options_from_settings(const Settings& settings);

/// Creates the producer (and a metadata health check); consumers are made per subscription.
/// Does not contact the brokers synchronously: healthy() turns true once they answer and every
/// subscription joined its group. Subscriptions use `auto.offset.reset=earliest`, cooperative-
/// sticky assignment, commits after the handler returned, and `<topic>.dlq` for dead letters.
/// The bus is thread-safe; subscriptions share its producer and may outlive it.
Result<std::unique_ptr<EventBus>> make_kafka_bus(KafkaBusOptions options);

/// Creates the configured topics (and .dlq twins), with options.topic_prefix, that do not exist;
/// logs, without changing anything, existing topics whose partition count differs. Blocking;
/// thread-safe (a short-lived admin client per call). Fails (retryable) when the brokers
/// cannot be reached within `timeout`.
Status ensure_topics(const KafkaBusOptions& options, const TopicsConfig& topics,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));
/// Creates the named topics (and their .dlq twins) with options.partitions/replication_factor.
Status create_topics(const KafkaBusOptions& options, const std::vector<std::string>& topics);

/// One row of describe_topics().
struct TopicInfo {
  std::string name;
  int partitions = 0;           ///< 0 when the topic does not exist
  int replication_factor = 0;   ///< replicas of partition 0
  int64_t retention_ms = -2;    ///< -2 when unknown
  int expected_partitions = 0;  ///< from the topics config; 0 when not configured
  bool exists = false;
};
/// Describes every configured topic (and .dlq twin), plus, with a topic_prefix, the other topics
/// under that prefix.
Result<std::vector<TopicInfo>> describe_topics(
    const KafkaBusOptions& options, std::chrono::milliseconds timeout = std::chrono::seconds(15));

/// `ecomd topics create|list|describe`: runs the verb against options.bootstrap_servers with
/// options.topics (names with options.topic_prefix) and prints a human-readable result to `out`;
/// `list` prints every non-internal topic of the cluster.
/// Returns the process exit code: 0 success, 1 Kafka unreachable or refused, 2 unknown verb.
int run_topics_command(std::string_view verb, const KafkaBusOptions& options, std::FILE* out);

}  // namespace ecom::bus
