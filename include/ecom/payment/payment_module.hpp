#pragma once
/// The payment module: a deterministic simulated card gateway (authorize, refund).
/// Consumes `payments.commands`; produces `payments.events`; serves /api/payments/{orderId}.
/// See src/payment/README.md.

#include <memory>
#include <string_view>

#include "ecom/core/module.hpp"

namespace ecom::payment {

/// The module. start() and stop() are called from the host's main thread; its bus handler and
/// HTTP handlers then run concurrently on bus and HTTP threads (state lives in the database).
class PaymentModule final : public Module {
 public:
  static constexpr std::string_view kName{"payment"};

  PaymentModule();
  ~PaymentModule() override;
  PaymentModule(const PaymentModule&) = delete;
  PaymentModule& operator=(const PaymentModule&) = delete;

  std::string_view name() const noexcept override { return kName; }
  Status configure(const ConfigSection& config) override;
  Status start(ModuleContext& ctx) override;
  void stop() noexcept override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecom::payment
