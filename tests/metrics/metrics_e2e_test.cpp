// GET /metrics of a running ecomd (--role=all) on each bus: promtool accepts the exposition, and
// after N orders, some of them declined, the counters say what happened.

#include <sys/wait.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "support/test_support.hpp"

using ecom::test::Ecomd;
using ecom::test::TempDir;

namespace {

std::string g_bus = "embedded";

std::vector<std::string> args(const std::string& config) {
  std::vector<std::string> a{"--role=all", "--config=" + config};
  if (g_bus == "kafka") a.push_back("--bus=kafka");
  return a;
}

std::string write_config(const TempDir& dir) {
  std::string path = dir.file("ecomd.json");
  std::ofstream(path) << R"({"inventory":{"admin_token":"t","seed":[)"
                      << R"({"sku":"SKU-A","name":"Plenty","available":1000,"unitAmount":1000}]})"
                      << (g_bus == "kafka" ? ecom::test::kafka_config_section() : "") << "}";
  return path;
}

std::string place(const Ecomd& e, const std::string& token) {
  auto r = e.post("/api/orders", R"({"customerId":"c-1","currency":"USD","items":[)"
                                 R"({"sku":"SKU-A","quantity":1}],"paymentToken":")" +
                                     token + R"("})");
  REQUIRE(r.status == 202);
  auto at = r.body.find("\"orderId\":\"");
  REQUIRE(at != std::string::npos);
  at += 11;
  return r.body.substr(at, r.body.find('"', at) - at);
}

bool terminal(const Ecomd& e, const std::string& id) {
  const std::string body = e.get("/api/orders/" + id).body;
  return body.find(R"("status":"CONFIRMED")") != std::string::npos ||
         body.find(R"("status":"CANCELLED")") != std::string::npos;
}

// One sample of the exposition: name, labels as written ({a="x",b="y"}), value.
struct Sample {
  std::string name;
  std::string labels;
  double value = 0;
};

std::vector<Sample> samples(const std::string& text) {
  std::vector<Sample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    const size_t brace = line.find('{');
    const size_t space = line.rfind(' ');
    if (space == std::string::npos) continue;
    if (brace != std::string::npos && brace < space) {
      s.name = line.substr(0, brace);
      s.labels = line.substr(brace, line.rfind('}') - brace + 1);
    } else {
      s.name = line.substr(0, space);
    }
    s.value = std::strtod(line.c_str() + space + 1, nullptr);
    out.push_back(std::move(s));
  }
  return out;
}

// The sum of `name` over the series whose labels contain every one of `with` (`k="v"`), and
// how many series there were.
struct Sum {
  double value = 0;
  int series = 0;
};
Sum sum(const std::string& text, const std::string& name, std::vector<std::string> with = {}) {
  Sum total;
  for (const auto& s : samples(text)) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& w : with) match = match && s.labels.find(w) != std::string::npos;
    if (!match) continue;
    total.value += s.value;
    ++total.series;
  }
  return total;
}

std::string metrics_of(const Ecomd& e) {
  auto r = e.get("/metrics");
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type") == "text/plain; version=0.0.4; charset=utf-8");
  return r.body;
}

// promtool (Debian package prometheus, installed by scripts/install-deps.sh --test) on `text`:
// its exit code and what it said.
std::pair<int, std::string> promtool_check(const TempDir& dir, const std::string& text) {
  const std::string in = dir.file("metrics.txt");
  const std::string out = dir.file("promtool.out");
  std::ofstream(in) << text;
  const std::string cmd = "promtool check metrics < " + in + " > " + out + " 2>&1";
  int rc = std::system(cmd.c_str());
  std::ifstream f(out);
  std::stringstream said;
  said << f.rdbuf();
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, said.str()};
}

void drive(const Ecomd& e, int n, int decline_every, std::vector<std::string>& ids) {
  for (int i = 0; i < n; ++i)
    ids.push_back(place(e, i % decline_every == 0 ? "tok_decline" : "tok_visa"));
  for (const auto& id : ids) {
    INFO("order " << id);
    REQUIRE(ecom::test::eventually([&] { return terminal(e, id); }, std::chrono::seconds(60)));
  }
}

void check_promtool() {
  REQUIRE(std::system("command -v promtool > /dev/null") == 0);  // scripts/install-deps.sh --test
  TempDir dir;
  Ecomd e(dir.path(), args(write_config(dir)));
  std::vector<std::string> ids;
  drive(e, 3, 3, ids);  // every family with labels has series: routes, topics, outcomes
  e.get("/api/orders/no-such-order");
  const std::string text = metrics_of(e);
  auto [rc, said] = promtool_check(dir, text);
  INFO(text);
  INFO("promtool: " << said);
  CHECK(rc == 0);
  CHECK(said.empty());
  // Every name ours, every family documented.
  for (const auto& s : samples(text)) CHECK(s.name.rfind("ecomd_", 0) == 0);
}

