// Module-level tests: the inventory module wired to a real embedded bus, outbox relay, SQLite store
// and router, driven through bus commands and Router::dispatch.

#include "ecom/inventory/inventory_module.hpp"

#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "ecom/bus/embedded_bus.hpp"
#include "ecom/bus/event_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/config.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/module.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "ecom/http/router.hpp"
#include "support/test_support.hpp"

using namespace ecom;
using namespace std::chrono_literals;

namespace {

constexpr const char* kConfig = R"({
  "inventory": {
    "admin_token": "s3cret-token",
    "low_stock_threshold": 2,
    "seed": [
      {"sku": "SKU-1", "name": "Mouse", "available": 10, "unitAmount": 2500},
      {"sku": "SKU-2", "name": "Keyboard", "available": 3, "unitAmount": 9000, "currency": "EUR"}
    ]
  }
})";

/// A module started the way main() starts it, on its own temp directory.
class Harness {
 public:
  explicit Harness(const std::string& config = kConfig) {
    auto b = bus::make_embedded_bus(bus::EmbeddedBusOptions{.path = dir_.file("bus.db")});
    REQUIRE(b.ok());
    bus_ = std::move(b).value();
    auto d = db::Database::open(dir_.file("inventory.db"));
    REQUIRE(d.ok());
    db_ = std::move(d).value();
    REQUIRE(db::migrate_messaging(*db_).ok());
    relay_ = std::make_unique<bus::OutboxRelay>(*db_, *bus_);
    relay_->start();
    auto doc = parse_json_config(config);
    REQUIRE(doc.ok());
    settings_.document = doc.value();
    ctx_ = std::make_unique<ModuleContext>(ModuleContext{*bus_, *relay_, router_, *db_, settings_});
  }
  ~Harness() {
    module_.stop();
    relay_->stop();
  }

  Status start() {
    if (auto st = module_.configure(settings_.section("inventory")); !st) return st;
    return module_.start(*ctx_);
  }
  bus::EventBus& bus() { return *bus_; }
  http::Router& router() { return router_; }

  http::Response call(http::Method method, std::string target, std::string body = {},
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
    http::Request r;
    r.method = method;
    r.target = std::move(target);
    r.body = std::move(body);
    r.headers = std::move(headers);
    if (!r.body.empty()) r.headers.emplace_back("content-type", "application/json");
    return router_.dispatch(r);
  }

 private:
  test::TempDir dir_;
  std::unique_ptr<bus::EventBus> bus_;
  std::unique_ptr<db::Database> db_;
  std::unique_ptr<bus::OutboxRelay> relay_;
  http::Router router_;
  Settings settings_;
  std::unique_ptr<ModuleContext> ctx_;
  inventory::InventoryModule module_;
};

/// Records everything published on some topics, as a consumer in its own group.
class Collector {
 public:
  Collector(bus::EventBus& bus, std::vector<std::string> topics) {
    auto sub = bus.subscribe(
        bus::SubscriptionOptions{.group = "test-" + new_uuid(), .topics = std::move(topics)},
        [this](const bus::Message& m) {
          std::lock_guard lock(mu_);
          messages_.push_back(m);
          return bus::Outcome::ack();
        });
    REQUIRE(sub.ok());
    sub_ = std::move(sub).value();
  }
  ~Collector() { sub_->close(); }

  std::vector<bus::Message> of(std::string_view type, std::string_view subject) {
    std::lock_guard lock(mu_);
    std::vector<bus::Message> out;
    for (const auto& m : messages_) {
      if (m.envelope.type == type && m.envelope.subject == subject) out.push_back(m);
    }
    return out;
  }
  size_t count(std::string_view type, std::string_view subject) { return of(type, subject).size(); }
  size_t count_topic(std::string_view topic) {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& m : messages_) n += m.topic == topic ? 1 : 0;
    return n;
  }

 private:
  std::mutex mu_;
  std::vector<bus::Message> messages_;
  std::unique_ptr<bus::Subscription> sub_;
};

rapidjson::Document parse(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  REQUIRE(d.IsObject());
  return d;
}

std::string error_code(const http::Response& r) {
  auto d = parse(r.body);
  return d["error"]["code"].GetString();
}

std::string error_field(const http::Response& r) {
  auto d = parse(r.body);
  return d["error"].HasMember("field") ? d["error"]["field"].GetString() : "";
}

