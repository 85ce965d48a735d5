// Crash tests with real processes: a forked child is SIGKILLed at the worst moment and the
// parent checks that nothing was lost and nothing applied twice.

#include <signal.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bus_test_util.hpp"
#include "child_process.hpp"
#include "ecom/bus/embedded_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/db/outbox.hpp"
#include "support/applied_effects.hpp"
#include "support/kill_after_publish.hpp"
#include "support/test_support.hpp"

using ecom::Envelope;
using ecom::Result;
using ecom::Status;
using ecom::bus::Message;
using ecom::bus::Outcome;
using ecom::bus::Record;
using ecom::db::Database;
using ecom::db::Tx;
using ecom::test::ChildProcess;
using ecom::test::Collector;
using ecom::test::eventually;
using ecom::test::fast_bus_options;
using ecom::test::open_bus;
using ecom::test::test_event;
using namespace std::chrono_literals;

namespace {

std::set<std::string> as_set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

std::unique_ptr<Database> open_store(const std::string& path) {
  auto db = Database::open(path);
  REQUIRE(db.ok());
  return std::move(db).value();
}

// The store of a tiny module: one counter, changed only through the inbox.
constexpr std::array<std::string_view, 1> kCounterSchema{
    "CREATE TABLE counter(id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
    "INSERT INTO counter VALUES(1, 0);"};

Status migrate_counter(Database& db) {
  if (auto st = ecom::db::migrate_messaging(db); !st) return st;
  return db.migrate("counter", kCounterSchema);
}

/// Applies an event at most once: the inbox claim and the effect share one transaction.
Result<bool> apply_once(Database& db, const Envelope& e) {
  return db.transaction([&](Tx& tx) -> Result<bool> {
    if (!ecom::db::inbox_claim(tx, "counter", e.id)) return false;
    tx.stmt("UPDATE counter SET n = n + 1 WHERE id = 1").exec();
    return true;
  });
}

int64_t counter_value(Database& db) {
  auto r = db.read([](Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt("SELECT n FROM counter WHERE id = 1");
    return s.step() ? s.col_int(0) : -1;
  });
  REQUIRE(r.ok());
  return r.value();
}

}  // namespace

