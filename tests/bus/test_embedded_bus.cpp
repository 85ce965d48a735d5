#include <rapidjson/document.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bus_test_util.hpp"
#include "child_process.hpp"
#include "ecom/bus/embedded_bus.hpp"
#include "support/bus_contract.hpp"
#include "support/group_commit_check.hpp"
#include "support/test_support.hpp"

using ecom::Envelope;
using ecom::bus::Disposition;
using ecom::bus::Message;
using ecom::bus::Outcome;
using ecom::bus::Record;
using ecom::bus::SubscriptionOptions;
using ecom::test::Collector;
using ecom::test::eventually;
using ecom::test::fast_bus_options;
using ecom::test::open_bus;
using ecom::test::test_event;
using namespace std::chrono_literals;

namespace {

std::set<std::string> as_set(const std::vector<std::string>& v) { return {v.begin(), v.end()}; }

std::vector<std::string> ids_of(const std::vector<Envelope>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(e.id);
  return out;
}

/// Owner of each partition of `topic` in `group`, as stored in the bus file.
std::map<int, std::string> owners(const std::string& path, const std::string& group,
                                  const std::string& topic) {
  return ecom::test::query_file(
      path, [&](ecom::db::Tx& tx) -> ecom::Result<std::map<int, std::string>> {
        std::map<int, std::string> out;
        auto s = tx.stmt(R"(SELECT "partition", owner FROM ownership WHERE grp=? AND topic=?)");
        s.bind_all(group, topic);
        while (s.step()) out[static_cast<int>(s.col_int(0))] = s.col_text(1);
        return out;
      });
}

rapidjson::Document parse(const std::string& json) {
  rapidjson::Document d;
  d.Parse(json.c_str(), json.size());
  REQUIRE_FALSE(d.HasParseError());
  REQUIRE(d.IsObject());
  return d;
}

}  // namespace

TEST_CASE("embedded bus: rejects invalid options and subscriptions", "[bus][embedded]") {
  ecom::test::TempDir dir;
  auto o = fast_bus_options(dir.file("bus.db"));
  o.path.clear();
  auto bad = ecom::bus::make_embedded_bus(o);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == ecom::ErrorCode::kConfigInvalid);
  o = fast_bus_options(dir.file("bus.db"));
  o.partitions = 0;
  CHECK_FALSE(ecom::bus::make_embedded_bus(o).ok());

  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  CHECK(bus->kind() == "embedded");
  CHECK(bus->healthy());
  auto ack = [](const Message&) { return Outcome::ack(); };
  CHECK_FALSE(bus->subscribe({.group = "", .topics = {"t"}}, ack).ok());
  CHECK_FALSE(bus->subscribe({.group = "g", .topics = {}}, ack).ok());
  CHECK_FALSE(bus->subscribe({.group = "g", .topics = {"t"}}, nullptr).ok());
  Record no_topic{"", "k", "{}"};
  CHECK_FALSE(bus->publish(std::span<const Record>(&no_topic, 1)).ok());
  CHECK(bus->publish(std::span<const Record>()).ok());
}

TEST_CASE("embedded bus: delivers published events with their metadata", "[bus][embedded]") {
  ecom::test::TempDir dir;
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  std::vector<Envelope> sent;
  for (int i = 0; i < 3; ++i) {
    sent.push_back(test_event("order-1", i));
    REQUIRE(bus->publish("orders.created", sent.back()).ok());
  }
  Collector got;
  auto sub = bus->subscribe({.group = "g", .topics = {"orders.created"}}, got.handler());
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return got.size() >= 3; }));
  auto msgs = got.messages();
  REQUIRE(msgs.size() == 3);
  for (int i = 0; i < 3; ++i) {
    const Message& m = msgs[i];
    CHECK(m.topic == "orders.created");
    CHECK(m.partition == ecom::bus::partition_for("order-1", ecom::bus::kDefaultPartitions));
    CHECK(m.offset == i);
    CHECK(m.key == "order-1");
    CHECK(m.attempt == 1);
    CHECK(m.envelope.id == sent[i].id);
    CHECK(m.envelope.type == sent[i].type);
    CHECK(m.envelope.subject == "order-1");
    CHECK(m.envelope.correlation_id == sent[i].correlation_id);
    CHECK(m.envelope.data == sent[i].data);
  }
  (*sub)->close();
  (*sub)->close();  // idempotent
}

TEST_CASE("embedded bus: per-key order holds for interleaved keys and concurrent publishers",
          "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  const auto msgs = ecom::test::check_per_key_order(*bus, "orders.status", "g", 60s);
  // Offsets of a partition arrive without gaps, from the start of the log.
  std::map<int, int64_t> next;
  for (const auto& m : msgs) {
    CHECK(m.offset == next[m.partition]);
    next[m.partition] = m.offset + 1;
  }
}

