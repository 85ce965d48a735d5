#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ecom/bus/embedded_bus.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/topics.hpp"
#include "support/test_support.hpp"

using ecom::test::run_ecomd;

TEST_CASE("ecomd --role=nope exits 2 and lists the roles", "[e2e][cli]") {
  auto [code, out] = run_ecomd({"--role=nope"});
  CHECK(code == 2);
  CHECK_THAT(out, Catch::Contains("unknown role \"nope\"") &&
                      Catch::Contains("order, inventory, payment"));
}

TEST_CASE("an unknown option exits 2 and lists the options", "[e2e][cli]") {
  auto [code, out] = run_ecomd({"--colour=blue"});
  CHECK(code == 2);
  CHECK_THAT(out, Catch::Contains("--role") && Catch::Contains("--data-dir"));
}

TEST_CASE("an unknown config key exits 2 and lists the keys", "[e2e][cli]") {
  ecom::test::TempDir dir;
  std::ofstream(dir.file("c.json")) << R"({"ordr": {}})";
  auto [code, out] = run_ecomd({"--config=" + dir.file("c.json"), "--data-dir=" + dir.path()});
  CHECK(code == 2);
  CHECK_THAT(out, Catch::Contains("\"ordr\"") && Catch::Contains("inventory"));
}

TEST_CASE("an unknown key inside a module section exits 2", "[e2e][cli]") {
  ecom::test::TempDir dir;
  std::ofstream(dir.file("c.json")) << R"({"order": {"colour": 1}})";
  auto [code, out] = run_ecomd({"--role=order", "--config=" + dir.file("c.json"),
                                "--data-dir=" + dir.path(), "--http=127.0.0.1:0"});
  CHECK(code == 2);
  CHECK_THAT(out, Catch::Contains("order.colour"));
}

TEST_CASE("the environment sets options and flags override it", "[e2e][cli]") {
  auto [code, out] = run_ecomd({}, {"ECOMD_ROLE=bogus"});
  CHECK(code == 2);
  CHECK_THAT(out, Catch::Contains("\"bogus\""));
  auto [code2, out2] = run_ecomd({"--role=also-bogus"}, {"ECOMD_ROLE=bogus"});
  CHECK(code2 == 2);
  CHECK_THAT(out2, Catch::Contains("\"also-bogus\""));
}

TEST_CASE("help and version exit 0", "[e2e][cli]") {
  auto [code, out] = run_ecomd({"--help"});
  CHECK(code == 0);
  CHECK_THAT(out, Catch::Contains("Usage: ecomd") && Catch::Contains("ECOMD_DATA_DIR"));
  auto [vcode, vout] = run_ecomd({"--version"});
  CHECK(vcode == 0);
  CHECK_THAT(vout, Catch::StartsWith("ecomd "));
}

TEST_CASE("a module that fails to start after two started ones exits 1 and stops them",
          "[e2e][cli]") {
  // Roles start in registration order: order and inventory start, then payment cannot open its
  // store (a directory stands where payment.db belongs). Records waiting for the two keep their
  // consumers busy in batches of their stores while start-up fails; those consumers must stop
  // before the stores close, which an AddressSanitizer build (build/asan) reports otherwise.
  ecom::test::TempDir dir;
  {
    ecom::bus::EmbeddedBusOptions o;
    o.path = dir.file("bus.db");
    auto bus = ecom::bus::make_embedded_bus(o);
    REQUIRE(bus.ok());
    std::vector<ecom::bus::Record> records;
    for (int i = 0; i < 2000; ++i) {
      const std::string key = "order-" + std::to_string(i);
      auto status = ecom::make_event("test", std::string(ecom::event_types::kOrderStatusChanged),
                                     key, R"({"orderId":")" + key + R"(","status":"CONFIRMED"})");
      records.push_back({std::string(ecom::topics::kOrdersStatus), key, encode_envelope(status)});
      auto reserve = ecom::make_event("test", std::string(ecom::event_types::kReserveStock), key,
                                      R"({"orderId":")" + key + R"(","items":[]})");
      records.push_back(
          {std::string(ecom::topics::kInventoryCommands), key, encode_envelope(reserve)});
    }
    REQUIRE((*bus)->publish(records).ok());
  }
  std::filesystem::create_directories(dir.file("payment.db"));
  auto [code, out] = run_ecomd({"--role=all", "--data-dir=" + dir.path(), "--http=127.0.0.1:0"});
  CHECK(code == 1);
  CHECK_THAT(out, Catch::Contains("module order started") &&
                      Catch::Contains("module inventory started") && Catch::Contains("payment.db"));
  CHECK_THAT(out, !Catch::Contains("module payment started"));
  CHECK_THAT(out, !Catch::Contains("AddressSanitizer") && !Catch::Contains("LeakSanitizer"));
}

TEST_CASE("a bad value in any role's config exits 2 before any role starts", "[e2e][cli]") {
  // Every role reads its config before the first one opens a store or consumes: payment is the
  // third role, and order and inventory must not have started (nor left stores behind).
  ecom::test::TempDir dir;
  std::ofstream(dir.file("c.json")) << R"({"payment": {"latency_ms": 99999}})";
  auto [code, out] = run_ecomd({"--role=all", "--config=" + dir.file("c.json"),
                                "--data-dir=" + dir.path(), "--http=127.0.0.1:0"});
  CHECK(code == 2);
  CHECK_THAT(out, Catch::Contains("payment.latency_ms must be 0..30000, got 99999"));
  CHECK_THAT(out, !Catch::Contains("started"));
  CHECK_FALSE(std::filesystem::exists(dir.file("order.db")));
  CHECK_FALSE(std::filesystem::exists(dir.file("bus.db")));
}
