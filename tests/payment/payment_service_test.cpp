// Business-logic tests: the simulated payment gateway against a real SQLite store on a temp file.

#include "payment_service.hpp"

#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "ecom/core/clock.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "support/test_support.hpp"

using namespace ecom;
using namespace ecom::payment;

namespace {

struct Emitted {
  std::string topic;
  Envelope envelope;
  rapidjson::Document data;
};

class Store {
 public:
  Store() {
    auto opened = db::Database::open(dir_.file("payment.db"));
    REQUIRE(opened.ok());
    db_ = std::move(opened).value();
    REQUIRE(db::migrate_messaging(*db_).ok());
    REQUIRE(db_->migrate("payment", migrations()).ok());
  }

  db::Database& db() { return *db_; }

  AuthorizeResult authorize(const std::string& order_id, const std::string& token,
                            int64_t amount = 2500, std::string currency = "USD") {
    AuthorizeCommand cmd{order_id, amount, std::move(currency), token};
    Envelope cause = make_event("saga", event_types::kAuthorizePayment, order_id, "{}");
    auto r = db_->transaction([&](db::Tx& tx) -> Result<AuthorizeResult> {
      return authorize_payment(tx, rules, cmd, cause);
    });
    REQUIRE(r.ok());
    return r.value();
  }

  RefundResult refund(const std::string& order_id) {
    Envelope cause = make_event("saga", event_types::kRefundPayment, order_id, "{}");
    auto r = db_->transaction(
        [&](db::Tx& tx) -> Result<RefundResult> { return refund_payment(tx, order_id, cause); });
    REQUIRE(r.ok());
    return r.value();
  }

  std::optional<Payment> payment(const std::string& order_id) {
    auto p = db_->read(
        [&](db::Tx& tx) -> Result<std::optional<Payment>> { return find_payment(tx, order_id); });
    REQUIRE(p.ok());
    return p.value();
  }

  int64_t rows() {
    auto n = db_->read([](db::Tx& tx) -> Result<int64_t> {
      auto s = tx.stmt("SELECT COUNT(*) FROM payments");
      return s.step() ? s.col_int(0) : 0;
    });
    REQUIRE(n.ok());
    return n.value();
  }

  /// Takes (and removes) everything queued in the outbox so far.
  std::vector<Emitted> take_events() {
    auto rows = db_->transaction([&](db::Tx& tx) -> Result<std::vector<db::OutboxRow>> {
      auto rows = db::outbox_peek(tx, 100000);
      if (!rows.empty()) db::outbox_remove_through(tx, rows.back().seq);
      return rows;
    });
    REQUIRE(rows.ok());
    std::vector<Emitted> out;
    for (const auto& row : rows.value()) {
      auto env = decode_envelope(row.payload);
      REQUIRE(env.ok());
      CHECK(row.topic == topics::kPaymentsEvents);
      CHECK(row.key == env->subject);
      Emitted e{row.topic, env.value(), {}};
      e.data.Parse(e.envelope.data.c_str());
      REQUIRE(e.data.IsObject());
      out.push_back(std::move(e));
    }
    return out;
  }

  Rules rules;

 private:
  test::TempDir dir_;
  std::unique_ptr<db::Database> db_;
};

}  // namespace

TEST_CASE("gateway decision rules", "[payment]") {
  Rules rules;
  rules.amount_limit = 1000;
  auto decision = [&](std::string token, int64_t amount) {
    std::string reason = "stale";
    AuthorizeCommand cmd{"o", amount, "USD", std::move(token)};
    Decision d = decide(rules, cmd, &reason);
    switch (d) {
      case Decision::kAuthorized:
        CHECK(reason.empty());
        return std::string("AUTHORIZED");
      case Decision::kNoAnswer:
        return std::string("NO_ANSWER");
      case Decision::kDeclined:
        break;
    }
    return reason;
  };
  CHECK(decision("tok_visa", 1000) == "AUTHORIZED");
  CHECK(decision("tok_anything_else", 0) == "AUTHORIZED");
  CHECK(decision("tok_visa", 1001) == "AMOUNT_LIMIT_EXCEEDED");
  CHECK(decision("tok_decline", 10) == "CARD_DECLINED");
  CHECK(decision("tok_insufficient_funds", 10) == "INSUFFICIENT_FUNDS");
  CHECK(decision("", 10) == "MISSING_TOKEN");
  CHECK(decision("tok_timeout", 10) == "NO_ANSWER");
  CHECK(decision("tok_timeout", 5000) == "NO_ANSWER");
}