TEST_CASE("embedded bus: a group resumes from its committed offsets", "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  const auto opts = fast_bus_options(dir.file("bus.db"));
  ecom::test::check_resume_from_committed([&] { return open_bus(opts); }, "t", "g", 10s);
}

TEST_CASE("embedded bus: a group starts at the positions its store holds",
          "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  ecom::test::check_stored_positions(*bus, "t", "g", 10s);
}

TEST_CASE("embedded bus: a relayed record published again reaches its group once",
          "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  ecom::test::check_source_copies_once(*bus, "t", "g", 10s);
}

TEST_CASE("embedded bus: a store position past the log's end gives way to the bus's offsets",
          "[bus][embedded]") {
  // The bus file was replaced under a store that had consumed an older one.
  ecom::test::TempDir dir;
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  std::vector<Record> records;
  std::set<std::string> sent;
  for (int i = 0; i < 8; ++i) {
    auto e = test_event("k" + std::to_string(i), i);
    sent.insert(e.id);
    records.push_back(ecom::test::to_record("t", e));
  }
  REQUIRE(bus->publish(records).ok());
  auto store = ecom::db::Database::open(":memory:");
  REQUIRE(store.ok());
  std::vector<ecom::ConsumedPosition> ahead;
  for (int p = 0; p < ecom::bus::kDefaultPartitions; ++p) ahead.push_back({"t", p, 1000});
  REQUIRE((*store)->save_positions("g", ahead).ok());
  Collector got;
  auto sub = bus->subscribe({.group = "g", .topics = {"t"}, .store = store->get()}, got.handler());
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return got.size() >= sent.size(); }, 10s));
  (*sub)->close();
  const auto ids = got.ids();
  CHECK(std::set<std::string>(ids.begin(), ids.end()) == sent);
  CHECK(ids.size() == sent.size());
}

TEST_CASE("embedded bus: a source's records are appended once per seq, and delivered once",
          "[bus][embedded]") {
  ecom::test::TempDir dir;
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  std::vector<Record> records;
  for (int i = 1; i <= 6; ++i) {
    Record r = ecom::test::to_record("t", test_event("k" + std::to_string(i % 3), i));
    r.source = "outbox-a";
    r.seq = i;
    records.push_back(std::move(r));
  }
  // A relay that crashed before its delete publishes rows 1..6 again, then 7 with them.
  REQUIRE(bus->publish(std::span(records).first(4)).ok());
  Record seventh = ecom::test::to_record("t", test_event("k1", 7));
  seventh.source = "outbox-a";
  seventh.seq = 7;
  records.push_back(seventh);
  REQUIRE(bus->publish(records).ok());
  // Another source's seqs are its own.
  Record other = ecom::test::to_record("t", test_event("k2", 8));
  other.source = "outbox-b";
  other.seq = 1;
  REQUIRE(bus->publish(std::span(&other, 1)).ok());

  auto store = ecom::db::Database::open(":memory:");
  REQUIRE(store.ok());
  Collector got;
  auto sub = bus->subscribe({.group = "g", .topics = {"t"}, .store = store->get()}, got.handler());
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return got.size() >= 8; }, 10s));
  std::this_thread::sleep_for(300ms);
  (*sub)->close();
  const auto msgs = got.messages();
  CHECK(msgs.size() == 8);
  std::set<std::string> distinct;
  for (const auto& m : msgs) {
    distinct.insert(m.envelope.id);
    CHECK(m.once);  // deduplicated at the log, and the position stored with the effects
  }
  CHECK(distinct.size() == 8);

  // Without a store the offset's effects and its position commit apart: not "once".
  Collector plain;
  auto sub2 = bus->subscribe({.group = "g2", .topics = {"t"}}, plain.handler());
  REQUIRE(sub2.ok());
  REQUIRE(eventually([&] { return plain.size() >= 8; }, 10s));
  (*sub2)->close();
  for (const auto& m : plain.messages()) CHECK_FALSE(m.once);
}