TEST_CASE("embedded bus: a consumer killed before committing loses nothing",
          "[bus][embedded][contract][crash]") {
  ecom::test::TempDir dir;
  auto opts = fast_bus_options(dir.file("bus.db"), 300ms);
  opts.batch_size = 16;  // several batches per partition, so some commit before the kill

  std::vector<std::string> all;
  {
    auto bus = open_bus(opts);
    std::vector<Record> batch;
    for (int i = 0; i < 200; ++i) {
      Envelope e = test_event("order-" + std::to_string(i % 20), i);
      all.push_back(e.id);
      batch.push_back(ecom::test::to_record("t", e));
    }
    REQUIRE(bus->publish(batch).ok());
  }  // closed: no connection may cross fork()

  // Offsets are committed once per pass over the partitions, and the first pass delivers at most
  // partitions x batch_size = 128 records: dying at the 150th is after a commit, before the last.
  constexpr int kKillAt = 150;
  ChildProcess child([&](int fd) {
    auto bus = ecom::bus::make_embedded_bus(opts);
    if (!bus) return 2;
    int seen = 0;
    auto sub = (*bus)->subscribe({.group = "g", .topics = {"t"}}, [&](const Message& m) {
      ecom::test::send_line(fd, m.envelope.id);
      // Dies mid-batch: this message and the rest of its batch are not committed.
      if (++seen == kKillAt) ::raise(SIGKILL);
      return Outcome::ack();
    });
    if (!sub) return 3;
    std::this_thread::sleep_for(60s);
    return 4;
  });
  const auto child_saw = child.lines_until_eof(60s);
  REQUIRE(child.wait(10s) == ecom::test::killed_by_sigkill());
  REQUIRE(child_saw.size() == static_cast<size_t>(kKillAt));

  // What the dead consumer managed to commit.
  const auto committed =
      ecom::test::query_file(opts.path, [](Tx& tx) -> Result<std::vector<std::string>> {
        std::vector<std::string> out;
        auto s =
            tx.stmt(R"(SELECT r.value FROM records r LEFT JOIN group_offsets g ON g.grp = 'g' )"
                    R"(AND g.topic = r.topic AND g."partition" = r."partition" )"
                    R"(WHERE r.topic = 't' AND r."offset" < coalesce(g.committed, 0))");
        while (s.step()) {
          auto e = ecom::decode_envelope(s.col_view(0));
          if (e) out.push_back(e->id);
        }
        return out;
      });
  const auto committed_set = as_set(committed);
  const auto child_set = as_set(child_saw);
  // The scenario really happened: some progress was committed, some was not.
  REQUIRE_FALSE(committed.empty());
  std::vector<std::string> uncommitted_seen;
  std::set_difference(child_set.begin(), child_set.end(), committed_set.begin(),
                      committed_set.end(), std::back_inserter(uncommitted_seen));
  REQUIRE_FALSE(uncommitted_seen.empty());
  // Committed implies delivered.
  CHECK(std::includes(child_set.begin(), child_set.end(), committed_set.begin(),
                      committed_set.end()));

  // A new member of the group takes over once the dead one's session expired.
  auto bus = open_bus(opts);
  Collector got;
  auto sub = bus->subscribe({.group = "g", .topics = {"t"}}, got.handler());
  REQUIRE(sub.ok());
  const size_t expected = all.size() - committed_set.size();
  REQUIRE(eventually([&] { return got.size() >= expected; }, 30s));
  std::this_thread::sleep_for(300ms);

  const auto got_ids = got.ids();
  const auto got_set = as_set(got_ids);
  CHECK(got_ids.size() == expected);  // nothing twice
  // Redelivered: exactly what was not committed, including what the child had seen.
  std::vector<std::string> overlap;
  std::set_intersection(got_set.begin(), got_set.end(), committed_set.begin(), committed_set.end(),
                        std::back_inserter(overlap));
  CHECK(overlap.empty());
  std::set<std::string> union_set(got_set);
  union_set.insert(committed_set.begin(), committed_set.end());
  CHECK(union_set == as_set(all));
  for (const auto& id : uncommitted_seen) CHECK(got_set.count(id) == 1);
}

TEST_CASE("outbox: events committed by a process killed before relaying are published later",
          "[bus][outbox][crash]") {
  ecom::test::TempDir dir;
  const std::string store_path = dir.file("order.db");
  const auto opts = fast_bus_options(dir.file("bus.db"));

  ChildProcess child([&](int fd) {
    auto db = Database::open(store_path);
    if (!db || !migrate_counter(**db)) return 2;
    std::vector<Envelope> events;
    for (int i = 0; i < 3; ++i) events.push_back(test_event("order-7", i));
    auto st = (*db)->transaction([&](Tx& tx) -> Status {
      tx.stmt("UPDATE counter SET n = 42 WHERE id = 1").exec();
      for (const auto& e : events) ecom::db::outbox_add(tx, "orders.created", e);
      return {};
    });
    if (!st) return 3;
    for (const auto& e : events) ecom::test::send_line(fd, e.id);
    // Committed, never relayed: the process dies before any publish.
    ::raise(SIGKILL);
    return 4;
  });
  const auto ids = child.lines_until_eof(30s);
  REQUIRE(child.wait(10s) == ecom::test::killed_by_sigkill());
  REQUIRE(ids.size() == 3);

  auto store = open_store(store_path);
  CHECK(counter_value(*store) == 42);  // the state change survived the crash
  auto pending = [&] {
    auto r = store->read([](Tx& tx) -> Result<int64_t> { return ecom::db::outbox_pending(tx); });
    REQUIRE(r.ok());
    return r.value();
  };
  REQUIRE(pending() == 3);

  auto bus = open_bus(opts);
  Collector got;
  auto sub = bus->subscribe({.group = "saga", .topics = {"orders.created"}}, got.handler());
  REQUIRE(sub.ok());
  ecom::bus::OutboxRelay relay(*store, *bus);
  relay.start();
  REQUIRE(eventually([&] { return got.size() >= 3; }, 20s));
  CHECK(got.ids() == ids);  // in commit order
  REQUIRE(eventually([&] { return pending() == 0; }));
  CHECK(relay.published() == 3);
  relay.stop();
}

