#include "ecom/order/order_module.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <future>
#include <mutex>
#include <thread>

#include "ecom/bus/embedded_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "ecom/http/router.hpp"
#include "support/test_support.hpp"

using namespace ecom;

namespace {

// The order module hosted the way main hosts it, with a real store and embedded bus.
struct Harness {
  test::TempDir dir;
  Settings settings;
  std::unique_ptr<bus::EventBus> bus;
  std::unique_ptr<db::Database> db;
  std::unique_ptr<bus::OutboxRelay> relay;
  http::Router router;
  std::unique_ptr<ModuleContext> ctx;
  order::OrderModule module;

  // Events seen on orders.created / orders.cancellations.
  std::mutex mu;
  std::vector<Envelope> seen;
  std::unique_ptr<bus::Subscription> watcher;

  Harness() {
    settings.document = std::make_shared<rapidjson::Document>();
    settings.document->SetObject();
    bus::EmbeddedBusOptions bo;
    bo.path = dir.file("bus.db");
    bus = std::move(bus::make_embedded_bus(bo)).value();
    db = std::move(db::Database::open(dir.file("order.db"))).value();
    REQUIRE(db::migrate_messaging(*db).ok());
    relay = std::make_unique<bus::OutboxRelay>(*db, *bus);
    ctx.reset(new ModuleContext{*bus, *relay, router, *db, settings.section("order"), settings});
    REQUIRE(module.start(*ctx).ok());
    relay->start();
    bus::SubscriptionOptions so;
    so.group = "test-watcher";
    so.topics = {std::string(topics::kOrdersCreated), std::string(topics::kOrdersCancellations)};
    watcher = std::move(bus->subscribe(so, [this](const bus::Message& m) {
                std::lock_guard lock(mu);
                seen.push_back(m.envelope);
                return bus::Outcome::ack();
              })).value();
  }
  ~Harness() {
    watcher->close();
    module.stop();
    relay->stop();
  }

  http::Response call(http::Method method, std::string target, std::string body = {},
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
    http::Request req;
    req.method = method;
    req.target = target;
    auto q = target.find('?');
    req.path = target.substr(0, q);
    req.query = q == std::string::npos ? "" : target.substr(q + 1);
    req.body = std::move(body);
    req.headers = std::move(headers);
    if (!req.body.empty()) req.headers.emplace_back("content-type", "application/json");
    auto m = router.match(req);
    if (m.kind != http::Match::Kind::kAsync) return m.response;
    // Long-poll routes answer through a responder; wait for it like the server would.
    auto done = std::make_shared<std::promise<http::Response>>();
    auto answer = done->get_future();
    (*m.async)(req, [done](http::Response r) { done->set_value(std::move(r)); });
    return answer.get();
  }

  size_t count_seen(std::string_view type) {
    std::lock_guard lock(mu);
    return static_cast<size_t>(
        std::count_if(seen.begin(), seen.end(), [&](const Envelope& e) { return e.type == type; }));
  }

  void publish_status(const std::string& order_id, const std::string& status,
                      const std::string& reason = "", const std::string& id = "") {
    std::string data = R"({"orderId":")" + order_id + R"(","status":")" + status + "\"" +
                       (reason.empty() ? "" : R"(,"reason":")" + reason + "\"") + "}";
    auto e = make_event("saga", event_types::kOrderStatusChanged, order_id, data);
    if (!id.empty()) e.id = id;
    REQUIRE(bus->publish(topics::kOrdersStatus, e).ok());
  }
};

rapidjson::Document parse(const std::string& s) {
  rapidjson::Document d;
  d.Parse(s.c_str());
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

const std::string kBody =
    R"({"customerId":"c-42","currency":"USD","items":[{"sku":"SKU-1","quantity":2,"unitAmount":1250}],"paymentToken":"tok_visa"})";

std::string header(const http::Response& r, std::string_view name) {
  for (const auto& [k, v] : r.headers)
    if (k == name) return v;
  return {};
}

std::string status_of(Harness& h, const std::string& id) {
  auto r = h.call(http::Method::kGet, "/api/orders/" + id);
  return parse(r.body)["status"].GetString();
}

}  // namespace

