#pragma once
/// The notification module: notifies customers as their orders move, and pushes order, stock and
/// notification events live to browsers (Server-Sent Events and WebSocket). Serves the web UI.

#include <memory>
#include <string_view>

#include "ecom/core/module.hpp"

namespace ecom::notification {

/// Consumes `orders.created`, `orders.status`, `inventory.updated` and `inventory.alerts` (group
/// `ecomd-notification`) into its own order projection, notifications and feed; delivers
/// notifications on a worker thread (log or webhook sink) and emits NotificationSent; serves
/// `/api/notifications`, `/api/stats`, the SSE streams, `/ws` and the UI. Thread-safe after
/// start().
class NotificationModule final : public Module {
 public:
  static constexpr std::string_view kName{"notification"};

  NotificationModule();
  ~NotificationModule() override;
  std::string_view name() const noexcept override { return kName; }
  Status configure(const ConfigSection& config) override;
  Status start(ModuleContext& ctx) override;
  /// Stops consumption, delivery and the live push, and closes every open stream.
  void stop() noexcept override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecom::notification
