// Kafka settings and topic provisioning: the config readers (no broker needed) and the Admin API
// against the real broker.

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <set>

#include "ecom/bus/kafka_bus.hpp"
#include "ecom/core/config.hpp"
#include "ecom/core/topics.hpp"
#include "kafka_test_support.hpp"
#include "support/test_support.hpp"

using ecom::ConfigSection;
using ecom::bus::KafkaBusOptions;
using ecom::bus::TopicsConfig;
using ecom::test::TempDir;
using namespace ecom::test::kafka;

namespace {

std::shared_ptr<rapidjson::Document> json(const std::string& text) {
  auto doc = ecom::parse_json_config(text);
  REQUIRE(doc.ok());
  return doc.value();
}

const ecom::bus::TopicSpec* find(const TopicsConfig& tc, const std::string& name) {
  for (const auto& t : tc.topics)
    if (t.name == name) return &t;
  return nullptr;
}

// Runs `ecomd topics <verb>` through run_topics_command and returns {exit code, output}.
std::pair<int, std::string> topics_command(std::string_view verb, const KafkaBusOptions& o) {
  char* buf = nullptr;
  size_t len = 0;
  std::FILE* out = open_memstream(&buf, &len);
  int rc = ecom::bus::run_topics_command(verb, o, out);
  std::fclose(out);
  std::string text(buf, len);
  std::free(buf);
  return {rc, text};
}

}  // namespace

TEST_CASE("kafka topics config: config/topics.json lists every topic with the defaults",
          "[kafka][config]") {
  auto tc = ecom::bus::load_topics_config(std::string(ECOM_SOURCE_DIR) + "/config/topics.json");
  INFO((tc ? std::string() : tc.error().message));
  REQUIRE(tc.ok());
  REQUIRE(tc->topics.size() == ecom::topics::kAll.size());
  for (auto name : ecom::topics::kAll) {
    const auto* t = find(*tc, std::string(name));
    REQUIRE(t != nullptr);
    CHECK(t->partitions == 3);
    CHECK(t->replication_factor == 1);
    CHECK(t->retention_ms == 7LL * 24 * 3600 * 1000);
    CHECK(t->dlq);
  }
}

TEST_CASE("kafka topics config: overrides, extra topics, defaults for unlisted ones, errors",
          "[kafka][config]") {
  auto doc = json(R"({
    "defaults": {"partitions": 6, "replication_factor": 3},
    "topics": {
      "orders.created": {"partitions": 12, "retention_ms": 1000, "config": {"cleanup.policy": "delete"}},
      "audit.log": {"dlq": false}
    }})");
  auto tc = ecom::bus::topics_config_from_section(ConfigSection(doc.get(), ""));
  REQUIRE(tc.ok());
  CHECK(tc->topics.size() == ecom::topics::kAll.size() + 1);
  const auto* created = find(*tc, "orders.created");
  REQUIRE(created != nullptr);
  CHECK(created->partitions == 12);
  CHECK(created->replication_factor == 3);
  CHECK(created->retention_ms == 1000);
  CHECK(created->config.at("cleanup.policy") == "delete");
  const auto* status = find(*tc, "orders.status");
  REQUIRE(status != nullptr);
  CHECK(status->partitions == 6);
  const auto* audit = find(*tc, "audit.log");
  REQUIRE(audit != nullptr);
  CHECK_FALSE(audit->dlq);

  for (const char* bad :
       {R"({"topics": {"orders.created": {"partitions": 0}}})",
        R"({"topics": {"orders.created": {"partitons": 3}}})",
        R"({"topics": {"orders.created.dlq": {}}})", R"({"topics": {"bad name!": {}}})",
        R"({"defaults": {"replication_factor": "three"}})", R"({"topicz": {}})"}) {
    INFO(bad);
    auto d = json(bad);
    auto r = ecom::bus::topics_config_from_section(ConfigSection(d.get(), ""));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ecom::ErrorCode::kConfigInvalid);
  }
}

