#pragma once
/// The inventory module: products and stock, reservations per order, stock-level alerts.
/// Consumes `inventory.commands`; produces `inventory.events`, `inventory.updated`,
/// `inventory.alerts`; serves /api/inventory. See src/inventory/README.md.

#include <memory>
#include <string_view>

#include "ecom/core/module.hpp"

namespace ecom::inventory {

/// The module. start() and stop() are called from the host's main thread; its bus handler and
/// HTTP handlers then run concurrently on bus and HTTP threads (state lives in the database).
class InventoryModule final : public Module {
 public:
  static constexpr std::string_view kName{"inventory"};

  InventoryModule();
  ~InventoryModule() override;
  InventoryModule(const InventoryModule&) = delete;
  InventoryModule& operator=(const InventoryModule&) = delete;

  std::string_view name() const noexcept override { return kName; }
  Status configure(const ConfigSection& config) override;
  Status start(ModuleContext& ctx) override;
  void stop() noexcept override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecom::inventory
