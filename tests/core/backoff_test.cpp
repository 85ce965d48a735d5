#include "ecom/core/backoff.hpp"

#include <catch2/catch.hpp>
#include <chrono>

using ecom::Backoff;
using std::chrono::milliseconds;

TEST_CASE("backoff doubles from its base after each failure and stops at the cap",
          "[core][backoff]") {
  constexpr Backoff b{milliseconds(100), milliseconds(1'000)};
  CHECK(b.after(1) == milliseconds(100));
  CHECK(b.after(2) == milliseconds(200));
  CHECK(b.after(3) == milliseconds(400));
  CHECK(b.after(4) == milliseconds(800));
  CHECK(b.after(5) == milliseconds(1'000));
  CHECK(b.after(6) == milliseconds(1'000));
  static_assert(Backoff{milliseconds(10), milliseconds(500)}.after(3) == milliseconds(40));
}

TEST_CASE("backoff counts fewer than one failure as one", "[core][backoff]") {
  constexpr Backoff b{milliseconds(100), milliseconds(1'000)};
  CHECK(b.after(0) == milliseconds(100));
  CHECK(b.after(-3) == milliseconds(100));
}

TEST_CASE("backoff never overflows however many failures", "[core][backoff]") {
  constexpr Backoff b{milliseconds(1), milliseconds(600'000)};
  CHECK(b.after(1'000'000) == milliseconds(600'000));
  constexpr Backoff huge{milliseconds(1), milliseconds::max()};
  CHECK(huge.after(62) == milliseconds(int64_t{1} << 61));
}

TEST_CASE("backoff with a cap below its base waits the cap, and a zero base never waits",
          "[core][backoff]") {
  CHECK(Backoff{milliseconds(500), milliseconds(200)}.after(1) == milliseconds(200));
  CHECK(Backoff{milliseconds(500), milliseconds(200)}.after(4) == milliseconds(200));
  CHECK(Backoff{milliseconds(0), milliseconds(10'000)}.after(7) == milliseconds(0));
}
