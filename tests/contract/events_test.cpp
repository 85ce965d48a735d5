#include "ecom/contract/events.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using namespace ecom;
using namespace ecom::contract;

namespace {

// decode(encode(e)) == e for every field, and the error of a bad payload names its field.
template <typename E>
E round_trip(const E& e) {
  auto back = E::decode(e.encode());
  INFO(e.encode());
  REQUIRE(back.ok());
  return back.value();
}

template <typename E>
void refuses(std::string_view data, std::string_view field) {
  INFO(data);
  auto r = E::decode(data);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ecom::ErrorCode::kInvalidPayload);
  CHECK(r.error().field == field);
  CHECK_FALSE(r.error().retryable);
  CHECK_FALSE(r.error().message.empty());
}

}  // namespace

TEST_CASE("order statuses: names, ranks, terminal", "[contract]") {
  for (auto s : kAllStatuses) CHECK(parse_order_status(name(s)) == s);
  CHECK_FALSE(parse_order_status("SHIPPED"));
  CHECK_FALSE(parse_order_status("pending"));
  CHECK(rank(OrderStatus::kPending) < rank(OrderStatus::kStockReserved));
  CHECK(rank(OrderStatus::kStockReserved) < rank(OrderStatus::kPaymentAuthorized));
  CHECK(rank(OrderStatus::kPaymentAuthorized) < rank(OrderStatus::kConfirmed));
  CHECK(rank(OrderStatus::kConfirmed) == rank(OrderStatus::kCancelled));
  CHECK(is_terminal(OrderStatus::kCancelled));
  CHECK_FALSE(is_terminal(OrderStatus::kPaymentAuthorized));
}

TEST_CASE("OrderCreated carries quotes, never a total", "[contract]") {
  OrderCreated e{"o-1", "c-42",    "EUR", {{"SKU-1", 2, 1250, ""}, {"SKU-2", 1, std::nullopt, ""}},
                 2500,  "tok_visa"};
  CHECK(round_trip(e).items == e.items);
  CHECK(round_trip(e).expected_total == 2500);
  CHECK(round_trip(e).payment_token == "tok_visa");
  CHECK(e.encode().find("totalAmount") == std::string::npos);
  // An older producer's totalAmount is read past, not taken.
  auto old =
      OrderCreated::decode(R"({"orderId":"o","customerId":"c","currency":"USD","totalAmount":1,)"
                           R"("items":[{"sku":"A","quantity":1,"unitAmount":1}]})");
  REQUIRE(old.ok());
  CHECK_FALSE(old->expected_total);
  refuses<OrderCreated>(R"({"orderId":"o","customerId":"c","currency":"USD","items":[]})", "items");
  refuses<OrderCreated>(
      R"({"orderId":"o","customerId":"c","currency":"USD","items":[{"sku":"A","quantity":0}]})",
      "items[0].quantity");
  refuses<OrderCreated>(R"({"orderId":"o","customerId":"c","currency":"USD",)"
                        R"("items":[{"sku":"A","quantity":1},{"sku":"B","quantity":1,)"
                        R"("unitAmount":-1}]})",
                        "items[1].unitAmount");
  refuses<OrderCreated>(R"({"orderId":"o","currency":"USD","items":[{"sku":"A","quantity":1}]})",
                        "customerId");
  refuses<OrderCreated>(R"([1])", "data");
  refuses<OrderCreated>("not json", "data");
}

TEST_CASE("OrderStatusChanged: status typed, pricing all or nothing", "[contract]") {
  OrderStatusChanged e{"o-1", OrderStatus::kCancelled, "PRICE_CHANGED", "2026-11-22T02:06:38.200Z",
                       std::nullopt};
  auto back = round_trip(e);
  CHECK(back.status == OrderStatus::kCancelled);
  CHECK(back.reason == "PRICE_CHANGED");
  CHECK_FALSE(back.pricing);
  e.status = OrderStatus::kStockReserved;
  e.reason.clear();
  e.pricing = Pricing{4998, "USD", {{"SKU-1", 2, 2499, "Mouse"}}};
  CHECK(round_trip(e).pricing == e.pricing);
  refuses<OrderStatusChanged>(R"({"orderId":"o","status":"SHIPPED"})", "status");
  refuses<OrderStatusChanged>(R"({"orderId":"o","status":"PENDING","at":"yesterday"})", "at");
  refuses<OrderStatusChanged>(
      R"({"orderId":"o","status":"STOCK_RESERVED","totalAmount":"free","currency":"USD","items":[]})",
      "totalAmount");
  refuses<OrderStatusChanged>(R"({"orderId":"o","status":"STOCK_RESERVED","totalAmount":5,)"
                              R"("currency":"USD","items":[{"sku":"A","quantity":1}]})",
                              "items[0].unitAmount");
}