TEST_CASE("kafka options: defaults, passthrough properties, validation", "[kafka][config]") {
  SECTION("empty section: safe defaults") {
    auto r = ecom::bus::kafka_options_from_config(ConfigSection());
    REQUIRE(r.ok());
    CHECK(r->bootstrap_servers == "127.0.0.1:9092");
    CHECK(r->compression == "lz4");
    CHECK(r->linger_ms == 1);
    CHECK(r->topics.topics.size() == ecom::topics::kAll.size());
  }
  SECTION("security settings pass through to librdkafka") {
    auto doc = json(R"({"bootstrap_servers": "127.0.0.1:1,127.0.0.1:2", "compression": "zstd",
      "linger_ms": 20, "properties": {"security.protocol": "SASL_PLAINTEXT",
      "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": "ecomd", "sasl.password": "secret"},
      "producer_properties": {"queue.buffering.max.messages": 50000},
      "consumer_properties": {"fetch.wait.max.ms": 100}})");
    auto r = ecom::bus::kafka_options_from_config(ConfigSection(doc.get(), "kafka"));
    INFO((r ? std::string() : r.error().message));
    REQUIRE(r.ok());
    CHECK(r->bootstrap_servers == "127.0.0.1:1,127.0.0.1:2");
    CHECK(r->properties.at("sasl.mechanisms") == "SCRAM-SHA-512");
    CHECK(r->producer_properties.at("queue.buffering.max.messages") == "50000");
    auto bus = ecom::bus::make_kafka_bus(*r);
    CHECK(bus.ok());
  }
  SECTION("errors name the key") {
    for (const char* bad : {R"({"bootstrap_server": "x:1"})", R"({"compression": "brotli"})",
                            R"({"linger_ms": -1})", R"({"properties": {"no.such.thing": "1"}})",
                            R"({"consumer_properties": {"session.timeout.ms": "soon"}})",
                            R"({"properties": {"security.protocol": ["a"]}})",
                            R"({"topics_file": "/no/such/topics.json"})"}) {
      INFO(bad);
      auto d = json(bad);
      auto r = ecom::bus::kafka_options_from_config(ConfigSection(d.get(), "kafka"));
      REQUIRE_FALSE(r.ok());
      CHECK(r.error().code == ecom::ErrorCode::kConfigInvalid);
    }
  }
  SECTION("a relative topics_file is found next to the config file") {
    TempDir dir;
    std::ofstream(dir.file("my-topics.json")) << R"({"topics": {"extra.topic": {}}})";
    std::ofstream(dir.file("ecomd.json"))
        << R"({"kafka": {"topics_file": "my-topics.json", "bootstrap_servers": "a:1"}})";
    const char* argv[] = {"ecomd", nullptr};
    std::string config_flag = "--config=" + dir.file("ecomd.json");
    const char* args[] = {"ecomd", config_flag.c_str(), "--brokers=b:2"};
    (void)argv;
    auto settings =
        ecom::load_settings(3, args, [](const char*) { return std::optional<std::string>(); }, {});
    INFO((settings ? std::string() : settings.error().message));
    REQUIRE(settings.ok());
    auto r = ecom::bus::kafka_options_from_settings(*settings);
    INFO((r ? std::string() : r.error().message));
    REQUIRE(r.ok());
    CHECK(r->bootstrap_servers == "b:2");  // --brokers wins over the file
    CHECK(find(r->topics, "extra.topic") != nullptr);
  }
  SECTION("secrets come from ECOMD_KAFKA_PROP_* environment variables") {
    ::setenv("ECOMD_KAFKA_PROP_SASL_PASSWORD", "s3cret", 1);
    ::setenv("ECOMD_KAFKA_PROP_SSL_KEY_PASSWORD", "k3y", 1);
    const char* args[] = {"ecomd"};
    auto settings =
        ecom::load_settings(1, args, [](const char*) { return std::optional<std::string>(); }, {});
    REQUIRE(settings.ok());
    auto r = ecom::bus::kafka_options_from_settings(*settings);
    ::unsetenv("ECOMD_KAFKA_PROP_SASL_PASSWORD");
    ::unsetenv("ECOMD_KAFKA_PROP_SSL_KEY_PASSWORD");
    REQUIRE(r.ok());
    CHECK(r->properties["sasl.password"] == "s3cret");
    CHECK(r->properties["ssl.key.password"] == "k3y");
  }
}

TEST_CASE(
    "kafka topics: ensure_topics creates what is missing and reports, never alters, "
    "partition mismatches",
    "[kafka][topics]") {
  auto o = fast_options(brokers());
  o.topic_prefix = unique_name("prov") + ".";
  o.topics = ecom::bus::default_topics_config();
  o.topics.topics.at(0).partitions = 2;  // orders.created

  auto [rc0, before] = topics_command("describe", o);
  CHECK(rc0 == 0);
  CHECK(before.find(o.topic_prefix + "orders.created ") != std::string::npos);
  CHECK(before.find("missing") != std::string::npos);

  auto [rc1, created] = topics_command("create", o);
  INFO(created);
  REQUIRE(rc1 == 0);
  CHECK(created.find("created  " + o.topic_prefix + "orders.created\n") != std::string::npos);
  CHECK(created.find("created  " + o.topic_prefix + "orders.created.dlq\n") != std::string::npos);

  auto info = ecom::bus::describe_topics(o);
  REQUIRE(info.ok());
  std::set<std::string> names;
  for (const auto& t : *info) {
    if (t.name.rfind(o.topic_prefix, 0) != 0) continue;
    names.insert(t.name);
    INFO(t.name);
    CHECK(t.exists);
    CHECK(t.replication_factor == 1);
    CHECK(t.retention_ms == 7LL * 24 * 3600 * 1000);
    CHECK(t.partitions == (t.name.find("orders.created") != std::string::npos ? 2 : 3));
  }
  CHECK(names.size() == 2 * ecom::topics::kAll.size());

  // A second run changes nothing; a config asking for other partition counts is reported only.
  o.topics.topics.at(0).partitions = 4;
  auto [rc2, again] = topics_command("create", o);
  INFO(again);
  CHECK(rc2 == 0);
  CHECK(again.find("0 created") != std::string::npos);
  CHECK(again.find("warning: topic " + o.topic_prefix + "orders.created has 2 partitions") !=
        std::string::npos);
  CHECK(ecom::bus::ensure_topics(o, o.topics).ok());
  auto after = ecom::bus::describe_topics(o);
  REQUIRE(after.ok());
  for (const auto& t : *after)
    if (t.name == o.topic_prefix + "orders.created") {
      CHECK(t.partitions == 2);
      CHECK(t.expected_partitions == 4);
    }
  auto [rc3, described] = topics_command("describe", o);
  CHECK(rc3 == 0);
  CHECK(described.find("partitions differ: config says 4") != std::string::npos);

  auto [rc4, listed] = topics_command("list", o);
  CHECK(rc4 == 0);
  CHECK(listed.find(o.topic_prefix + "payments.events.dlq\n") != std::string::npos);

  auto [rc5, usage] = topics_command("frobnicate", o);
  CHECK(rc5 == 2);
  CHECK(usage.find("create|list|describe") != std::string::npos);
}
