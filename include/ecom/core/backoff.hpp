#pragma once
/// The one backoff of ecomd's retry loops (bus redelivery, outbox relay, saga re-sends, webhook
/// deliveries): doubling from a base, capped. No jitter: every caller waits on its own partition,
/// store or saga, so there is no herd to spread.

#include <algorithm>
#include <chrono>

namespace ecom {

struct Backoff {
  std::chrono::milliseconds base;  ///< the wait after the first failure
  std::chrono::milliseconds cap;   ///< never more than this (a cap below `base` caps it too)

  /// The wait after `failures` failures in a row: base, 2 base, 4 base, ... at most cap.
  /// Counted from 1; fewer count as 1. Doubling stops at the cap, so it never overflows.
  constexpr std::chrono::milliseconds after(int failures) const noexcept {
    auto d = base;
    for (int i = 1; i < failures && d < cap; ++i) d *= 2;
    return std::min(d, cap);
  }
};

}  // namespace ecom