TEST_CASE("inventory commands and replies round-trip", "[contract]") {
  ReserveStock r{"o-1", "USD", {{"A", 3, 100, ""}}, 300};
  CHECK(round_trip(r).items == r.items);
  CHECK(round_trip(r).expected_total == 300);
  refuses<ReserveStock>(R"({"orderId":"o","items":[{"sku":"A","quantity":1}]})", "currency");
  CHECK(round_trip(ReleaseStock{"o-2"}).order_id == "o-2");
  CHECK(round_trip(CommitStock{"o-3"}).order_id == "o-3");
  refuses<CommitStock>(R"({"orderId":""})", "orderId");

  StockReserved s{"o-1", {4998, "USD", {{"SKU-1", 2, 2499, "Mouse"}}}};
  CHECK(round_trip(s).pricing == s.pricing);
  refuses<StockReserved>(R"({"orderId":"o","items":[{"sku":"A","quantity":1,"unitAmount":1}]})",
                         "totalAmount");

  StockReservationFailed f{"o-1", "OUT_OF_STOCK", {"A", "B"}};
  CHECK(round_trip(f).skus == f.skus);
  refuses<StockReservationFailed>(R"({"orderId":"o","reason":"X","skus":[1]})", "skus");

  StockReleased rel{"o-1", {{"A", 2}}};
  CHECK(round_trip(rel).items == rel.items);
  CHECK(round_trip(StockCommitted{"o-1", {}}).items.empty());

  InventoryUpdated u{"A", -2, 8, 2, std::nullopt};
  CHECK(round_trip(u).delta == -2);
  CHECK_FALSE(round_trip(u).order_id);
  u.order_id = "o-1";
  CHECK(round_trip(u).order_id == "o-1");
  // Order changes carry no catalogue fields; admin changes carry them, a delete says so.
  CHECK(u.encode().find("name") == std::string::npos);
  CHECK(u.encode().find("deleted") == std::string::npos);
  InventoryUpdated admin{"A", 0, 8, 2, std::nullopt, "Mouse", 2499, "EUR", true};
  auto back = round_trip(admin);
  CHECK(back.name == "Mouse");
  CHECK(back.unit_amount == 2499);
  CHECK(back.currency == "EUR");
  CHECK(back.deleted);
  refuses<InventoryUpdated>(R"({"sku":"A","delta":0,"available":1,"reserved":0,"deleted":1})",
                            "deleted");
  CHECK(round_trip(StockDepleted{"A", 0, 5}).threshold == 5);
  CHECK(std::string(StockLevelLow::kType) == "ecom.inventory.stock-level-low.v1");
}

TEST_CASE("payment commands and replies round-trip", "[contract]") {
  AuthorizePayment a{"o-1", 32999, "EUR", std::nullopt};
  CHECK_FALSE(round_trip(a).payment_token);
  CHECK(round_trip(a).amount == 32999);
  refuses<AuthorizePayment>(R"({"orderId":"o","amount":-1,"currency":"USD"})", "amount");
  CHECK(round_trip(PaymentAuthorized{"o-1", "pay-1", 5, "USD"}).payment_id == "pay-1");
  CHECK(round_trip(PaymentDeclined{"o-1", "CARD_DECLINED"}).reason == "CARD_DECLINED");
  CHECK(round_trip(PaymentRefunded{"o-1", 5, true}).refunded);
  refuses<PaymentRefunded>(R"({"orderId":"o","refunded":"yes"})", "refunded");
}

TEST_CASE("contract::make builds the envelope from the event", "[contract]") {
  auto e = make("saga", ReleaseStock{"o-7"});
  CHECK(e.type == ReleaseStock::kType);
  CHECK(e.subject == "o-7");
  CHECK(e.source == "saga");
  CHECK(ReleaseStock::decode(e.data).value().order_id == "o-7");
  NotificationSent n{"n-1", "o-7",
                     "c-1", "CONFIRMED",
                     "log", "Order o-7 confirmed",
                     1,     "2026-11-22T02:06:38.400Z"};
  auto sent = make("notification", n);
  CHECK(sent.subject == "o-7");
  CHECK(round_trip(n).subject_line == "Order o-7 confirmed");
}
