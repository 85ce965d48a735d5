// Retention: the embedded bus deletes records past their topic's retention, and the outbox relay
// prunes inbox rows past the inbox retention. Records and inbox rows are aged by rewriting their
// timestamps, so nothing here depends on how fast the machine is.

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "bus_test_util.hpp"
#include "ecom/bus/embedded_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/db/outbox.hpp"
#include "support/test_support.hpp"

using ecom::Envelope;
using ecom::Result;
using ecom::Status;
using ecom::bus::Record;
using ecom::db::Database;
using ecom::db::Tx;
using ecom::test::Collector;
using ecom::test::eventually;
using ecom::test::fast_bus_options;
using ecom::test::open_bus;
using ecom::test::test_event;
using namespace std::chrono_literals;

namespace {

constexpr int64_t kDayMs = 24LL * 3600 * 1000;

std::set<std::string> as_set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

std::vector<std::string> ids_of(const std::vector<Envelope>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.id);
  return out;
}

ecom::bus::EmbeddedBusOptions retention_options(const std::string& path) {
  auto o = fast_bus_options(path);
  o.retention = 1h;
  o.retention_check_interval = 50ms;
  return o;
}

std::vector<Envelope> publish_events(ecom::bus::EventBus& bus, const std::string& topic,
                                     const std::vector<std::string>& keys, int n, int first = 0) {
  std::vector<Envelope> sent;
  std::vector<Record> batch;
  for (int i = 0; i < n; ++i) {
    sent.push_back(test_event(keys[static_cast<size_t>(i) % keys.size()], first + i));
    batch.push_back(ecom::test::to_record(topic, sent.back()));
  }
  REQUIRE(bus.publish(batch).ok());
  return sent;
}

/// Moves the publish time of these events `age_ms` into the past.
void age_events(const std::string& path, const std::vector<Envelope>& events, int64_t age_ms) {
  const std::set<std::string> ids = as_set(ids_of(events));
  ecom::test::write_file(path, [&](Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt(R"(SELECT topic, "partition", "offset", value FROM records)");
    std::vector<std::tuple<std::string, int64_t, int64_t>> hit;
    while (s.step()) {
      auto e = ecom::decode_envelope(s.col_view(3));
      if (e && ids.count(e->id) > 0) hit.emplace_back(s.col_text(0), s.col_int(1), s.col_int(2));
    }
    for (const auto& [topic, partition, offset] : hit) {
      tx.stmt(R"(UPDATE records SET ts = ts - ? WHERE topic=? AND "partition"=? AND "offset"=?)")
          .bind_all(age_ms, topic, partition, offset)
          .exec();
    }
    return static_cast<int64_t>(hit.size());
  });
}

/// Envelope ids of the records of `topic` still in the file.
std::set<std::string> stored_ids(const std::string& path, const std::string& topic) {
  return ecom::test::query_file(path, [&](Tx& tx) -> Result<std::set<std::string>> {
    std::set<std::string> out;
    auto s = tx.stmt("SELECT value FROM records WHERE topic=?");
    s.bind(1, topic);
    while (s.step()) {
      auto e = ecom::decode_envelope(s.col_view(0));
      if (e) out.insert(e->id);
    }
    return out;
  });
}

}  // namespace

