// Module-level tests: the payment module wired to a real embedded bus, outbox relay, SQLite store
// and router, driven through bus commands and Router::dispatch.

#include "ecom/payment/payment_module.hpp"

#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <memory>
#include <mutex>
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

/// A module started the way main() starts it, on its own temp directory.
class Harness {
 public:
  explicit Harness(const std::string& config = R"({"payment": {"amount_limit": 5000}})") {
    auto b = bus::make_embedded_bus(bus::EmbeddedBusOptions{.path = dir_.file("bus.db")});
    REQUIRE(b.ok());
    bus_ = std::move(b).value();
    auto d = db::Database::open(dir_.file("payment.db"));
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
    if (auto st = module_.configure(settings_.section("payment")); !st) return st;
    return module_.start(*ctx_);
  }
  bus::EventBus& bus() { return *bus_; }

  http::Response get(std::string target) {
    http::Request r;
    r.method = http::Method::kGet;
    r.target = std::move(target);
    return router_.dispatch(r);
  }

  void send(std::string_view type, const std::string& order_id, const std::string& data) {
    REQUIRE(
        bus_->publish(topics::kPaymentsCommands, make_event("saga", type, order_id, data)).ok());
  }

 private:
  test::TempDir dir_;
  std::unique_ptr<bus::EventBus> bus_;
  std::unique_ptr<db::Database> db_;
  std::unique_ptr<bus::OutboxRelay> relay_;
  http::Router router_;
  Settings settings_;
  std::unique_ptr<ModuleContext> ctx_;
  payment::PaymentModule module_;
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
  size_t for_subject(std::string_view subject) {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& m : messages_) n += m.envelope.subject == subject ? 1 : 0;
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

std::string authorize_json(const std::string& order_id, int64_t amount, const std::string& token) {
  return R"({"orderId":")" + order_id + R"(","amount":)" + std::to_string(amount) +
         R"(,"currency":"USD","paymentToken":")" + token + R"("})";
}

}  // namespace

TEST_CASE("payment module answers commands from the bus", "[payment][module]") {
  Harness h;
  REQUIRE(h.start().ok());
  Collector events(h.bus(), {std::string(topics::kPaymentsEvents)});

  Envelope cmd = make_event("saga", event_types::kAuthorizePayment, "o-ok",
                            authorize_json("o-ok", 2500, "tok_visa"));
  REQUIRE(h.bus().publish(topics::kPaymentsCommands, cmd).ok());
  h.send(event_types::kAuthorizePayment, "o-decline",
         authorize_json("o-decline", 10, "tok_decline"));
  h.send(event_types::kAuthorizePayment, "o-limit", authorize_json("o-limit", 5001, "tok_visa"));
  h.send(event_types::kAuthorizePayment, "o-none",
         R"({"orderId":"o-none","amount":10,"currency":"USD"})");

  REQUIRE(test::eventually(
      [&] {
        return events.count(event_types::kPaymentAuthorized, "o-ok") == 1 &&
               events.count(event_types::kPaymentDeclined, "o-decline") == 1 &&
               events.count(event_types::kPaymentDeclined, "o-limit") == 1 &&
               events.count(event_types::kPaymentDeclined, "o-none") == 1;
      },
      30s));
  auto ok = events.of(event_types::kPaymentAuthorized, "o-ok").front();
  CHECK(ok.key == "o-ok");
  CHECK(ok.envelope.correlation_id == cmd.correlation_id);
  CHECK(ok.envelope.causation_id == cmd.id);
  auto data = parse(ok.envelope.data);
  CHECK(data["amount"].GetInt64() == 2500);
  const std::string payment_id = data["paymentId"].GetString();
  auto reason = [&](const char* order) {
    return std::string(
        parse(events.of(event_types::kPaymentDeclined, order).front().envelope.data)["reason"]
            .GetString());
  };
  CHECK(reason("o-decline") == "CARD_DECLINED");
  CHECK(reason("o-limit") == "AMOUNT_LIMIT_EXCEEDED");  // the configured limit is 5000
  CHECK(reason("o-none") == "MISSING_TOKEN");

  // A redelivered event is ignored; a refund after it is answered once.
  REQUIRE(h.bus().publish(topics::kPaymentsCommands, cmd).ok());
  h.send(event_types::kRefundPayment, "o-ok", R"({"orderId":"o-ok"})");
  REQUIRE(test::eventually([&] { return events.count(event_types::kPaymentRefunded, "o-ok") == 1; },
                           30s));
  CHECK(events.count(event_types::kPaymentAuthorized, "o-ok") == 1);
  auto refunded = parse(events.of(event_types::kPaymentRefunded, "o-ok").front().envelope.data);
  CHECK(refunded["refunded"].GetBool());
  CHECK(refunded["amount"].GetInt64() == 2500);

  auto got = h.get("/api/payments/o-ok");
  REQUIRE(got.status == 200);
  auto p = parse(got.body);
  CHECK(std::string(p["orderId"].GetString()) == "o-ok");
  CHECK(std::string(p["paymentId"].GetString()) == payment_id);
  CHECK(std::string(p["status"].GetString()) == "REFUNDED");
  CHECK(p["amount"].GetInt64() == 2500);
  CHECK(std::string(p["currency"].GetString()) == "USD");
  CHECK_FALSE(p.HasMember("reason"));
  CHECK(is_rfc3339(p["createdAt"].GetString()));
  CHECK(is_rfc3339(p["updatedAt"].GetString()));

  auto declined = parse(h.get("/api/payments/o-decline").body);
  CHECK(std::string(declined["status"].GetString()) == "DECLINED");
  CHECK(std::string(declined["reason"].GetString()) == "CARD_DECLINED");

  auto missing = h.get("/api/payments/o-nope");
  CHECK(missing.status == 404);
  CHECK(std::string(parse(missing.body)["error"]["code"].GetString()) == "NOT_FOUND");
}

