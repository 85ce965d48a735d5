#include "ecom/order/order_module.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <thread>
#include <vector>

#include "ecom/bus/embedded_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/base64.hpp"
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
    ctx.reset(new ModuleContext{*bus, *relay, router, *db, settings});
    REQUIRE(module.configure(settings.section("order")).ok());
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
                      const std::string& reason = "", const std::string& id = "",
                      const std::string& extra = "") {
    std::string data = R"({"orderId":")" + order_id + R"(","status":")" + status + "\"" +
                       (reason.empty() ? "" : R"(,"reason":")" + reason + "\"") + extra + "}";
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

// The answer of a POST sent without waiting; counts responder calls (exactly one is allowed).
struct Pending {
  std::mutex mu;
  std::condition_variable cv;
  int calls = 0;
  http::Response response;

  void set(http::Response r) {
    std::lock_guard lock(mu);
    if (++calls == 1) response = std::move(r);
    cv.notify_all();
  }
  bool answered() { return count() > 0; }
  int count() {
    std::lock_guard lock(mu);
    return calls;
  }
  // Waits (generously) for the answer; status 0 when none came.
  http::Response wait() {
    std::unique_lock lock(mu);
    if (!cv.wait_for(lock, std::chrono::seconds(60), [this] { return calls > 0; })) return {0};
    return response;
  }
};

// Starts a POST /api/orders and returns at once, as the server does with an async route.
std::shared_ptr<Pending> post_async(Harness& h, std::string body,
                                    std::vector<std::pair<std::string, std::string>> headers = {}) {
  http::Request req;
  req.method = http::Method::kPost;
  req.target = req.path = "/api/orders";
  req.body = std::move(body);
  req.headers = std::move(headers);
  req.headers.emplace_back("content-type", "application/json");
  auto m = h.router.match(req);
  auto p = std::make_shared<Pending>();
  if (m.kind != http::Match::Kind::kAsync) {
    p->set(m.response);
    return p;
  }
  (*m.async)(req, [p](http::Response r) { p->set(std::move(r)); });
  return p;
}

// Holds the order store's write lock until release(), so POSTs queue up behind it and are then
// stored together.
class StoreHold {
 public:
  explicit StoreHold(db::Database& db) {
    std::promise<void> held;
    auto is_held = held.get_future();
    thread_ = std::thread([&db, &held, this] {
      auto st = db.transaction([&](db::Tx&) -> Status {
        held.set_value();
        release_.get_future().wait();
        return {};
      });
      (void)st;
    });
    is_held.wait();
  }
  ~StoreHold() { release(); }
  void release() {
    if (!thread_.joinable()) return;
    release_.set_value();
    thread_.join();
  }

 private:
  std::promise<void> release_;
  std::thread thread_;
};

int64_t count_rows(Harness& h, const std::string& sql) {
  auto n = h.db->read([&](db::Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt(sql);
    return s.step() ? s.col_int(0) : -1;
  });
  REQUIRE(n.ok());
  return n.value();
}

std::string body_for(const std::string& customer, int quantity = 1) {
  return R"({"customerId":")" + customer +
         R"(","currency":"USD","items":[{"sku":"SKU-1","quantity":)" + std::to_string(quantity) +
         R"(,"unitAmount":100}]})";
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
  // Not priced yet: the catalogue prices it when stock is reserved; the client's 1250 is a quote.
  CHECK_FALSE(order.HasMember("totalAmount"));
  CHECK(std::string(order["customerId"].GetString()) == "c-42");
  CHECK(order["items"].Size() == 1);
  CHECK(order["history"].Size() == 1);
  CHECK(std::string(order["correlationId"].GetString()) == body["correlationId"].GetString());

  REQUIRE(test::eventually([&] { return h.count_seen(event_types::kOrderCreated) == 1; }));
  std::lock_guard lock(h.mu);
  auto data = parse(h.seen[0].data);
  CHECK(h.seen[0].subject == id);
  CHECK(std::string(data["orderId"].GetString()) == id);
  CHECK_FALSE(data.HasMember("totalAmount"));
  CHECK(data["items"][0]["unitAmount"].GetInt64() == 1250);  // the quote, to be checked
  CHECK(std::string(data["paymentToken"].GetString()) == "tok_visa");
}

