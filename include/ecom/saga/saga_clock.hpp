#pragma once
/// The saga's time source. Injectable so that tests drive step deadlines without sleeping.

#include <atomic>
#include <cstdint>

namespace ecom::saga {

/// A source of epoch milliseconds. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  /// Milliseconds since the Unix epoch.
  virtual int64_t now_ms() const noexcept = 0;
};

/// The system clock (ecom::now_ms). Thread-safe.
class SystemClock final : public Clock {
 public:
  int64_t now_ms() const noexcept override;
};

/// A clock that moves only when told to; for tests. Thread-safe.
class ManualClock final : public Clock {
 public:
  /// Starts at `start_ms` (epoch milliseconds).
  explicit ManualClock(int64_t start_ms = 1'767'225'600'000) : now_(start_ms) {}
  int64_t now_ms() const noexcept override { return now_.load(); }
  /// Sets the current time.
  void set(int64_t ms) noexcept { now_.store(ms); }
  /// Moves the time forward by `ms`.
  void advance(int64_t ms) noexcept { now_.fetch_add(ms); }

 private:
  std::atomic<int64_t> now_;
};

}  // namespace ecom::saga