TEST_CASE("payment module stays silent for tok_timeout and voids on early refund",
          "[payment][module]") {
  Harness h;
  REQUIRE(h.start().ok());
  Collector events(h.bus(), {std::string(topics::kPaymentsEvents)});

  // Same key, same partition: the refund's answer proves the authorize was processed first.
  h.send(event_types::kAuthorizePayment, "o-t", authorize_json("o-t", 100, "tok_timeout"));
  h.send(event_types::kRefundPayment, "o-t", R"({"orderId":"o-t"})");
  REQUIRE(test::eventually([&] { return events.count(event_types::kPaymentRefunded, "o-t") == 1; },
                           30s));
  CHECK(events.for_subject("o-t") == 1);
  CHECK_FALSE(
      parse(events.of(event_types::kPaymentRefunded, "o-t").front().envelope.data)["refunded"]
          .GetBool());

  // The refund overtook the authorization: the late authorization takes no money.
  h.send(event_types::kRefundPayment, "o-v", R"({"orderId":"o-v"})");
  h.send(event_types::kAuthorizePayment, "o-v", authorize_json("o-v", 100, "tok_visa"));
  REQUIRE(test::eventually([&] { return events.count(event_types::kPaymentDeclined, "o-v") == 1; },
                           30s));
  CHECK(events.count(event_types::kPaymentAuthorized, "o-v") == 0);
  CHECK(std::string(
            parse(events.of(event_types::kPaymentDeclined, "o-v").front().envelope.data)["reason"]
                .GetString()) == "VOIDED");
  auto p = parse(h.get("/api/payments/o-v").body);
  CHECK(std::string(p["status"].GetString()) == "VOIDED");
}

TEST_CASE("payment module dead-letters malformed commands", "[payment][module]") {
  Harness h;
  REQUIRE(h.start().ok());
  const std::string dlq = bus::dlq_topic(topics::kPaymentsCommands);
  Collector dead(h.bus(), {dlq});
  Collector events(h.bus(), {std::string(topics::kPaymentsEvents)});
  h.send(event_types::kAuthorizePayment, "o-m",
         R"({"orderId":"o-m","amount":"lots","currency":"USD"})");
  h.send(event_types::kRefundPayment, "o-m", R"({"order":"o-m"})");
  h.send(event_types::kAuthorizePayment, "o-m", authorize_json("o-m", 100, "tok_visa"));
  REQUIRE(test::eventually(
      [&] { return events.count(event_types::kPaymentAuthorized, "o-m") == 1; }, 30s));
  REQUIRE(test::eventually([&] { return dead.for_subject("o-m") == 2; }, 30s));
}

TEST_CASE("payment module with simulated latency still answers", "[payment][module]") {
  Harness h(R"({"payment": {"latency_ms": 150}})");
  REQUIRE(h.start().ok());
  Collector events(h.bus(), {std::string(topics::kPaymentsEvents)});
  h.send(event_types::kAuthorizePayment, "o-slow", authorize_json("o-slow", 100, "tok_visa"));
  REQUIRE(test::eventually(
      [&] { return events.count(event_types::kPaymentAuthorized, "o-slow") == 1; }, 30s));
}

TEST_CASE("payment module rejects bad configuration at start", "[payment][module]") {
  struct Case {
    const char* config;
    const char* mentions;
  };
  const Case cases[] = {
      {R"({"payment": {"amount_limt": 5}})", "amount_limt"},
      {R"({"payment": {"amount_limit": -5}})", "payment.amount_limit"},
      {R"({"payment": {"amount_limit": "5"}})", "payment.amount_limit"},
      {R"({"payment": {"latency_ms": 60000}})", "payment.latency_ms"},
      {R"({"payment": {"latency_ms": 1.5}})", "payment.latency_ms"},
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