TEST_CASE(
    "embedded bus retention: old records are deleted, a group behind them continues from "
    "the oldest retained record",
    "[bus][embedded][retention]") {
  ecom::test::TempDir dir;
  const auto opts = retention_options(dir.file("bus.db"));
  auto bus = open_bus(opts);
  const std::vector<std::string> keys{"a", "b", "c", "d", "e"};

  // Group g consumes and commits a first part; the rest it has not seen yet.
  const auto consumed = publish_events(*bus, "t", keys, 40);
  {
    Collector got;
    auto sub = bus->subscribe({.group = "g", .topics = {"t"}}, got.handler());
    REQUIRE(sub.ok());
    REQUIRE(eventually([&] { return got.size() >= consumed.size(); }));
    (*sub)->close();  // commits
  }
  auto unconsumed = publish_events(*bus, "t", keys, 100, 100);
  // One busy key: its partition needs several delete chunks.
  const auto hot = publish_events(*bus, "t", {"hot"}, 700, 1000);
  unconsumed.insert(unconsumed.end(), hot.begin(), hot.end());
  const auto recent = publish_events(*bus, "t", keys, 30, 5000);
  // Dead letters are kept for as long as dlq_retention says, independently.
  const auto dead = publish_events(*bus, "t.dlq", keys, 10, 6000);

  age_events(opts.path, consumed, 10 * kDayMs);
  age_events(opts.path, unconsumed, 2 * 3600 * 1000);  // just past the 1 h retention

  REQUIRE(eventually([&] { return stored_ids(opts.path, "t") == as_set(ids_of(recent)); }, 30s));
  CHECK(stored_ids(opts.path, "t.dlq") == as_set(ids_of(dead)));

  // Offsets stay as they were and keep growing: nothing is renumbered or reused.
  const auto more = publish_events(*bus, "t", keys, 5, 7000);
  Collector got;
  auto sub = bus->subscribe({.group = "g", .topics = {"t"}}, got.handler());
  REQUIRE(sub.ok());
  Collector fresh;
  auto sub2 = bus->subscribe({.group = "new-group", .topics = {"t"}}, fresh.handler());
  REQUIRE(sub2.ok());
  std::vector<Envelope> retained = recent;
  retained.insert(retained.end(), more.begin(), more.end());
  REQUIRE(eventually(
      [&] { return got.size() >= retained.size() && fresh.size() >= retained.size(); }, 30s));
  std::this_thread::sleep_for(200ms);
  CHECK(got.size() == retained.size());
  CHECK(as_set(got.ids()) == as_set(ids_of(retained)));
  CHECK(as_set(fresh.ids()) == as_set(ids_of(retained)));
  // Per key, the retained records come in publish order, at offsets past the deleted ones.
  std::map<std::string, std::vector<std::string>> expected;
  for (const auto& e : retained) expected[e.subject].push_back(e.id);
  CHECK(got.ids_by_key() == expected);
  const int hot_partition = ecom::bus::partition_for("hot", opts.partitions);
  for (const auto& m : got.messages()) {
    if (m.partition == hot_partition) CHECK(m.offset >= static_cast<int64_t>(hot.size()));
  }
}

TEST_CASE(
    "embedded bus retention: only a prefix of a partition goes, never a record behind a "
    "newer one",
    "[bus][embedded][retention]") {
  ecom::test::TempDir dir;
  auto opts = retention_options(dir.file("bus.db"));
  opts.dlq_retention = 1h;
  auto bus = open_bus(opts);
  auto sent = publish_events(*bus, "t", {"k"}, 10);
  // As if the wall clock had gone back while publishing: record 5 is newer than records 6..9.
  std::vector<Envelope> old(sent.begin(), sent.begin() + 5);
  old.insert(old.end(), sent.begin() + 6, sent.end());
  age_events(opts.path, old, 3 * kDayMs);
  const auto dead = publish_events(*bus, "t.dlq", {"k"}, 3);
  age_events(opts.path, dead, 3 * kDayMs);

  const auto sent_ids = ids_of(sent);
  const std::set<std::string> kept(sent_ids.begin() + 5, sent_ids.end());
  REQUIRE(eventually([&] { return stored_ids(opts.path, "t") == kept; }, 30s));
  REQUIRE(eventually([&] { return stored_ids(opts.path, "t.dlq").empty(); }, 30s));
  std::this_thread::sleep_for(300ms);  // several more passes
  CHECK(stored_ids(opts.path, "t") == kept);
}

