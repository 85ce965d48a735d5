#pragma once
// The server's metrics: requests by route template and status, their latency, what is in
// flight, open streams. Private to src/http; kept out of server.cpp, which compiles slowly.

#include <chrono>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "ecom/core/metrics.hpp"

namespace ecom::http {

class HttpMetrics {
 public:
  explicit HttpMetrics(metrics::Registry& registry = metrics::registry());

  /// Counts a request in flight, or a stream open, while it lives.
  class InFlight {
   public:
    explicit InFlight(const metrics::Gauge& g) : g_(g) { g_.inc(); }
    ~InFlight() { g_.dec(); }
    InFlight(const InFlight&) = delete;
    InFlight& operator=(const InFlight&) = delete;

   private:
    const metrics::Gauge& g_;
  };
  /// Requests in flight: `std::optional<InFlight>::emplace(in_flight())` counts one.
  const metrics::Gauge& in_flight() const noexcept { return in_flight_; }
  /// A stream or WebSocket of `route` is open until the returned guard is gone.
  InFlight open_stream(std::string_view route);

  /// A request of `route` was answered with `status` after `elapsed` (from the end of reading it
  /// to the end of writing the answer; a stream's or WebSocket's when it opened).
  void answered(std::string_view route, int status, std::chrono::steady_clock::duration elapsed);

 private:
  struct Route {
    metrics::Histogram latency;
    metrics::Gauge streams;
    std::map<int, metrics::Counter> by_status;
  };
  Route& route(std::string_view name);  // under mu_

  metrics::Registry& registry_;
  metrics::Gauge in_flight_;
  std::mutex mu_;
  // One entry per route template (bounded by the router) and status seen; series are resolved
  // once, then each request costs a lookup of a few string compares under mu_.
  std::map<std::string, Route, std::less<>> routes_;
};

}  // namespace ecom::http