TEST_CASE("inbox: an event delivered twice is applied once", "[bus][inbox]") {
  ecom::test::TempDir dir;
  auto store = open_store(dir.file("counter.db"));
  REQUIRE(migrate_counter(*store).ok());
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));

  std::atomic<int> deliveries{0};
  std::atomic<int> applied{0};
  auto sub = bus->subscribe({.group = "counter", .topics = {"t"}}, [&](const Message& m) {
    auto r = apply_once(*store, m.envelope);
    if (!r) return Outcome::retry(r.error().message);
    if (*r) ++applied;
    ++deliveries;
    return Outcome::ack();
  });
  REQUIRE(sub.ok());
  const Envelope e = test_event("order-1", 1);
  REQUIRE(bus->publish("t", e).ok());
  REQUIRE(bus->publish("t", e).ok());  // e.g. a relay that republished after a crash
  REQUIRE(eventually([&] { return deliveries.load() >= 2; }));
  CHECK(deliveries.load() == 2);
  CHECK(applied.load() == 1);
  CHECK(counter_value(*store) == 1);
}

TEST_CASE("inbox: a consumer killed after applying but before committing does not apply twice",
          "[bus][inbox][crash]") {
  ecom::test::TempDir dir;
  const std::string store_path = dir.file("counter.db");
  const auto opts = fast_bus_options(dir.file("bus.db"), 300ms);
  std::vector<std::string> sent;
  {
    auto bus = open_bus(opts);
    for (int i = 0; i < 5; ++i) {
      Envelope e = test_event("order-9", i);
      sent.push_back(e.id);
      REQUIRE(bus->publish("t", e).ok());
    }
  }

  ChildProcess child([&](int fd) {
    auto db = Database::open(store_path);
    if (!db || !migrate_counter(**db)) return 2;
    auto bus = ecom::bus::make_embedded_bus(opts);
    if (!bus) return 3;
    int seen = 0;
    auto sub = (*bus)->subscribe({.group = "counter", .topics = {"t"}}, [&](const Message& m) {
      auto r = apply_once(**db, m.envelope);
      ecom::test::send_line(fd, m.envelope.id);
      // The effect is committed in the store, the bus offset is not.
      if (r && ++seen == 3) ::raise(SIGKILL);
      return Outcome::ack();
    });
    if (!sub) return 4;
    std::this_thread::sleep_for(60s);
    return 5;
  });
  const auto child_saw = child.lines_until_eof(60s);
  REQUIRE(child.wait(10s) == ecom::test::killed_by_sigkill());
  REQUIRE(child_saw.size() == 3);

  auto store = open_store(store_path);
  REQUIRE(counter_value(*store) == 3);
  auto bus = open_bus(opts);
  std::mutex mu;
  std::vector<std::string> redelivered;
  auto sub = bus->subscribe({.group = "counter", .topics = {"t"}}, [&](const Message& m) {
    auto r = apply_once(*store, m.envelope);
    if (!r) return Outcome::retry(r.error().message);
    {
      std::lock_guard lock(mu);
      redelivered.push_back(m.envelope.id);
    }
    return Outcome::ack();
  });
  REQUIRE(sub.ok());
  REQUIRE(eventually(
      [&] {
        std::lock_guard lock(mu);
        return !redelivered.empty() && redelivered.back() == sent.back();
      },
      30s));
  std::this_thread::sleep_for(200ms);
  // Redelivery starts at the last committed offset: at or before the event the child died in
  // (usually the very first, as one batch holds all five), and continues in order to the end.
  // Those already applied are skipped by the inbox, so each is applied exactly once.
  {
    std::lock_guard lock(mu);
    REQUIRE_FALSE(redelivered.empty());
    auto start = std::find(sent.begin(), sent.end(), redelivered.front());
    REQUIRE(start != sent.end());
    CHECK(start - sent.begin() <= 2);
    CHECK(redelivered == std::vector<std::string>(start, sent.end()));
  }
  CHECK(counter_value(*store) == 5);
}