TEST_CASE("embedded bus retention: a pass runs when the bus's clock passes the check interval",
          "[bus][embedded][retention][clock]") {
  ecom::test::TempDir dir;
  // Publish times are the system time; the manual clock starts there.
  ecom::ManualClock clock(ecom::now_ms());
  auto opts = retention_options(dir.file("bus.db"));
  opts.retention_check_interval = 60s;
  opts.clock = &clock;
  auto bus = open_bus(opts);
  const auto old = publish_events(*bus, "t", {"k", "l"}, 20);
  const auto recent = publish_events(*bus, "t", {"k", "l"}, 5, 100);
  age_events(opts.path, old, 2 * 3600 * 1000);  // past the 1 h retention
  std::this_thread::sleep_for(100ms);
  clock.advance(59'999);
  std::this_thread::sleep_for(100ms);
  CHECK(stored_ids(opts.path, "t").size() == old.size() + recent.size());  // no pass yet
  clock.advance(1);  // the first pass is one interval after opening
  REQUIRE(eventually([&] { return stored_ids(opts.path, "t") == as_set(ids_of(recent)); }));
  // The recent records expire when the clock says so, at the pass after that.
  clock.advance(3600 * 1000);
  REQUIRE(eventually([&] { return stored_ids(opts.path, "t").empty(); }));
}

TEST_CASE("embedded bus retention: negative retention keeps everything, zero is rejected",
          "[bus][embedded][retention]") {
  ecom::test::TempDir dir;
  auto opts = retention_options(dir.file("bus.db"));
  opts.retention = -1ms;
  opts.dlq_retention = -1ms;
  {
    auto zero = opts;
    zero.retention = 0ms;
    auto bad = ecom::bus::make_embedded_bus(zero);
    REQUIRE_FALSE(bad.ok());
    CHECK(bad.error().code == ecom::ErrorCode::kConfigInvalid);
  }
  auto bus = open_bus(opts);
  auto sent = publish_events(*bus, "t", {"k", "l"}, 20);
  age_events(opts.path, sent, 1000 * kDayMs);
  std::this_thread::sleep_for(300ms);
  CHECK(stored_ids(opts.path, "t") == as_set(ids_of(sent)));
}

// ---------------------------------------------------------------------------------------------
// Inbox pruning by the outbox relay

namespace {

/// A bus that accepts everything; the relay needs one.
class NullBus final : public ecom::bus::EventBus {
 public:
  using EventBus::publish;
  Status publish(std::span<const Record> records) override {
    published += records.size();
    return {};
  }
  Result<std::unique_ptr<ecom::bus::Subscription>> subscribe(ecom::bus::SubscriptionOptions,
                                                             ecom::bus::Handler) override {
    return ecom::Error{ecom::ErrorCode::kNotImplemented, "null bus"};
  }
  bool healthy() override { return true; }
  std::string_view kind() const noexcept override { return "null"; }
  std::atomic<size_t> published{0};
};

std::unique_ptr<Database> inbox_store(const std::string& path) {
  auto db = Database::open(path);
  REQUIRE(db.ok());
  REQUIRE(ecom::db::migrate_messaging(**db).ok());
  return std::move(db).value();
}

/// Claims `n` event ids for `consumer`, processed `age_ms` ago; returns the ids.
std::vector<std::string> claim_events(Database& db, const std::string& consumer, int n,
                                      int64_t age_ms) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back(ecom::new_uuid());
  auto st = db.transaction([&](Tx& tx) -> Status {
    for (const auto& id : ids) {
      if (!ecom::db::inbox_claim(tx, consumer, id))
        return ecom::Error{ecom::ErrorCode::kConflict, "claimed"};
      tx.stmt("UPDATE inbox SET processed_at = processed_at - ? WHERE consumer=? AND event_id=?")
          .bind_all(age_ms, consumer, id)
          .exec();
    }
    return {};
  });
  REQUIRE(st.ok());
  return ids;
}

std::set<std::string> inbox_ids(Database& db) {
  auto r = db.read([](Tx& tx) -> Result<std::set<std::string>> {
    std::set<std::string> out;
    auto s = tx.stmt("SELECT consumer || '/' || event_id FROM inbox");
    while (s.step()) out.insert(s.col_text(0));
    return out;
  });
  REQUIRE(r.ok());
  return std::move(r).value();
}

std::set<std::string> prefixed(const std::string& consumer, const std::vector<std::string>& ids) {
  std::set<std::string> out;
  for (const auto& id : ids) out.insert(consumer + "/" + id);
  return out;
}

}  // namespace

