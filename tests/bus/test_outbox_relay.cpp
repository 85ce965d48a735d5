#include <atomic>
#include <catch2/catch.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "bus_test_util.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/db/outbox.hpp"
#include "support/test_support.hpp"

using ecom::Envelope;
using ecom::Result;
using ecom::Status;
using ecom::bus::OutboxRelay;
using ecom::bus::Record;
using ecom::db::Database;
using ecom::db::Tx;
using ecom::test::Collector;
using ecom::test::eventually;
using ecom::test::test_event;
using namespace std::chrono_literals;

namespace {

/// A bus that records what it is given and can be made to fail.
class FakeBus final : public ecom::bus::EventBus {
 public:
  using EventBus::publish;
  Status publish(std::span<const Record> records) override {
    ++calls;
    if (fail) return ecom::Error{ecom::ErrorCode::kUnavailable, "bus down", "", true};
    std::lock_guard lock(mu_);
    records_.insert(records_.end(), records.begin(), records.end());
    return {};
  }
  Result<std::unique_ptr<ecom::bus::Subscription>> subscribe(ecom::bus::SubscriptionOptions,
                                                             ecom::bus::Handler) override {
    return ecom::Error{ecom::ErrorCode::kNotImplemented, "fake"};
  }
  bool healthy() override { return !fail; }
  std::string_view kind() const noexcept override { return "fake"; }

  std::vector<Record> records() const {
    std::lock_guard lock(mu_);
    return records_;
  }
  std::vector<std::string> ids() const {
    std::vector<std::string> out;
    for (const auto& r : records()) {
      auto e = ecom::decode_envelope(r.value);
      out.push_back(e ? e->id : "?");
    }
    return out;
  }

  std::atomic<bool> fail{false};
  std::atomic<int> calls{0};

 private:
  mutable std::mutex mu_;
  std::vector<Record> records_;
};

std::unique_ptr<Database> outbox_store(const std::string& path) {
  auto db = Database::open(path);
  REQUIRE(db.ok());
  REQUIRE(ecom::db::migrate_messaging(**db).ok());
  return std::move(db).value();
}

std::string topic_of(int n) { return n % 2 ? "orders.created" : "orders.status"; }

/// Adds `n` events in transactions of varying size; returns them in commit order.
std::vector<Envelope> add_events(Database& db, int n, int keys, OutboxRelay* notify = nullptr) {
  std::vector<Envelope> out;
  int i = 0;
  while (i < n) {
    const int size = std::min(n - i, 1 + i % 17);
    auto st = db.transaction([&](Tx& tx) -> Status {
      for (int j = 0; j < size; ++j) {
        Envelope e = test_event("order-" + std::to_string((i + j) % keys), i + j);
        ecom::db::outbox_add(tx, topic_of(i + j), e);
        out.push_back(std::move(e));
      }
      return {};
    });
    REQUIRE(st.ok());
    i += size;
    if (notify != nullptr) notify->notify();
  }
  return out;
}

int64_t pending(Database& db) {
  auto r = db.read([](Tx& tx) -> Result<int64_t> { return ecom::db::outbox_pending(tx); });
  REQUIRE(r.ok());
  return r.value();
}

std::vector<std::string> ids_of(const std::vector<Envelope>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.id);
  return out;
}

}  // namespace

