#include "ecom/core/periodic_task.hpp"

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <exception>

#include "ecom/core/clock.hpp"
#include "ecom/core/log.hpp"

namespace ecom {

// --- clocks --------------------------------------------------------------------------------------

int64_t SystemClock::now_ms() const noexcept { return ecom::now_ms(); }

void SystemClock::wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                             int64_t deadline_ms) {
  const int64_t delay = deadline_ms - now_ms();
  if (delay <= 0) return;
  // A relative wait on the steady clock: a wall-clock step must not stall a task for hours.
  cv.wait_for(lock, std::chrono::milliseconds(delay));
}

SystemClock& SystemClock::instance() {
  static SystemClock clock;
  return clock;
}

ManualClock::ManualClock(int64_t start_ms) : now_(start_ms) {}

int64_t ManualClock::now_ms() const noexcept {
  std::lock_guard lock(mu_);
  return now_;
}

void ManualClock::wait_until(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                             int64_t deadline_ms) {
  {
    std::lock_guard g(mu_);
    if (now_ >= deadline_ms) return;
    waiting_.push_back(&cv);
  }
  // advance() cannot take the caller's lock, so its notify may land between this registration
  // and the wait and be lost: the bounded wait makes such a move seen within 5 ms. Time itself
  // still moves only on set()/advance().
  cv.wait_for(lock, std::chrono::milliseconds(5));
  std::lock_guard g(mu_);
  waiting_.erase(std::find(waiting_.begin(), waiting_.end(), &cv));
}

void ManualClock::set(int64_t ms) {
  {
    std::lock_guard lock(mu_);
    now_ = ms;
  }
  wake_all();
}

void ManualClock::advance(int64_t ms) {
  {
    std::lock_guard lock(mu_);
    now_ += ms;
  }
  wake_all();
}

void ManualClock::wake_all() {
  std::lock_guard lock(mu_);
  for (auto* cv : waiting_) cv->notify_all();
}

// --- PeriodicTask --------------------------------------------------------------------------------

struct PeriodicTask::State {
  std::string name;
  Clock& clock;
  std::chrono::milliseconds period;
  Step step;

  std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  bool woken = false;
  int64_t next_run_ms = 0;
  std::atomic<uint64_t> runs{0};
  std::atomic<bool> stop_requested{false};

  State(std::string n, Clock& c, std::chrono::milliseconds p, Step s)
      : name(std::move(n)), clock(c), period(p), step(std::move(s)) {}

  void run() {
    std::unique_lock lock(mu);
    while (!stopping) {
      if (!woken && clock.now_ms() < next_run_ms) {
        clock.wait_until(cv, lock, next_run_ms);
        continue;  // re-check: woken, stopping, due, or spurious
      }
      woken = false;
      lock.unlock();
      std::optional<std::chrono::milliseconds> delay;
      const int64_t now = clock.now_ms();
      try {
        delay = step(now);
      } catch (const std::exception& e) {
        log::error(name, "background step failed: {}", e.what());
      } catch (...) {
        log::error(name, "background step failed: a non-standard exception");
      }
      runs.fetch_add(1, std::memory_order_release);
      lock.lock();
      next_run_ms = clock.now_ms() + std::max<int64_t>(delay.value_or(period).count(), 0);
    }
  }
};

void name_this_thread(std::string_view name) noexcept {
  char buf[16];
  const size_t n = std::min(name.size(), sizeof(buf) - 1);
  std::memcpy(buf, name.data(), n);
  buf[n] = '\0';
  pthread_setname_np(pthread_self(), buf);
}

PeriodicTask::PeriodicTask(std::string name, Clock& clock, std::chrono::milliseconds period,
                           Step step)
    : s_(std::make_shared<State>(std::move(name), clock, period, std::move(step))) {}

PeriodicTask::~PeriodicTask() { stop(); }

void PeriodicTask::start(std::chrono::milliseconds initial_delay) {
  if (thread_.joinable()) return;
  {
    std::lock_guard lock(s_->mu);
    s_->stopping = false;
    s_->stop_requested.store(false, std::memory_order_release);
    s_->next_run_ms = s_->clock.now_ms() + initial_delay.count();
  }
  thread_ = std::thread([s = s_] {
    name_this_thread(s->name);
    s->run();
  });
}

void PeriodicTask::wake() noexcept {
  {
    std::lock_guard lock(s_->mu);
    if (s_->woken) return;
    s_->woken = true;
  }
  s_->cv.notify_all();
}

void PeriodicTask::stop() noexcept {
  {
    std::lock_guard lock(s_->mu);
    s_->stopping = true;
    s_->stop_requested.store(true, std::memory_order_release);
  }
  s_->cv.notify_all();
  if (thread_.joinable()) thread_.join();
}

uint64_t PeriodicTask::runs() const noexcept { return s_->runs.load(std::memory_order_acquire); }

bool PeriodicTask::stop_requested() const noexcept {
  return s_->stop_requested.load(std::memory_order_acquire);
}

}  // namespace ecom