// The product fields of a body or an event, checked together.
struct Expected {
  const char* name;
  int64_t available;
  int64_t unit_amount;
  const char* currency;
};
void check_product(const rapidjson::Value& p, const Expected& e) {
  CHECK(std::string(p["name"].GetString()) == e.name);
  CHECK(p["available"].GetInt64() == e.available);
  CHECK(p["unitAmount"].GetInt64() == e.unit_amount);
  CHECK(std::string(p["currency"].GetString()) == e.currency);
}

// Waits for the `n`th inventory.updated of `sku` and returns its data.
rapidjson::Document nth_update(Collector& updates, const std::string& sku, size_t n) {
  REQUIRE(test::eventually([&] { return updates.count(event_types::kInventoryUpdated, sku) >= n; },
                           30s));
  return parse(updates.of(event_types::kInventoryUpdated, sku)[n - 1].envelope.data);
}

const std::vector<std::pair<std::string, std::string>> kAdmin{
    {"authorization", "Bearer s3cret-token"}};

}  // namespace

TEST_CASE("inventory module answers commands from the bus", "[inventory][module]") {
  Harness h;
  REQUIRE(h.start().ok());
  Collector events(h.bus(),
                   {std::string(topics::kInventoryEvents), std::string(topics::kInventoryUpdated)});

  Envelope reserve =
      make_event("saga", event_types::kReserveStock, "o-1",
                 R"({"orderId":"o-1","currency":"USD","items":[{"sku":"SKU-1","quantity":2}]})");
  REQUIRE(h.bus().publish(topics::kInventoryCommands, reserve).ok());
  REQUIRE(
      test::eventually([&] { return events.count(event_types::kStockReserved, "o-1") == 1; }, 30s));
  auto reply = events.of(event_types::kStockReserved, "o-1").front();
  CHECK(reply.topic == topics::kInventoryEvents);
  CHECK(reply.key == "o-1");
  CHECK(reply.envelope.source == "inventory");
  CHECK(reply.envelope.correlation_id == reserve.correlation_id);
  CHECK(reply.envelope.causation_id == reserve.id);
  auto data = parse(reply.envelope.data);
  CHECK(std::string(data["orderId"].GetString()) == "o-1");
  CHECK(data["items"][0]["quantity"].GetInt64() == 2);

  REQUIRE(test::eventually(
      [&] { return events.count(event_types::kInventoryUpdated, "SKU-1") == 1; }, 30s));
  auto updated = events.of(event_types::kInventoryUpdated, "SKU-1").front();
  CHECK(updated.key == "SKU-1");
  CHECK(updated.topic == topics::kInventoryUpdated);

  // The same event redelivered is ignored (inbox); the next command on the partition proves the
  // duplicate was processed before it.
  REQUIRE(h.bus().publish(topics::kInventoryCommands, reserve).ok());
  Envelope commit =
      make_event("saga", event_types::kCommitStock, "o-1", R"({"orderId":"o-1"})", &reserve);
  REQUIRE(h.bus().publish(topics::kInventoryCommands, commit).ok());
  // A commit is not acknowledged (the saga does not wait for it): the sale shows in the product.
  REQUIRE(test::eventually(
      [&] {
        return parse(h.call(http::Method::kGet, "/api/inventory/SKU-1").body)["sold"].GetInt64() ==
               2;
      },
      30s));
  CHECK(events.count(event_types::kStockReserved, "o-1") == 1);
  CHECK(events.count(event_types::kStockCommitted, "o-1") == 0);

  auto product = parse(h.call(http::Method::kGet, "/api/inventory/SKU-1").body);
  CHECK(product["available"].GetInt64() == 8);
  CHECK(product["reserved"].GetInt64() == 0);
  CHECK(product["sold"].GetInt64() == 2);

  // The same command with a new event id (a resend) replays the outcome, takes nothing more.
  Envelope resend = make_event("saga", event_types::kReserveStock, "o-1", reserve.data);
  REQUIRE(h.bus().publish(topics::kInventoryCommands, resend).ok());
  REQUIRE(
      test::eventually([&] { return events.count(event_types::kStockReserved, "o-1") == 2; }, 30s));
  product = parse(h.call(http::Method::kGet, "/api/inventory/SKU-1").body);
  CHECK(product["available"].GetInt64() == 8);
  CHECK(product["sold"].GetInt64() == 2);
}