TEST_CASE("outbox relay: publishes rows in order onto the embedded bus and deletes them",
          "[bus][outbox]") {
  ecom::test::TempDir dir;
  auto store = outbox_store(dir.file("store.db"));
  auto bus = ecom::test::open_bus(ecom::test::fast_bus_options(dir.file("bus.db")));
  Collector got;
  auto sub =
      bus->subscribe({.group = "g", .topics = {"orders.created", "orders.status"}}, got.handler());
  REQUIRE(sub.ok());
  OutboxRelay relay(*store, *bus, 64, 20ms);
  relay.start();
  auto sent = add_events(*store, 300, 3, &relay);

  REQUIRE(eventually([&] { return got.size() >= sent.size(); }, 30s));
  // Order is per key within a topic (one partition each).
  std::map<std::string, std::vector<std::string>> expected, actual;
  for (const auto& e : sent) {
    const int n = std::stoi(e.data.substr(5));  // data is {"n":<index>}
    expected[topic_of(n) + "/" + e.subject].push_back(e.id);
  }
  for (const auto& m : got.messages()) actual[m.topic + "/" + m.key].push_back(m.envelope.id);
  CHECK(actual == expected);
  CHECK(got.size() == sent.size());
  REQUIRE(eventually([&] { return pending(*store) == 0; }));
  CHECK(relay.published() == sent.size());
  relay.stop();
  relay.stop();  // idempotent
}

TEST_CASE("outbox relay: keeps global commit order in its batches", "[bus][outbox]") {
  ecom::test::TempDir dir;
  auto store = outbox_store(dir.file("store.db"));
  FakeBus bus;
  auto sent = add_events(*store, 500, 7);
  OutboxRelay relay(*store, bus, 64, 20ms);
  relay.start();
  REQUIRE(eventually([&] { return bus.records().size() >= sent.size(); }));
  CHECK(bus.ids() == ids_of(sent));
  auto records = bus.records();
  for (size_t i = 0; i < records.size(); ++i) {
    CHECK(records[i].key == sent[i].subject);
    CHECK(records[i].value == ecom::encode_envelope(sent[i]));
  }
  CHECK(bus.calls.load() >= 8);  // 500 rows in batches of at most 64
  REQUIRE(eventually([&] { return pending(*store) == 0; }));
}

TEST_CASE("outbox relay: a failing bus loses no rows, they go out once it recovers",
          "[bus][outbox]") {
  ecom::test::TempDir dir;
  auto store = outbox_store(dir.file("store.db"));
  FakeBus bus;
  bus.fail = true;
  auto sent = add_events(*store, 50, 4);
  OutboxRelay relay(*store, bus, 16, 20ms);
  relay.start();
  REQUIRE(eventually([&] { return bus.calls.load() >= 2; }));  // tried, failed, backed off
  CHECK(pending(*store) == 50);
  CHECK(relay.published() == 0);
  bus.fail = false;
  REQUIRE(eventually([&] { return bus.records().size() >= sent.size(); }, 30s));
  CHECK(bus.ids() == ids_of(sent));
  REQUIRE(eventually([&] { return pending(*store) == 0; }));
  CHECK(relay.published() == 50);
}

TEST_CASE("outbox relay: drain publishes everything on the caller's thread", "[bus][outbox]") {
  ecom::test::TempDir dir;
  auto store = outbox_store(dir.file("store.db"));
  FakeBus bus;
  auto sent = add_events(*store, 1000, 5);
  OutboxRelay relay(*store, bus, 64);
  SECTION("bus up") {
    CHECK(relay.drain(30s));
    CHECK(bus.ids() == ids_of(sent));
    CHECK(pending(*store) == 0);
    CHECK(relay.published() == 1000);
  }
  SECTION("bus down: gives up at the deadline and keeps the rows") {
    bus.fail = true;
    CHECK_FALSE(relay.drain(100ms));
    CHECK(pending(*store) == 1000);
  }
}

TEST_CASE("outbox relay: notify wakes the relay long before its idle poll", "[bus][outbox]") {
  ecom::test::TempDir dir;
  auto store = outbox_store(dir.file("store.db"));
  FakeBus bus;
  OutboxRelay relay(*store, bus, 64, 120s);
  relay.start();
  std::this_thread::sleep_for(200ms);  // let the first (empty) pass go to sleep
  auto sent = add_events(*store, 10, 2);
  relay.notify();
  REQUIRE(eventually([&] { return bus.records().size() >= sent.size(); }, 30s));
  CHECK(bus.ids() == ids_of(sent));
}

