// Static membership (SubscriptionOptions::instance_id, like Kafka's group.instance.id): a process
// restarted after kill -9 resumes its partitions at once instead of after the session timeout.

#include <signal.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "bus_test_util.hpp"
#include "child_process.hpp"
#include "ecom/bus/embedded_bus.hpp"
#include "support/test_support.hpp"

using ecom::Envelope;
using ecom::Result;
using ecom::bus::Message;
using ecom::bus::Outcome;
using ecom::bus::Record;
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

/// Owner of each partition of `topic` in `group`, as stored in the bus file.
std::map<int, std::string> owners(const std::string& path, const std::string& group,
                                  const std::string& topic) {
  return ecom::test::query_file(path, [&](Tx& tx) -> Result<std::map<int, std::string>> {
    std::map<int, std::string> out;
    auto s = tx.stmt(R"(SELECT "partition", owner FROM ownership WHERE grp=? AND topic=?)");
    s.bind_all(group, topic);
    while (s.step()) out[static_cast<int>(s.col_int(0))] = s.col_text(1);
    return out;
  });
}

bool all_owned_by(const std::string& path, const std::string& group, const std::string& topic,
                  int partitions, const std::string& member) {
  auto o = owners(path, group, topic);
  return o.size() == static_cast<size_t>(partitions) &&
         std::all_of(o.begin(), o.end(), [&](const auto& kv) { return kv.second == member; });
}

std::vector<std::string> members(const std::string& path, const std::string& group) {
  return ecom::test::query_file(path, [&](Tx& tx) -> Result<std::vector<std::string>> {
    std::vector<std::string> out;
    auto s = tx.stmt("SELECT member_id FROM members WHERE grp=? ORDER BY member_id");
    s.bind(1, group);
    while (s.step()) out.push_back(s.col_text(0));
    return out;
  });
}

}  // namespace

TEST_CASE("static membership: one live subscription per group and instance id in a bus",
          "[bus][embedded][static]") {
  ecom::test::TempDir dir;
  auto opts = fast_bus_options(dir.file("bus.db"));
  auto bus = open_bus(opts);
  auto ack = [](const Message&) { return Outcome::ack(); };

  auto a = bus->subscribe({.group = "g", .topics = {"t"}, .instance_id = "node-1"}, ack);
  REQUIRE(a.ok());
  auto dup = bus->subscribe({.group = "g", .topics = {"u"}, .instance_id = "node-1"}, ack);
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.error().code == ecom::ErrorCode::kConfigInvalid);
  // Another group, or a dynamic member of the same group, is fine.
  auto other_group = bus->subscribe({.group = "h", .topics = {"t"}, .instance_id = "node-1"}, ack);
  CHECK(other_group.ok());
  auto dynamic = bus->subscribe({.group = "g", .topics = {"t"}}, ack);
  CHECK(dynamic.ok());
  // Kafka's character rule.
  for (const char* bad : {"node 1", "node@host", "n/1"}) {
    auto r = bus->subscribe({.group = "x", .topics = {"t"}, .instance_id = bad}, ack);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ecom::ErrorCode::kConfigInvalid);
  }
  // The member id is the instance id, in the file too.
  REQUIRE(eventually([&] {
    auto m = members(opts.path, "g");
    return std::find(m.begin(), m.end(), "node-1") != m.end();
  }));

  // Once closed, the instance id may be used again.
  (*a)->close();
  auto again = bus->subscribe({.group = "g", .topics = {"t"}, .instance_id = "node-1"}, ack);
  CHECK(again.ok());
}

TEST_CASE("static membership: the bus-wide instance_id applies to subscriptions without one",
          "[bus][embedded][static]") {
  ecom::test::TempDir dir;
  auto opts = fast_bus_options(dir.file("bus.db"));
  {
    auto bad = opts;
    bad.instance_id = "host@1";
    auto r = ecom::bus::make_embedded_bus(bad);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ecom::ErrorCode::kConfigInvalid);
  }
  opts.instance_id = "host-1";
  auto bus = open_bus(opts);
  Collector got;
  auto sub = bus->subscribe({.group = "g", .topics = {"t"}}, got.handler());
  REQUIRE(sub.ok());
  auto dup = bus->subscribe({.group = "g", .topics = {"t"}}, got.handler());
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.error().code == ecom::ErrorCode::kConfigInvalid);
  REQUIRE(eventually([&] { return all_owned_by(opts.path, "g", "t", opts.partitions, "host-1"); }));
  REQUIRE(bus->publish("t", test_event("k", 1)).ok());
  REQUIRE(eventually([&] { return got.size() == 1; }));
}

