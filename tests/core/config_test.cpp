#include "ecom/core/config.hpp"

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <map>
#include <optional>

#include "support/test_support.hpp"

using ecom::load_settings;

namespace {

const std::vector<std::string> kModules = {"order", "inventory", "payment", "notification", "saga"};

struct Env {
  std::map<std::string, std::string> vars;
  ecom::EnvLookup lookup() const {
    return [this](const char* name) -> std::optional<std::string> {
      auto it = vars.find(name);
      if (it == vars.end()) return std::nullopt;
      return it->second;
    };
  }
};

ecom::Result<ecom::Settings> load(std::vector<std::string> args, const Env& env = {}) {
  std::vector<const char*> argv{"ecomd"};
  for (auto& a : args) argv.push_back(a.c_str());
  return load_settings(static_cast<int>(argv.size()), argv.data(), env.lookup(), kModules);
}

std::string write_file(const ecom::test::TempDir& dir, const std::string& text) {
  auto path = dir.file("config.json");
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST_CASE("defaults apply without flags, env or file", "[config]") {
  auto s = load({});
  REQUIRE(s.ok());
  CHECK(s->roles == "all");
  CHECK(s->data_dir == "./data");
  CHECK(s->http == "0.0.0.0:8080");
  CHECK(s->bus == "embedded");
  CHECK(s->http_port() == 8080);
}

TEST_CASE("flags win over env, env over file", "[config]") {
  ecom::test::TempDir dir;
  auto file = write_file(dir, R"(
    // comments are allowed
    {"role": "order", "data_dir": "/from-file", "http": "127.0.0.1:1111", "bus": "embedded",
     "log_level": "warn", /* trailing comma too */ })");
  Env env;
  env.vars = {
      {"ECOMD_CONFIG", file}, {"ECOMD_DATA_DIR", "/from-env"}, {"ECOMD_HTTP", "127.0.0.1:2222"}};

  auto from_file_and_env = load({}, env);
  REQUIRE(from_file_and_env.ok());
  CHECK(from_file_and_env->roles == "order");         // file only
  CHECK(from_file_and_env->data_dir == "/from-env");  // env over file
  CHECK(from_file_and_env->http_port() == 2222);
  CHECK(from_file_and_env->log_level == "warn");

  auto with_flags = load({"--http=127.0.0.1:3333", "--data-dir", "/from-flag", "--role=saga"}, env);
  REQUIRE(with_flags.ok());
  CHECK(with_flags->http_port() == 3333);  // flag over env
  CHECK(with_flags->data_dir == "/from-flag");
  CHECK(with_flags->roles == "saga");  // flag over file
  CHECK(with_flags->config_file == file);
}

TEST_CASE("the --config flag wins over ECOMD_CONFIG", "[config]") {
  ecom::test::TempDir dir;
  auto file = write_file(dir, R"({"role":"payment"})");
  Env env;
  env.vars = {{"ECOMD_CONFIG", "/nonexistent.json"}};
  auto s = load({"--config", file}, env);
  REQUIRE(s.ok());
  CHECK(s->roles == "payment");
}

TEST_CASE("a config spec fills its variables and keeps defaults for absent keys", "[config]") {
  ecom::test::TempDir dir;
  auto file = write_file(
      dir, R"({"saga":{"step_timeout_ms":1500,"name":"x","on":true,"mode":"b","nested":{"n":2}}})");
  auto s = load({"--config=" + file});
  REQUIRE(s.ok());
  int64_t step = 30'000;
  std::chrono::milliseconds missing{7};
  std::string name;
  bool on = false;
  std::string mode = "a";
  int n = 0;
  std::optional<int64_t> unset;
  auto st = ecom::ConfigSpec{}
                .integer("step_timeout_ms", step, 1, 60'000)
                .millis("missing", missing, 1, 10)
                .integer("unset", unset, 0, 5)
                .string("name", name)
                .boolean("on", on)
                .choice("mode", mode, {"a", "b"})
                .object("nested", ecom::ConfigSpec{}.integer("n", n, 0, 9))
                .read(s->section("saga"));
  REQUIRE(st.ok());
  CHECK(step == 1500);
  CHECK(missing == std::chrono::milliseconds(7));
  CHECK_FALSE(unset.has_value());
  CHECK(name == "x");
  CHECK(on);
  CHECK(mode == "b");
  CHECK(n == 2);
  // An absent section reads as empty: every default stays.
  int64_t x = 3;
  CHECK(ecom::ConfigSpec{}.integer("x", x, 0, 9).read(s->section("inventory")).ok());
  CHECK(x == 3);
}

TEST_CASE("a config spec refuses unknown keys, wrong types and values out of range", "[config]") {
  ecom::test::TempDir dir;
  auto check = [&](const char* json, const std::string& field, const std::string& text) {
    INFO(json);
    auto s = load({"--config=" + write_file(dir, json)});
    REQUIRE(s.ok());
    int64_t a = 0;
    std::string b;
    std::string c = "x";
    int d = 0;
    auto st = ecom::ConfigSpec{}
                  .integer("a", a, 1, 10)
                  .string("b", b)
                  .choice("c", c, {"x", "y"})
                  .object("o", ecom::ConfigSpec{}.integer("d", d, 0, 1))
                  .read(s->section("saga"));
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == ecom::ErrorCode::kConfigInvalid);
    CHECK(st.error().field == field);
    CHECK_THAT(st.error().message, Catch::Contains(text));
  };
  check(R"({"saga":{"z":1}})", "saga.z", "valid keys: a, b, c, o");
  check(R"({"saga":{"a":"1"}})", "saga.a", "saga.a must be an integer 1..10, got a string");
  check(R"({"saga":{"a":11}})", "saga.a", "saga.a must be 1..10, got 11");
  check(R"({"saga":{"a":1.5}})", "saga.a", "must be an integer");
  check(R"({"saga":{"b":true}})", "saga.b", "saga.b must be a string, got a boolean");
  check(R"({"saga":{"c":"z"}})", "saga.c", "saga.c must be one of x, y, got \"z\"");
  check(R"({"saga":{"o":[]}})", "saga.o", "saga.o must be an object, got an array");
  check(R"({"saga":{"o":{"d":2}}})", "saga.o.d", "saga.o.d must be 0..1");
  check(R"({"saga":{"o":{"e":0}}})", "saga.o.e", "valid keys: d");
}

TEST_CASE("unknown options and config keys are usage errors listing valid names", "[config]") {
  auto flag = load({"--colour=blue"});
  REQUIRE_FALSE(flag.ok());
  CHECK(flag.error().code == ecom::ErrorCode::kUsage);
  CHECK_THAT(flag.error().message, Catch::Contains("--role") && Catch::Contains("--data-dir"));

  ecom::test::TempDir dir;
  auto file = write_file(dir, R"({"roel":"order"})");
  auto key = load({"--config", file});
  REQUIRE_FALSE(key.ok());
  CHECK(key.error().code == ecom::ErrorCode::kConfigInvalid);
  CHECK_THAT(key.error().message, Catch::Contains("roel") && Catch::Contains("inventory"));
}

TEST_CASE("invalid values are rejected with the field", "[config]") {
  CHECK(load({"--bus=rabbit"}).error().field == "bus");
  CHECK(load({"--http=nohost"}).error().field == "http");
  CHECK(load({"--http=1.2.3.4:99999"}).error().field == "http");
  CHECK(load({"--log-level=loud"}).error().field == "log_level");
  CHECK(load({"--role"}).error().code == ecom::ErrorCode::kUsage);
  ecom::test::TempDir dir;
  CHECK(load({"--config", write_file(dir, R"({"role": 5})")}).error().field == "role");
  CHECK(load({"--config", write_file(dir, R"({"saga": 5})")}).error().field == "saga");
  auto broken = load({"--config", write_file(dir, "{\n\"role\": \n}")});
  REQUIRE_FALSE(broken.ok());
  CHECK_THAT(broken.error().message, Catch::Contains("line"));
  CHECK(load({"--config", "/definitely/not/here.json"}).error().field == "config");
}

TEST_CASE("help, version and positional arguments are recognised", "[config]") {
  auto s = load({"--help", "--version", "topics", "create"});
  REQUIRE(s.ok());
  CHECK(s->help);
  CHECK(s->version);
  CHECK(s->positional == std::vector<std::string>{"topics", "create"});
  CHECK_THAT(ecom::usage_text(kModules),
             Catch::Contains("ECOMD_ROLE") && Catch::Contains("order|inventory"));
  // Secrets are named where an operator looks first, since no config key holds them.
  CHECK_THAT(ecom::usage_text(kModules), Catch::Contains("ECOMD_WEBHOOK_SECRET") &&
                                             Catch::Contains("ECOMD_SMTP_PASSWORD") &&
                                             Catch::Contains("ECOMD_KAFKA_PROP_"));
}