TEST_CASE("POST /api/orders stores the order and emits OrderCreated", "[order]") {
  Harness h;
  auto r = h.call(http::Method::kPost, "/api/orders", kBody);
  REQUIRE(r.status == 202);
  auto body = parse(r.body);
  std::string id = body["orderId"].GetString();
  CHECK(std::string(body["status"].GetString()) == "PENDING");
  CHECK(header(r, "Location") == "/api/orders/" + id);

  auto got = h.call(http::Method::kGet, "/api/orders/" + id);
  REQUIRE(got.status == 200);
  auto order = parse(got.body);
  CHECK(std::string(order["status"].GetString()) == "PENDING");
  CHECK(order["totalAmount"].GetInt64() == 2500);
  CHECK(std::string(order["customerId"].GetString()) == "c-42");
  CHECK(order["items"].Size() == 1);
  CHECK(order["history"].Size() == 1);
  CHECK(std::string(order["correlationId"].GetString()) == body["correlationId"].GetString());

  REQUIRE(test::eventually([&] { return h.count_seen(event_types::kOrderCreated) == 1; }));
  std::lock_guard lock(h.mu);
  auto data = parse(h.seen[0].data);
  CHECK(h.seen[0].subject == id);
  CHECK(std::string(data["orderId"].GetString()) == id);
  CHECK(data["totalAmount"].GetInt64() == 2500);
  CHECK(std::string(data["paymentToken"].GetString()) == "tok_visa");
}

TEST_CASE("invalid orders are rejected and nothing is stored", "[order]") {
  Harness h;
  auto r = h.call(
      http::Method::kPost, "/api/orders",
      R"({"customerId":"c","currency":"USD","items":[{"sku":"S","quantity":0,"unitAmount":1}]})");
  REQUIRE(r.status == 400);
  auto err = parse(r.body);
  CHECK(std::string(err["error"]["code"].GetString()) == "VALIDATION_FAILED");
  CHECK(std::string(err["error"]["field"].GetString()) == "items[0].quantity");
  CHECK(std::string(err["error"]["message"].GetString()) ==
        "items[0].quantity must be a positive integer");
  auto bad_json = h.call(http::Method::kPost, "/api/orders", "{nope");
  CHECK(bad_json.status == 400);
  auto list = parse(h.call(http::Method::kGet, "/api/orders").body);
  CHECK(list["orders"].Size() == 0);
}

TEST_CASE("Idempotency-Key: same body replays, different body conflicts", "[order]") {
  Harness h;
  std::vector<std::pair<std::string, std::string>> key{{"idempotency-key", "key-1"}};
  auto first = h.call(http::Method::kPost, "/api/orders", kBody, key);
  REQUIRE(first.status == 202);
  // Same request, different formatting: still the same request.
  std::string reformatted =
      R"({ "paymentToken":"tok_visa", "items":[{"unitAmount":1250,"quantity":2,"sku":"SKU-1"}], "currency":"USD", "customerId":"c-42" })";
  auto second = h.call(http::Method::kPost, "/api/orders", reformatted, key);
  REQUIRE(second.status == 202);
  CHECK(parse(second.body)["orderId"] == parse(first.body)["orderId"]);
  CHECK(header(second, "Location") == header(first, "Location"));

  auto different = h.call(
      http::Method::kPost, "/api/orders",
      R"({"customerId":"c-42","currency":"USD","items":[{"sku":"SKU-1","quantity":3,"unitAmount":1250}]})",
      key);
  CHECK(different.status == 409);
  CHECK(std::string(parse(different.body)["error"]["code"].GetString()) == "IDEMPOTENCY_CONFLICT");

  auto other_key =
      h.call(http::Method::kPost, "/api/orders", kBody, {{"idempotency-key", "key-2"}});
  CHECK(other_key.status == 202);
  CHECK(parse(other_key.body)["orderId"] != parse(first.body)["orderId"]);

  REQUIRE(test::eventually([&] { return h.count_seen(event_types::kOrderCreated) == 2; }));
  auto list = parse(h.call(http::Method::kGet, "/api/orders?customerId=c-42").body);
  CHECK(list["orders"].Size() == 2);
}

TEST_CASE("GET unknown order is 404 in the error shape", "[order]") {
  Harness h;
  auto r = h.call(http::Method::kGet, "/api/orders/nope");
  CHECK(r.status == 404);
  CHECK(std::string(parse(r.body)["error"]["code"].GetString()) == "NOT_FOUND");
  CHECK(h.call(http::Method::kPost, "/api/orders/nope/cancel").status == 404);
}

