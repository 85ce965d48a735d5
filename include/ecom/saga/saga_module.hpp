#pragma once
/// The saga orchestrator: drives each order through reservation, payment and confirmation, or
/// through compensation to cancellation. See src/saga/README.md.

#include <memory>
#include <string_view>

#include "ecom/core/module.hpp"
#include "ecom/saga/saga_clock.hpp"

namespace ecom::saga {

/// The `saga` module. start()/stop() are called from one thread; fire_due() is thread-safe.
class SagaModule final : public Module {
 public:
  static constexpr std::string_view kName{"saga"};

  /// Uses the system clock.
  SagaModule();
  /// Uses `clock` for deadlines and timestamps (tests pass a ManualClock).
  explicit SagaModule(std::shared_ptr<const Clock> clock);
  ~SagaModule() override;
  SagaModule(const SagaModule&) = delete;
  SagaModule& operator=(const SagaModule&) = delete;

  std::string_view name() const noexcept override { return kName; }
  Status start(ModuleContext& ctx) override;
  void stop() noexcept override;

  /// Applies the timeout of every saga whose deadline is due now; returns how many changed. The
  /// timer thread calls this periodically; tests may call it to skip the wait. Thread-safe; only
  /// between start() and stop().
  int fire_due();

 private:
  struct Impl;
  std::shared_ptr<const Clock> clock_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecom::saga
