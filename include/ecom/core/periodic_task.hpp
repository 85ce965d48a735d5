#pragma once
/// Time and background work, once for every module: an injectable Clock, and PeriodicTask, the
/// one way a module runs something in the background (a deadline scan, a relay pass, a queue
/// drain). A task runs its step on its own thread at a period, or sooner when woken, and stops
/// before the things it uses are destroyed. With a ManualClock, tests move time instead of
/// sleeping: advance() wakes every task waiting on that clock.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace ecom {

/// A source of epoch milliseconds that tasks can wait on. Thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  /// Milliseconds since the Unix epoch.
  virtual int64_t now_ms() const noexcept = 0;
  /// Blocks on `cv` (with `lock` held by the caller, released while waiting) until this clock
  /// reaches `deadline_ms`, `cv` is notified, or a spurious wake-up; the caller re-checks.
  virtual void wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                          int64_t deadline_ms) = 0;
};

/// The system clock.
class SystemClock final : public Clock {
 public:
  int64_t now_ms() const noexcept override;
  void wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                  int64_t deadline_ms) override;
  /// The process-wide instance.
  static SystemClock& instance();
};

/// A clock that moves only when told to; for tests. Waiting tasks wake on every move.
class ManualClock final : public Clock {
 public:
  /// Starts at `start_ms` (epoch milliseconds; default 2026-01-01T00:00:00Z).
  explicit ManualClock(int64_t start_ms = 1'767'225'600'000);
  int64_t now_ms() const noexcept override;
  void wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                  int64_t deadline_ms) override;
  /// Sets the time, then wakes every waiter.
  void set(int64_t ms);
  /// Moves the time forward by `ms`, then wakes every waiter.
  void advance(int64_t ms);

 private:
  void wake_all();

  mutable std::mutex mu_;
  int64_t now_;
  std::vector<std::condition_variable*> waiting_;
};

/// Names the calling thread (the first 15 bytes, Linux's limit) for `top -H`, perf and gdb: a
/// process runs a dozen threads per role, and "ecomd" for each says nothing.
void name_this_thread(std::string_view name) noexcept;

/// A background step run on its own thread: after each run, again once `period` has passed
/// (or after the delay the step returns), and at once when wake() is called. Steps never
/// overlap. stop() (and the destructor) waits for a running step and joins; after it the step
/// is never called again, so whatever the step uses may be destroyed.
///
/// A step that throws is logged with the task's name and retried after the period: a
/// background loop must not take the process down, and the next run may succeed.
class PeriodicTask {
 public:
  /// The step; gets the clock's now, returns the delay until its next run (nullopt: the period).
  using Step = std::function<std::optional<std::chrono::milliseconds>(int64_t now_ms)>;

  /// `name` for logs and the thread; runs first right after start() unless `initial_delay` is set.
  PeriodicTask(std::string name, Clock& clock, std::chrono::milliseconds period, Step step);
  ~PeriodicTask();
  PeriodicTask(const PeriodicTask&) = delete;
  PeriodicTask& operator=(const PeriodicTask&) = delete;

  /// Starts the thread; the first run is after `initial_delay`.
  void start(std::chrono::milliseconds initial_delay = std::chrono::milliseconds(0));
  /// Runs the step as soon as the current run (if any) has finished. Cheap: safe on hot paths.
  void wake() noexcept;
  /// Stops and joins; idempotent. Must not be called from the step itself.
  void stop() noexcept;
  /// How many runs have finished (for tests: wait for a run after advancing a ManualClock).
  uint64_t runs() const noexcept;
  /// True once stop() was called: a long step (a batch of slow sends) checks it to end early.
  bool stop_requested() const noexcept;

 private:
  struct State;
  std::shared_ptr<State> s_;
  std::thread thread_;
};

}  // namespace ecom