TEST_CASE("inventory module reports failed reservations and releases", "[inventory][module]") {
  Harness h;
  REQUIRE(h.start().ok());
  Collector events(h.bus(),
                   {std::string(topics::kInventoryEvents), std::string(topics::kInventoryAlerts)});

  REQUIRE(
      h.bus()
          .publish(
              topics::kInventoryCommands,
              make_event(
                  "saga", event_types::kReserveStock, "o-short",
                  R"({"orderId":"o-short","currency":"EUR","items":[{"sku":"SKU-2","quantity":4}]})"))
          .ok());
  REQUIRE(
      h.bus()
          .publish(
              topics::kInventoryCommands,
              make_event(
                  "saga", event_types::kReserveStock, "o-unknown",
                  R"({"orderId":"o-unknown","currency":"USD","items":[{"sku":"SKU-404","quantity":1}]})"))
          .ok());
  REQUIRE(
      h.bus()
          .publish(
              topics::kInventoryCommands,
              make_event(
                  "saga", event_types::kReserveStock, "o-ok",
                  R"({"orderId":"o-ok","currency":"EUR","items":[{"sku":"SKU-2","quantity":3}]})"))
          .ok());
  REQUIRE(test::eventually(
      [&] {
        return events.count(event_types::kStockReservationFailed, "o-short") == 1 &&
               events.count(event_types::kStockReservationFailed, "o-unknown") == 1 &&
               events.count(event_types::kStockReserved, "o-ok") == 1;
      },
      30s));
  auto shortage =
      parse(events.of(event_types::kStockReservationFailed, "o-short").front().envelope.data);
  CHECK(std::string(shortage["reason"].GetString()) == "OUT_OF_STOCK");
  REQUIRE(shortage["skus"].Size() == 1);
  CHECK(std::string(shortage["skus"][0].GetString()) == "SKU-2");
  auto unknown =
      parse(events.of(event_types::kStockReservationFailed, "o-unknown").front().envelope.data);
  CHECK(std::string(unknown["reason"].GetString()) == "UNKNOWN_SKU");
  // SKU-2 went 3 -> 0: depleted.
  REQUIRE(test::eventually([&] { return events.count(event_types::kStockDepleted, "SKU-2") == 1; },
                           30s));

  REQUIRE(h.bus()
              .publish(topics::kInventoryCommands, make_event("saga", event_types::kReleaseStock,
                                                              "o-ok", R"({"orderId":"o-ok"})"))
              .ok());
  REQUIRE(test::eventually([&] { return events.count(event_types::kStockReleased, "o-ok") == 1; },
                           30s));
  auto released = parse(events.of(event_types::kStockReleased, "o-ok").front().envelope.data);
  REQUIRE(released["items"].Size() == 1);
  CHECK(released["items"][0]["quantity"].GetInt64() == 3);
  REQUIRE(test::eventually(
      [&] { return events.count(event_types::kStockLevelNormalized, "SKU-2") == 1; }, 30s));
  auto sku2 = parse(h.call(http::Method::kGet, "/api/inventory/SKU-2").body);
  CHECK(sku2["available"].GetInt64() == 3);
  CHECK(sku2["reserved"].GetInt64() == 0);
}

TEST_CASE("inventory module dead-letters malformed commands", "[inventory][module]") {
  Harness h;
  REQUIRE(h.start().ok());
  const std::string dlq = bus::dlq_topic(topics::kInventoryCommands);
  Collector dead(h.bus(), {dlq});
  Collector events(h.bus(), {std::string(topics::kInventoryEvents)});

  // Same key for all three, so they share a partition: the bad ones must not block it.
  REQUIRE(h.bus()
              .publish(topics::kInventoryCommands,
                       make_event("saga", event_types::kReserveStock, "o-9",
                                  R"({"items":[{"sku":"SKU-1","quantity":1}]})"))
              .ok());
  REQUIRE(
      h.bus()
          .publish(
              topics::kInventoryCommands,
              make_event(
                  "saga", event_types::kReserveStock, "o-9",
                  R"({"orderId":"o-9","currency":"USD","items":[{"sku":"SKU-1","quantity":"one"}]})"))
          .ok());
  REQUIRE(
      h.bus()
          .publish(
              topics::kInventoryCommands,
              make_event(
                  "saga", event_types::kReserveStock, "o-9",
                  R"({"orderId":"o-9","currency":"USD","items":[{"sku":"SKU-1","quantity":1}]})"))
          .ok());
  REQUIRE(test::eventually([&] { return dead.count_topic(dlq) == 2; }, 30s));
  REQUIRE(
      test::eventually([&] { return events.count(event_types::kStockReserved, "o-9") == 1; }, 30s));
}