namespace {

using ecom::test::apply_counted;
using ecom::test::migrate_applied;

struct AppliedCounts {
  int64_t events = 0;  // distinct events applied
  int64_t max_n = 0;   // most applications of one event
  int64_t inbox = 0;   // inbox rows
};

AppliedCounts applied_counts(const std::string& path) {
  return ecom::test::query_file(path, [](Tx& tx) -> Result<AppliedCounts> {
    AppliedCounts c;
    auto s = tx.stmt("SELECT count(*), coalesce(max(n), 0) FROM applied");
    if (s.step()) {
      c.events = s.col_int(0);
      c.max_n = s.col_int(1);
    }
    auto i = tx.stmt("SELECT count(*) FROM inbox");
    if (i.step()) c.inbox = i.col_int(0);
    return c;
  });
}

// The subscriber's store, dying (SIGKILL) right after a batch of `at_least` handled records
// committed in it: before the bus commits the offsets of that batch.
class KillAfterCommit final : public ecom::BatchScope {
 public:
  KillAfterCommit(Database& db, const std::atomic<int>& handled, int at_least)
      : db_(db), handled_(handled), at_least_(at_least) {}
  Status run(const std::function<void()>& body) override {
    Status st = db_.run(body);
    if (st && handled_.load() >= at_least_) ::raise(SIGKILL);
    return st;
  }
  Status save_positions(std::string_view group,
                        std::span<const ecom::ConsumedPosition> positions) override {
    return db_.save_positions(group, positions);
  }
  Result<std::vector<ecom::ConsumedPosition>> load_positions(std::string_view group) override {
    return db_.load_positions(group);
  }

 private:
  Database& db_;
  const std::atomic<int>& handled_;
  int at_least_;
};

}  // namespace

TEST_CASE(
    "embedded bus: a consumer killed between its store's commit and the bus's applies each "
    "event once, without inbox rows",
    "[bus][embedded][crash]") {
  ecom::test::TempDir dir;
  const std::string store_path = dir.file("applied.db");
  auto opts = fast_bus_options(dir.file("bus.db"), 300ms);
  opts.batch_size = 16;
  constexpr int kEvents = 300;
  {
    auto bus = open_bus(opts);
    std::vector<Record> batch;
    for (int i = 1; i <= kEvents; ++i) {
      Record r = ecom::test::to_record("t", test_event("order-" + std::to_string(i % 24), i));
      r.source = "outbox-1";  // as a relay publishes: deduplicated at the log
      r.seq = i;
      batch.push_back(std::move(r));
    }
    REQUIRE(bus->publish(batch).ok());
  }

  ChildProcess child([&](int) {
    auto db = Database::open(store_path);
    if (!db || !migrate_applied(**db)) return 2;
    auto bus = ecom::bus::make_embedded_bus(opts);
    if (!bus) return 3;
    std::atomic<int> handled{0};
    KillAfterCommit scope(**db, handled, 40);
    auto sub =
        (*bus)->subscribe({.group = "g", .topics = {"t"}, .store = &scope}, [&](const Message& m) {
          ++handled;
          return m.once ? apply_counted(**db, m) : Outcome::retry("expected once");
        });
    if (!sub) return 4;
    std::this_thread::sleep_for(60s);
    return 5;
  });
  REQUIRE(child.wait(60s) == ecom::test::killed_by_sigkill());

  // The scenario happened: effects and positions are in the store, the bus committed less.
  const auto before = applied_counts(store_path);
  REQUIRE(before.events >= 40);
  REQUIRE(before.events < kEvents);
  const int64_t committed = ecom::test::query_file(opts.path, [](Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt("SELECT coalesce(sum(committed), 0) FROM group_offsets WHERE grp = 'g'");
    return s.step() ? s.col_int(0) : 0;
  });
  REQUIRE(committed < before.events);

  auto store = open_store(store_path);
  auto bus = open_bus(opts);
  std::atomic<int> not_once{0};
  auto sub =
      bus->subscribe({.group = "g", .topics = {"t"}, .store = store.get()}, [&](const Message& m) {
        if (!m.once) ++not_once;
        return apply_counted(*store, m);
      });
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return applied_counts(store_path).events >= kEvents; }, 30s));
  std::this_thread::sleep_for(300ms);
  (*sub)->close();
  const auto after = applied_counts(store_path);
  CHECK(after.events == kEvents);
  CHECK(after.max_n == 1);  // nothing applied twice
  CHECK(after.inbox == 0);  // and no inbox row was needed for it
  CHECK(not_once.load() == 0);
}