TEST_CASE("the order takes its total and lines as sold from the STOCK_RESERVED status", "[order]") {
  Harness h;
  std::string id =
      parse(h.call(http::Method::kPost, "/api/orders", kBody).body)["orderId"].GetString();
  // Malformed pricing is a poison pill (dead letter), never a total of the client's.
  h.publish_status(id, "STOCK_RESERVED", "", "evt-bad", R"(,"totalAmount":"free","items":[])");
  h.publish_status(id, "STOCK_RESERVED", "", "evt-1",
                   R"(,"totalAmount":4998,"currency":"USD","items":[{"sku":"SKU-1",)"
                   R"("name":"Wireless Mouse","quantity":2,"unitAmount":2499}])");
  REQUIRE(test::eventually([&] { return status_of(h, id) == "STOCK_RESERVED"; }));
  auto order = parse(h.call(http::Method::kGet, "/api/orders/" + id).body);
  CHECK(order["totalAmount"].GetInt64() == 4998);
  REQUIRE(order["items"].Size() == 1);
  CHECK(std::string(order["items"][0]["name"].GetString()) == "Wireless Mouse");
  CHECK(order["items"][0]["unitAmount"].GetInt64() == 2499);
  CHECK(order["items"][0]["quantity"].GetInt64() == 2);
  // Later statuses carry no pricing and keep it.
  h.publish_status(id, "CONFIRMED");
  REQUIRE(test::eventually([&] { return status_of(h, id) == "CONFIRMED"; }));
  auto list = parse(h.call(http::Method::kGet, "/api/orders?customerId=c-42").body);
  CHECK(list["orders"][0]["totalAmount"].GetInt64() == 4998);
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

TEST_CASE("order ids are UUIDs of version 7 that grow with time", "[order]") {
  Harness h;
  const std::regex v7("[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
  std::string previous;
  for (int i = 0; i < 20; ++i) {
    std::string id =
        parse(h.call(http::Method::kPost, "/api/orders", kBody).body)["orderId"].GetString();
    CHECK(std::regex_match(id, v7));
    CHECK(id > previous);
    previous = id;
  }
  // The leading 48 bits are Unix milliseconds, taken just before the order was stored.
  int64_t ms = std::stoll(previous.substr(0, 8) + previous.substr(9, 4), nullptr, 16);
  int64_t created = count_rows(h, "SELECT created_at FROM orders WHERE id = '" + previous + "'");
  CHECK(ms <= created);
  CHECK(created - ms < 60'000);
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
  CHECK(h.call(http::Method::kGet, "/api/orders?limit=99999999999999999999").status == 400);
  // A cursor whose time does not fit in int64 is refused like any other bad cursor.
  CHECK(h.call(http::Method::kGet,
               "/api/orders?cursor=" + ecom::base64url_encode("v1|99999999999999999999|o-1"))
            .status == 400);
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
  // Integers past int64 (the report: 18446744073709552s wrapped in n * scale) are refused, as
  // is a value that would overflow once scaled.
  for (const char* w :
       {"18446744073709552s", "9223372036854775807s", "99999999999999999999ms", "-1s", "1e3s"}) {
    INFO(w);
    auto r = h.call(http::Method::kGet, "/api/orders/" + other + "?wait=" + w);
    CHECK(r.status == 400);
    CHECK(r.body.find("\"field\":\"wait\"") != std::string::npos);
  }
}

TEST_CASE("concurrent POSTs each store one order and one OrderCreated", "[order][batch]") {
  Harness h;
  constexpr int kThreads = 8;
  constexpr int kEach = 25;
  std::vector<std::vector<http::Response>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&h, &got, t] {
      for (int i = 0; i < kEach; ++i)
        got[t].push_back(h.call(http::Method::kPost, "/api/orders", kBody));
    });
  }
  for (auto& t : threads) t.join();

  std::set<std::string> ids;
  for (const auto& per_thread : got) {
    for (const auto& r : per_thread) {
      REQUIRE(r.status == 202);
      std::string id = parse(r.body)["orderId"].GetString();
      CHECK(header(r, "Location") == "/api/orders/" + id);
      CHECK(header(r, "Idempotent-Replayed").empty());
      ids.insert(id);
    }
  }
  REQUIRE(ids.size() == kThreads * kEach);
  CHECK(count_rows(h, "SELECT COUNT(*) FROM orders") == kThreads * kEach);
  CHECK(count_rows(h, "SELECT COUNT(*) FROM order_history") == kThreads * kEach);
  REQUIRE(test::eventually(
      [&] { return h.count_seen(event_types::kOrderCreated) == kThreads * kEach; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // no extra events trickle in
  std::lock_guard lock(h.mu);
  std::set<std::string> subjects;
  for (const auto& e : h.seen) subjects.insert(e.subject);
  CHECK(h.seen.size() == kThreads * kEach);
  CHECK(subjects == ids);
}

TEST_CASE("one Idempotency-Key from many threads makes one order", "[order][batch]") {
  Harness h;
  std::vector<std::pair<std::string, std::string>> key{{"idempotency-key", "same-key"}};
  constexpr int kThreads = 8;
  constexpr int kEach = 10;
  const std::string other = body_for("c-42", 7);
  std::vector<std::vector<std::pair<bool, http::Response>>> got(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        bool differs = (t + i) % 5 == 4;  // some requests reuse the key with another body
        got[t].emplace_back(
            differs, h.call(http::Method::kPost, "/api/orders", differs ? other : kBody, key));
      }
    });
  }
  for (auto& t : threads) t.join();

  // The first request stored decides the key's body; every other one replays or conflicts.
  REQUIRE(count_rows(h, "SELECT COUNT(*) FROM orders") == 1);
  std::string id = h.db->read([](db::Tx& tx) -> Result<std::string> {
                         auto s = tx.stmt("SELECT id FROM orders");
                         return s.step() ? s.col_text(0) : std::string();
                       })
                       .value();
  bool stored_other =
      count_rows(h, R"(SELECT COUNT(*) FROM orders WHERE items LIKE '%"quantity":7,%')") == 1;
  int fresh = 0;
  for (const auto& per_thread : got) {
    for (const auto& [differs, r] : per_thread) {
      if (differs == stored_other) {
        REQUIRE(r.status == 202);
        CHECK(parse(r.body)["orderId"].GetString() == id);
        CHECK(header(r, "Location") == "/api/orders/" + id);
        if (header(r, "Idempotent-Replayed").empty()) ++fresh;
      } else {
        REQUIRE(r.status == 409);
        CHECK(std::string(parse(r.body)["error"]["code"].GetString()) == "IDEMPOTENCY_CONFLICT");
      }
    }
  }
  CHECK(fresh == 1);
  REQUIRE(test::eventually([&] { return h.count_seen(event_types::kOrderCreated) == 1; }));
}

