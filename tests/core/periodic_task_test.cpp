#include "ecom/core/periodic_task.hpp"

#include <pthread.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <future>
#include <optional>
#include <stdexcept>
#include <string>

#include "support/test_support.hpp"

using namespace std::chrono_literals;
using ecom::ManualClock;
using ecom::PeriodicTask;

TEST_CASE("a periodic task runs at start, then each period of the clock", "[core][task]") {
  ManualClock clock;
  std::atomic<int> calls{0};
  std::atomic<int64_t> seen_now{0};
  PeriodicTask task("test", clock, 1000ms,
                    [&](int64_t now) -> std::optional<std::chrono::milliseconds> {
                      seen_now = now;
                      ++calls;
                      return std::nullopt;
                    });
  task.start();
  REQUIRE(ecom::test::eventually([&] { return task.runs() == 1; }));
  CHECK(seen_now.load() == clock.now_ms());
  clock.advance(999);
  std::this_thread::sleep_for(50ms);  // not due yet: nothing may run
  CHECK(calls.load() == 1);
  clock.advance(1);
  REQUIRE(ecom::test::eventually([&] { return task.runs() == 2; }));
  CHECK(seen_now.load() == clock.now_ms());
  task.stop();
  clock.advance(10'000);
  std::this_thread::sleep_for(30ms);
  CHECK(calls.load() == 2);  // never after stop
  task.stop();               // idempotent
}

TEST_CASE("wake() runs the step at once, and a returned delay replaces the period",
          "[core][task]") {
  ManualClock clock;
  std::atomic<int> calls{0};
  PeriodicTask task("test", clock, 60'000ms,
                    [&](int64_t) -> std::optional<std::chrono::milliseconds> {
                      ++calls;
                      return 10ms;  // e.g. the next deadline is 10 ms away
                    });
  task.start(5000ms);
  std::this_thread::sleep_for(30ms);
  CHECK(calls.load() == 0);  // the initial delay holds
  task.wake();
  REQUIRE(ecom::test::eventually([&] { return task.runs() == 1; }));
  clock.advance(10);
  REQUIRE(ecom::test::eventually([&] { return task.runs() == 2; }));
}

TEST_CASE("a step that throws is logged and retried, not fatal", "[core][task]") {
  ManualClock clock;
  std::atomic<int> calls{0};
  PeriodicTask task("test", clock, 100ms, [&](int64_t) -> std::optional<std::chrono::milliseconds> {
    if (++calls == 1) throw std::runtime_error("disk full");
    return std::nullopt;
  });
  task.start();
  REQUIRE(ecom::test::eventually([&] { return task.runs() == 1; }));
  clock.advance(100);
  REQUIRE(ecom::test::eventually([&] { return task.runs() == 2; }));
  CHECK(calls.load() == 2);
}

TEST_CASE("the destructor stops a task the system clock drives", "[core][task]") {
  std::atomic<int> calls{0};
  {
    PeriodicTask task("test", ecom::SystemClock::instance(), 1ms,
                      [&](int64_t) -> std::optional<std::chrono::milliseconds> {
                        ++calls;
                        return std::nullopt;
                      });
    task.start();
    REQUIRE(ecom::test::eventually([&] { return task.runs() >= 3; }));
  }
  const int after = calls.load();
  std::this_thread::sleep_for(20ms);
  CHECK(calls.load() == after);
}

TEST_CASE("a periodic task's thread carries its name, cut to Linux's 15 bytes", "[core][task]") {
  ManualClock clock(0);
  std::promise<std::string> seen;
  PeriodicTask task("outbox.relay.of-a-long-name", clock, 1s, [&](int64_t) {
    char name[16] = {};
    pthread_getname_np(pthread_self(), name, sizeof(name));
    seen.set_value(name);
    return std::optional<std::chrono::milliseconds>(std::chrono::hours(1));
  });
  task.start();
  auto name = seen.get_future();
  REQUIRE(name.wait_for(10s) == std::future_status::ready);
  CHECK(name.get() == "outbox.relay.of");
}