TEST_CASE("inventory HTTP API", "[inventory][module][http]") {
  Harness h;
  REQUIRE(h.start().ok());

  SECTION("list and get") {
    auto list = h.call(http::Method::kGet, "/api/inventory");
    REQUIRE(list.status == 200);
    auto d = parse(list.body);
    REQUIRE(d["items"].Size() == 2);
    const auto& first = d["items"][0];
    CHECK(std::string(first["sku"].GetString()) == "SKU-1");
    CHECK(std::string(first["name"].GetString()) == "Mouse");
    CHECK(first["available"].GetInt64() == 10);
    CHECK(first["reserved"].GetInt64() == 0);
    CHECK(first["sold"].GetInt64() == 0);
    CHECK(first["unitAmount"].GetInt64() == 2500);
    CHECK(std::string(first["currency"].GetString()) == "USD");
    CHECK(std::string(d["items"][1]["currency"].GetString()) == "EUR");

    auto one = h.call(http::Method::kGet, "/api/inventory/SKU-2");
    REQUIRE(one.status == 200);
    CHECK(parse(one.body)["available"].GetInt64() == 3);

    auto missing = h.call(http::Method::kGet, "/api/inventory/SKU-404");
    CHECK(missing.status == 404);
    CHECK(error_code(missing) == "NOT_FOUND");
  }

  SECTION("PUT needs the admin token") {
    const std::string body = R"({"available": 50})";
    auto none = h.call(http::Method::kPut, "/api/inventory/SKU-1", body);
    CHECK(none.status == 401);
    CHECK(error_code(none) == "UNAUTHORIZED");
    auto wrong = h.call(http::Method::kPut, "/api/inventory/SKU-1", body,
                        {{"authorization", "Bearer s3cret-tokeN"}});
    CHECK(wrong.status == 401);
    auto prefix = h.call(http::Method::kPut, "/api/inventory/SKU-1", body,
                         {{"authorization", "Bearer s3cret"}});
    CHECK(prefix.status == 401);
    auto basic = h.call(http::Method::kPut, "/api/inventory/SKU-1", body,
                        {{"authorization", "Basic s3cret-token"}});
    CHECK(basic.status == 401);
    CHECK(parse(h.call(http::Method::kGet, "/api/inventory/SKU-1").body)["available"].GetInt64() ==
          10);
  }

  SECTION("PUT sets stock, renames, reprices and emits inventory.updated") {
    Collector updates(h.bus(), {std::string(topics::kInventoryUpdated)});
    auto set = h.call(http::Method::kPut, "/api/inventory/SKU-1", R"({"available": 50})", kAdmin);
    REQUIRE(set.status == 200);
    auto p = parse(set.body);
    CHECK(p["available"].GetInt64() == 50);
    CHECK(std::string(p["name"].GetString()) == "Mouse");
    auto event = nth_update(updates, "SKU-1", 1);
    CHECK(event["delta"].GetInt64() == 40);
    CHECK(event["available"].GetInt64() == 50);

    // Partial: only what the body names changes.
    auto renamed = h.call(http::Method::kPut, "/api/inventory/SKU-1",
                          R"({"name": "Trackball", "unitAmount": 3100})", kAdmin);
    REQUIRE(renamed.status == 200);
    check_product(parse(renamed.body), {"Trackball", 50, 3100, "USD"});
    event = nth_update(updates, "SKU-1", 2);
    check_product(event, {"Trackball", 50, 3100, "USD"});
    CHECK(event["delta"].GetInt64() == 0);

    // PUT never creates: that is POST's job.
    auto unknown = h.call(http::Method::kPut, "/api/inventory/SKU-NEW",
                          R"({"available": 7, "name": "Webcam"})", kAdmin);
    CHECK(unknown.status == 404);
    CHECK(error_field(unknown) == "sku");
    CHECK(parse(h.call(http::Method::kGet, "/api/inventory").body)["items"].Size() == 2);
  }

  SECTION("PUT validation") {
    struct Case {
      const char* target;
      const char* body;
      int status;
      const char* code;
      const char* field;
    };
    const Case cases[] = {
        {"/api/inventory/SKU-1", R"({"available": -1})", 400, "VALIDATION_FAILED", "available"},
        {"/api/inventory/SKU-1", R"({"available": "5"})", 400, "VALIDATION_FAILED", "available"},
        {"/api/inventory/SKU-1", R"({"available": 1.5})", 400, "VALIDATION_FAILED", "available"},
        {"/api/inventory/SKU-1", R"({})", 400, "VALIDATION_FAILED", ""},
        {"/api/inventory/SKU-1", R"([1])", 400, "VALIDATION_FAILED", ""},
        {"/api/inventory/SKU-1", R"({"name": ""})", 400, "VALIDATION_FAILED", "name"},
        {"/api/inventory/SKU-1", R"({"name": 7})", 400, "VALIDATION_FAILED", "name"},
        {"/api/inventory/SKU-1", R"({"sku": "SKU-9"})", 400, "VALIDATION_FAILED", "sku"},
        {"/api/inventory/SKU-1", R"({"available": 1, "currency": "usd"})", 400, "VALIDATION_FAILED",
         "currency"},
        {"/api/inventory/SKU-1", R"({"available": 1, "unitAmount": -3})", 400, "VALIDATION_FAILED",
         "unitAmount"},
        {"/api/inventory/SKU-1", R"({"available": 1, "avialable": 2})", 400, "VALIDATION_FAILED",
         "avialable"},
        {"/api/inventory/SKU-NEW", R"({"available": 1})", 404, "NOT_FOUND", "sku"},
        {"/api/inventory/bad%20sku", R"({"available": 1, "name": "x"})", 400, "VALIDATION_FAILED",
         "sku"},
        {"/api/inventory/SKU-1", R"({"available": )", 400, "MALFORMED_JSON", ""},
    };
    for (const auto& c : cases) {
      INFO(c.target << " " << c.body);
      auto r = h.call(http::Method::kPut, c.target, c.body, kAdmin);
      CHECK(r.status == c.status);
      CHECK(error_code(r) == c.code);
      CHECK(error_field(r) == c.field);
    }
    CHECK(parse(h.call(http::Method::kGet, "/api/inventory/SKU-1").body)["available"].GetInt64() ==
          10);
    CHECK(h.call(http::Method::kGet, "/api/inventory/SKU-NEW").status == 404);
  }
}

