#include "validation.hpp"

#include <catch2/catch.hpp>

#include "order_json.hpp"

using ecom::order::parse_new_order;

namespace {

std::string items_of(int n) {
  std::string s = "[";
  for (int i = 0; i < n; ++i)
    s += std::string(i ? "," : "") + R"({"sku":"S","quantity":1,"unitAmount":1})";
  return s + "]";
}

}  // namespace

TEST_CASE("a valid order is parsed with the client's quotes", "[order][validation]") {
  auto r = parse_new_order(
      R"({"customerId":"c-42","currency":"USD","items":[{"sku":"SKU-1","quantity":2,"unitAmount":1250},
          {"sku":"SKU-2","quantity":1,"unitAmount":0}],"paymentToken":"tok_visa"})");
  REQUIRE(r.ok());
  CHECK(r->customer_id == "c-42");
  CHECK(r->currency == "USD");
  REQUIRE(r->items.size() == 2);
  CHECK(r->items[0].sku == "SKU-1");
  CHECK(r->items[0].quantity == 2);
  CHECK(r->items[0].unit_amount == 1250);
  CHECK(r->items[1].unit_amount == 0);
  CHECK_FALSE(r->expected_total);
  CHECK(r->payment_token == "tok_visa");
}

TEST_CASE("prices are optional: the server prices every line from the catalogue",
          "[order][validation]") {
  auto r =
      parse_new_order(R"({"customerId":"c","currency":"EUR","items":[{"sku":"A","quantity":2},)"
                      R"({"sku":"B","quantity":1,"unitAmount":null}],"expectedTotal":4998})");
  REQUIRE(r.ok());
  REQUIRE(r->items.size() == 2);
  CHECK_FALSE(r->items[0].unit_amount);
  CHECK_FALSE(r->items[1].unit_amount);
  CHECK(r->expected_total == 4998);
  // Only what the client sent is passed on to be checked: no invented unitAmount.
  CHECK(ecom::order::encode_items(*r) == R"([{"sku":"A","quantity":2},{"sku":"B","quantity":1}])");
}

TEST_CASE("currency must be a real ISO 4217 code", "[order][validation]") {
  for (const char* ok : {"USD", "EUR", "JPY", "GBP", "CHF"}) {
    INFO(ok);
    CHECK(parse_new_order(std::string(R"({"customerId":"c","currency":")") + ok +
                          R"(","items":[{"sku":"A","quantity":1}]})")
              .ok());
  }
  for (const char* bad : {"XYZ", "ABC", "USX", "XTS", "XAU"}) {
    INFO(bad);
    auto r = parse_new_order(std::string(R"({"customerId":"c","currency":")") + bad +
                             R"(","items":[{"sku":"A","quantity":1}]})");
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ecom::ErrorCode::kValidationFailed);
    CHECK(r.error().field == "currency");
  }
}

TEST_CASE("paymentToken is optional", "[order][validation]") {
  auto r = parse_new_order(
      R"({"customerId":"c","currency":"EUR","items":[{"sku":"A","quantity":1,"unitAmount":5}]})");
  REQUIRE(r.ok());
  CHECK(r->payment_token.empty());
}