TEST_CASE("outbox relay: stop drains what is pending", "[bus][outbox]") {
  ecom::test::TempDir dir;
  auto store = outbox_store(dir.file("store.db"));
  FakeBus bus;
  OutboxRelay relay(*store, bus, 64, 120s);
  relay.start();
  std::this_thread::sleep_for(100ms);
  auto sent = add_events(*store, 100, 3);  // no notify: only stop() can relay these quickly
  relay.stop();
  CHECK(bus.ids() == ids_of(sent));
  CHECK(pending(*store) == 0);
}

// The relay's intervals run on its clock: with a ManualClock nothing is due until time moves.

TEST_CASE("outbox relay: the idle poll is measured on the relay's clock", "[bus][outbox][clock]") {
  ecom::test::TempDir dir;
  auto store = outbox_store(dir.file("store.db"));
  FakeBus bus;
  ecom::ManualClock clock;
  OutboxRelay relay(*store, bus, 64, 1000ms, std::chrono::hours(24 * 7), 60s, clock);
  auto first = add_events(*store, 1, 1);
  relay.start();
  // The first pass runs at once; once it has published, the next one waits for the clock.
  REQUIRE(eventually([&] { return bus.records().size() == 1; }));
  auto later = add_events(*store, 5, 2);  // no notify: only the idle poll picks these up
  std::this_thread::sleep_for(100ms);
  CHECK(bus.records().size() == 1);
  clock.advance(999);
  std::this_thread::sleep_for(100ms);
  CHECK(bus.records().size() == 1);  // not due yet
  clock.advance(1);
  REQUIRE(eventually([&] { return bus.records().size() == 6; }));
  first.insert(first.end(), later.begin(), later.end());
  CHECK(bus.ids() == ids_of(first));
  REQUIRE(eventually([&] { return pending(*store) == 0; }));
}

TEST_CASE("outbox relay: a failed pass backs off on the clock, and notify does not cut it short",
          "[bus][outbox][clock]") {
  ecom::test::TempDir dir;
  auto store = outbox_store(dir.file("store.db"));
  FakeBus bus;
  bus.fail = true;
  ecom::ManualClock clock;
  auto sent = add_events(*store, 3, 1);
  OutboxRelay relay(*store, bus, 64, 1000ms, std::chrono::hours(24 * 7), 60s, clock);
  relay.start();
  REQUIRE(eventually([&] { return bus.calls.load() == 1; }));  // failed: backs off 100 ms
  bus.fail = false;
  relay.notify();
  clock.advance(99);
  std::this_thread::sleep_for(100ms);
  CHECK(bus.calls.load() == 1);
  clock.advance(1);  // the backoff is over
  REQUIRE(eventually([&] { return bus.records().size() == sent.size(); }));
  CHECK(bus.calls.load() == 2);
  CHECK(bus.ids() == ids_of(sent));
}

namespace {

// Two connections to one PostgreSQL schema: two replicas of a role.
struct SharedOutbox {
  std::unique_ptr<Database> a;
  std::unique_ptr<Database> b;
  SharedOutbox() {
    ecom::db::Options options;
    options.schema = ecom::test::unique_schema("relay");
    auto first = Database::open(ecom::test::postgres_url(), options);
    auto second = Database::open(ecom::test::postgres_url(), options);
    REQUIRE(first.ok());
    REQUIRE(second.ok());
    a = std::move(first).value();
    b = std::move(second).value();
    REQUIRE(ecom::db::migrate_messaging(*a).ok());
    REQUIRE(ecom::db::migrate_messaging(*b).ok());
  }
};

// The records of `source`, in the order the bus got them, as event ids.
std::vector<std::string> ids_from(const FakeBus& bus, const std::string& source) {
  std::vector<std::string> out;
  for (const auto& r : bus.records()) {
    if (r.source != source) continue;
    auto e = ecom::decode_envelope(r.value);
    out.push_back(e ? e->id : "?");
  }
  return out;
}

}  // namespace