TEST_CASE("embedded bus: two consumers of one group split the partitions",
          "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  const auto opts = fast_bus_options(dir.file("bus.db"));
  auto bus = open_bus(opts);
  Collector a, b;
  auto sa = bus->subscribe({.group = "g", .topics = {"t"}}, a.handler());
  auto sb = bus->subscribe({.group = "g", .topics = {"t"}}, b.handler());
  REQUIRE(sa.ok());
  REQUIRE(sb.ok());
  // Wait for the rebalance to settle: every partition owned, by two members, half each.
  REQUIRE(eventually(
      [&] {
        auto o = owners(opts.path, "g", "t");
        std::map<std::string, int> per_owner;
        for (const auto& [p, owner] : o) ++per_owner[owner];
        return o.size() == static_cast<size_t>(opts.partitions) && per_owner.size() == 2 &&
               per_owner.begin()->second == opts.partitions / 2;
      },
      20s));

  std::vector<Envelope> sent;
  std::vector<Record> batch;
  for (int i = 0; i < 400; ++i) {
    sent.push_back(test_event("order-" + std::to_string(i % 40), i));
    batch.push_back(ecom::test::to_record("t", sent.back()));
  }
  REQUIRE(bus->publish(batch).ok());
  REQUIRE(eventually([&] { return a.size() + b.size() >= sent.size(); }, 30s));
  std::this_thread::sleep_for(200ms);

  auto ida = as_set(a.ids());
  auto idb = as_set(b.ids());
  CHECK_FALSE(ida.empty());
  CHECK_FALSE(idb.empty());
  CHECK(a.size() + b.size() == sent.size());  // nothing delivered twice
  std::vector<std::string> both;
  std::set_intersection(ida.begin(), ida.end(), idb.begin(), idb.end(), std::back_inserter(both));
  CHECK(both.empty());
  std::set<std::string> all(ida);
  all.insert(idb.begin(), idb.end());
  CHECK(all == as_set(ids_of(sent)));
  std::set<int> pa, pb;
  for (const auto& m : a.messages()) pa.insert(m.partition);
  for (const auto& m : b.messages()) pb.insert(m.partition);
  std::vector<int> shared;
  std::set_intersection(pa.begin(), pa.end(), pb.begin(), pb.end(), std::back_inserter(shared));
  CHECK(shared.empty());

  // When one leaves, the other takes over its partitions.
  (*sb)->close();
  std::vector<Envelope> more;
  for (int i = 0; i < 40; ++i) {
    more.push_back(test_event("order-" + std::to_string(i), 1000 + i));
    REQUIRE(bus->publish("t", more.back()).ok());
  }
  REQUIRE(eventually([&] { return a.size() >= ida.size() + more.size(); }, 20s));
  auto after = a.ids();
  std::set<std::string> new_in_a(after.begin() + static_cast<long>(ida.size()), after.end());
  CHECK(new_in_a == as_set(ids_of(more)));
}

TEST_CASE("embedded bus: separate groups each see every event", "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  ecom::test::check_separate_groups(*bus, "t", "u", "g1", "g2", 30s);
}

TEST_CASE("embedded bus: retries back off on their partition only, then dead-letter",
          "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  ecom::test::check_retries(*bus, "t", "g", 20s);
}

TEST_CASE(
    "embedded bus: dead letters keep their value and carry reason, attempts and origin as "
    "JSON headers",
    "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  const auto opts = fast_bus_options(dir.file("bus.db"));
  auto bus = open_bus(opts);
  // The consumer writes a dead letter before it moves on: once the contract saw the last
  // event, every copy is in the file.
  auto values = [&](size_t) {
    std::vector<std::string> out;
    for (const auto& r : ecom::test::dlq_records(opts.path, "t")) out.push_back(r.value);
    return out;
  };
  ecom::test::check_dead_letters(*bus, "t", "g", values, 10s);

  auto dlq = ecom::test::dlq_records(opts.path, "t");
  REQUIRE(dlq.size() == 4);  // one partition: in order
  for (const auto& r : dlq) CHECK(r.key == "k");
  auto h0 = parse(dlq[0].headers);
  CHECK(std::string(h0["reason"].GetString()) == "retries exhausted after 3 attempts: never works");
  CHECK(h0["attempts"].GetInt() == 3);
  CHECK(std::string(h0["topic"].GetString()) == "t");
  CHECK(h0["offset"].GetInt64() == 0);
  CHECK(h0["partition"].GetInt() == ecom::bus::partition_for("k", opts.partitions));
  CHECK(std::string(h0["group"].GetString()) == "g");
  auto h1 = parse(dlq[1].headers);
  CHECK(std::string(h1["reason"].GetString()).rfind("poison pill", 0) == 0);
  CHECK(h1["offset"].GetInt64() == 1);
  CHECK(h1["attempts"].GetInt() == 0);  // never handed to the handler
  auto h2 = parse(dlq[2].headers);
  CHECK(std::string(h2["reason"].GetString()) == "bad data");
  CHECK(h2["attempts"].GetInt() == 1);
  auto h3 = parse(dlq[3].headers);
  CHECK(std::string(h3["reason"].GetString()).rfind("poison pill", 0) == 0);
}