TEST_CASE("admins create, update and delete products", "[inventory][module][http]") {
  Harness h;
  REQUIRE(h.start().ok());
  Collector updates(h.bus(), {std::string(topics::kInventoryUpdated)});
  const std::string webcam =
      R"({"sku":"SKU-NEW","name":"Webcam","unitAmount":4999,"currency":"GBP","available":7})";

  SECTION("every change needs the admin token") {
    for (const auto& headers : {std::vector<std::pair<std::string, std::string>>{},
                                {{"authorization", "Bearer wrong"}}}) {
      auto post = h.call(http::Method::kPost, "/api/inventory", webcam, headers);
      CHECK(post.status == 401);
      CHECK(error_code(post) == "UNAUTHORIZED");
      auto del = h.call(http::Method::kDelete, "/api/inventory/SKU-1", {}, headers);
      CHECK(del.status == 401);
    }
    CHECK(h.call(http::Method::kGet, "/api/inventory/SKU-NEW").status == 404);
    CHECK(h.call(http::Method::kGet, "/api/inventory/SKU-1").status == 200);
  }

  SECTION("POST creates a product, once") {
    auto created = h.call(http::Method::kPost, "/api/inventory", webcam, kAdmin);
    REQUIRE(created.status == 201);
    auto c = parse(created.body);
    CHECK(std::string(c["sku"].GetString()) == "SKU-NEW");
    check_product(c, {"Webcam", 7, 4999, "GBP"});
    CHECK(c["sold"].GetInt64() == 0);
    bool located = false;
    for (const auto& [k, v] : created.headers)
      located |= k == "Location" && v == "/api/inventory/SKU-NEW";
    CHECK(located);
    auto fetched = h.call(http::Method::kGet, "/api/inventory/SKU-NEW");
    REQUIRE(fetched.status == 200);
    check_product(parse(fetched.body), {"Webcam", 7, 4999, "GBP"});
    CHECK(parse(h.call(http::Method::kGet, "/api/inventory").body)["items"].Size() == 3);
    check_product(nth_update(updates, "SKU-NEW", 1), {"Webcam", 7, 4999, "GBP"});

    auto twice = h.call(http::Method::kPost, "/api/inventory", webcam, kAdmin);
    CHECK(twice.status == 409);
    CHECK(error_code(twice) == "CONFLICT");
    CHECK(error_field(twice) == "sku");
    // `available` may be left out: nothing in stock yet.
    auto empty = h.call(http::Method::kPost, "/api/inventory",
                        R"({"sku":"SKU-0","name":"Soon","unitAmount":1,"currency":"USD"})", kAdmin);
    REQUIRE(empty.status == 201);
    CHECK(parse(empty.body)["available"].GetInt64() == 0);
  }

  SECTION("POST validation names the field") {
    struct Case {
      const char* body;
      const char* field;
    };
    const Case cases[] = {
        {R"({"name":"W","unitAmount":1,"currency":"USD"})", "sku"},
        {R"({"sku":"S-1","unitAmount":1,"currency":"USD"})", "name"},
        {R"({"sku":"S-1","name":"W","currency":"USD"})", "unitAmount"},
        {R"({"sku":"S-1","name":"W","unitAmount":1})", "currency"},
        {R"({"sku":"S-1","name":"W","unitAmount":1,"currency":"XYZ"})", "currency"},
        {R"({"sku":"S 1","name":"W","unitAmount":1,"currency":"USD"})", "sku"},
        {R"({"sku":"S-1","name":"W","unitAmount":-1,"currency":"USD"})", "unitAmount"},
        {R"({"sku":"S-1","name":"W","unitAmount":1,"currency":"USD","available":-2})", "available"},
        {R"({"sku":"S-1","name":"W","unitAmount":1,"currency":"USD","price":1})", "price"},
    };
    for (const auto& c : cases) {
      INFO(c.body);
      auto r = h.call(http::Method::kPost, "/api/inventory", c.body, kAdmin);
      CHECK(r.status == 400);
      CHECK(error_code(r) == "VALIDATION_FAILED");
      CHECK(error_field(r) == c.field);
    }
    CHECK(parse(h.call(http::Method::kGet, "/api/inventory").body)["items"].Size() == 2);
  }

  SECTION("DELETE takes the product off the catalogue and off sale") {
    Collector replies(h.bus(), {std::string(topics::kInventoryEvents)});
    auto command = [&](std::string_view type, const std::string& order, const std::string& rest) {
      const std::string data = R"({"orderId":")" + order + "\"" + rest + "}";
      REQUIRE(
          h.bus().publish(topics::kInventoryCommands, make_event("saga", type, order, data)).ok());
    };
    // An order holding stock before the delete still settles after it.
    command(event_types::kReserveStock, "o-before",
            R"(,"currency":"USD","items":[{"sku":"SKU-1","quantity":2}])");
    REQUIRE(test::eventually(
        [&] { return replies.count(event_types::kStockReserved, "o-before") == 1; }, 30s));

    auto del = h.call(http::Method::kDelete, "/api/inventory/SKU-1", {}, kAdmin);
    CHECK(del.status == 204);
    CHECK(del.body.empty());
    CHECK(h.call(http::Method::kGet, "/api/inventory/SKU-1").status == 404);
    auto list = parse(h.call(http::Method::kGet, "/api/inventory").body);
    REQUIRE(list["items"].Size() == 1);
    CHECK(std::string(list["items"][0]["sku"].GetString()) == "SKU-2");
    REQUIRE(test::eventually(
        [&] {
          for (const auto& m : updates.of(event_types::kInventoryUpdated, "SKU-1"))
            if (parse(m.envelope.data).HasMember("deleted")) return true;
          return false;
        },
        30s));

    auto again = h.call(http::Method::kDelete, "/api/inventory/SKU-1", {}, kAdmin);
    CHECK(again.status == 404);
    CHECK(h.call(http::Method::kPut, "/api/inventory/SKU-1", R"({"available":5})", kAdmin).status ==
          404);
    CHECK(h.call(http::Method::kPost, "/api/inventory",
                 R"({"sku":"SKU-1","name":"Again","unitAmount":1,"currency":"USD"})", kAdmin)
              .status == 409);

    command(event_types::kReserveStock, "o-after",
            R"(,"currency":"USD","items":[{"sku":"SKU-1","quantity":1}])");
    command(event_types::kCommitStock, "o-before", "");
    // The commit has no reply; a release after it (same key, so after it) finds nothing held.
    command(event_types::kReleaseStock, "o-before", "");
    REQUIRE(test::eventually(
        [&] {
          return replies.count(event_types::kStockReservationFailed, "o-after") == 1 &&
                 replies.count(event_types::kStockReleased, "o-before") == 1;
        },
        30s));
    auto failed =
        parse(replies.of(event_types::kStockReservationFailed, "o-after").front().envelope.data);
    CHECK(std::string(failed["reason"].GetString()) == "UNKNOWN_SKU");
    auto released =
        parse(replies.of(event_types::kStockReleased, "o-before").front().envelope.data);
    CHECK(released["items"].Size() == 0);  // the commit settled both held units
    CHECK(replies.count(event_types::kStockCommitted, "o-before") == 0);
  }
}

