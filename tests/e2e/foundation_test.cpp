#include <rapidjson/document.h>

#include <catch2/catch.hpp>

#include "support/test_support.hpp"

using ecom::test::Ecomd;
using ecom::test::TempDir;

namespace {

const std::string kOrder =
    R"({"customerId":"c-42","currency":"USD","items":[{"sku":"SKU-1","quantity":2,"unitAmount":1250}],"paymentToken":"tok_visa"})";

std::string field(const std::string& json, const char* name) {
  rapidjson::Document d;
  d.Parse(json.c_str());
  if (d.HasParseError() || !d.IsObject() || !d.HasMember(name) || !d[name].IsString()) return {};
  return d[name].GetString();
}

}  // namespace

TEST_CASE("an order survives kill -9 of ecomd --role=all", "[e2e]") {
  TempDir dir;
  std::string id;
  std::string before;
  {
    Ecomd ecomd(dir.path());
    auto created = ecomd.post("/api/orders", kOrder);
    REQUIRE(created.status == 202);
    id = field(created.body, "orderId");
    REQUIRE_FALSE(id.empty());
    CHECK(created.header("location") == "/api/orders/" + id);
    auto got = ecomd.get("/api/orders/" + id);
    REQUIRE(got.status == 200);
    CHECK(field(got.body, "orderId") == id);
    before = field(got.body, "createdAt");
    ecomd.kill9();
  }
  Ecomd again(dir.path());
  auto got = again.get("/api/orders/" + id);
  REQUIRE(got.status == 200);
  CHECK(field(got.body, "orderId") == id);
  CHECK(field(got.body, "createdAt") == before);
  CHECK(again.terminate() == 0);
}

TEST_CASE("ecomd --role=order alone serves orders and health, not other modules", "[e2e]") {
  TempDir dir;
  Ecomd ecomd(dir.path(), {"--role=order"});
  CHECK(ecomd.get("/healthz").status == 200);
  CHECK(ecomd.get("/readyz").status == 200);
  auto created = ecomd.post("/api/orders", kOrder);
  CHECK(created.status == 202);
  CHECK(ecomd.get("/api/orders/" + field(created.body, "orderId")).status == 200);
  CHECK(ecomd.get("/api/inventory").status == 404);
  CHECK(ecomd.terminate() == 0);
}

TEST_CASE("HTTP errors from the real binary use the one error shape", "[e2e]") {
  TempDir dir;
  Ecomd ecomd(dir.path(), {"--role=order"});
  auto bad = ecomd.post("/api/orders", R"({"customerId":"c","currency":"USD","items":[]})");
  CHECK(bad.status == 400);
  CHECK_THAT(bad.body, Catch::Contains(R"("code":"VALIDATION_FAILED")") &&
                           Catch::Contains(R"("field":"items")"));
  auto wrong_type =
      ecom::test::http_request(ecomd.port(), "POST", "/api/orders", "customerId=c",
                               {{"Content-Type", "application/x-www-form-urlencoded"}});
  CHECK(wrong_type.status == 415);
  auto big = ecomd.post("/api/orders", std::string(2 << 20, ' '));
  CHECK(big.status == 413);
  CHECK(ecomd.get("/api/nothing-here").status == 404);
}

TEST_CASE("SIGTERM exits 0 after in-flight work", "[e2e]") {
  TempDir dir;
  Ecomd ecomd(dir.path(), {"--role=order"});
  for (int i = 0; i < 20; ++i) REQUIRE(ecomd.post("/api/orders", kOrder).status == 202);
  CHECK(ecomd.terminate() == 0);
}
