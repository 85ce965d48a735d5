// The real ecomd binary over the real broker (--bus=kafka): all roles in one process, and roles
// split over two processes that only meet through Kafka. Each test uses its own topic and group
// prefix (kafka.topic_prefix / kafka.group_prefix), so runs never see each other's events.

#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "kafka_test_support.hpp"
#include "support/json_fields.hpp"
#include "support/test_support.hpp"

using ecom::test::Ecomd;
using ecom::test::eventually;
using ecom::test::parse;
using ecom::test::str;
using ecom::test::TempDir;
using namespace ecom::test::kafka;

namespace {

// A config with a fresh topic/group prefix and a small catalogue.
std::string write_config(const TempDir& dir, const std::string& prefix) {
  std::string path = dir.file("ecomd.json");
  std::ofstream(path) << R"({"kafka": {"topic_prefix": ")" << prefix << R"(.", "group_prefix": ")"
                      << prefix << R"(-", "commit_interval_ms": 100},
    "inventory": {"admin_token": "t", "seed": [
      {"sku":"SKU-A","name":"Plenty","available":100,"unitAmount":1000}]}})";
  return path;
}

std::vector<std::string> kafka_args(const std::string& role, const std::string& config) {
  return {"--role=" + role, "--bus=kafka", "--brokers=" + brokers(), "--config=" + config};
}

std::string order_body(const std::string& token) {
  return R"({"customerId":"c-1","currency":"USD","items":[{"sku":"SKU-A","quantity":2,)"
         R"("unitAmount":1000}],"paymentToken":")" +
         token + R"("})";
}

std::string place(const Ecomd& e, const std::string& token) {
  auto r = e.post("/api/orders", order_body(token));
  INFO(r.body);
  REQUIRE(r.status == 202);
  return str(parse(r.body), "orderId");
}

std::string wait_terminal(const Ecomd& e, const std::string& id) {
  std::string status, body;
  bool done = eventually(
      [&] {
        body = e.get("/api/orders/" + id).body;
        status = str(parse(body), "status");
        return status == "CONFIRMED" || status == "CANCELLED";
      },
      std::chrono::seconds(90));
  INFO("order " << id << ": " << body << " (log: " << e.log_path() << ")");
  REQUIRE(done);
  return status;
}

}  // namespace

TEST_CASE("kafka e2e: all roles in one process over the real broker", "[kafka][e2e]") {
  TempDir dir;
  std::string prefix = unique_name("e2e-all");
  Ecomd e(dir.path(), kafka_args("all", write_config(dir, prefix)), 0, std::chrono::seconds(60));
  // Ready only once the producer has metadata and every module's consumer joined its group.
  REQUIRE(eventually([&] { return e.get("/readyz").status == 200; }, std::chrono::seconds(90)));

  std::string confirmed = place(e, "tok_visa");
  std::string declined = place(e, "tok_decline");
  CHECK(wait_terminal(e, confirmed) == "CONFIRMED");
  CHECK(wait_terminal(e, declined) == "CANCELLED");
  CHECK(str(parse(e.get("/api/orders/" + declined).body), "reason") == "PAYMENT_DECLINED");

  // What kcat would show: records keyed by order id, valid envelopes, ce_type headers.
  auto records = read_topic(brokers(), prefix + ".orders.created", 2);
  REQUIRE(records.size() == 2);
  for (const auto& r : records) {
    REQUIRE(r.key.has_value());
    CHECK((*r.key == confirmed || *r.key == declined));
    auto env = ecom::decode_envelope(r.value);
    REQUIRE(env.ok());
    CHECK(env->subject == *r.key);
    CHECK(r.header("ce_type") == "ecom.order.created.v1");
    CHECK(r.header("ce_id") == env->id);
  }
  CHECK(e.terminate() == 0);
}

TEST_CASE("kafka e2e: roles in separate processes meet only through Kafka", "[kafka][e2e]") {
  TempDir order_dir, rest_dir;
  std::string prefix = unique_name("e2e-split");
  std::string config = write_config(order_dir, prefix);
  Ecomd order(order_dir.path(), kafka_args("order", config), 0, std::chrono::seconds(60));
  Ecomd rest(rest_dir.path(), kafka_args("inventory,payment,saga", config), 0,
             std::chrono::seconds(60));
  REQUIRE(eventually([&] { return order.get("/readyz").status == 200; }, std::chrono::seconds(90)));
  REQUIRE(eventually([&] { return rest.get("/readyz").status == 200; }, std::chrono::seconds(90)));

  // The order process publishes OrderCreated; the saga in the other process drives stock and
  // payment and sends the status back over orders.status.
  std::string id = place(order, "tok_visa");
  CHECK(wait_terminal(order, id) == "CONFIRMED");
  CHECK(order.get("/api/inventory/SKU-A").status == 404);  // not hosted here
  bool sold = eventually(
      [&] {
        auto d = parse(rest.get("/api/inventory/SKU-A").body);
        return d.IsObject() && d.HasMember("sold") && d["sold"].GetInt64() == 2;
      },
      std::chrono::seconds(30));
  CHECK(sold);
  CHECK(order.terminate() == 0);
  CHECK(rest.terminate() == 0);
}