TEST_CASE("listing is per customer, newest first, limited", "[order]") {
  Harness h;
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    auto r = h.call(http::Method::kPost, "/api/orders", kBody);
    ids.push_back(parse(r.body)["orderId"].GetString());
  }
  h.call(
      http::Method::kPost, "/api/orders",
      R"({"customerId":"other","currency":"USD","items":[{"sku":"A","quantity":1,"unitAmount":1}]})");
  auto list = parse(h.call(http::Method::kGet, "/api/orders?customerId=c-42&limit=3").body);
  REQUIRE(list["orders"].Size() == 3);
  CHECK(list["orders"][0]["orderId"].GetString() == ids[4]);
  CHECK(list["orders"][2]["orderId"].GetString() == ids[2]);
  CHECK(h.call(http::Method::kGet, "/api/orders?limit=0").status == 400);
  CHECK(h.call(http::Method::kGet, "/api/orders?limit=abc").status == 400);
  CHECK(parse(h.call(http::Method::kGet, "/api/orders").body)["orders"].Size() == 6);
}

TEST_CASE("status changes apply forward only and once", "[order]") {
  Harness h;
  std::string id =
      parse(h.call(http::Method::kPost, "/api/orders", kBody).body)["orderId"].GetString();
  h.publish_status(id, "STOCK_RESERVED", "", "evt-1");
  h.publish_status(id, "STOCK_RESERVED", "", "evt-1");  // redelivery of the same event
  REQUIRE(test::eventually([&] { return status_of(h, id) == "STOCK_RESERVED"; }));
  h.publish_status(id, "PENDING");  // backwards: ignored
  h.publish_status(id, "CANCELLED", "PAYMENT_DECLINED");
  REQUIRE(test::eventually([&] { return status_of(h, id) == "CANCELLED"; }));
  h.publish_status(id, "CONFIRMED");  // terminal never moves
  h.publish_status(id, "PAYMENT_AUTHORIZED");
  // Give the consumer time to (not) apply the last two.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto order = parse(h.call(http::Method::kGet, "/api/orders/" + id).body);
  CHECK(std::string(order["status"].GetString()) == "CANCELLED");
  CHECK(std::string(order["reason"].GetString()) == "PAYMENT_DECLINED");
  REQUIRE(order["history"].Size() == 3);
  CHECK(std::string(order["history"][1]["status"].GetString()) == "STOCK_RESERVED");
  CHECK(std::string(order["history"][2]["reason"].GetString()) == "PAYMENT_DECLINED");
}

TEST_CASE("cancel emits one request, a terminal order answers 409", "[order]") {
  Harness h;
  std::string id =
      parse(h.call(http::Method::kPost, "/api/orders", kBody).body)["orderId"].GetString();
  auto c1 = h.call(http::Method::kPost, "/api/orders/" + id + "/cancel");
  CHECK(c1.status == 202);
  auto c2 = h.call(http::Method::kPost, "/api/orders/" + id + "/cancel");
  CHECK(c2.status == 202);
  REQUIRE(test::eventually(
      [&] { return h.count_seen(event_types::kOrderCancellationRequested) == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(h.count_seen(event_types::kOrderCancellationRequested) == 1);

  std::string confirmed =
      parse(h.call(http::Method::kPost, "/api/orders", kBody).body)["orderId"].GetString();
  h.publish_status(confirmed, "CONFIRMED");
  REQUIRE(test::eventually([&] { return status_of(h, confirmed) == "CONFIRMED"; }));
  auto late = h.call(http::Method::kPost, "/api/orders/" + confirmed + "/cancel");
  CHECK(late.status == 409);
  CHECK(std::string(parse(late.body)["error"]["code"].GetString()) == "CONFLICT");
}

TEST_CASE("long-poll answers when the order turns terminal, and at the end of the wait",
          "[order]") {
  Harness h;
  std::string id =
      parse(h.call(http::Method::kPost, "/api/orders", kBody).body)["orderId"].GetString();
  auto waiting = std::async(std::launch::async, [&] {
    return h.call(http::Method::kGet, "/api/orders/" + id + "?wait=20s");
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(waiting.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);
  h.publish_status(id, "CONFIRMED");
  REQUIRE(waiting.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  auto r = waiting.get();
  CHECK(r.status == 200);
  CHECK(std::string(parse(r.body)["status"].GetString()) == "CONFIRMED");

  std::string other =
      parse(h.call(http::Method::kPost, "/api/orders", kBody).body)["orderId"].GetString();
  auto start = std::chrono::steady_clock::now();
  auto expired = h.call(http::Method::kGet, "/api/orders/" + other + "?wait=300ms");
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(250));
  CHECK(std::string(parse(expired.body)["status"].GetString()) == "PENDING");
  CHECK(h.call(http::Method::kGet, "/api/orders/" + other + "?wait=61s").status == 400);
}
