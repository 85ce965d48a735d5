#pragma once
/// The order module: the REST API for orders and the order records it owns.

#include <memory>
#include <string_view>

#include "ecom/core/module.hpp"

namespace ecom::order {

/// Accepts orders over HTTP, stores them, emits OrderCreated / OrderCancellationRequested through
/// its outbox, and applies status changes from `orders.status`. Thread-safe after start().
class OrderModule final : public Module {
 public:
  static constexpr std::string_view kName{"order"};

  OrderModule();
  ~OrderModule() override;
  std::string_view name() const noexcept override { return kName; }
  Status configure(const ConfigSection& config) override;
  Status start(ModuleContext& ctx) override;
  void stop() noexcept override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecom::order