TEST_CASE(
    "embedded bus: a relay killed between its publish and its delete: each event is appended "
    "and applied once",
    "[bus][embedded][outbox][crash]") {
  ecom::test::TempDir dir;
  const std::string producer_path = dir.file("producer.db");
  const std::string consumer_path = dir.file("applied.db");
  const auto opts = fast_bus_options(dir.file("bus.db"), 300ms);
  constexpr int kEvents = 40;

  ChildProcess child([&](int) {
    auto db = Database::open(producer_path);
    if (!db || !ecom::db::migrate_messaging(**db)) return 2;
    auto st = (*db)->transaction([&](Tx& tx) -> Status {
      for (int i = 0; i < kEvents; ++i) {
        ecom::db::outbox_add(tx, "orders.created", test_event("order-" + std::to_string(i), i));
      }
      return {};
    });
    if (!st) return 3;
    auto bus = ecom::bus::make_embedded_bus(opts);
    if (!bus) return 4;
    ecom::test::KillAfterPublish dying(**bus);
    ecom::bus::OutboxRelay relay(**db, dying);
    relay.drain(10s);  // dies in it, after the bus committed the rows, before their delete
    return 5;
  });
  REQUIRE(child.wait(60s) == ecom::test::killed_by_sigkill());

  auto producer = open_store(producer_path);
  auto pending = [&] {
    auto r = producer->read([](Tx& tx) -> Result<int64_t> { return ecom::db::outbox_pending(tx); });
    REQUIRE(r.ok());
    return r.value();
  };
  REQUIRE(pending() == kEvents);  // published, not deleted
  auto log_rows = [&] {
    return ecom::test::query_file(opts.path, [](Tx& tx) -> Result<int64_t> {
      auto s = tx.stmt("SELECT count(*) FROM records WHERE topic = 'orders.created'");
      return s.step() ? s.col_int(0) : 0;
    });
  };
  REQUIRE(log_rows() == kEvents);

  auto bus = open_bus(opts);
  {
    ecom::bus::OutboxRelay relay(*producer, *bus);
    REQUIRE(relay.drain(10s));  // republishes all 40
  }
  CHECK(pending() == 0);
  CHECK(log_rows() == kEvents);  // the bus appended none of them twice

  auto consumer = open_store(consumer_path);
  REQUIRE(migrate_applied(*consumer).ok());
  auto sub = bus->subscribe({.group = "g", .topics = {"orders.created"}, .store = consumer.get()},
                            [&](const Message& m) { return apply_counted(*consumer, m); });
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return applied_counts(consumer_path).events >= kEvents; }, 30s));
  std::this_thread::sleep_for(300ms);
  (*sub)->close();
  const auto c = applied_counts(consumer_path);
  CHECK(c.events == kEvents);
  CHECK(c.max_n == 1);
  CHECK(c.inbox == 0);
}
