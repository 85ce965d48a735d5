#include "ecom/core/json.hpp"

#include <catch2/catch.hpp>

using namespace ecom;

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
