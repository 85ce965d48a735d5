// Fault injection with librdkafka's in-process mock cluster: brokers that go away while the outbox
// relay publishes, and produce requests that fail. The mock is only used where a real broker
// cannot be made to fail on cue; the contract tests run against the real broker.

#include <catch2/catch.hpp>
// clang-format off
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
// clang-format on

#include <set>
#include <thread>
#include <vector>

#include "ecom/bus/outbox_relay.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "kafka_test_support.hpp"
#include "support/bus_contract.hpp"
#include "support/test_support.hpp"

using ecom::Envelope;
using ecom::Status;
using ecom::bus::Message;
using ecom::bus::Outcome;
using ecom::bus::Record;
using ecom::db::Database;
using ecom::db::Tx;
using ecom::test::eventually;
using ecom::test::TempDir;
using namespace ecom::test::kafka;

namespace {

/// A mock Kafka cluster living in this process.
class MockCluster {
 public:
  explicit MockCluster(int brokers) {
    char err[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", err, sizeof(err));
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    REQUIRE(rk_ != nullptr);
    mc_ = rd_kafka_mock_cluster_new(rk_, brokers);
    REQUIRE(mc_ != nullptr);
  }
  ~MockCluster() {
    rd_kafka_mock_cluster_destroy(mc_);
    rd_kafka_destroy(rk_);
  }
  std::string bootstraps() const { return rd_kafka_mock_cluster_bootstraps(mc_); }
  void create_topic(const std::string& name, int partitions) {
    REQUIRE(rd_kafka_mock_topic_create(mc_, name.c_str(), partitions, 1) ==
            RD_KAFKA_RESP_ERR_NO_ERROR);
    REQUIRE(rd_kafka_mock_topic_create(mc_, ecom::bus::dlq_topic(name).c_str(), partitions, 1) ==
            RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  void down(int broker) { rd_kafka_mock_broker_set_down(mc_, broker); }
  void up(int broker) { rd_kafka_mock_broker_set_up(mc_, broker); }
  rd_kafka_mock_cluster_t* get() { return mc_; }

 private:
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_mock_cluster_t* mc_ = nullptr;
};

ecom::bus::KafkaBusOptions mock_options(const MockCluster& mc) {
  auto o = fast_options(mc.bootstraps());
  o.delivery_timeout = std::chrono::milliseconds(2'000);
  o.health_interval = std::chrono::milliseconds(200);
  // Connection failures to the stopped mock broker are expected here.
  o.properties["log_level"] = "2";
  return o;
}

std::unique_ptr<Database> open_db(const std::string& path) {
  auto db = Database::open(path);
  REQUIRE(db.ok());
  REQUIRE(ecom::db::migrate_messaging(**db).ok());
  return std::move(db).value();
}

void add_rows(Database& db, const std::string& topic, int first, int count) {
  auto st = db.transaction([&](Tx& tx) -> Status {
    for (int i = first; i < first + count; ++i)
      ecom::db::outbox_add(tx, topic, test_event("order-" + std::to_string(i % 11), i));
    return {};
  });
  REQUIRE(st.ok());
}

int64_t pending(Database& db) {
  auto r = db.read([](Tx& tx) -> ecom::Result<int64_t> { return ecom::db::outbox_pending(tx); });
  REQUIRE(r.ok());
  return r.value();
}

}  // namespace

TEST_CASE(
    "kafka mock: publish fails with a retryable error while the broker is down, and "
    "healthy() follows the broker, and what it sent arrives with each relayed record handled once",
    "[kafka][mock]") {
  MockCluster mc(1);
  std::string topic = unique_name("mock-publish");
  mc.create_topic(topic, 3);
  auto o = mock_options(mc);
  auto bus = open_bus(o);
  REQUIRE(eventually([&] { return bus->healthy(); }, 30s));
  // As a relay publishes: each record carries its outbox source and row seq.
  auto relayed = [&](int n) {
    Record r = to_record(topic, test_event("k", n));
    r.source = "outbox-mock";
    r.seq = n + 1;
    return r;
  };
  Record first = relayed(0);
  REQUIRE(bus->publish(std::span<const Record>(&first, 1)).ok());

  mc.down(1);
  CHECK(eventually([&] { return !bus->healthy(); }, 30s));
  std::vector<Record> batch;
  for (int i = 1; i <= 10; ++i) batch.push_back(relayed(i));
  auto st = bus->publish(batch);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().retryable);

  mc.up(1);
  CHECK(eventually([&] { return bus->healthy(); }, 30s));
  // The retry sends copies behind the records still queued from the failed call: never a gap,
  // never a later record before an earlier one.
  REQUIRE(bus->publish(batch).ok());

  auto store = ecom::db::Database::open(":memory:");
  REQUIRE(store.ok());
  Collector c;
  auto sub = bus->subscribe({.group = unique_name("g"), .topics = {topic}, .store = store->get()},
                            c.handler());
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return c.size() >= 11; }, 60s));
  std::this_thread::sleep_for(2s);  // room for a copy handled wrongly
  (*sub)->close();
  std::vector<int> ns;
  for (const auto& m : c.messages()) ns.push_back(event_n(m.envelope));
  std::vector<int> expected{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  CHECK(ns == expected);  // one key: one partition, in order, each once
  for (const auto& m : c.messages()) CHECK(m.once);
}

TEST_CASE("kafka mock: the broker health check runs each health_interval of the bus's clock",
          "[kafka][mock][clock]") {
  MockCluster mc(1);
  ecom::ManualClock clock;
  auto o = mock_options(mc);
  o.health_interval = 60s;
  o.clock = &clock;
  auto bus = open_bus(o);
  REQUIRE(eventually([&] { return bus->healthy(); }, 30s));  // the first check, at start
  mc.down(1);
  // librdkafka reports all brokers down by itself (the error callback), without a check.
  REQUIRE(eventually([&] { return !bus->healthy(); }, 30s));
  mc.up(1);
  std::this_thread::sleep_for(500ms);
  CHECK_FALSE(bus->healthy());  // only a check says the brokers answer again: none is due
  clock.advance(60'000);
  CHECK(eventually([&] { return bus->healthy(); }, 30s));
}

TEST_CASE("kafka mock: produce errors are retried by the idempotent producer without duplicates",
          "[kafka][mock]") {
  MockCluster mc(1);
  std::string topic = unique_name("mock-errors");
  mc.create_topic(topic, 1);
  auto o = mock_options(mc);
  o.delivery_timeout = std::chrono::milliseconds(20'000);
  auto bus = open_bus(o);
  REQUIRE(eventually([&] { return bus->healthy(); }, 30s));
  REQUIRE(bus->publish(topic, test_event("k", 0)).ok());  // producer id acquired
  // ProduceRequest (ApiKey 0) fails three times with retriable errors.
  rd_kafka_mock_push_request_errors(mc.get(), 0, 3, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
                                    RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                    RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS);
  std::vector<Record> batch;
  for (int i = 1; i <= 20; ++i) batch.push_back(to_record(topic, test_event("k", i)));
  auto st = bus->publish(batch);
  INFO((st ? std::string() : st.error().message));
  REQUIRE(st.ok());

  Collector c;
  auto sub = bus->subscribe({.group = unique_name("g"), .topics = {topic}}, c.handler());
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return c.distinct() == 21; }, 60s));
  std::this_thread::sleep_for(500ms);
  CHECK(c.size() == 21);
  (*sub)->close();
}

