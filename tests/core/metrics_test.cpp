// The metrics interface (ecom/core/metrics.hpp) on a registry of its own: what it renders, that a
// name and label set is one series, hooks, and that a bad name is a no-op handle, not a throw.

#include "ecom/core/metrics.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

using ecom::metrics::Registry;

namespace {
bool has_line(const std::string& text, const std::string& line) {
  return text.find("\n" + line + "\n") != std::string::npos || text.rfind(line + "\n", 0) == 0;
}
}  // namespace

TEST_CASE("metrics render counters, gauges and histograms in the text format", "[metrics]") {
  Registry r;
  auto c = r.counter("t_requests_total", "Requests.", {{"route", "GET /x"}, {"status", "200"}});
  c.inc();
  c.inc(2);
  auto g = r.gauge("t_in_flight", "In flight.");
  g.set(5);
  g.dec();
  const double buckets[] = {0.1, 1};
  auto h = r.histogram("t_seconds", "Latency.", buckets, {{"group", "g"}});
  h.observe(0.05);
  h.observe(0.5);
  h.observe(7);
  const std::string text = r.text();
  INFO(text);
  CHECK(has_line(text, "# HELP t_requests_total Requests."));
  CHECK(has_line(text, "# TYPE t_requests_total counter"));
  CHECK(has_line(text, R"(t_requests_total{route="GET /x",status="200"} 3)"));
  CHECK(has_line(text, "# TYPE t_in_flight gauge"));
  CHECK(has_line(text, "t_in_flight 4"));
  CHECK(has_line(text, R"(t_seconds_bucket{group="g",le="0.1"} 1)"));
  CHECK(has_line(text, R"(t_seconds_bucket{group="g",le="1"} 2)"));
  CHECK(has_line(text, R"(t_seconds_bucket{group="g",le="+Inf"} 3)"));
  CHECK(has_line(text, R"(t_seconds_count{group="g"} 3)"));
}

TEST_CASE("the same name and labels resolve to one series", "[metrics]") {
  Registry r;
  auto a = r.counter("t_total", "T.", {{"topic", "x"}});
  auto b = r.counter("t_total", "T.", {{"topic", "x"}});
  auto other = r.counter("t_total", "T.", {{"topic", "y"}});
  a.inc();
  b.inc();
  CHECK(a.value() == 2);
  CHECK(other.value() == 0);
}

TEST_CASE("a name reused with another type or an invalid name gives a no-op handle", "[metrics]") {
  Registry r;
  auto c = r.counter("t_dual", "Counter.");
  auto g = r.gauge("t_dual", "Now a gauge.");
  CHECK(c);
  CHECK_FALSE(g);
  g.set(3);  // does nothing, does not crash
  CHECK(g.value() == 0);
  auto bad = r.counter("bad name", "Spaces are not allowed.");
  CHECK_FALSE(bad);
  bad.inc();
  CHECK(r.text().find("Now a gauge") == std::string::npos);
}

TEST_CASE("collect hooks run on each exposition until their handle is gone", "[metrics]") {
  Registry r;
  auto g = r.gauge("t_depth", "Depth.");
  int runs = 0;
  {
    auto hook = r.on_collect([&] { g.set(++runs); });
    CHECK(r.text().find("t_depth 1") != std::string::npos);
    CHECK(r.text().find("t_depth 2") != std::string::npos);
  }
  r.text();
  CHECK(runs == 2);
}

TEST_CASE("counts from many threads are all kept", "[metrics]") {
  Registry r;
  auto c = r.counter("t_parallel_total", "Parallel.");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([c] {
      for (int i = 0; i < 10'000; ++i) c.inc();
    });
  for (auto& t : threads) t.join();
  CHECK(c.value() == 40'000);
}

TEST_CASE("the process registry reports CPU, memory and descriptors", "[metrics]") {
  const std::string text = ecom::metrics::registry().text();
  INFO(text);
  CHECK(text.find("# TYPE ecomd_process_cpu_seconds_total counter") != std::string::npos);
  CHECK(text.find("\necomd_process_resident_memory_bytes ") != std::string::npos);
  CHECK(text.find("\necomd_process_open_fds ") != std::string::npos);
  CHECK(text.find("\necomd_process_resident_memory_bytes 0\n") == std::string::npos);
}
