#include "templates.hpp"

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>

#include "ecom/core/config.hpp"

using namespace ecom;
using namespace ecom::notification;

namespace {

TemplateVars vars() {
  return TemplateVars{"o-1", "c-42", "CANCELLED", "PAYMENT_DECLINED", 2500, "USD"};
}

std::shared_ptr<rapidjson::Document> config(const std::string& json) {
  auto d = parse_json_config(json);
  REQUIRE(d.ok());
  return d.value();
}

}  // namespace

TEST_CASE("money is rendered with two decimals from minor units", "[notification][template]") {
  CHECK(format_money(2500) == "25.00");
  CHECK(format_money(0) == "0.00");
  CHECK(format_money(5) == "0.05");
  CHECK(format_money(123456789) == "1234567.89");
  CHECK(format_money(-5) == "-0.05");
  CHECK(format_money(-2599) == "-25.99");
  CHECK(format_money(INT64_MIN) == "-92233720368547758.08");
}

TEST_CASE("placeholders are replaced, unknown ones stay visible", "[notification][template]") {
  auto v = vars();
  CHECK(render("Order {orderId} for {customerId}: {status} ({reason}), {totalAmount} {currency}",
               v) == "Order o-1 for c-42: CANCELLED (PAYMENT_DECLINED), 25.00 USD");
  CHECK(render("{orderId}{orderId}", v) == "o-1o-1");
  CHECK(render("Hello {name}, {orderId}", v) == "Hello {name}, o-1");
  CHECK(render("{}", v) == "{}");
  CHECK(render("{{orderId}}", v) == "{o-1}");
  CHECK(render("unclosed {orderId", v) == "unclosed {orderId");
  CHECK(render("} {", v) == "} {");
  CHECK(render("", v).empty());
  CHECK(render("no placeholders", v) == "no placeholders");
  // The customer reads the reason in words, never the code.
  CHECK(render("cancelled: {reasonText}", v) == "cancelled: the payment was declined.");
  auto cancelled = render(default_templates().at("order.cancelled"), v);
  CHECK(cancelled.body.find("the payment was declined.") != std::string::npos);
  CHECK(cancelled.body.find("PAYMENT_DECLINED") == std::string::npos);
  CHECK(reason_text("OUT_OF_STOCK") == "some items are out of stock, so nothing was charged.");
  CHECK(reason_text("SOME_NEW-CODE") == "some new code.");
  TemplateVars empty;
  CHECK(render("[{reason}]", empty) == "[]");
  CHECK(render("[{reasonText}]", empty) == "[]");
  CHECK(render("{totalAmount}", empty) == "0.00");
}

TEST_CASE("every status has a default template that renders", "[notification][template]") {
  auto defaults = default_templates();
  REQUIRE(defaults.size() == template_keys().size());
  for (std::string_view status :
       {"PENDING", "STOCK_RESERVED", "PAYMENT_AUTHORIZED", "CONFIRMED", "CANCELLED"}) {
    auto key = template_key_for_status(status);
    REQUIRE(key);
    auto t = defaults.find(*key);
    REQUIRE(t != defaults.end());
    auto out = render(t->second, vars());
    CHECK(out.subject.find("o-1") != std::string::npos);
    CHECK(out.subject.find('{') == std::string::npos);
    CHECK(out.body.find('{') == std::string::npos);
  }
  CHECK(*template_key_for_status("PENDING") == "order.created");
  CHECK(*template_key_for_status("CANCELLED") == "order.cancelled");
  CHECK_FALSE(template_key_for_status("SHIPPED"));
  CHECK(render(defaults.at("order.cancelled"), vars()).body.find("the payment was declined") !=
        std::string::npos);
  CHECK(render(defaults.at("order.confirmed"), vars()).body.find("25.00 USD") != std::string::npos);
}

TEST_CASE("templates from config override the defaults per field", "[notification][template]") {
  auto doc = config(R"({"templates":{"order.confirmed":{"subject":"Yay {orderId}"},
                                     "order.cancelled":{"subject":"Nope","body":"{reason}!"}}})");
  ConfigSection root(doc.get(), "notification");
  auto t = templates_from_config(root.section("templates"));
  REQUIRE(t.ok());
  CHECK(t->at("order.confirmed").subject == "Yay {orderId}");
  CHECK(t->at("order.confirmed").body == default_templates().at("order.confirmed").body);
  CHECK(render(t->at("order.cancelled"), vars()).body == "PAYMENT_DECLINED!");
  CHECK(t->at("order.created").subject == default_templates().at("order.created").subject);

  auto none = templates_from_config(ConfigSection());
  REQUIRE(none.ok());
  CHECK(none->size() == 5);
}

TEST_CASE("unknown template keys and fields are config errors", "[notification][template]") {
  auto doc = config(R"({"templates":{"order.shipped":{"subject":"x"}}})");
  auto r = templates_from_config(ConfigSection(doc.get(), "notification").section("templates"));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ecom::ErrorCode::kConfigInvalid);
  CHECK(r.error().field == "notification.templates.order.shipped");
  CHECK(r.error().message.find("order.confirmed") != std::string::npos);

  auto doc2 = config(R"({"templates":{"order.created":{"subjct":"x"}}})");
  auto r2 = templates_from_config(ConfigSection(doc2.get(), "notification").section("templates"));
  REQUIRE_FALSE(r2.ok());
  CHECK(r2.error().code == ecom::ErrorCode::kConfigInvalid);

  auto doc3 = config(R"({"templates":{"order.created":"text"}})");
  auto r3 = templates_from_config(ConfigSection(doc3.get(), "notification").section("templates"));
  REQUIRE_FALSE(r3.ok());
}

TEST_CASE("config/ecomd.json carries the built-in templates", "[notification][template]") {
  std::ifstream in(std::string(ECOM_SOURCE_DIR) + "/config/ecomd.json");
  std::stringstream text;
  text << in.rdbuf();
  auto doc = parse_json_config(text.str());
  REQUIRE(doc.ok());
  ConfigSection root(doc.value().get(), "");
  auto t = templates_from_config(root.section("notification").section("templates"));
  REQUIRE(t.ok());
  auto defaults = default_templates();
  for (const auto& key : template_keys()) {
    INFO(key);
    CHECK(t->at(std::string(key)).subject == defaults.at(std::string(key)).subject);
    CHECK(t->at(std::string(key)).body == defaults.at(std::string(key)).body);
  }
}
