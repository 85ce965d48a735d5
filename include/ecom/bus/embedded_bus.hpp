#pragma once
/// The embedded bus: durable topics in one SQLite file, no broker needed. Several processes may
/// share the file; consumer-group membership and partition ownership live in the file too.

#include <chrono>
#include <memory>
#include <string>

#include "ecom/bus/event_bus.hpp"
#include "ecom/core/result.hpp"

namespace ecom::bus {

/// Settings of the embedded bus (config section `embedded_bus`).
struct EmbeddedBusOptions {
  std::string path;                       ///< the SQLite file, e.g. `<data-dir>/bus.db`
  int partitions = kDefaultPartitions;    ///< partitions per topic; fixed when the file is created
  int batch_size = 256;                   ///< records fetched per partition per poll
  std::chrono::milliseconds poll_interval{20};       ///< idle poll when no in-process wake-up
  std::chrono::milliseconds session_timeout{6'000};  ///< a member silent this long is evicted
  std::chrono::milliseconds heartbeat_interval{500};
};

/// Opens the bus file, creating its schema.
Result<std::unique_ptr<EventBus>> make_embedded_bus(EmbeddedBusOptions options);

}  // namespace ecom::bus