TEST_CASE("outbox relay: prunes inbox rows older than the inbox retention, in chunks",
          "[bus][outbox][inbox][retention]") {
  ecom::test::TempDir dir;
  auto store = inbox_store(dir.file("store.db"));
  // More expired rows than one prune chunk holds.
  const auto expired = claim_events(*store, "order", 2'600, 8 * kDayMs);
  const auto expired_saga = claim_events(*store, "saga", 30, 30 * kDayMs);
  const auto young = claim_events(*store, "order", 40, 6 * kDayMs);
  const auto fresh = claim_events(*store, "saga", 10, 0);

  NullBus bus;
  ecom::bus::OutboxRelay relay(*store, bus, 64, 20ms, std::chrono::hours(24 * 7), 50ms);
  relay.start();
  std::set<std::string> kept = prefixed("order", young);
  const auto fresh_set = prefixed("saga", fresh);
  kept.insert(fresh_set.begin(), fresh_set.end());
  REQUIRE(eventually([&] { return inbox_ids(*store) == kept; }, 30s));
  CHECK(relay.inbox_pruned() == expired.size() + expired_saga.size());

  // The relay keeps relaying meanwhile, and a pruned event id could be claimed again, which is
  // why the retention must outlast every redelivery.
  auto st = store->transaction([&](Tx& tx) -> Status {
    ecom::db::outbox_add(tx, "orders.created", test_event("o-1", 1));
    return {};
  });
  REQUIRE(st.ok());
  relay.notify();
  REQUIRE(eventually([&] { return bus.published.load() == 1; }));
  auto again = store->transaction(
      [&](Tx& tx) -> Result<bool> { return ecom::db::inbox_claim(tx, "order", expired.front()); });
  REQUIRE(again.ok());
  CHECK(*again);
  relay.stop();
}

TEST_CASE("outbox relay: a non-positive inbox retention never prunes",
          "[bus][outbox][inbox][retention]") {
  ecom::test::TempDir dir;
  auto store = inbox_store(dir.file("store.db"));
  const auto old = claim_events(*store, "order", 20, 365 * kDayMs);
  NullBus bus;
  ecom::bus::OutboxRelay relay(*store, bus, 64, 20ms, 0ms, 10ms);
  relay.start();
  std::this_thread::sleep_for(300ms);
  CHECK(inbox_ids(*store) == prefixed("order", old));
  CHECK(relay.inbox_pruned() == 0);
}

TEST_CASE("outbox relay: inbox rows expire and the prune interval passes on the relay's clock",
          "[bus][outbox][inbox][retention][clock]") {
  ecom::test::TempDir dir;
  auto store = inbox_store(dir.file("store.db"));
  // Claimed rows carry the system time; the manual clock starts there.
  ecom::ManualClock clock(ecom::now_ms());
  const auto old = claim_events(*store, "order", 30, 6 * kDayMs);
  const auto young = claim_events(*store, "order", 10, 0);
  NullBus bus;
  ecom::bus::OutboxRelay relay(*store, bus, 64, 20ms, std::chrono::hours(24 * 7), 60s, clock);
  relay.start();
  std::this_thread::sleep_for(100ms);
  CHECK(relay.inbox_pruned() == 0);  // the first prune is one interval after start
  clock.advance(60'000);
  std::this_thread::sleep_for(100ms);
  CHECK(inbox_ids(*store).size() == old.size() + young.size());  // nothing is 7 days old yet
  clock.advance(kDayMs);  // the old rows are 7 days old now, and the prune is due
  REQUIRE(eventually([&] { return inbox_ids(*store) == prefixed("order", young); }));
  CHECK(relay.inbox_pruned() == old.size());
  relay.stop();
}
