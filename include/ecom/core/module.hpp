#pragma once
/// The module interface: every service (order, inventory, ...) is one Module in the `ecomd` binary.

#include <string>
#include <string_view>

#include "ecom/core/config.hpp"
#include "ecom/core/periodic_task.hpp"
#include "ecom/core/result.hpp"

namespace ecom {
namespace bus {
class EventBus;
class OutboxRelay;
}  // namespace bus
namespace http {
class Router;
}  // namespace http
namespace db {
class Database;
}  // namespace db

/// What the host gives a module. References outlive the module's start()..stop() span.
struct ModuleContext {
  bus::EventBus& bus;        ///< the only way to talk to other modules
  bus::OutboxRelay& outbox;  ///< relays this module's outbox; call notify() after a commit
  http::Router& router;      ///< register routes here during start()
  db::Database& db;          ///< this module's own store (`<data-dir>/<name>.db` or its schema)
  const Settings& settings;  ///< process-wide settings
  /// The time every deadline, timestamp and PeriodicTask of the module uses (tests: ManualClock).
  Clock& clock = SystemClock::instance();
};

/// A service hosted by ecomd. Implementations are `final` and expose `static constexpr
/// std::string_view kName`, used for --role, config key, log tag, metric prefix and DB file.
class Module {
 public:
  virtual ~Module() = default;
  /// The module's kName.
  virtual std::string_view name() const noexcept = 0;
  /// Reads the module's config section (empty when absent) with a ConfigSpec and keeps the
  /// result. The host configures every role of the process before it starts any, so a bad key
  /// fails start-up before a consumer runs. Called once, before start().
  virtual Status configure(const ConfigSection& config) = 0;
  /// Migrates the store, registers routes and subscriptions, with the configured options. Called
  /// once, on the main thread, before the HTTP server accepts connections. A failure aborts
  /// start-up.
  virtual Status start(ModuleContext& ctx) = 0;
  /// Stops background work (subscriptions, timers). Called once, before the bus and DB close.
  virtual void stop() noexcept = 0;
};

}  // namespace ecom
