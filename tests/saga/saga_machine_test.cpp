// The saga state machine on its own: every transition, compensation path, timeout, late and
// duplicate reply, with time given explicitly (no clock, no sleeping).

#include "saga_machine.hpp"

#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "ecom/core/clock.hpp"
#include "ecom/core/topics.hpp"

namespace saga = ecom::saga;
using saga::InputKind;
using saga::SagaState;

namespace {

constexpr int64_t kT0 = 1'767'225'600'000;

saga::Policy test_policy() {
  saga::Policy p;
  p.reserve_timeout_ms = 1'000;
  p.payment_timeout_ms = 2'000;
  p.compensation_timeout_ms = 500;
  p.max_backoff_ms = 4'000;
  return p;
}

/// A short readable name per emission: "ReserveStock", "STATUS CANCELLED(TIMEOUT)", ...
std::string describe(const saga::Emission& e) {
  namespace et = ecom::event_types;
  static const std::map<std::string_view, std::string> kNames{
      {et::kReserveStock, "ReserveStock"},   {et::kReleaseStock, "ReleaseStock"},
      {et::kCommitStock, "CommitStock"},     {et::kAuthorizePayment, "AuthorizePayment"},
      {et::kRefundPayment, "RefundPayment"},
  };
  if (e.type == et::kOrderStatusChanged) {
    rapidjson::Document d;
    d.Parse(e.data.c_str());
    std::string s = "STATUS " + std::string(d["status"].GetString());
    if (d.HasMember("reason")) s += "(" + std::string(d["reason"].GetString()) + ")";
    return s;
  }
  auto it = kNames.find(e.type);
  return it == kNames.end() ? "?" + e.type : it->second;
}

std::vector<std::string> describe(const std::vector<saga::Emission>& es) {
  std::vector<std::string> out;
  for (const auto& e : es) out.push_back(describe(e));
  return out;
}

using Names = std::vector<std::string>;

/// Feeds inputs to decide() and keeps the record, like the module does.
struct Driver {
  saga::Policy policy = test_policy();
  std::optional<saga::SagaRecord> rec;
  int64_t now = kT0;
  int next_event = 0;
  saga::Transition last;
  std::vector<saga::Emission> all;

  saga::Input input(InputKind k) {
    saga::Input in;
    in.kind = k;
    in.order_id = "o-1";
    if (k != InputKind::kTimeout) in.event_id = "e-" + std::to_string(++next_event);
    if (k == InputKind::kStockReserved) {
      // As the inventory priced it from the catalogue: 2 x 1000 + 1 x 500.
      in.amount = 2500;
      in.currency = "USD";
      in.items = {{"SKU-1", 2, 1000, "One"}, {"SKU-2", 1, 500, "Two"}};
    }
    return in;
  }

  Names apply(const saga::Input& in) {
    last = saga::decide(rec, in, now, policy);
    if (last.record) rec = last.record;
    all.insert(all.end(), last.emissions.begin(), last.emissions.end());
    return describe(last.emissions);
  }
  Names on(InputKind k) { return apply(input(k)); }

  Names created(std::optional<std::string> token = "tok_visa") {
    auto in = input(InputKind::kOrderCreated);
    in.customer_id = "c-42";
    in.currency = "USD";
    in.amount = 1;  // never charged: only the catalogue's total (StockReserved) is
    in.payment_token = std::move(token);
    in.items = {{"SKU-1", 2}, {"SKU-2", 1}};
    in.correlation_id = "corr-1";
    in.traceparent = "00-0123456789abcdef0123456789abcdef-0123456789abcdef-01";
    return apply(in);
  }
  Names refunded(bool refunded = true) {
    auto in = input(InputKind::kPaymentRefunded);
    in.refunded = refunded;
    return apply(in);
  }
  Names declined(std::string reason = "CARD_DECLINED") {
    auto in = input(InputKind::kPaymentDeclined);
    in.reason = std::move(reason);
    return apply(in);
  }
  /// Fires the timer at the current deadline.
  Names timeout() {
    REQUIRE(rec);
    REQUIRE(rec->deadline_ms > 0);
    now = rec->deadline_ms;
    return apply(input(InputKind::kTimeout));
  }

  SagaState state() const { return rec->state; }
  const saga::SagaRecord& r() const { return *rec; }

  // Shortcuts to common points of the flow.
  void to_awaiting_payment() {
    created();
    now += 10;
    on(InputKind::kStockReserved);
    REQUIRE(state() == SagaState::kAwaitingPayment);
  }
};

rapidjson::Document parse(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  REQUIRE_FALSE(d.HasParseError());
  return d;
}

}  // namespace

