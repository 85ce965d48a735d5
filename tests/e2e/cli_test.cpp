#include <catch2/catch.hpp>
#include <fstream>

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