TEST_CASE("inventory routes refuse query parameters they do not take",
          "[inventory][module][http]") {
  Harness h;
  REQUIRE(h.start().ok());
  const struct {
    http::Method method;
    const char* target;
  } cases[] = {
      {http::Method::kGet, "/api/inventory?offset=10"},
      {http::Method::kGet, "/api/inventory/SKU-1?verbose=1"},
      {http::Method::kPost, "/api/inventory?dryRun=true"},
      {http::Method::kPut, "/api/inventory/SKU-1?force"},
      {http::Method::kDelete, "/api/inventory/SKU-1?hard=1"},
  };
  for (const auto& c : cases) {
    INFO(c.target);
    auto r = h.call(c.method, c.target, c.method == http::Method::kGet ? "" : R"({"available":1})",
                    kAdmin);
    CHECK(r.status == 400);
    CHECK(error_code(r) == "VALIDATION_FAILED");
    const std::string target(c.target);
    const auto q = target.find('?') + 1;
    CHECK(error_field(r) == target.substr(q, target.find('=', q) - q));
  }
  CHECK(h.call(http::Method::kGet, "/api/inventory/SKU-1").status == 200);  // nothing changed
  CHECK(parse(h.call(http::Method::kGet, "/api/inventory/SKU-1").body)["available"].GetInt64() ==
        10);
}