TEST_CASE("happy path: reserve, authorize, commit and confirm", "[saga][machine]") {
  Driver d;
  CHECK(d.created() == Names{"ReserveStock"});
  CHECK(d.state() == SagaState::kAwaitingReservation);
  CHECK(d.r().status == saga::OrderStatus::kPending);
  CHECK(d.r().deadline_ms == kT0 + 1'000);
  CHECK(d.r().correlation_id == "corr-1");
  CHECK(d.last.changed);
  {
    const auto& e = d.last.emissions[0];
    CHECK(e.topic == ecom::topics::kInventoryCommands);
    auto j = parse(e.data);
    CHECK(std::string(j["orderId"].GetString()) == "o-1");
    REQUIRE(j["items"].Size() == 2);
    CHECK(std::string(j["items"][0]["sku"].GetString()) == "SKU-1");
    CHECK(j["items"][0]["quantity"].GetInt64() == 2);
    CHECK_FALSE(j["items"][0].HasMember("unitAmount"));
    // The inventory checks the currency against the products'.
    CHECK(std::string(j["currency"].GetString()) == "USD");
    CHECK_FALSE(j.HasMember("expectedTotal"));
  }

  d.now += 100;
  CHECK(d.on(InputKind::kStockReserved) == Names{"STATUS STOCK_RESERVED", "AuthorizePayment"});
  CHECK(d.state() == SagaState::kAwaitingPayment);
  CHECK(d.r().status == saga::OrderStatus::kStockReserved);
  CHECK(d.r().stock_reserved);
  CHECK(d.r().deadline_ms == d.now + 2'000);
  {
    const auto& st = d.last.emissions[0];
    CHECK(st.topic == ecom::topics::kOrdersStatus);
    auto j = parse(st.data);
    CHECK(std::string(j["orderId"].GetString()) == "o-1");
    CHECK_FALSE(j.HasMember("reason"));
    CHECK(std::string(j["at"].GetString()) == ecom::format_rfc3339(d.now));
    // The order learns its pricing from this status: total and lines as sold.
    CHECK(j["totalAmount"].GetInt64() == 2500);
    CHECK(std::string(j["currency"].GetString()) == "USD");
    REQUIRE(j["items"].Size() == 2);
    CHECK(std::string(j["items"][0]["name"].GetString()) == "One");
    CHECK(j["items"][0]["unitAmount"].GetInt64() == 1000);
    const auto& pay = d.last.emissions[1];
    CHECK(pay.topic == ecom::topics::kPaymentsCommands);
    auto p = parse(pay.data);
    CHECK(p["amount"].GetInt64() == 2500);
    CHECK(std::string(p["currency"].GetString()) == "USD");
    CHECK(std::string(p["paymentToken"].GetString()) == "tok_visa");
  }

  d.now += 100;
  CHECK(d.on(InputKind::kPaymentAuthorized) ==
        Names{"CommitStock", "STATUS CONFIRMED"});  // CONFIRMED implies the authorization
  for (size_t i = 1; i < d.last.emissions.size(); ++i)
    CHECK_FALSE(parse(d.last.emissions[i].data).HasMember("totalAmount"));  // said once
  CHECK(d.state() == SagaState::kConfirmed);
  CHECK(d.r().status == saga::OrderStatus::kConfirmed);
  CHECK(d.r().reason.empty());
  CHECK(d.r().payment_authorized);
  // CommitStock waits for no acknowledgement: the saga is done.
  CHECK(d.r().pending == saga::kPendingNone);
  CHECK(d.r().deadline_ms == 0);
  CHECK(d.on(InputKind::kStockCommitted).empty());  // from an older inventory: ignored
  CHECK_FALSE(d.last.changed);
  CHECK(d.state() == SagaState::kConfirmed);
}

TEST_CASE("AuthorizePayment omits a missing payment token", "[saga][machine]") {
  Driver d;
  d.created(std::nullopt);
  d.on(InputKind::kStockReserved);
  auto j = parse(d.last.emissions.at(1).data);
  CHECK_FALSE(j.HasMember("paymentToken"));
  CHECK(j["amount"].GetInt64() == 2500);
}

TEST_CASE("the payment is authorized for the catalogue total, never the client's quotes",
          "[saga][machine]") {
  Driver d;
  auto in = d.input(InputKind::kOrderCreated);
  in.customer_id = "c-42";
  in.currency = "EUR";
  in.amount = 0;                        // an older producer's totalAmount: ignored
  in.items = {{"SKU-1004", 1, 0, ""}};  // the client claims it costs nothing
  in.expected_total = 0;
  in.payment_token = "tok_visa";
  d.apply(in);
  auto reserve = parse(d.last.emissions.at(0).data);
  CHECK(reserve["items"][0]["unitAmount"].GetInt64() == 0);  // passed on to be checked
  CHECK(reserve["expectedTotal"].GetInt64() == 0);
  CHECK(std::string(reserve["currency"].GetString()) == "EUR");
  CHECK(d.r().expected_total == 0);

  SECTION("the inventory refuses the wrong price: cancelled PRICE_CHANGED, nothing charged") {
    auto failed = d.input(InputKind::kStockReservationFailed);
    failed.reason = "PRICE_CHANGED";
    CHECK(d.apply(failed) == Names{"STATUS CANCELLED(PRICE_CHANGED)"});
    CHECK(d.r().pending == saga::kPendingNone);
  }
  SECTION("the inventory refuses another currency: cancelled CURRENCY_MISMATCH") {
    auto failed = d.input(InputKind::kStockReservationFailed);
    failed.reason = "CURRENCY_MISMATCH";
    CHECK(d.apply(failed) == Names{"STATUS CANCELLED(CURRENCY_MISMATCH)"});
  }
  SECTION("a priced reservation is charged at the catalogue total") {
    auto reserved = d.input(InputKind::kStockReserved);
    reserved.amount = 32999;
    reserved.currency = "EUR";
    reserved.items = {{"SKU-1004", 1, 32999, "Monitor"}};
    CHECK(d.apply(reserved) == Names{"STATUS STOCK_RESERVED", "AuthorizePayment"});
    auto pay = parse(d.last.emissions.at(1).data);
    CHECK(pay["amount"].GetInt64() == 32999);
    CHECK(std::string(pay["currency"].GetString()) == "EUR");
    CHECK(d.r().amount == 32999);
  }
}

TEST_CASE("reservation failure cancels with OUT_OF_STOCK and nothing to undo", "[saga][machine]") {
  Driver d;
  d.created();
  auto in = d.input(InputKind::kStockReservationFailed);
  in.reason = "UNKNOWN_SKU";
  CHECK(d.apply(in) == Names{"STATUS CANCELLED(OUT_OF_STOCK)"});
  CHECK(d.state() == SagaState::kCancelled);
  CHECK(d.r().pending == saga::kPendingNone);
  CHECK(d.r().deadline_ms == 0);
  // A repeat of the failure changes nothing.
  CHECK(d.on(InputKind::kStockReservationFailed).empty());
  CHECK_FALSE(d.last.changed);
}

TEST_CASE("payment decline releases stock, then cancels with PAYMENT_DECLINED", "[saga][machine]") {
  Driver d;
  d.to_awaiting_payment();
  CHECK(d.declined() == Names{"ReleaseStock"});
  CHECK(d.state() == SagaState::kCompensating);
  CHECK(d.r().reason == "PAYMENT_DECLINED");
  CHECK(d.r().status ==
        saga::OrderStatus::kStockReserved);  // not cancelled until the stock is back
  CHECK(d.r().pending == saga::kPendingRelease);
  CHECK(d.r().deadline_ms == d.now + 500);

  CHECK(d.on(InputKind::kStockReleased) == Names{"STATUS CANCELLED(PAYMENT_DECLINED)"});
  CHECK(d.state() == SagaState::kCancelled);
  CHECK_FALSE(d.r().stock_reserved);
  CHECK(d.r().deadline_ms == 0);
  // Duplicate replies have no second effect.
  CHECK(d.on(InputKind::kStockReleased).empty());
  CHECK(d.declined().empty());
  CHECK_FALSE(d.last.changed);
}

TEST_CASE("customer cancellation while awaiting the reservation", "[saga][machine]") {
  Driver d;
  d.created();
  d.now += 10;
  CHECK(d.on(InputKind::kCancellationRequested) == Names{"ReleaseStock"});
  CHECK(d.state() == SagaState::kCompensating);
  CHECK(d.r().reason == "CUSTOMER_CANCELLED");
  CHECK(d.r().pending == saga::kPendingRelease);

  SECTION("the reservation still lands: it is released and the saga then cancels") {
    CHECK(d.on(InputKind::kStockReserved) == Names{"ReleaseStock"});
    CHECK(d.state() == SagaState::kCompensating);
    CHECK(d.r().stock_reserved);
    // A duplicate of the same reservation adds nothing.
    CHECK(d.on(InputKind::kStockReserved).empty());
    CHECK(d.on(InputKind::kStockReleased) == Names{"STATUS CANCELLED(CUSTOMER_CANCELLED)"});
    CHECK_FALSE(d.r().stock_reserved);
    // The reply to the second release is an extra acknowledgement and is ignored.
    CHECK(d.on(InputKind::kStockReleased).empty());
    CHECK(d.r().deadline_ms == 0);
  }
  SECTION("the reservation fails: the release is still acknowledged") {
    CHECK(d.on(InputKind::kStockReservationFailed).empty());
    CHECK(d.state() == SagaState::kCompensating);
    CHECK(d.on(InputKind::kStockReleased) == Names{"STATUS CANCELLED(CUSTOMER_CANCELLED)"});
  }
  SECTION("never any payment command") {
    d.on(InputKind::kStockReserved);
    d.on(InputKind::kStockReleased);
    for (const auto& e : d.all) CHECK(e.topic != ecom::topics::kPaymentsCommands);
  }
}

TEST_CASE("customer cancellation while awaiting payment", "[saga][machine]") {
  Driver d;
  d.to_awaiting_payment();
  CHECK(d.on(InputKind::kCancellationRequested) == Names{"ReleaseStock", "RefundPayment"});
  CHECK(d.state() == SagaState::kCompensating);
  CHECK(d.r().pending == (saga::kPendingRelease | saga::kPendingRefund));

  SECTION("both acknowledgements are needed, in either order") {
    SECTION("release first") {
      CHECK(d.on(InputKind::kStockReleased).empty());
      CHECK(d.state() == SagaState::kCompensating);
      CHECK(d.refunded(false) == Names{"STATUS CANCELLED(CUSTOMER_CANCELLED)"});
    }
    SECTION("refund first") {
      CHECK(d.refunded(false).empty());
      CHECK(d.state() == SagaState::kCompensating);
      CHECK(d.on(InputKind::kStockReleased) == Names{"STATUS CANCELLED(CUSTOMER_CANCELLED)"});
    }
    CHECK(d.state() == SagaState::kCancelled);
    CHECK(d.r().pending == saga::kPendingNone);
  }
  SECTION("the authorization still lands: it is refunded, never confirmed") {
    CHECK(d.on(InputKind::kPaymentAuthorized) == Names{"RefundPayment"});
    CHECK(d.r().payment_authorized);
    CHECK(d.on(InputKind::kPaymentAuthorized).empty());  // duplicate
    CHECK(d.on(InputKind::kStockReleased).empty());
    CHECK(d.refunded() == Names{"STATUS CANCELLED(CUSTOMER_CANCELLED)"});
    CHECK_FALSE(d.r().payment_authorized);
    for (const auto& e : d.all) CHECK(describe(e) != "STATUS CONFIRMED");
    for (const auto& e : d.all) CHECK(describe(e) != "CommitStock");
  }
  SECTION("a decline racing the cancellation changes nothing") {
    CHECK(d.declined().empty());
    CHECK(d.r().reason == "CUSTOMER_CANCELLED");
  }
}

TEST_CASE("cancellation after a decision is ignored", "[saga][machine]") {
  Driver d;
  SECTION("after CONFIRMED") {
    d.to_awaiting_payment();
    d.on(InputKind::kPaymentAuthorized);
    CHECK(d.on(InputKind::kCancellationRequested).empty());
    CHECK_FALSE(d.last.changed);
    CHECK(d.state() == SagaState::kConfirmed);
  }
  SECTION("while compensating") {
    d.to_awaiting_payment();
    d.declined();
    CHECK(d.on(InputKind::kCancellationRequested).empty());
    CHECK(d.r().reason == "PAYMENT_DECLINED");
  }
  SECTION("after CANCELLED") {
    d.created();
    d.on(InputKind::kStockReservationFailed);
    CHECK(d.on(InputKind::kCancellationRequested).empty());
    CHECK(d.r().reason == "OUT_OF_STOCK");
  }
}

TEST_CASE("a cancellation that overtakes OrderCreated cancels outright", "[saga][machine]") {
  Driver d;
  CHECK(d.on(InputKind::kCancellationRequested) == Names{"STATUS CANCELLED(CUSTOMER_CANCELLED)"});
  CHECK(d.state() == SagaState::kCancelled);
  CHECK(d.r().deadline_ms == 0);
  CHECK(d.created().empty());
  CHECK_FALSE(d.last.changed);
  CHECK(d.state() == SagaState::kCancelled);
}

TEST_CASE("reservation timeout releases and cancels with TIMEOUT", "[saga][machine]") {
  Driver d;
  d.created();
  // The timer fires early (a scan that raced with a reply): not due, nothing happens.
  d.now = d.r().deadline_ms - 1;
  CHECK(d.on(InputKind::kTimeout).empty());
  CHECK_FALSE(d.last.changed);

  CHECK(d.timeout() == Names{"ReleaseStock"});
  CHECK(d.last.warn);
  CHECK(d.state() == SagaState::kCompensating);
  CHECK(d.r().reason == "TIMEOUT");
  CHECK(d.r().deadline_ms == d.now + 500);
  CHECK(d.on(InputKind::kStockReleased) == Names{"STATUS CANCELLED(TIMEOUT)"});
  CHECK(d.r().deadline_ms == 0);

  SECTION("a late StockReserved after the decision is released again") {
    d.now += 5'000;
    CHECK(d.on(InputKind::kStockReserved) == Names{"ReleaseStock"});
    CHECK(d.state() == SagaState::kCancelled);
    CHECK(d.r().status == saga::OrderStatus::kCancelled);
    CHECK(d.r().pending == saga::kPendingRelease);
    CHECK(d.r().deadline_ms == d.now + 500);         // and tracked until acknowledged
    CHECK(d.on(InputKind::kStockReserved).empty());  // duplicate
    CHECK(d.on(InputKind::kStockReleased).empty());  // no second CANCELLED
    CHECK(d.r().pending == saga::kPendingNone);
    CHECK(d.r().deadline_ms == 0);
  }
  SECTION("a late StockReserved before the release acknowledgement") {
    // Back in compensation: replay from the start.
    Driver e;
    e.created();
    e.timeout();
    CHECK(e.on(InputKind::kStockReserved) == Names{"ReleaseStock"});
    CHECK(e.on(InputKind::kStockReleased) == Names{"STATUS CANCELLED(TIMEOUT)"});
  }
}

TEST_CASE("payment timeout releases and refunds, then cancels with TIMEOUT", "[saga][machine]") {
  Driver d;
  d.to_awaiting_payment();
  CHECK(d.timeout() == Names{"ReleaseStock", "RefundPayment"});
  CHECK(d.r().reason == "TIMEOUT");
  CHECK(d.r().pending == (saga::kPendingRelease | saga::kPendingRefund));
  CHECK(d.refunded(false).empty());
  CHECK(d.on(InputKind::kStockReleased) == Names{"STATUS CANCELLED(TIMEOUT)"});

  SECTION("a late PaymentAuthorized is refunded") {
    CHECK(d.on(InputKind::kPaymentAuthorized) == Names{"RefundPayment"});
    CHECK(d.state() == SagaState::kCancelled);
    CHECK(d.r().pending == saga::kPendingRefund);
    CHECK(d.on(InputKind::kPaymentAuthorized).empty());
    CHECK(d.refunded().empty());
    CHECK(d.r().pending == saga::kPendingNone);
    CHECK_FALSE(d.r().payment_authorized);
  }
}

TEST_CASE("late PaymentAuthorized after a customer cancellation is refunded", "[saga][machine]") {
  Driver d;
  d.to_awaiting_payment();
  d.on(InputKind::kCancellationRequested);
  d.on(InputKind::kStockReleased);
  d.refunded(false);  // the refund overtook nothing: nothing was authorized yet
  REQUIRE(d.state() == SagaState::kCancelled);
  CHECK(d.on(InputKind::kPaymentAuthorized) == Names{"RefundPayment"});
  CHECK(d.r().deadline_ms > 0);
  CHECK(d.refunded() == Names{});
  CHECK(d.r().deadline_ms == 0);
}

TEST_CASE("unacknowledged compensations are re-sent with doubling backoff", "[saga][machine]") {
  Driver d;
  d.to_awaiting_payment();
  d.declined();
  REQUIRE(d.r().deadline_ms == d.now + 500);

  CHECK(d.timeout() == Names{"ReleaseStock"});
  CHECK(d.last.warn);
  CHECK(d.r().attempts == 1);
  CHECK(d.r().deadline_ms == d.now + 1'000);
  CHECK(d.state() == SagaState::kCompensating);
  CHECK(d.timeout() == Names{"ReleaseStock"});
  CHECK(d.r().attempts == 2);
  CHECK(d.r().deadline_ms == d.now + 2'000);
  CHECK(d.timeout() == Names{"ReleaseStock"});
  CHECK(d.r().deadline_ms == d.now + 4'000);
  CHECK(d.timeout() == Names{"ReleaseStock"});  // capped, and forever
  CHECK(d.r().deadline_ms == d.now + 4'000);
  CHECK(d.r().attempts == 4);
  for (const auto& e : d.all) CHECK(describe(e).rfind("STATUS CANCELLED", 0) == std::string::npos);

  CHECK(d.on(InputKind::kStockReleased) == Names{"STATUS CANCELLED(PAYMENT_DECLINED)"});
  CHECK(d.r().attempts == 0);
  CHECK(d.r().deadline_ms == 0);
}

TEST_CASE("re-sends cover only what is still unacknowledged", "[saga][machine]") {
  Driver d;
  d.to_awaiting_payment();
  d.on(InputKind::kCancellationRequested);
  CHECK(d.timeout() == Names{"ReleaseStock", "RefundPayment"});
  const int64_t deadline = d.r().deadline_ms;
  CHECK(d.on(InputKind::kStockReleased).empty());
  CHECK(d.r().deadline_ms == deadline);  // the refund keeps waiting on its deadline
  CHECK(d.timeout() == Names{"RefundPayment"});
  CHECK(d.refunded() == Names{"STATUS CANCELLED(CUSTOMER_CANCELLED)"});
}

TEST_CASE("a confirmed saga sets no deadline, and one stored awaiting StockCommitted is settled",
          "[saga][machine]") {
  Driver d;
  d.to_awaiting_payment();
  d.on(InputKind::kPaymentAuthorized);
  CHECK(d.r().deadline_ms == 0);
  // As an older release stored it: CommitStock sent, its acknowledgement awaited.
  d.rec->pending = saga::kPendingCommit;
  d.rec->deadline_ms = d.now + 500;
  CHECK(d.timeout().empty());  // nothing re-sent: CommitStock went out with CONFIRMED
  CHECK(d.r().pending == saga::kPendingNone);
  CHECK(d.r().deadline_ms == 0);
  CHECK(d.state() == SagaState::kConfirmed);
  CHECK(d.on(InputKind::kStockCommitted).empty());
  CHECK_FALSE(d.last.changed);
}

TEST_CASE("duplicate replies have no second effect", "[saga][machine]") {
  Driver d;
  CHECK(d.created().size() == 1);
  CHECK(d.created().empty());
  CHECK_FALSE(d.last.changed);
  CHECK(d.on(InputKind::kStockReserved).size() == 2);
  const auto deadline = d.r().deadline_ms;
  d.now += 50;
  CHECK(d.on(InputKind::kStockReserved).empty());
  CHECK_FALSE(d.last.changed);
  CHECK(d.r().deadline_ms == deadline);
  CHECK(d.on(InputKind::kPaymentAuthorized).size() == 2);
  CHECK(d.on(InputKind::kPaymentAuthorized).empty());
  CHECK(d.on(InputKind::kStockReserved).empty());
  CHECK(d.declined().empty());
  CHECK(d.state() == SagaState::kConfirmed);

  // Each command and status exactly once.
  std::map<std::string, int> counts;
  for (const auto& e : d.all) ++counts[describe(e)];
  for (const auto& [name, n] : counts) CHECK(n == 1);
}

TEST_CASE("a timeout that fires twice acts once", "[saga][machine]") {
  Driver d;
  d.created();
  d.timeout();
  const auto once = d.all.size();
  CHECK(d.on(InputKind::kTimeout).empty());  // same instant: the deadline moved on
  CHECK(d.all.size() == once);
}

TEST_CASE("replies for an unknown saga are ignored", "[saga][machine]") {
  for (auto k :
       {InputKind::kStockReserved, InputKind::kStockReservationFailed, InputKind::kStockReleased,
        InputKind::kStockCommitted, InputKind::kPaymentAuthorized, InputKind::kPaymentDeclined,
        InputKind::kPaymentRefunded, InputKind::kTimeout}) {
    Driver d;
    CAPTURE(saga::input_name(k));
    CHECK(d.on(k).empty());
    CHECK_FALSE(d.last.record);
    CHECK_FALSE(d.last.changed);
    if (k != InputKind::kTimeout) CHECK(d.last.warn);
  }
}

TEST_CASE("replies that do not fit the current step are ignored", "[saga][machine]") {
  Driver d;
  d.created();
  for (auto k :
       {InputKind::kStockReleased, InputKind::kStockCommitted, InputKind::kPaymentAuthorized,
        InputKind::kPaymentDeclined, InputKind::kPaymentRefunded}) {
    CAPTURE(saga::input_name(k));
    CHECK(d.on(k).empty());
    CHECK_FALSE(d.last.changed);
    CHECK(d.state() == SagaState::kAwaitingReservation);
  }
}

// Random interleavings of every input: the invariants that make the saga safe must always hold.
TEST_CASE("invariants hold under random input sequences", "[saga][machine]") {
  const std::vector<InputKind> kinds{
      InputKind::kOrderCreated,      InputKind::kCancellationRequested,
      InputKind::kStockReserved,     InputKind::kStockReservationFailed,
      InputKind::kStockReleased,     InputKind::kStockCommitted,
      InputKind::kPaymentAuthorized, InputKind::kPaymentDeclined,
      InputKind::kPaymentRefunded,   InputKind::kTimeout};
  std::mt19937 rng(12345);
  for (int run = 0; run < 2'000; ++run) {
    Driver d;
    if (run % 10 != 0) d.created();
    int terminal_statuses = 0;
    std::string terminal;
    for (int step = 0; step < 25; ++step) {
      const auto k = kinds[rng() % kinds.size()];
      d.now += static_cast<int64_t>(rng() % 1'500);
      auto in = d.input(k);
      in.refunded = rng() % 2 == 0;
      if (k == InputKind::kOrderCreated) {
        in.currency = "USD";
        in.amount = 1;
        in.items = {{"A", 1}};
      }
      auto names = d.apply(in);
      for (const auto& n : names) {
        if (n == "STATUS CONFIRMED" || n.rfind("STATUS CANCELLED", 0) == 0) {
          ++terminal_statuses;
          terminal = n;
        }
      }
      if (!d.rec) continue;
      const auto& r = d.r();
      INFO("run " << run << " step " << step << " input " << saga::input_name(k) << " state "
                  << saga::state_name(r.state) << " note " << d.last.note);
      // One terminal status per order, never followed by another.
      REQUIRE(terminal_statuses <= 1);
      // Nothing waits without a deadline: no saga is ever stuck silently.
      if (r.pending != saga::kPendingNone) REQUIRE(r.deadline_ms > 0);
      if (!saga::is_terminal(r.state)) REQUIRE(r.deadline_ms > 0);
      if (r.state == SagaState::kCompensating) REQUIRE(r.pending != saga::kPendingNone);
      // Anything held by a cancelled order is being undone.
      if (r.state == SagaState::kCompensating || r.state == SagaState::kCancelled) {
        if (r.stock_reserved) REQUIRE((r.pending & saga::kPendingRelease));
        if (r.payment_authorized) REQUIRE((r.pending & saga::kPendingRefund));
        REQUIRE_FALSE(r.reason.empty());
      }
      if (r.state == SagaState::kConfirmed) REQUIRE(r.status == saga::OrderStatus::kConfirmed);
      if (r.state == SagaState::kCancelled) REQUIRE(r.status == saga::OrderStatus::kCancelled);
    }
  }
}

TEST_CASE("parse_input decodes the contract payloads", "[saga][machine]") {
  ecom::Envelope e;
  e.id = "ev-1";
  e.subject = "o-9";
  e.correlation_id = "corr";
  e.type = std::string(ecom::event_types::kOrderCreated);
  e.data = R"({"orderId":"o-9","customerId":"c-42","currency":"USD","totalAmount":2500,)"
           R"("items":[{"sku":"SKU-1","quantity":2,"unitAmount":1250}],"paymentToken":"tok_visa"})";
  auto r = saga::parse_input(e);
  REQUIRE(r);
  REQUIRE(r->has_value());
  const auto& in = **r;
  CHECK(in.kind == InputKind::kOrderCreated);
  CHECK(in.order_id == "o-9");
  CHECK(in.customer_id == "c-42");
  CHECK(in.amount == 0);  // an OrderCreated total is never taken
  CHECK(in.items == std::vector<saga::Item>{{"SKU-1", 2, 1250, ""}});
  CHECK(in.payment_token == std::optional<std::string>("tok_visa"));
  CHECK(in.event_id == "ev-1");
  CHECK(in.correlation_id == "corr");

  SECTION("no payment token") {
    e.data =
        R"({"orderId":"o-9","customerId":"c","currency":"USD","items":[{"sku":"A","quantity":1}]})";
    auto p = saga::parse_input(e);
    REQUIRE(p);
    CHECK_FALSE((*p)->payment_token);
  }
  SECTION("bad payloads are errors (dead letters)") {
    for (
        const char* bad :
        {R"({"orderId":"o-9","currency":"USD","totalAmount":1,"items":[]})",
         R"({"orderId":"o-9","currency":"USD","totalAmount":1,"items":[{"sku":"A","quantity":0}]})",
         R"({"orderId":"o-9","currency":"USD","items":[{"sku":"A","quantity":1,"unitAmount":-1}]})",
         R"({"orderId":"o-9","currency":"USD","expectedTotal":"1","items":[{"sku":"A","quantity":1}]})",
         R"({"orderId":"o-9","totalAmount":1,"items":[{"sku":"A","quantity":1}]})",
         R"({"orderId":7})", R"([1,2])"}) {
      CAPTURE(bad);
      e.data = bad;
      auto p = saga::parse_input(e);
      REQUIRE_FALSE(p);
      CHECK(p.error().code == ecom::ErrorCode::kInvalidPayload);
      CHECK_FALSE(p.error().retryable);
    }
  }
  SECTION("StockReserved carries the catalogue pricing, or it is a dead letter") {
    e.type = std::string(ecom::event_types::kStockReserved);
    e.data = R"({"orderId":"o-9","currency":"USD","totalAmount":4998,)"
             R"("items":[{"sku":"SKU-1","name":"Mouse","quantity":2,"unitAmount":2499}]})";
    auto p = saga::parse_input(e);
    REQUIRE(p);
    CHECK((*p)->amount == 4998);
    CHECK((*p)->currency == "USD");
    CHECK((*p)->items == std::vector<saga::Item>{{"SKU-1", 2, 2499, "Mouse"}});
    for (const char* bad :
         {R"({"orderId":"o-9","items":[{"sku":"A","quantity":1,"unitAmount":1}]})",
          R"({"orderId":"o-9","totalAmount":1,"items":[{"sku":"A","quantity":1}]})",
          R"({"orderId":"o-9","totalAmount":-1,"items":[]})"}) {
      CAPTURE(bad);
      e.data = bad;
      auto q = saga::parse_input(e);
      REQUIRE_FALSE(q);
      CHECK(q.error().code == ecom::ErrorCode::kInvalidPayload);
    }
  }
  SECTION("replies carry their order id; one without it is a dead letter") {
    e.type = std::string(ecom::event_types::kPaymentRefunded);
    e.data = R"({"amount":2500,"refunded":true})";
    auto bad = saga::parse_input(e);
    REQUIRE_FALSE(bad);
    CHECK(bad.error().field == "orderId");
    e.data = R"({"orderId":"o-9","amount":2500,"refunded":true})";
    auto p = saga::parse_input(e);
    REQUIRE(p);
    CHECK((*p)->kind == InputKind::kPaymentRefunded);
    CHECK((*p)->order_id == "o-9");
    CHECK((*p)->refunded);
    e.type = std::string(ecom::event_types::kStockReservationFailed);
    e.data = R"({"orderId":"o-9","reason":"OUT_OF_STOCK","skus":["SKU-1"]})";
    p = saga::parse_input(e);
    REQUIRE(p);
    CHECK((*p)->reason == "OUT_OF_STOCK");
  }
  SECTION("types the saga does not consume are skipped") {
    e.type = std::string(ecom::event_types::kInventoryUpdated);
    auto p = saga::parse_input(e);
    REQUIRE(p);
    CHECK_FALSE(p->has_value());
  }
}

TEST_CASE("states and items round-trip through their stored form", "[saga][machine]") {
  for (auto s : {SagaState::kAwaitingReservation, SagaState::kAwaitingPayment,
                 SagaState::kCompensating, SagaState::kConfirmed, SagaState::kCancelled}) {
    SagaState back{};
    REQUIRE(saga::parse_state(saga::state_name(s), back));
    CHECK(back == s);
  }
  std::vector<saga::Item> items{{"A", 1}, {"B\"x", 30}, {"C", 2, 1999, "Lamp \"L\""}};
  auto back = saga::items_from_json(saga::items_to_json(items));
  REQUIRE(back);
  CHECK(*back == items);
}