TEST_CASE(
    "outbox relay: replicas sharing a PostgreSQL outbox each publish their own rows, in their "
    "order, as sources of their own",
    "[bus][outbox][postgres]") {
  SharedOutbox shared;
  REQUIRE(!shared.a->replica_id().empty());
  REQUIRE(shared.a->replica_id() != shared.b->replica_id());
  FakeBus bus_a, bus_b;
  OutboxRelay relay_a(*shared.a, bus_a, 16, 10ms);
  OutboxRelay relay_b(*shared.b, bus_b, 16, 10ms);
  relay_a.start();
  relay_b.start();
  // Interleaved writes, a transaction of B open across one of A's commits: B's rows take lower
  // seqs than rows of A that are visible before them.
  std::vector<Envelope> sent_a, sent_b;
  for (int round = 0; round < 20; ++round) {
    auto st = shared.b->transaction([&](Tx& tx) -> Status {
      Envelope eb = test_event("order-b", round);
      ecom::db::outbox_add(tx, "orders.created", eb);
      sent_b.push_back(eb);
      auto added = shared.a->transaction([&](Tx& ta) -> Status {
        Envelope ea = test_event("order-a", round);
        ecom::db::outbox_add(ta, "orders.created", ea);
        sent_a.push_back(ea);
        return {};
      });
      REQUIRE(added.ok());
      return {};
    });
    REQUIRE(st.ok());
  }
  REQUIRE(eventually([&] { return pending(*shared.a) == 0; }, 10s));
  // Each replica published exactly its own rows, in its own commit order, under its own source,
  // with seqs that only grow: SourceMark holds downstream.
  CHECK(ids_from(bus_a, shared.a->replica_id()) == ids_of(sent_a));
  CHECK(ids_from(bus_b, shared.b->replica_id()) == ids_of(sent_b));
  CHECK(bus_a.records().size() == sent_a.size());
  CHECK(bus_b.records().size() == sent_b.size());
  for (const FakeBus* bus : {&bus_a, &bus_b}) {
    auto records = bus->records();
    for (size_t i = 1; i < records.size(); ++i) CHECK(records[i].seq > records[i - 1].seq);
  }
}

TEST_CASE("outbox relay: the rows of a replica that died are relayed by another, under its source",
          "[bus][outbox][postgres]") {
  SharedOutbox shared;
  // Replica A writes and dies before relaying (its relay never runs).
  auto sent = add_events(*shared.a, 120, 5);
  FakeBus bus;
  OutboxRelay relay_b(*shared.b, bus, 32, 10ms);
  relay_b.set_replica_lease(300ms);
  relay_b.start();
  REQUIRE(eventually([&] { return pending(*shared.b) == 0; }, 20s));
  CHECK(ids_from(bus, shared.a->replica_id()) == ids_of(sent));
  CHECK(bus.records().size() == sent.size());

  // A replica that is alive keeps its rows: B relays nothing of A's while A's relay runs, even
  // when A's bus is down.
  FakeBus bus_a;
  bus_a.fail = true;
  OutboxRelay relay_a(*shared.a, bus_a, 32, 10ms);
  relay_a.set_replica_lease(300ms);  // it says it is alive every 75 ms, failing bus or not
  auto more = add_events(*shared.a, 10, 2);
  relay_a.start();
  REQUIRE(eventually([&] { return bus_a.calls.load() > 0; }));
  std::this_thread::sleep_for(1500ms);  // several of A's heartbeats, five of B's leases
  CHECK(bus.records().size() == sent.size());
  CHECK(pending(*shared.a) == static_cast<int64_t>(more.size()));
  bus_a.fail = false;
  REQUIRE(eventually([&] { return pending(*shared.a) == 0; }, 20s));
  CHECK(ids_from(bus_a, shared.a->replica_id()) == ids_of(more));
}