TEST_CASE("repeated Idempotency-Keys within one group commit behave as if sequential",
          "[order][batch]") {
  Harness h;
  std::vector<std::pair<std::string, std::string>> k1{{"idempotency-key", "k-1"}};
  std::vector<std::pair<std::string, std::string>> k2{{"idempotency-key", "k-2"}};
  std::vector<std::shared_ptr<Pending>> p;
  {
    StoreHold hold(*h.db);
    p.push_back(post_async(h, kBody, k1));
    p.push_back(post_async(h, kBody, k1));                // replay
    p.push_back(post_async(h, body_for("c-42", 3), k1));  // conflict
    p.push_back(post_async(h, body_for("c-7"), k2));      // another key
    p.push_back(post_async(h, body_for("c-7"), k2));      // its replay
    p.push_back(post_async(h, kBody));                    // no key
    for (auto& x : p) CHECK_FALSE(x->answered());         // nothing answered before it is committed
  }
  std::vector<http::Response> r;
  for (auto& x : p) r.push_back(x->wait());
  REQUIRE(r[0].status == 202);
  CHECK(header(r[0], "Idempotent-Replayed").empty());
  REQUIRE(r[1].status == 202);
  CHECK(header(r[1], "Idempotent-Replayed") == "true");
  CHECK(parse(r[1].body)["orderId"] == parse(r[0].body)["orderId"]);
  CHECK(header(r[1], "Location") == header(r[0], "Location"));
  REQUIRE(r[2].status == 409);
  CHECK(std::string(parse(r[2].body)["error"]["code"].GetString()) == "IDEMPOTENCY_CONFLICT");
  REQUIRE(r[3].status == 202);
  REQUIRE(r[4].status == 202);
  CHECK(header(r[4], "Idempotent-Replayed") == "true");
  CHECK(parse(r[4].body)["orderId"] == parse(r[3].body)["orderId"]);
  CHECK(parse(r[3].body)["orderId"] != parse(r[0].body)["orderId"]);
  REQUIRE(r[5].status == 202);
  for (auto& x : p) CHECK(x->count() == 1);
  CHECK(count_rows(h, "SELECT COUNT(*) FROM orders") == 3);
  CHECK(count_rows(h, "SELECT COUNT(*) FROM idempotency_keys") == 2);
  REQUIRE(test::eventually([&] { return h.count_seen(event_types::kOrderCreated) == 3; }));
}

