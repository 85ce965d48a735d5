#include "http_metrics.hpp"

#include <string>

namespace ecom::http {

HttpMetrics::HttpMetrics(metrics::Registry& registry)
    : registry_(registry),
      in_flight_(registry.gauge("ecomd_http_requests_in_flight",
                                "HTTP requests read and not yet answered.")) {}

HttpMetrics::Route& HttpMetrics::route(std::string_view name) {
  auto it = routes_.find(name);
  if (it != routes_.end()) return it->second;
  Route r;
  r.latency = registry_.histogram("ecomd_http_request_duration_seconds",
                                  "Time from a request read to its answer written, by route.",
                                  metrics::kLatencyBuckets, {{"route", name}});
  return routes_.emplace(std::string(name), std::move(r)).first->second;
}

HttpMetrics::InFlight HttpMetrics::open_stream(std::string_view name) {
  std::lock_guard lock(mu_);
  Route& r = route(name);
  if (!r.streams) {
    r.streams = registry_.gauge("ecomd_http_open_streams",
                                "Open Server-Sent Events streams and WebSockets, by route.",
                                {{"route", name}});
  }
  return InFlight(r.streams);
}

void HttpMetrics::answered(std::string_view name, int status,
                           std::chrono::steady_clock::duration elapsed) {
  metrics::Counter requests;
  metrics::Histogram latency;
  {
    std::lock_guard lock(mu_);
    Route& r = route(name);
    auto it = r.by_status.find(status);
    if (it == r.by_status.end()) {
      const std::string code = std::to_string(status);
      it = r.by_status
               .emplace(status, registry_.counter("ecomd_http_requests_total",
                                                  "HTTP requests answered, by route and status.",
                                                  {{"route", name}, {"status", code}}))
               .first;
    }
    requests = it->second;
    latency = r.latency;
  }
  requests.inc();
  latency.observe(std::chrono::duration<double>(elapsed).count());
}

}  // namespace ecom::http
