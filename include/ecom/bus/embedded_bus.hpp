#pragma once
/// The embedded bus: durable topics in one SQLite file, no broker needed. Several processes may
/// share the file; consumer-group membership and partition ownership live in the file too.
///
/// Retention deletes old records in small transactions (a few hundred rows each) on one
/// background task (ecom::PeriodicTask) per bus object, so publishers wait at most one chunk. The
/// freed pages stay in the file and SQLite reuses them for new records (no auto_vacuum /
/// incremental_vacuum): with a steady load the file levels off at about the peak volume of one
/// retention window instead of growing forever; returning space to the OS would take a VACUUM while
/// nothing runs.
///
/// Static members (an instance id, see SubscriptionOptions::instance_id) keep their member id
/// across restarts: after kill -9 the restarted process resumes the dead incarnation's
/// membership and partitions at its first heartbeat. If two processes run with the same group and
/// instance id (a misconfiguration), the one that joined last wins and the other stops consuming
/// (logged as an error); its late commits are refused. close() still leaves the group (commits,
/// releases the partitions); only a crashed incarnation's membership waits to be resumed.

#include <chrono>
#include <memory>
#include <string>

#include "ecom/bus/event_bus.hpp"
#include "ecom/core/periodic_task.hpp"
#include "ecom/core/result.hpp"

namespace ecom::bus {

/// Settings of the embedded bus (config section `embedded_bus`).
struct EmbeddedBusOptions {
  std::string path;                     ///< the SQLite file, e.g. `<data-dir>/bus.db`
  int partitions = kDefaultPartitions;  ///< partitions per topic; fixed when the file is created
  int batch_size = 256;                 ///< records fetched per partition per poll
  std::chrono::milliseconds poll_interval{20};       ///< idle poll when no in-process wake-up
  std::chrono::milliseconds session_timeout{6'000};  ///< a member silent this long is evicted
  std::chrono::milliseconds heartbeat_interval{500};
  /// Records older than this (by publish time) are deleted, oldest first per partition, like
  /// Kafka's retention.ms. Negative: kept forever; zero is invalid. A group whose committed offset
  /// points at deleted records continues from the oldest retained one (auto.offset.reset=earliest).
  std::chrono::milliseconds retention{std::chrono::hours(24 * 7)};
  /// Retention of the `<topic>.dlq` topics; negative: kept forever.
  std::chrono::milliseconds dlq_retention{std::chrono::hours(24 * 7)};
  /// How often a retention pass runs, the first one interval after opening (at most one pass per
  /// file and interval, whatever the number of processes sharing it); like Kafka's
  /// log.retention.check.interval.ms.
  std::chrono::milliseconds retention_check_interval{std::chrono::seconds(60)};
  /// Static member id for subscriptions that set no SubscriptionOptions::instance_id; empty:
  /// those are dynamic members. Must be unique per process among processes sharing the file.
  std::string instance_id;
  /// The clock retention ages and the retention_check_interval are measured on (a ManualClock in
  /// tests). Publish timestamps stay the system time. Never null.
  Clock* clock = &SystemClock::instance();
};

/// Opens the bus file, creating (or upgrading) its schema, and starts the retention thread unless
/// both retentions are negative. Invalid options: CONFIG_INVALID. The bus is thread-safe.
Result<std::unique_ptr<EventBus>> make_embedded_bus(EmbeddedBusOptions options);

}  // namespace ecom::bus