TEST_CASE("embedded bus: a dead letter whose write fails is held and only the write retried",
          "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  const auto opts = fast_bus_options(dir.file("bus.db"));
  auto bus = open_bus(opts);
  // Another connection to the file makes appends to .dlq topics fail, as a full disk would.
  auto exec = [&](const char* sql) {
    auto db = ecom::db::Database::open(opts.path);
    REQUIRE(db.ok());
    REQUIRE((*db)
                ->transaction([&](ecom::db::Tx& tx) -> ecom::Status {
                  tx.exec(sql);
                  return {};
                })
                .ok());
  };
  ecom::test::check_dead_letter_write_failure(
      *bus, "t", "g",
      [&] {
        exec(
            "CREATE TRIGGER refuse_dlq BEFORE INSERT ON records WHEN NEW.topic LIKE '%.dlq' "
            "BEGIN SELECT RAISE(ABORT, 'dead letters refused'); END");
      },
      [&] { exec("DROP TRIGGER refuse_dlq"); }, 10s);
}

TEST_CASE("embedded bus: close waits for the in-flight handler and stops delivery",
          "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  ecom::test::check_close_waits_for_handler(*bus, "t", "g", 10s);
}

TEST_CASE("embedded bus: a handler that destroys its own subscription",
          "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  ecom::test::check_handler_closes_own_subscription(*bus, "t", "g", ecom::test::SelfClose::kDestroy,
                                                    10s);
}

TEST_CASE("embedded bus: a handler that closes its own subscription", "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  ecom::test::check_handler_closes_own_subscription(*bus, "t", "g", ecom::test::SelfClose::kClose,
                                                    10s);
}

TEST_CASE("embedded bus: destroying the bus closes live subscriptions",
          "[bus][embedded][contract]") {
  ecom::test::TempDir dir;
  const auto opts = fast_bus_options(dir.file("bus.db"));
  ecom::test::check_bus_destroyed_first([&] { return open_bus(opts); }, "t", "g", 10s);
}

TEST_CASE("embedded bus: events published by another process are consumed",
          "[bus][embedded][process]") {
  ecom::test::TempDir dir;
  const auto opts = fast_bus_options(dir.file("bus.db"));
  // Fork first: the parent must not hold a connection across fork().
  ecom::test::ChildProcess child([&](int fd) {
    auto b = ecom::bus::make_embedded_bus(opts);
    if (!b) return 2;
    for (int i = 0; i < 30; ++i) {
      Envelope e = test_event("remote-" + std::to_string(i % 4), i);
      if (!(*b)->publish("t", e).ok()) return 3;
      ecom::test::send_line(fd, e.id);
    }
    return 0;
  });
  auto bus = open_bus(opts);
  Collector got;
  auto sub = bus->subscribe({.group = "g", .topics = {"t"}}, got.handler());
  REQUIRE(sub.ok());
  auto sent = child.lines_until_eof(30s);
  REQUIRE(child.wait(30s) == 0);
  REQUIRE(sent.size() == 30);
  REQUIRE(eventually([&] { return got.size() >= sent.size(); }, 20s));
  CHECK(as_set(got.ids()) == as_set(sent));
}

TEST_CASE("embedded bus: the partition count is fixed by the file, keeping per-key order",
          "[bus][embedded]") {
  ecom::test::TempDir dir;
  auto opts = fast_bus_options(dir.file("bus.db"));
  opts.partitions = 3;
  std::vector<Envelope> sent;
  {
    auto bus = open_bus(opts);
    for (int i = 0; i < 20; ++i) {
      sent.push_back(test_event("k" + std::to_string(i % 5), i));
      REQUIRE(bus->publish("t", sent.back()).ok());
    }
  }
  opts.partitions = 8;  // a later process configured differently
  auto bus = open_bus(opts);
  for (int i = 20; i < 40; ++i) {
    sent.push_back(test_event("k" + std::to_string(i % 5), i));
    REQUIRE(bus->publish("t", sent.back()).ok());
  }
  Collector got;
  auto sub = bus->subscribe({.group = "g", .topics = {"t"}}, got.handler());
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return got.size() >= sent.size(); }));
  for (const auto& m : got.messages()) {
    CHECK(m.partition < 3);
    CHECK(m.partition == ecom::bus::partition_for(m.key, 3));
  }
  std::map<std::string, std::vector<std::string>> expected;
  for (const auto& e : sent) expected[e.subject].push_back(e.id);
  CHECK(got.ids_by_key() == expected);
}

TEST_CASE(
    "embedded bus: a subscription with a store commits handler runs together, and a run "
    "that fails to commit is handled again",
    "[bus][embedded][contract][batch]") {
  ecom::test::TempDir dir;
  auto bus = open_bus(fast_bus_options(dir.file("bus.db")));
  ecom::test::check_group_commit(*bus, "t", "g", dir.file("store.db"));
}