void check_counters_agree() {
  constexpr int kOrders = 24;
  constexpr int kDeclineEvery = 4;  // orders 0, 4, 8, ...: 6 declined
  constexpr int kDeclined = (kOrders + kDeclineEvery - 1) / kDeclineEvery;
  TempDir dir;
  Ecomd e(dir.path(), args(write_config(dir)));
  std::vector<std::string> ids;
  drive(e, kOrders, kDeclineEvery, ids);

  std::string text;
  // The consumers commit after handling and the lag is refreshed per pass (Kafka: each second):
  // wait for every partition held to be caught up and every outbox drained.
  const bool settled = ecom::test::eventually(
      [&] {
        text = metrics_of(e);
        auto lag = sum(text, "ecomd_bus_consumer_lag_records");
        return lag.series > 0 && lag.value == 0 && sum(text, "ecomd_outbox_rows").value == 0 &&
               sum(text, "ecomd_orders_terminal_total").value == kOrders;
      },
      std::chrono::seconds(30));
  INFO(text);
  CHECK(settled);
  CHECK(sum(text, "ecomd_orders_created_total").value == kOrders);
  CHECK(sum(text, "ecomd_orders_terminal_total", {R"(status="CONFIRMED")"}).value ==
        kOrders - kDeclined);
  CHECK(sum(text, "ecomd_orders_terminal_total", {R"(status="CANCELLED")"}).value == kDeclined);
  CHECK(sum(text, "ecomd_orders_terminal_total", {R"(reason="PAYMENT_DECLINED")"}).value ==
        kDeclined);
  CHECK(sum(text, "ecomd_payments_total", {R"(status="authorized")"}).value == kOrders - kDeclined);
  CHECK(sum(text, "ecomd_payments_total", {R"(status="declined")"}).value == kDeclined);
  CHECK(sum(text, "ecomd_bus_dead_letters_total").value == 0);
  CHECK(sum(text, "ecomd_bus_handler_outcomes_total", {R"(status="dead_letter")"}).value == 0);
  CHECK(sum(text, "ecomd_bus_consumer_lag_records").value == 0);
  // Every order was consumed by the saga from orders.created, and acknowledged.
  CHECK(sum(text, "ecomd_bus_consumed_records_total", {"orders.created\""}).value >= kOrders);
  CHECK(sum(text, "ecomd_bus_handler_outcomes_total", {"orders.created\"", R"(status="ack")"})
            .value >= kOrders);
  CHECK(sum(text, "ecomd_bus_batch_records_count").value > 0);
  CHECK(sum(text, "ecomd_bus_published_records_total", {R"(role="order")"}).value >= kOrders);
  CHECK(sum(text, "ecomd_bus_publish_duration_seconds_count", {R"(role="order")"}).value > 0);
  CHECK(sum(text, "ecomd_outbox_relay_errors_total").value == 0);
  CHECK(sum(text, "ecomd_http_requests_total", {R"(route="POST /api/orders")", R"(status="202")"})
            .value == kOrders);
  CHECK(sum(text, "ecomd_http_request_duration_seconds_count", {R"(route="POST /api/orders")"})
            .value == kOrders);
  // This scrape is in flight while the exposition is made.
  CHECK(sum(text, "ecomd_http_requests_in_flight").value >= 1);
  CHECK(sum(text, "ecomd_notifications_total", {R"(status="sent")"}).value > 0);
  CHECK(sum(text, "ecomd_process_resident_memory_bytes").value > 0);
  CHECK(sum(text, "ecomd_process_open_fds").value > 0);
}

}  // namespace

// Each check runs on both buses, as separate test cases; the Kafka one is tagged [kafka].
#define ON_BOTH_BUSES(fn, name)                             \
  TEST_CASE(name " (embedded bus)", "[e2e][metrics]") {     \
    g_bus = "embedded";                                     \
    fn();                                                   \
  }                                                         \
  TEST_CASE(name " (kafka bus)", "[e2e][metrics][kafka]") { \
    g_bus = "kafka";                                        \
    fn();                                                   \
  }

ON_BOTH_BUSES(check_promtool, "promtool accepts GET /metrics")
ON_BOTH_BUSES(check_counters_agree, "after N orders with declines the counters agree")