TEST_CASE("an order that fails to store does not undo the others of its commit", "[order][batch]") {
  Harness h;
  // The history insert of customer "boom" fails after its order row was written: only that
  // order's savepoint must roll back.
  REQUIRE(h.db->transaction([](db::Tx& tx) -> Status {
                tx.exec(
                    "CREATE TRIGGER test_boom AFTER INSERT ON order_history WHEN "
                    "(SELECT customer_id FROM orders WHERE id = NEW.order_id) = 'boom' "
                    "BEGIN SELECT RAISE(ABORT, 'boom'); END;");
                return {};
              })
              .ok());
  std::vector<std::shared_ptr<Pending>> p;
  {
    StoreHold hold(*h.db);
    for (int i = 0; i < 10; ++i) p.push_back(post_async(h, body_for(i == 4 ? "boom" : "ok")));
  }
  for (int i = 0; i < 10; ++i) {
    auto r = p[static_cast<size_t>(i)]->wait();
    if (i == 4) {
      CHECK(r.status == 500);
      CHECK(std::string(parse(r.body)["error"]["code"].GetString()) == "DB_ERROR");
    } else {
      CHECK(r.status == 202);
    }
  }
  CHECK(count_rows(h, "SELECT COUNT(*) FROM orders WHERE customer_id = 'boom'") == 0);
  CHECK(count_rows(h, "SELECT COUNT(*) FROM orders WHERE customer_id = 'ok'") == 9);
  CHECK(count_rows(h, "SELECT COUNT(*) FROM order_history") == 9);
  REQUIRE(test::eventually([&] { return h.count_seen(event_types::kOrderCreated) == 9; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(h.count_seen(event_types::kOrderCreated) == 9);
}

TEST_CASE("a failed group commit answers every order of it with the error, storing none",
          "[order][batch]") {
  Harness h;
  // An order of customer "fail" violates a deferred foreign key: SQLite refuses the COMMIT of
  // the whole batch, after every unit of it succeeded.
  REQUIRE(h.db->transaction([](db::Tx& tx) -> Status {
                tx.exec(
                    "CREATE TABLE test_parent (id TEXT PRIMARY KEY);"
                    "CREATE TABLE test_child (pid TEXT REFERENCES test_parent(id) "
                    "DEFERRABLE INITIALLY DEFERRED);"
                    "CREATE TRIGGER test_fail AFTER INSERT ON orders WHEN NEW.customer_id = "
                    "'fail' BEGIN INSERT INTO test_child VALUES ('missing'); END;");
                return {};
              })
              .ok());
  REQUIRE(h.db->read([](db::Tx& tx) -> Status {
                tx.exec("PRAGMA foreign_keys = ON");
                return {};
              })
              .ok());
  std::vector<std::shared_ptr<Pending>> p;
  {
    StoreHold hold(*h.db);
    p.push_back(post_async(h, body_for("ok")));
    // Give the writer time to take the first order, so the rest likely form the next batch;
    // the checks below hold whatever the split.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    for (int i = 0; i < 6; ++i) p.push_back(post_async(h, body_for(i == 2 ? "fail" : "ok")));
  }
  std::vector<http::Response> r;
  for (auto& x : p) r.push_back(x->wait());
  auto& failed = r[3];
  REQUIRE(failed.status >= 500);
  CHECK(std::string(parse(failed.body)["error"]["code"].GetString()) == "DB_ERROR");
  int stored = 0;
  int shared_failure = 0;
  for (size_t i = 0; i < r.size(); ++i) {
    if (i == 3) continue;
    if (r[i].status == 202) {
      ++stored;
      auto id = std::string(parse(r[i].body)["orderId"].GetString());
      CHECK(count_rows(h, "SELECT COUNT(*) FROM orders WHERE id = '" + id + "'") == 1);
    } else {
      // Not stored only because it shared the failed commit: the same answer.
      CHECK(r[i].status == failed.status);
      CHECK(r[i].body == failed.body);
      ++shared_failure;
    }
  }
  CHECK(shared_failure >= 1);
  CHECK(count_rows(h, "SELECT COUNT(*) FROM orders") == stored);
  REQUIRE(test::eventually(
      [&] { return h.count_seen(event_types::kOrderCreated) == static_cast<size_t>(stored); }));
  // The store works on after the failed commit.
  CHECK(h.call(http::Method::kPost, "/api/orders", kBody).status == 202);
}

TEST_CASE("a full queue answers 503 with Retry-After", "[order][batch]") {
  Harness h;
  std::vector<std::shared_ptr<Pending>> p;
  std::shared_ptr<Pending> refused;
  {
    StoreHold hold(*h.db);
    for (int i = 0; i < 20'000 && !refused; ++i) {
      auto x = post_async(h, kBody);
      if (x->answered())
        refused = x;
      else
        p.push_back(x);
    }
  }
  REQUIRE(refused);
  auto r = refused->wait();
  CHECK(r.status == 503);
  CHECK(std::string(parse(r.body)["error"]["code"].GetString()) == "UNAVAILABLE");
  CHECK(header(r, "Retry-After") == "1");
  // 10,000 wait in the queue, plus what the writer had already taken when the store was held.
  CHECK(p.size() >= 10'000);
  CHECK(p.size() <= 10'000 + 256);
  for (auto& x : p) REQUIRE(x->wait().status == 202);
  CHECK(count_rows(h, "SELECT COUNT(*) FROM orders") == static_cast<int64_t>(p.size()));
}

TEST_CASE("stopping answers every queued POST", "[order][batch]") {
  Harness h;
  std::vector<std::shared_ptr<Pending>> p;
  std::future<void> stopped;
  {
    StoreHold hold(*h.db);
    for (int i = 0; i < 50; ++i) p.push_back(post_async(h, kBody));
    stopped = std::async(std::launch::async, [&h] { h.module.stop(); });
    // Once stop() has begun, a new POST is refused at once (the store is still held).
    bool refusing = test::eventually([&] {
      auto x = post_async(h, kBody);
      p.push_back(x);
      return x->answered();
    });
    REQUIRE(refusing);
  }
  REQUIRE(stopped.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  int accepted = 0;
  for (auto& x : p) {
    auto r = x->wait();
    REQUIRE((r.status == 202 || r.status == 503));
    if (r.status == 202) {
      ++accepted;
    } else {
      CHECK(std::string(parse(r.body)["error"]["code"].GetString()) == "UNAVAILABLE");
    }
    CHECK(x->count() == 1);
  }
  CHECK(p.back()->wait().status == 503);
  CHECK(count_rows(h, "SELECT COUNT(*) FROM orders") == accepted);
  // After stop, POSTs are still answered, never left hanging.
  CHECK(post_async(h, kBody)->wait().status == 503);
}

namespace {

std::string cursor_of(const rapidjson::Document& page) {
  return page.HasMember("nextCursor") ? page["nextCursor"].GetString() : "";
}

// Orders that share one commit, and so one created_at.
std::vector<std::string> post_batch(Harness& h, int n, const std::string& customer = "c-42") {
  std::vector<std::shared_ptr<Pending>> pending;
  {
    StoreHold hold(*h.db);
    for (int i = 0; i < n; ++i) pending.push_back(post_async(h, body_for(customer)));
  }
  std::vector<std::string> ids;
  for (auto& p : pending) {
    auto r = p->wait();
    REQUIRE(r.status == 202);
    ids.push_back(parse(r.body)["orderId"].GetString());
  }
  return ids;
}

std::vector<std::string> ids_of(const rapidjson::Document& page) {
  std::vector<std::string> out;
  for (const auto& o : page["orders"].GetArray()) out.emplace_back(o["orderId"].GetString());
  return out;
}

std::string error_field_of(const http::Response& r) {
  auto d = parse(r.body);
  return d["error"].HasMember("field") ? d["error"]["field"].GetString() : "";
}

}  // namespace

TEST_CASE("cursor paging returns every order once even with inserts between pages", "[order]") {
  Harness h;
  // Seven orders in one commit (one created_at: the id breaks the tie) and two more after it.
  std::vector<std::string> before = post_batch(h, 7);
  for (int i = 0; i < 2; ++i)
    before.push_back(
        parse(h.call(http::Method::kPost, "/api/orders", kBody).body)["orderId"].GetString());

  std::vector<std::string> seen;
  std::string cursor;
  int pages = 0;
  do {
    auto r = h.call(http::Method::kGet,
                    "/api/orders?limit=2" + (cursor.empty() ? "" : "&cursor=" + cursor));
    REQUIRE(r.status == 200);
    auto page = parse(r.body);
    auto ids = ids_of(page);
    CHECK(ids.size() <= 2);
    seen.insert(seen.end(), ids.begin(), ids.end());
    cursor = cursor_of(page);
    ++pages;
    // New orders between pages are newer than the cursor: they never show up further down.
    for (const auto& id : post_batch(h, 2, "c-new")) CHECK(id > before.back());
  } while (!cursor.empty() && pages < 20);

  CHECK(pages == 5);  // 9 orders, 2 a page: the last page has one and no nextCursor
  std::vector<std::string> expected(before.rbegin(), before.rend());
  std::sort(expected.begin(), expected.end(), std::greater<>());
  CHECK(seen == expected);  // newest first, each exactly once
  CHECK(std::set<std::string>(seen.begin(), seen.end()).size() == seen.size());

  // A filter pages the same way; the cursor is only a position, so it works with the filter.
  auto first = parse(h.call(http::Method::kGet, "/api/orders?customerId=c-new&limit=4").body);
  REQUIRE(ids_of(first).size() == 4);
  auto rest = parse(h.call(http::Method::kGet,
                           "/api/orders?customerId=c-new&limit=200&cursor=" + cursor_of(first))
                        .body);
  CHECK(ids_of(rest).size() == 10 - 4);
  CHECK_FALSE(rest.HasMember("nextCursor"));
}

TEST_CASE("GET /api/orders filters by status and created-at range", "[order]") {
  Harness h;
  std::vector<std::string> ids;
  std::vector<std::string> created;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(
        parse(h.call(http::Method::kPost, "/api/orders", kBody).body)["orderId"].GetString());
    created.push_back(
        parse(h.call(http::Method::kGet, "/api/orders/" + ids.back()).body)["createdAt"]
            .GetString());
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // distinct createdAt
  }
  h.publish_status(ids[0], "CONFIRMED");
  h.publish_status(ids[1], "CANCELLED", "OUT_OF_STOCK");
  h.publish_status(ids[2], "STOCK_RESERVED");
  REQUIRE(test::eventually([&] { return status_of(h, ids[2]) == "STOCK_RESERVED"; }));
  REQUIRE(test::eventually([&] { return status_of(h, ids[1]) == "CANCELLED"; }));
  REQUIRE(test::eventually([&] { return status_of(h, ids[0]) == "CONFIRMED"; }));
  auto list = [&](const std::string& query) {
    auto r = h.call(http::Method::kGet, "/api/orders?" + query);
    REQUIRE(r.status == 200);
    return ids_of(parse(r.body));
  };
  using Ids = std::vector<std::string>;

  CHECK(list("status=CONFIRMED") == Ids{ids[0]});
  CHECK(list("status=PENDING") == Ids{ids[3]});
  CHECK(list("status=CANCELLED,CONFIRMED") == Ids{ids[1], ids[0]});
  CHECK(list("status=CONFIRMED,CONFIRMED") == Ids{ids[0]});
  CHECK(list("status=PAYMENT_AUTHORIZED").empty());
  // from is inclusive, to exclusive: consecutive ranges never share an order.
  CHECK(list("from=" + created[1] + "&to=" + created[3]) == Ids{ids[2], ids[1]});
  CHECK(list("from=" + created[3]) == Ids{ids[3]});
  CHECK(list("to=" + created[1]) == Ids{ids[0]});
  CHECK(list("from=" + created[1] + "&to=" + created[1]).empty());
  CHECK(list("from=" + created[0] + "&status=CANCELLED,PENDING&customerId=c-42") ==
        Ids{ids[3], ids[1]});
  // An offset is the same instant: %2B is '+', and a bare '+' (a space once decoded) is read so.
  CHECK(list("from=1970-01-01T01:00:00%2B01:00") == Ids{ids[3], ids[2], ids[1], ids[0]});
  CHECK(list("from=1970-01-01T01:00:00+01:00").size() == 4);
  CHECK(list("from=2999-01-01T00:00:00Z").empty());
}

TEST_CASE("GET /api/orders answers 400 naming the bad or unknown query parameter", "[order]") {
  Harness h;
  struct Case {
    std::string query;
    std::string field;
  };
  const Case cases[] = {
      {"offset=20", "offset"},
      {"staus=PENDING", "staus"},
      {"status=", "status"},
      {"status=pending", "status"},
      {"status=PENDING,,CONFIRMED", "status"},
      {"status=SHIPPED", "status"},
      {"status=PENDING&status=CONFIRMED", "status"},
      {"from=yesterday", "from"},
      {"from=2026-11-22", "from"},
      {"to=2026-11-22T25:00:00Z", "to"},
      {"from=2026-11-22T00:00:00Z&to=2026-11-21T00:00:00Z", "to"},
      {"cursor=not-a-cursor", "cursor"},
      {"cursor=" + std::string("djF8MTIzfA"), "cursor"},  // "v1|123|": no id
      {"cursor=", "cursor"},
      {"limit=201", "limit"},
      {"customerId=", "customerId"},
  };
  for (const auto& c : cases) {
    INFO(c.query);
    auto r = h.call(http::Method::kGet, "/api/orders?" + c.query);
    CHECK(r.status == 400);
    CHECK(std::string(parse(r.body)["error"]["code"].GetString()) == "VALIDATION_FAILED");
    CHECK(error_field_of(r) == c.field);
  }
  // The other order routes take what they document and nothing else.
  std::string id =
      parse(h.call(http::Method::kPost, "/api/orders", kBody).body)["orderId"].GetString();
  CHECK(error_field_of(h.call(http::Method::kGet, "/api/orders/" + id + "?expand=items")) ==
        "expand");
  CHECK(h.call(http::Method::kGet, "/api/orders/" + id + "?wait=0").status == 200);
  CHECK(error_field_of(h.call(http::Method::kPost, "/api/orders?dryRun=1", kBody)) == "dryRun");
  CHECK(error_field_of(h.call(http::Method::kPost, "/api/orders/" + id + "/cancel?force=1")) ==
        "force");
  CHECK(status_of(h, id) == "PENDING");  // the refused cancel did nothing
  REQUIRE(test::eventually([&] { return h.count_seen(event_types::kOrderCreated) == 1; }));
  CHECK(h.count_seen(event_types::kOrderCancellationRequested) == 0);
}

TEST_CASE("a full store answers 503 STORE_UNAVAILABLE with Retry-After, then accepts again",
          "[order][faults]") {
  Harness h;
  // SQLite's size limit stands in for a full disk (the same SQLITE_FULL).
  auto pragma = [&](const std::string& sql) {
    REQUIRE(h.db->read([&](db::Tx& tx) -> Status {
                  tx.exec(sql);
                  return {};
                })
                .ok());
  };
  auto pages = h.db->read([](db::Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt("PRAGMA page_count");
    return s.step() ? s.col_int(0) : -1;
  });
  REQUIRE(pages.ok());
  pragma("PRAGMA max_page_count=" + std::to_string(pages.value()));
  http::Response refused;
  for (int i = 0; i < 200; ++i) {
    refused = h.call(http::Method::kPost, "/api/orders", kBody);
    if (refused.status != 202) break;
  }
  REQUIRE(refused.status == 503);
  auto body = parse(refused.body);
  CHECK(std::string(body["error"]["code"].GetString()) == "STORE_UNAVAILABLE");
  CHECK(header(refused, "Retry-After") == "1");
  CHECK_FALSE(h.db->healthy());  // /readyz names the order store while it lasts
  const auto listed = [&] {
    auto r = h.call(http::Method::kGet, "/api/orders?customerId=c-42&limit=100");
    REQUIRE(r.status == 200);
    return parse(r.body)["orders"].Size();
  };
  const auto stored = listed();

  pragma("PRAGMA max_page_count=1000000");  // space freed
  CHECK(h.db->healthy());
  auto again = h.call(http::Method::kPost, "/api/orders", kBody);
  CHECK(again.status == 202);
  CHECK(listed() == stored + 1);  // the refused order left nothing behind
}
