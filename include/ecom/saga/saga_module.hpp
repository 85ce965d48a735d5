#pragma once
/// The saga orchestrator: drives each order through reservation, payment and confirmation, or
/// through compensation to cancellation. See src/saga/README.md.

#include <memory>
#include <string_view>

#include "ecom/core/module.hpp"

namespace ecom::saga {

/// The `saga` module. start()/stop() are called from one thread; fire_due() is thread-safe.
class SagaModule final : public Module {
 public:
  static constexpr std::string_view kName{"saga"};

  /// Deadlines and timestamps follow ModuleContext::clock.
  SagaModule();
  ~SagaModule() override;
  SagaModule(const SagaModule&) = delete;
  SagaModule& operator=(const SagaModule&) = delete;

  std::string_view name() const noexcept override { return kName; }
  Status configure(const ConfigSection& config) override;
  Status start(ModuleContext& ctx) override;
  void stop() noexcept override;

  /// Applies the timeout of every saga whose deadline is due now; returns how many changed. The
  /// timer task calls this periodically; tests may call it to skip the wait. Thread-safe; only
  /// between start() and stop().
  int fire_due();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecom::saga