TEST_CASE(
    "kafka mock: broker down while the outbox relay publishes: rows stay, then all are "
    "delivered and applied once",
    "[kafka][mock][outbox]") {
  MockCluster mc(1);
  std::string topic = unique_name("mock-outbox");
  mc.create_topic(topic, 3);
  auto o = mock_options(mc);
  auto bus = open_bus(o);
  TempDir dir;
  auto producer_db = open_db(dir.file("producer.db"));
  auto consumer_db = open_db(dir.file("consumer.db"));
  REQUIRE(consumer_db
              ->transaction([](Tx& tx) -> Status {
                tx.exec("CREATE TABLE effects (event_id TEXT PRIMARY KEY, n INTEGER)");
                return {};
              })
              .ok());

  // The consumer applies each event once: inbox claim and effect in one transaction.
  auto sub = bus->subscribe({.group = unique_name("g"), .topics = {topic}},
                            [&](const Message& m) -> Outcome {
                              auto st = consumer_db->transaction([&](Tx& tx) -> Status {
                                if (!ecom::db::inbox_claim(tx, "test", m.envelope.id)) return {};
                                tx.stmt("INSERT INTO effects (event_id, n) VALUES (?, ?)")
                                    .bind_all(m.envelope.id, event_n(m.envelope))
                                    .exec();
                                return {};
                              });
                              return st ? Outcome::ack() : Outcome::retry(st.error().message);
                            });
  REQUIRE(sub.ok());
  auto effects = [&] {
    auto r = consumer_db->read([](Tx& tx) -> ecom::Result<std::pair<int64_t, int64_t>> {
      auto s = tx.stmt("SELECT COUNT(*), COUNT(DISTINCT n) FROM effects");
      s.step();
      return std::pair{s.col_int(0), s.col_int(1)};
    });
    REQUIRE(r.ok());
    return r.value();
  };

  ecom::bus::OutboxRelay relay(*producer_db, *bus, 16, std::chrono::milliseconds(50));
  relay.start();
  add_rows(*producer_db, topic, 0, 10);
  relay.notify();
  REQUIRE(eventually([&] { return effects().first == 10; }, 60s));
  CHECK(pending(*producer_db) == 0);

  mc.down(1);
  REQUIRE(eventually([&] { return !bus->healthy(); }, 30s));
  for (int t = 0; t < 4; ++t) add_rows(*producer_db, topic, 10 + t * 10, 10);
  relay.notify();
  // Well past the delivery timeout: the relay tried and failed, and kept every row.
  std::this_thread::sleep_for(o.delivery_timeout * 2 + 1s);
  CHECK(pending(*producer_db) == 40);
  CHECK(effects().first == 10);

  mc.up(1);
  REQUIRE(eventually([&] { return pending(*producer_db) == 0; }, 60s));
  REQUIRE(eventually([&] { return effects().first == 50; }, 60s));
  std::this_thread::sleep_for(500ms);
  auto [rows, distinct] = effects();
  CHECK(rows == 50);
  CHECK(distinct == 50);
  relay.stop();
  (*sub)->close();
}