TEST_CASE("an authorization is recorded and answered", "[payment]") {
  Store s;
  auto r = s.authorize("o-1", "tok_visa", 2500, "EUR");
  REQUIRE(r.decision == Decision::kAuthorized);
  CHECK(r.payment_id.rfind("pay-", 0) == 0);
  CHECK_FALSE(r.repeated);

  auto events = s.take_events();
  REQUIRE(events.size() == 1);
  CHECK(events[0].envelope.type == event_types::kPaymentAuthorized);
  CHECK(events[0].envelope.subject == "o-1");
  CHECK(events[0].envelope.source == "payment");
  CHECK(std::string(events[0].data["orderId"].GetString()) == "o-1");
  CHECK(std::string(events[0].data["paymentId"].GetString()) == r.payment_id);
  CHECK(events[0].data["amount"].GetInt64() == 2500);
  CHECK(std::string(events[0].data["currency"].GetString()) == "EUR");

  auto p = s.payment("o-1");
  REQUIRE(p);
  CHECK(p->status == "AUTHORIZED");
  CHECK(p->payment_id == r.payment_id);
  CHECK(p->amount == 2500);
  CHECK(p->currency == "EUR");
  CHECK(p->reason.empty());
  CHECK(is_rfc3339(p->created_at));
  CHECK(is_rfc3339(p->updated_at));
  CHECK_FALSE(s.payment("o-unknown"));
}

TEST_CASE("every decline rule answers PaymentDeclined with its reason", "[payment]") {
  Store s;
  s.rules.amount_limit = 10'000;
  struct Case {
    const char* order;
    const char* token;
    int64_t amount;
    const char* reason;
  };
  const Case cases[] = {
      {"o-decline", "tok_decline", 100, "CARD_DECLINED"},
      {"o-funds", "tok_insufficient_funds", 100, "INSUFFICIENT_FUNDS"},
      {"o-missing", "", 100, "MISSING_TOKEN"},
      {"o-limit", "tok_visa", 10'001, "AMOUNT_LIMIT_EXCEEDED"},
  };
  for (const auto& c : cases) {
    INFO(c.order);
    auto r = s.authorize(c.order, c.token, c.amount);
    CHECK(r.decision == Decision::kDeclined);
    CHECK(r.reason == c.reason);
    auto events = s.take_events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].envelope.type == event_types::kPaymentDeclined);
    CHECK(std::string(events[0].data["orderId"].GetString()) == c.order);
    CHECK(std::string(events[0].data["reason"].GetString()) == c.reason);
    auto p = s.payment(c.order);
    REQUIRE(p);
    CHECK(p->status == "DECLINED");
    CHECK(p->reason == c.reason);
  }
}

TEST_CASE("tok_timeout is recorded and never answered", "[payment]") {
  Store s;
  auto r = s.authorize("o-t", "tok_timeout");
  CHECK(r.decision == Decision::kNoAnswer);
  CHECK(s.take_events().empty());
  REQUIRE(s.payment("o-t"));
  CHECK(s.payment("o-t")->status == "TIMEOUT_SIMULATED");
  auto again = s.authorize("o-t", "tok_timeout");
  CHECK(again.decision == Decision::kNoAnswer);
  CHECK(again.repeated);
  CHECK(s.take_events().empty());
  CHECK(s.rows() == 1);
}

TEST_CASE("AuthorizePayment is idempotent per order", "[payment]") {
  Store s;
  SECTION("an authorization repeats with the same payment and one row") {
    auto first = s.authorize("o-1", "tok_visa", 700);
    s.take_events();
    // A resend may even carry other values: the recorded answer wins.
    auto again = s.authorize("o-1", "tok_visa", 999);
    CHECK(again.repeated);
    CHECK(again.decision == Decision::kAuthorized);
    CHECK(again.payment_id == first.payment_id);
    auto events = s.take_events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].envelope.type == event_types::kPaymentAuthorized);
    CHECK(std::string(events[0].data["paymentId"].GetString()) == first.payment_id);
    CHECK(events[0].data["amount"].GetInt64() == 700);
    CHECK(s.rows() == 1);
    CHECK(s.payment("o-1")->amount == 700);
  }
  SECTION("a decline repeats as the same decline") {
    s.authorize("o-1", "tok_decline");
    s.take_events();
    auto again = s.authorize("o-1", "tok_visa");
    CHECK(again.repeated);
    CHECK(again.decision == Decision::kDeclined);
    CHECK(again.reason == "CARD_DECLINED");
    auto events = s.take_events();
    REQUIRE(events.size() == 1);
    CHECK(std::string(events[0].data["reason"].GetString()) == "CARD_DECLINED");
    CHECK(s.payment("o-1")->status == "DECLINED");
    CHECK(s.rows() == 1);
  }
}