TEST_CASE("static membership: a consumer restarted after kill -9 resumes its partitions at once",
          "[bus][embedded][static][crash]") {
  ecom::test::TempDir dir;
  // A session timeout far beyond the wait below: only static membership can explain a quick
  // takeover; a dynamic member would wait for the dead one to expire.
  auto opts = fast_bus_options(dir.file("bus.db"), 120s);
  opts.batch_size = 16;  // several batches per partition, so some commit before the kill
  const ecom::bus::SubscriptionOptions sub_opts{
      .group = "g", .topics = {"t"}, .instance_id = "order-0"};

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
    auto sub = (*bus)->subscribe(sub_opts, [&](const Message& m) {
      ecom::test::send_line(fd, m.envelope.id);
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

  // The dead incarnation is still a live member, owning every partition.
  REQUIRE(members(opts.path, "g") == std::vector<std::string>{"order-0"});
  REQUIRE(all_owned_by(opts.path, "g", "t", opts.partitions, "order-0"));
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
  REQUIRE_FALSE(committed.empty());
  std::vector<std::string> uncommitted_seen;
  std::set_difference(child_set.begin(), child_set.end(), committed_set.begin(),
                      committed_set.end(), std::back_inserter(uncommitted_seen));
  REQUIRE_FALSE(uncommitted_seen.empty());

  // The restarted process, same instance id: everything not committed arrives long before the
  // dead incarnation's session (120 s) could have expired.
  auto bus = open_bus(opts);
  Collector got;
  auto sub = bus->subscribe(sub_opts, got.handler());
  REQUIRE(sub.ok());
  const size_t expected = all.size() - committed_set.size();
  REQUIRE(eventually([&] { return got.size() >= expected; }, 15s));
  std::this_thread::sleep_for(300ms);

  const auto got_ids = got.ids();
  const auto got_set = as_set(got_ids);
  CHECK(got_ids.size() == expected);  // nothing twice
  std::vector<std::string> overlap;
  std::set_intersection(got_set.begin(), got_set.end(), committed_set.begin(), committed_set.end(),
                        std::back_inserter(overlap));
  CHECK(overlap.empty());
  std::set<std::string> union_set(got_set);
  union_set.insert(committed_set.begin(), committed_set.end());
  CHECK(union_set == as_set(all));
  for (const auto& id : uncommitted_seen) CHECK(got_set.count(id) == 1);
  CHECK(members(opts.path, "g") == std::vector<std::string>{"order-0"});
}

TEST_CASE("static membership: the older of two incarnations alive at once is fenced",
          "[bus][embedded][static]") {
  ecom::test::TempDir dir;
  const auto opts = fast_bus_options(dir.file("bus.db"));
  const ecom::bus::SubscriptionOptions sub_opts{
      .group = "g", .topics = {"t"}, .instance_id = "worker-1"};
  auto incarnation = [&] {
    return ecom::test::query_file(opts.path, [](Tx& tx) -> Result<std::string> {
      auto s = tx.stmt("SELECT incarnation FROM members WHERE grp='g' AND member_id='worker-1'");
      return s.step() ? s.col_text(0) : std::string();
    });
  };
  // Two bus objects on one file stand for two processes configured with the same instance id.
  auto bus1 = open_bus(opts);
  auto bus2 = open_bus(opts);

  // The first incarnation is stuck in its handler while the second one starts, so it cannot
  // notice the takeover before it tries to commit.
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  bool entered = false;
  Collector first([&](const Message&) {
    std::unique_lock lock(mu);
    entered = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
    return Outcome::ack();
  });
  auto sub1 = bus1->subscribe(sub_opts, first.handler());
  REQUIRE(sub1.ok());
  auto unblock = [&] {
    {
      std::lock_guard lock(mu);
      release = true;
    }
    cv.notify_all();
  };
  // Destroyed before sub1: a failed REQUIRE must not leave close() waiting for the handler.
  struct Unblock {
    std::function<void()> f;
    ~Unblock() { f(); }
  } unblock_on_exit{unblock};
  const Envelope stuck = test_event("k0", 0);
  REQUIRE(bus1->publish("t", stuck).ok());
  REQUIRE(eventually([&] {
    std::lock_guard lock(mu);
    return entered;
  }));
  const std::string first_incarnation = incarnation();
  REQUIRE_FALSE(first_incarnation.empty());

  Collector second;
  auto sub2 = bus2->subscribe(sub_opts, second.handler());
  REQUIRE(sub2.ok());
  REQUIRE(eventually([&] {
    auto now = incarnation();
    return !now.empty() && now != first_incarnation;
  }));
  const std::string second_incarnation = incarnation();
  std::vector<std::string> sent{stuck.id};  // not committed: the second one redelivers it
  for (int i = 1; i <= 20; ++i) {
    Envelope e = test_event("k" + std::to_string(i % 7), i);
    sent.push_back(e.id);
    REQUIRE(bus2->publish("t", e).ok());
  }
  auto log_ends_committed = [&] {
    return ecom::test::query_file(opts.path, [](Tx& tx) -> Result<bool> {
      auto s = tx.stmt(R"(SELECT count(*) FROM log_end e LEFT JOIN group_offsets g ON g.grp='g' )"
                       R"(AND g.topic=e.topic AND g."partition"=e."partition" )"
                       R"(WHERE e.topic='t' AND coalesce(g.committed, -1) <> e.next_offset)");
      return s.step() && s.col_int(0) == 0;
    });
  };
  REQUIRE(eventually([&] { return second.size() >= sent.size() && log_ends_committed(); }, 20s));

  // The first incarnation wakes up: its commit is refused, and closing it leaves the membership
  // and partitions with the second.
  unblock();
  (*sub1)->close();
  CHECK(first.ids() == std::vector<std::string>{stuck.id});
  CHECK(log_ends_committed());
  CHECK(members(opts.path, "g") == std::vector<std::string>{"worker-1"});
  CHECK(incarnation() == second_incarnation);
  CHECK(all_owned_by(opts.path, "g", "t", opts.partitions, "worker-1"));
  CHECK(as_set(second.ids()) == as_set(sent));
  CHECK(second.size() == sent.size());

  const Envelope later = test_event("k3", 99);
  REQUIRE(bus2->publish("t", later).ok());
  REQUIRE(eventually([&] { return second.size() == sent.size() + 1; }));
  CHECK(second.ids().back() == later.id);
  CHECK(first.size() == 1);
}