TEST_CASE("inventory PUT is refused when no admin token is configured",
          "[inventory][module][http]") {
  Harness h(
      R"({"inventory": {"seed": [{"sku":"SKU-1","name":"A","available":1,"unitAmount":1}]}})");
  REQUIRE(h.start().ok());
  auto r = h.call(http::Method::kPut, "/api/inventory/SKU-1", R"({"available": 5})",
                  {{"authorization", "Bearer "}});
  CHECK(r.status == 401);
  CHECK(error_code(r) == "UNAUTHORIZED");
  CHECK_THAT(std::string(parse(r.body)["error"]["message"].GetString()),
             Catch::Matchers::Contains("no admin token is configured"));
  CHECK(h.call(http::Method::kPost, "/api/inventory",
               R"({"sku":"S-2","name":"B","unitAmount":1,"currency":"USD"})",
               {{"authorization", "Bearer "}})
            .status == 401);
  CHECK(h.call(http::Method::kDelete, "/api/inventory/SKU-1", {}, {{"authorization", "Bearer "}})
            .status == 401);
  CHECK(h.call(http::Method::kGet, "/api/inventory/SKU-1").status == 200);
}

TEST_CASE("inventory module rejects bad configuration at start", "[inventory][module]") {
  struct Case {
    const char* config;
    const char* mentions;
  };
  const Case cases[] = {
      {R"({"inventory": {"admin_tokn": "x"}})", "admin_tokn"},
      {R"({"inventory": {"admin_token": 5}})", "inventory.admin_token"},
      {R"({"inventory": {"low_stock_threshold": "5"}})", "inventory.low_stock_threshold"},
      {R"({"inventory": {"low_stock_threshold": -1}})", "inventory.low_stock_threshold"},
      {R"({"inventory": {"seed": [{"sku":"S","name":"n","available":-4,"unitAmount":1}]}})",
       "inventory.seed[0].available"},
  };
  for (const auto& c : cases) {
    INFO(c.config);
    Harness h(c.config);
    auto st = h.start();
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == ecom::ErrorCode::kConfigInvalid);
    CHECK(st.error().message.find(c.mentions) != std::string::npos);
  }
}