TEST_CASE("a refund only returns money that was authorized, once", "[payment]") {
  Store s;
  SECTION("authorized: refunded") {
    s.authorize("o-1", "tok_visa", 2500);
    s.take_events();
    auto r = s.refund("o-1");
    CHECK(r.refunded);
    CHECK(r.amount == 2500);
    CHECK(s.payment("o-1")->status == "REFUNDED");
    auto events = s.take_events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].envelope.type == event_types::kPaymentRefunded);
    CHECK(events[0].data["refunded"].GetBool());
    CHECK(events[0].data["amount"].GetInt64() == 2500);

    auto again = s.refund("o-1");  // same answer, no second refund
    CHECK(again.refunded);
    CHECK(again.amount == 2500);
    CHECK(s.payment("o-1")->status == "REFUNDED");
    auto repeat_events = s.take_events();
    REQUIRE(repeat_events.size() == 1);
    CHECK(repeat_events[0].data["amount"].GetInt64() == 2500);
    CHECK(s.rows() == 1);

    // An AuthorizePayment resent after the refund replays the original answer; it does not
    // authorize again.
    auto late = s.authorize("o-1", "tok_visa", 2500);
    CHECK(late.repeated);
    CHECK(s.payment("o-1")->status == "REFUNDED");
  }
  SECTION("declined: nothing to refund") {
    s.authorize("o-1", "tok_decline");
    s.take_events();
    auto r = s.refund("o-1");
    CHECK_FALSE(r.refunded);
    CHECK(r.amount == 0);
    CHECK(s.payment("o-1")->status == "DECLINED");
    auto events = s.take_events();
    REQUIRE(events.size() == 1);
    CHECK_FALSE(events[0].data["refunded"].GetBool());
    CHECK(events[0].data["amount"].GetInt64() == 0);
  }
  SECTION("timed out: nothing to refund, and the attempt is voided") {
    s.authorize("o-1", "tok_timeout");
    auto r = s.refund("o-1");
    CHECK_FALSE(r.refunded);
    CHECK(r.amount == 0);
    CHECK(s.payment("o-1")->status == "VOIDED");
    CHECK(s.take_events().size() == 1);
  }
}

TEST_CASE("a refund that overtakes its authorization voids the order", "[payment]") {
  Store s;
  auto r = s.refund("o-1");
  CHECK_FALSE(r.refunded);
  CHECK(r.amount == 0);
  auto p = s.payment("o-1");
  REQUIRE(p);
  CHECK(p->status == "VOIDED");
  CHECK(p->payment_id.empty());
  auto events = s.take_events();
  REQUIRE(events.size() == 1);
  CHECK(events[0].envelope.type == event_types::kPaymentRefunded);
  CHECK_FALSE(events[0].data["refunded"].GetBool());

  auto late = s.authorize("o-1", "tok_visa", 2500);
  CHECK(late.decision == Decision::kDeclined);
  CHECK(late.reason == "VOIDED");
  events = s.take_events();
  REQUIRE(events.size() == 1);
  CHECK(events[0].envelope.type == event_types::kPaymentDeclined);
  CHECK(std::string(events[0].data["reason"].GetString()) == "VOIDED");
  p = s.payment("o-1");
  CHECK(p->status == "VOIDED");
  CHECK(p->reason == "VOIDED");

  auto repeat = s.authorize("o-1", "tok_visa", 2500);
  CHECK(repeat.repeated);
  CHECK(repeat.decision == Decision::kDeclined);
  CHECK(repeat.reason == "VOIDED");
  CHECK_FALSE(s.refund("o-1").refunded);
  CHECK(s.rows() == 1);
}

TEST_CASE("malformed payment commands are rejected with the field", "[payment]") {
  struct Case {
    const char* json;
    const char* field;
  };
  const Case cases[] = {
      {R"("x")", "data"},
      {R"({"amount":1,"currency":"USD","paymentToken":"t"})", "orderId"},
      {R"({"orderId":5,"amount":1,"currency":"USD"})", "orderId"},
      {R"({"orderId":"o","currency":"USD"})", "amount"},
      {R"({"orderId":"o","amount":"10","currency":"USD"})", "amount"},
      {R"({"orderId":"o","amount":-1,"currency":"USD"})", "amount"},
      {R"({"orderId":"o","amount":10.5,"currency":"USD"})", "amount"},
      {R"({"orderId":"o","amount":10})", "currency"},
      {R"({"orderId":"o","amount":10,"currency":""})", "currency"},
      {R"({"orderId":"o","amount":10,"currency":"USD","paymentToken":42})", "paymentToken"},
  };
  for (const auto& c : cases) {
    INFO(c.json);
    auto r = parse_authorize_payment(c.json);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ecom::ErrorCode::kInvalidPayload);
    CHECK(r.error().field == c.field);
  }
  auto no_token = parse_authorize_payment(R"({"orderId":"o","amount":10,"currency":"USD"})");
  REQUIRE(no_token.ok());
  CHECK(no_token->payment_token.empty());
  auto null_token = parse_authorize_payment(
      R"({"orderId":"o","amount":10,"currency":"USD","paymentToken":null})");
  REQUIRE(null_token.ok());
  CHECK(null_token->payment_token.empty());
  auto full = parse_authorize_payment(
      R"({"orderId":"o-7","amount":2500,"currency":"USD","paymentToken":"tok_visa"})");
  REQUIRE(full.ok());
  CHECK(full->order_id == "o-7");
  CHECK(full->amount == 2500);
  CHECK(full->payment_token == "tok_visa");

  CHECK(parse_refund_payment(R"({"orderId":"o-1"})").value() == "o-1");
  CHECK(parse_refund_payment(R"({})").error().field == "orderId");
}
