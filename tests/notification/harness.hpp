#pragma once
// The notification module hosted the way main hosts it: a real store, the embedded bus, the outbox
// relay and an HTTP server on a free port. Shared by the module-level test files.

#include <rapidjson/document.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ecom/bus/embedded_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/config.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "ecom/http/router.hpp"
#include "ecom/http/server.hpp"
#include "ecom/notification/notification_module.hpp"
#include "support/test_support.hpp"

namespace ecom::test {

inline rapidjson::Document parse_json(const std::string& s) {
  rapidjson::Document d;
  d.Parse(s.c_str());
  INFO(s);
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

/// The integer the first column of the first row of `sql` holds.
inline int64_t int_of(db::Database& db, const std::string& sql) {
  auto r = db.read([&](db::Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt(sql);
    s.step();
    return s.col_int(0);
  });
  REQUIRE(r.ok());
  return r.value();
}

inline std::string str_of(const rapidjson::Value& v, const char* name) {
  if (!v.IsObject() || !v.HasMember(name) || !v[name].IsString()) return {};
  return v[name].GetString();
}

// An OrderCreated as the order module sends it: not priced (the client's quote travels along).
inline Envelope order_created(const std::string& order_id, const std::string& customer = "c-42") {
  std::string data =
      R"({"orderId":")" + order_id + R"(","customerId":")" + customer +
      R"(","currency":"USD","items":[{"sku":"SKU-1","quantity":2,"unitAmount":1250}],)"
      R"("paymentToken":"tok_visa"})";
  return make_event("order", event_types::kOrderCreated, order_id, data);
}

// A status as the saga sends it: STOCK_RESERVED carries the catalogue's pricing (`total`).
inline Envelope status_changed(const std::string& order_id, const std::string& status,
                               const std::string& reason = "", int64_t total = 2500) {
  std::string pricing;
  if (status == "STOCK_RESERVED")
    pricing = R"(,"totalAmount":)" + std::to_string(total) +
              R"(,"currency":"USD","items":[{"sku":"SKU-1","name":"Mouse","quantity":2,)"
              R"("unitAmount":)" +
              std::to_string(total / 2) + "}]";
  std::string data = R"({"orderId":")" + order_id + R"(","status":")" + status + "\"" +
                     (reason.empty() ? "" : R"(,"reason":")" + reason + "\"") + R"(,"at":")" +
                     now_rfc3339() + "\"" + pricing + "}";
  return make_event("saga", event_types::kOrderStatusChanged, order_id, data);
}

inline Envelope inventory_updated(const std::string& sku, int64_t available) {
  std::string data = R"({"sku":")" + sku + R"(","delta":-1,"available":)" +
                     std::to_string(available) + R"(,"reserved":1,"orderId":"o-x"})";
  return make_event("inventory", event_types::kInventoryUpdated, sku, data);
}

struct Harness {
  std::string dir;
  Settings settings;
  std::unique_ptr<bus::EventBus> bus;
  std::unique_ptr<db::Database> db;
  std::unique_ptr<bus::OutboxRelay> relay;
  http::Router router;
  std::unique_ptr<ModuleContext> ctx;
  std::unique_ptr<notification::NotificationModule> module;
  std::unique_ptr<http::Server> server;

  std::mutex mu;
  std::vector<Envelope> sent;  // NotificationSent events seen on notifications.sent
  std::unique_ptr<bus::Subscription> watcher;

  /// Notifies every status, so that tests see one notification per status change; the module's
  /// default (received, confirmed, cancelled) has its own test.
  static constexpr const char* kEveryStatus =
      R"({"notify":["order.created","order.stock_reserved","order.payment_authorized",)"
      R"("order.confirmed","order.cancelled"]})";
  /// `config` is the notification section as JSON.
  explicit Harness(std::string data_dir, const std::string& config = kEveryStatus)
      : dir(std::move(data_dir)) {
    auto doc = parse_json_config(R"({"notification":)" + config + "}");
    REQUIRE(doc.ok());
    settings.document = doc.value();
    bus::EmbeddedBusOptions bo;
    bo.path = dir + "/bus.db";
    bo.poll_interval = std::chrono::milliseconds(10);
    bus = std::move(bus::make_embedded_bus(bo)).value();
    db = std::move(db::Database::open(dir + "/notification.db")).value();
    REQUIRE(db::migrate_messaging(*db).ok());
    relay = std::make_unique<bus::OutboxRelay>(*db, *bus);
    ctx.reset(new ModuleContext{*bus, *relay, router, *db, settings});
    module = std::make_unique<notification::NotificationModule>();
    auto st = module->configure(settings.section("notification"));
    if (st) st = module->start(*ctx);
    INFO((st.ok() ? std::string() : st.error().message));
    REQUIRE(st.ok());
    relay->start();
    http::ServerOptions so;
    so.host = "127.0.0.1";
    so.port = 0;
    server = http::make_server(router, so);
    REQUIRE(server->start().ok());
    bus::SubscriptionOptions wo;
    wo.group = "test-watcher";
    wo.topics = {std::string(topics::kNotificationsSent)};
    watcher = std::move(bus->subscribe(wo, [this](const bus::Message& m) {
                std::lock_guard lock(mu);
                sent.push_back(m.envelope);
                return bus::Outcome::ack();
              })).value();
  }

  ~Harness() {
    watcher->close();
    server->stop(std::chrono::milliseconds(2'000));
    module->stop();
    relay->stop();
  }

  uint16_t port() const { return server->port(); }

  void publish(std::string_view topic, const Envelope& e) { REQUIRE(bus->publish(topic, e).ok()); }

  HttpResponse get(const std::string& target) { return http_request(port(), "GET", target); }

  size_t sent_count() {
    std::lock_guard lock(mu);
    return sent.size();
  }

  /// The notifications of an order (newest first) once `pred` holds for them.
  rapidjson::Document notifications_of(const std::string& order_id) {
    auto r = get("/api/notifications?orderId=" + order_id);
    REQUIRE(r.status == 200);
    return parse_json(r.body);
  }
};

/// The notifications of an order (GET /api/notifications?orderId=) once its single notification
/// has left PENDING; fails the test after `timeout`.
inline rapidjson::Document settled_notification(
    Harness& h, const std::string& order_id,
    std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
  std::string body;
  bool settled = eventually(
      [&] {
        auto r = h.get("/api/notifications?orderId=" + order_id);
        body = r.body;
        if (r.status != 200) return false;
        auto d = parse_json(body);
        return d["notifications"].Size() == 1 &&
               str_of(d["notifications"][0], "status") != "PENDING";
      },
      timeout);
  INFO(body);
  REQUIRE(settled);
  return parse_json(body);
}

}  // namespace ecom::test