TEST_CASE("kafka mock: a record whose dead-letter write fails is held, never skipped",
          "[kafka][mock]") {
  MockCluster mc(1);
  std::string topic = unique_name("mock-dlq");
  mc.create_topic(topic, 1);  // one partition: the next record waits behind the pill
  auto o = mock_options(mc);
  auto bus = open_bus(o);
  Envelope good = test_event("k", 1);
  std::vector<Record> records{Record{topic, "k", "garbage"}, to_record(topic, good)};
  REQUIRE(bus->publish(records).ok());
  // The next three ProduceRequests — the dead-letter writes — are refused.
  rd_kafka_mock_push_request_errors(mc.get(), 0, 3, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED,
                                    RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);

  Collector c;
  ecom::bus::SubscriptionOptions so{.group = unique_name("g"), .topics = {topic}};
  so.initial_backoff = 1s;
  so.max_backoff = 2s;
  auto sub = bus->subscribe(so, c.handler());
  REQUIRE(sub.ok());
  // Three failed writes take at least 1 + 2 + 2 s of backoff; until then nothing passes the pill.
  std::this_thread::sleep_for(2s);
  CHECK(c.size() == 0);
  REQUIRE(eventually([&] { return c.distinct() == 1; }, 60s));
  CHECK(c.messages()[0].envelope.id == good.id);
  auto dlq = read_topic(mc.bootstraps(), ecom::bus::dlq_topic(topic), 1, 30s, 1s);
  REQUIRE(dlq.size() == 1);
  CHECK(dlq[0].value == "garbage");
  CHECK(dlq[0].header("ecom_error").value_or("").rfind("undecodable envelope", 0) == 0);
  CHECK(dlq[0].header("ecom_original_offset") == "0");
  (*sub)->close();
}

TEST_CASE("kafka mock: a dead letter whose write fails is held and only the write retried",
          "[kafka][mock][contract]") {
  MockCluster mc(1);
  std::string topic = unique_name("mock-dlq-write");
  mc.create_topic(topic, 1);
  auto bus = open_bus(mock_options(mc));
  // Every ProduceRequest is refused until the errors are cleared; only dead letters are produced
  // meanwhile.
  std::vector<rd_kafka_resp_err_t> refused(1000, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  ecom::test::check_dead_letter_write_failure(
      *bus, topic, unique_name("g"),
      [&] { rd_kafka_mock_push_request_errors_array(mc.get(), 0, refused.size(), refused.data()); },
      [&] { rd_kafka_mock_clear_request_errors(mc.get(), 0); }, 60s);
}
