#include "ecom/core/json.hpp"

#include <catch2/catch.hpp>

using namespace ecom;

TEST_CASE("json::parse_object returns the given error for non-objects") {
  const Error bad{"INVALID_COMMAND", "data must be a JSON object", "data", false};
  for (const char* text : {"", "{", "[1]", "\"x\"", "null"}) {
    auto d = json::parse_object(text, bad);
    REQUIRE_FALSE(d);
    CHECK(d.error().code == "INVALID_COMMAND");
    CHECK(d.error().message == "data must be a JSON object");
    CHECK(d.error().field == "data");
  }
  auto ok = json::parse_object(R"({"a":1})", bad);
  REQUIRE(ok);
  CHECK(ok.value()["a"].GetInt() == 1);
}

TEST_CASE("json::require_string names the field") {
  auto d = json::parse_object(R"({"orderId":"o-1","empty":"","num":3})", Error{});
  REQUIRE(d);
  auto id = json::require_string(d.value(), "orderId", "X");
  REQUIRE(id);
  CHECK(id.value() == "o-1");

  auto missing = json::require_string(d.value(), "currency", "INVALID_COMMAND");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == "INVALID_COMMAND");
  CHECK(missing.error().message == "currency is missing");
  CHECK(missing.error().field == "currency");
  CHECK_FALSE(missing.error().retryable);

  for (const char* name : {"empty", "num"}) {
    auto bad = json::require_string(d.value(), name, "INVALID_COMMAND");
    REQUIRE_FALSE(bad);
    CHECK(bad.error().message == std::string(name) + " must be a non-empty string");
    CHECK(bad.error().field == name);
  }
}

TEST_CASE("json::optional_string: absent, null and wrong type") {
  auto d = json::parse_object(R"({"s":"v","n":null,"i":1})", Error{});
  REQUIRE(d);
  const auto& o = d.value();
  CHECK(json::optional_string(o, "absent", "C").value() == std::nullopt);
  CHECK(json::optional_string(o, "s", "C").value() == std::optional<std::string>("v"));
  CHECK(json::optional_string(o, "n", "C", json::Null::kAbsent).value() == std::nullopt);
  auto null_bad = json::optional_string(o, "n", "C");
  REQUIRE_FALSE(null_bad);
  CHECK(null_bad.error().message == "n must be a string");
  auto wrong = json::optional_string(o, "i", "C", json::Null::kAbsent);
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().code == "C");
  CHECK(wrong.error().message == "i must be a string");
  CHECK(wrong.error().field == "i");
}

TEST_CASE("json writers produce compact JSON") {
  std::string text = json::object([](json::Writer& w) {
    json::write_string(w, "s", std::string_view("a\"b\0c", 5));
    json::write_int64(w, "i", -9'000'000'000);
    json::write_bool(w, "b", true);
    json::key(w, "arr");
    w.StartArray();
    json::str(w, "x");
    w.EndArray();
  });
  CHECK(text == R"({"s":"a\"b\u0000c","i":-9000000000,"b":true,"arr":["x"]})");
  CHECK(json::object([](json::Writer&) {}) == "{}");
}