TEST_CASE("each validation rule names its field", "[order][validation]") {
  struct Case {
    std::string body;
    ecom::ErrorCode code;
    std::string field;
  };
  const std::string c = R"("customerId":"c-1","currency":"USD")";
  const std::string line = R"({"sku":"S","quantity":1,"unitAmount":1})";
  std::vector<Case> cases = {
      {"{", ecom::ErrorCode::kMalformedJson, ""},
      {"", ecom::ErrorCode::kMalformedJson, ""},
      {"[1]", ecom::ErrorCode::kValidationFailed, ""},
      {R"({"currency":"USD","items":[)" + line + "]}", ecom::ErrorCode::kValidationFailed,
       "customerId"},
      {R"({"customerId":"","currency":"USD","items":[)" + line + "]}",
       ecom::ErrorCode::kValidationFailed, "customerId"},
      {R"({"customerId":42,"currency":"USD","items":[)" + line + "]}",
       ecom::ErrorCode::kValidationFailed, "customerId"},
      {R"({"customerId":"has space","currency":"USD","items":[)" + line + "]}",
       ecom::ErrorCode::kValidationFailed, "customerId"},
      {R"({"customerId":")" + std::string(65, 'x') + R"(","currency":"USD","items":[)" + line +
           "]}",
       ecom::ErrorCode::kValidationFailed, "customerId"},
      {R"({"customerId":"c","items":[)" + line + "]}", ecom::ErrorCode::kValidationFailed,
       "currency"},
      {R"({"customerId":"c","currency":"usd","items":[)" + line + "]}",
       ecom::ErrorCode::kValidationFailed, "currency"},
      {R"({"customerId":"c","currency":"DOLLAR","items":[)" + line + "]}",
       ecom::ErrorCode::kValidationFailed, "currency"},
      {"{" + c + "}", ecom::ErrorCode::kValidationFailed, "items"},
      {"{" + c + R"(,"items":{}})", ecom::ErrorCode::kValidationFailed, "items"},
      {"{" + c + R"(,"items":[]})", ecom::ErrorCode::kValidationFailed, "items"},
      {"{" + c + R"(,"items":)" + items_of(101) + "}", ecom::ErrorCode::kValidationFailed, "items"},
      {"{" + c + R"(,"items":[5]})", ecom::ErrorCode::kValidationFailed, "items[0]"},
      {"{" + c + R"(,"items":[{"quantity":1,"unitAmount":1}]})", ecom::ErrorCode::kValidationFailed,
       "items[0].sku"},
      {"{" + c + R"(,"items":[{"sku":"","quantity":1,"unitAmount":1}]})",
       ecom::ErrorCode::kValidationFailed, "items[0].sku"},
      {"{" + c + R"(,"items":[{"sku":"S","unitAmount":1}]})", ecom::ErrorCode::kValidationFailed,
       "items[0].quantity"},
      {"{" + c + R"(,"items":[)" + line + R"(,{"sku":"S","quantity":0,"unitAmount":1}]})",
       ecom::ErrorCode::kValidationFailed, "items[1].quantity"},
      {"{" + c + R"(,"items":[{"sku":"S","quantity":-3,"unitAmount":1}]})",
       ecom::ErrorCode::kValidationFailed, "items[0].quantity"},
      {"{" + c + R"(,"items":[{"sku":"S","quantity":1.5,"unitAmount":1}]})",
       ecom::ErrorCode::kValidationFailed, "items[0].quantity"},
      {"{" + c + R"(,"items":[{"sku":"S","quantity":"2","unitAmount":1}]})",
       ecom::ErrorCode::kValidationFailed, "items[0].quantity"},
      {"{" + c + R"(,"items":[{"sku":"S","quantity":1,"unitAmount":-1}]})",
       ecom::ErrorCode::kValidationFailed, "items[0].unitAmount"},
      {"{" + c + R"(,"items":[{"sku":"S","quantity":1,"unitAmount":9.99}]})",
       ecom::ErrorCode::kValidationFailed, "items[0].unitAmount"},
      {"{" + c + R"(,"items":[{"sku":"S","quantity":1,"unitAmount":1,"colour":"red"}]})",
       ecom::ErrorCode::kValidationFailed, "items[0].colour"},
      {"{" + c + R"(,"items":[)" + line + R"(],"paymentToken":7})",
       ecom::ErrorCode::kValidationFailed, "paymentToken"},
      {"{" + c + R"(,"items":[)" + line + R"(],"paymentToken":""})",
       ecom::ErrorCode::kValidationFailed, "paymentToken"},
      {"{" + c + R"(,"items":[)" + line + R"(],"coupon":"FREE"})",
       ecom::ErrorCode::kValidationFailed, "coupon"},
      {"{" + c + R"(,"items":[)" + line + R"(],"expectedTotal":-1})",
       ecom::ErrorCode::kValidationFailed, "expectedTotal"},
      {"{" + c + R"(,"items":[)" + line + R"(],"expectedTotal":"12"})",
       ecom::ErrorCode::kValidationFailed, "expectedTotal"},
  };
  for (const auto& tc : cases) {
    INFO("body: " << tc.body.substr(0, 200));
    auto r = parse_new_order(tc.body);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == tc.code);
    CHECK(r.error().field == tc.field);
    CHECK_FALSE(r.error().message.empty());
  }
}

TEST_CASE("exactly 100 lines are accepted", "[order][validation]") {
  auto r = parse_new_order(R"({"customerId":"c","currency":"USD","items":)" + items_of(100) + "}");
  REQUIRE(r.ok());
  CHECK(r->items.size() == 100);
}

TEST_CASE("canonical form ignores whitespace and field order", "[order][validation]") {
  auto a = parse_new_order(
      R"({"customerId":"c","currency":"USD","items":[{"sku":"S","quantity":1,"unitAmount":2}]})");
  auto b = parse_new_order(
      R"({ "items" : [ {"unitAmount":2, "quantity":1, "sku":"S"} ], "currency":"USD", "customerId":"c" })");
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  CHECK(ecom::order::canonical_json(*a) == ecom::order::canonical_json(*b));
}

TEST_CASE("the canonical request built from encoded items is canonical_json byte for byte",
          "[order][validation]") {
  // Stored Idempotency-Keys hold canonical_json; the POST path builds it from the items it
  // already encoded, and must keep matching them.
  for (const char* body :
       {R"({"customerId":"c","currency":"USD","items":[{"sku":"S","quantity":1,"unitAmount":2}]})",
        R"({"customerId":"c-1","currency":"EUR","paymentToken":"tok_visa","items":[)"
        R"({"sku":"A","quantity":3,"unitAmount":1000000000000},)"
        R"({"sku":"B","quantity":1000000,"unitAmount":1}]})",
        R"({"customerId":"c","currency":"USD","items":[{"sku":"S","quantity":1}],)"
        R"("expectedTotal":77})"}) {
    INFO(body);
    auto o = parse_new_order(body);
    REQUIRE(o.ok());
    auto items = ecom::order::encode_items(*o);
    CHECK(ecom::order::canonical_request(*o, items) == ecom::order::canonical_json(*o));
  }
}
