// Scale-out on the real broker and the real PostgreSQL: every role as several replicas sharing
// its schema (--store=postgres), splitting the work through the Kafka consumer group. Replicas
// are killed and added under load; afterwards nothing is lost, doubled or oversold, every replica
// answers for every order, and each group's partitions are spread over its live members.

#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <rapidjson/document.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "kafka_test_support.hpp"
#include "notification/sse_client.hpp"
#include "support/json_fields.hpp"
#include "support/test_support.hpp"

using ecom::test::Ecomd;
using ecom::test::eventually;
using ecom::test::parse;
using ecom::test::SseClient;
using ecom::test::str;
using ecom::test::TempDir;
using namespace ecom::test::kafka;
using namespace std::chrono_literals;

namespace {

bool terminal(const std::string& s) { return s == "CONFIRMED" || s == "CANCELLED"; }

constexpr int64_t kPlenty = 1'000'000;
constexpr int64_t kScarce = 60;

// One cluster: the config (topic/group prefix of its own), a schema prefix of its own, and
// the replicas started so far, per role.
struct Cluster {
  TempDir root;
  std::string prefix = unique_name("scale");
  std::string schemas = ecom::test::unique_schema("scale") + "_";
  std::string config;
  std::vector<std::unique_ptr<TempDir>> dirs;
  std::map<std::string, std::vector<std::unique_ptr<Ecomd>>> replicas;
  std::mutex mu;

  Cluster() {
    config = root.file("ecomd.json");
    std::ofstream(config) << R"({"kafka": {"topic_prefix": ")" << prefix
                          << R"(.", "group_prefix": ")" << prefix
                          << R"(-", "commit_interval_ms": 100, "session_timeout_ms": 6000},
      "topics": {"defaults": {"partitions": 6}},
      "saga": {"step_timeout_ms": 30000},
      "inventory": {"admin_token": "t", "seed": [
        {"sku":"SKU-A","name":"Plenty","available":)"
                          << kPlenty << R"(,"unitAmount":1000},
        {"sku":"SKU-S","name":"Scarce","available":)"
                          << kScarce << R"(,"unitAmount":700}]}})";
  }

  std::string store_url = ecom::test::postgres_url();

  std::vector<std::string> args(const std::string& role) const {
    return {"--role=" + role,
            "--bus=kafka",
            "--brokers=" + brokers(),
            "--config=" + config,
            "--store=postgres",
            "--store-url=" + store_url,
            "--store-schema-prefix=" + schemas};
  }

  // Starts `n` replicas of `role` at the same instant (their migrations race on purpose).
  void start(const std::string& role, int n) {
    std::vector<std::thread> starting;
    for (int i = 0; i < n; ++i) {
      starting.emplace_back([this, role] {
        auto dir = std::make_unique<TempDir>();
        auto e = std::make_unique<Ecomd>(dir->path(), args(role), 0, 60s);
        std::lock_guard lock(mu);
        dirs.push_back(std::move(dir));
        replicas[role].push_back(std::move(e));
      });
    }
    for (auto& t : starting) t.join();
    for (const auto& e : replicas[role])
      REQUIRE(eventually([&] { return e->get("/readyz").status == 200; }, 90s));
  }

  std::vector<Ecomd*> live(const std::string& role) {
    std::vector<Ecomd*> out;
    for (auto& e : replicas[role])
      if (e->pid() > 0) out.push_back(e.get());
    return out;
  }
};

struct Placed {
  std::string id;
  bool declined = false;
  int64_t a = 0, s = 0;  // quantities of SKU-A and SKU-S
};

std::string body_of(const Placed& p, int n) {
  std::string items = R"({"sku":"SKU-A","quantity":)" + std::to_string(p.a) + "}";
  if (p.s > 0) items += R"(,{"sku":"SKU-S","quantity":)" + std::to_string(p.s) + "}";
  return R"({"customerId":"c-)" + std::to_string(n % 50) + R"(","currency":"USD","items":[)" +
         items + R"(],"paymentToken":")" + (p.declined ? "tok_decline" : "tok_visa") + R"("})";
}

// A live-feed client of one notification replica, pumped on its own thread: the terminal
// status it saw per order.
struct FeedWatcher {
  std::unique_ptr<SseClient> client;
  std::map<std::string, std::string> terminal_seen;
  std::mutex mu;
  std::atomic<bool> stop{false};
  std::thread pumper;

  explicit FeedWatcher(uint16_t port) : client(std::make_unique<SseClient>(port, "/api/events")) {
    REQUIRE(client->wait_head(10s));
    REQUIRE(client->status() == 200);
    pumper = std::thread([this] {
      while (!stop.load()) {
        pollfd p{client->fd(), POLLIN, 0};
        if (client->fd() < 0 || ::poll(&p, 1, 100) <= 0) continue;
        if (!client->pump()) break;
        std::lock_guard lock(mu);
        for (const auto& e : client->events()) {
          if (e.event != "status") continue;
          auto d = parse(e.data);
          if (terminal(str(d, "status"))) terminal_seen[str(d, "orderId")] = str(d, "status");
        }
        client->events().clear();
      }
    });
  }
  ~FeedWatcher() {
    stop = true;
    if (pumper.joinable()) pumper.join();
  }
  size_t seen(const std::vector<Placed>& orders) {
    std::lock_guard lock(mu);
    size_t n = 0;
    for (const auto& o : orders) n += terminal_seen.contains(o.id) ? 1 : 0;
    return n;
  }
};

// Members of a consumer group and the partitions each holds (the Admin API).
std::vector<std::set<std::string>> group_members(const std::string& group) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", brokers().c_str(), err, sizeof err);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  REQUIRE(rk != nullptr);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk);
  const char* groups[] = {group.c_str()};
  rd_kafka_DescribeConsumerGroups(rk, groups, 1, nullptr, q);
  std::vector<std::set<std::string>> out;
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 15'000);
  if (ev != nullptr && rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const auto* res = rd_kafka_event_DescribeConsumerGroups_result(ev);
    size_t n = 0;
    const auto** descs = rd_kafka_DescribeConsumerGroups_result_groups(res, &n);
    for (size_t i = 0; i < n; ++i) {
      for (size_t m = 0; m < rd_kafka_ConsumerGroupDescription_member_count(descs[i]); ++m) {
        const auto* member = rd_kafka_ConsumerGroupDescription_member(descs[i], m);
        const auto* parts =
            rd_kafka_MemberAssignment_partitions(rd_kafka_MemberDescription_assignment(member));
        std::set<std::string> held;
        for (int p = 0; parts != nullptr && p < parts->cnt; ++p)
          held.insert(std::string(parts->elems[p].topic) + "[" +
                      std::to_string(parts->elems[p].partition) + "]");
        out.push_back(std::move(held));
      }
    }
  }
  if (ev != nullptr) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_destroy(rk);
  return out;
}

// The group has `members` members, each holding partitions.
bool spread_over(const std::string& group, size_t members) {
  auto got = group_members(group);
  if (got.size() != members) return false;
  for (const auto& held : got)
    if (held.empty()) return false;
  return true;
}

}  // namespace

TEST_CASE(
    "kafka scale-out: 3 replicas of every role on PostgreSQL, replicas killed and added under "
    "load: nothing lost, doubled or oversold",
    "[kafka][postgres][scale]") {
  Cluster c;
  // Every role's replicas start at the same instant on an empty schema.
  for (const char* role : {"inventory", "payment", "saga", "notification", "order"})
    c.start(role, 3);

  std::vector<std::unique_ptr<FeedWatcher>> feeds;
  for (auto* n : c.live("notification")) feeds.push_back(std::make_unique<FeedWatcher>(n->port()));

  // 2,000 orders over the order replicas, round-robin; declines and scarce stock.
  constexpr int kOrders = 2'000;
  std::vector<Placed> placed;
  std::mutex placed_mu;
  std::atomic<int> next{0};
  std::atomic<int> refused{0};
  std::vector<Ecomd*> front = c.live("order");
  std::mutex front_mu;
  auto client = [&](int seed) {
    std::mt19937 rng(seed);
    while (true) {
      const int n = next.fetch_add(1);
      if (n >= kOrders) return;
      Placed p;
      p.declined = rng() % 10 == 0;
      p.a = 1 + rng() % 3;
      p.s = rng() % 4 == 0 ? 1 + rng() % 2 : 0;
      Ecomd* target;
      {
        std::lock_guard lock(front_mu);
        target = front[static_cast<size_t>(n) % front.size()];
      }
      auto r = target->post("/api/orders", body_of(p, n));
      if (r.status != 202) {
        ++refused;
        continue;
      }
      p.id = str(parse(r.body), "orderId");
      std::lock_guard lock(placed_mu);
      placed.push_back(std::move(p));
    }
  };
  std::vector<std::thread> clients;
  for (int i = 0; i < 4; ++i) clients.emplace_back(client, 1000 + i);

  // A third of the way in: one replica each of saga, inventory, payment and notification dies,
  // and a fourth order replica joins.
  REQUIRE(eventually([&] { return next.load() >= kOrders / 3; }, 300s));
  for (const char* role : {"saga", "inventory", "payment", "notification"})
    c.replicas[role].front()->kill9();
  feeds.front()->stop = true;  // its replica is gone
  c.start("order", 1);
  {
    std::lock_guard lock(front_mu);
    front = c.live("order");
  }
  for (auto& t : clients) t.join();
  CHECK(refused.load() == 0);
  REQUIRE(placed.size() == static_cast<size_t>(kOrders));

  // Every order reaches a terminal status, waited for (long poll) on a replica other than the
  // one that took it.
  auto orders = c.live("order");
  REQUIRE(orders.size() == 4);
  std::map<std::string, std::string> status;
  for (size_t i = 0; i < placed.size(); ++i) {
    const auto& p = placed[i];
    std::string body;
    bool done = eventually(
        [&] {
          body = orders[(i + 1) % orders.size()]->get("/api/orders/" + p.id + "?wait=20s").body;
          return terminal(str(parse(body), "status"));
        },
        240s);
    INFO("order " << p.id << ": " << body);
    REQUIRE(done);
    status[p.id] = str(parse(body), "status");
  }
  // Readable, and the same, on every order replica.
  for (auto* o : orders)
    for (const auto& p : placed)
      CHECK(str(parse(o->get("/api/orders/" + p.id).body), "status") == status[p.id]);

  // No declined order confirmed; stock adds up and was never oversold.
  int64_t sold_a = 0, sold_s = 0;
  int confirmed = 0;
  for (const auto& p : placed) {
    if (status[p.id] != "CONFIRMED") continue;
    CHECK_FALSE(p.declined);
    ++confirmed;
    sold_a += p.a;
    sold_s += p.s;
  }
  CHECK(confirmed > kOrders / 2);
  auto* inventory = c.live("inventory").front();
  auto stock_ok = [&](const char* sku, int64_t initial, int64_t sold) {
    std::string body;
    bool ok = eventually(
        [&] {
          body = inventory->get(std::string("/api/inventory/") + sku).body;
          auto d = parse(body);
          if (!d.IsObject() || !d.HasMember("available")) return false;
          return d["reserved"].GetInt64() == 0 && d["sold"].GetInt64() == sold &&
                 d["available"].GetInt64() + d["sold"].GetInt64() == initial;
        },
        60s);
    INFO(sku << ": " << body << " (confirmed quantity " << sold << ")");
    CHECK(ok);
  };
  stock_ok("SKU-A", kPlenty, sold_a);
  stock_ok("SKU-S", kScarce, sold_s);
  CHECK(sold_s <= kScarce);

  // Exactly one notification per order and notified status (created, and how it ended), each
  // sent: on a replica's crash at most the ones it was sending wait out their claim (a minute).
  auto* notification = c.live("notification").front();
  for (const auto& p : placed) {
    std::string body;
    bool ok = eventually(
        [&] {
          body = notification->get("/api/notifications?orderId=" + p.id).body;
          auto d = parse(body);
          if (!d.IsObject() || !d.HasMember("notifications")) return false;
          std::multiset<std::string> keys;
          for (const auto& n : d["notifications"].GetArray()) {
            if (str(n, "status") != "SENT") return false;
            keys.insert(str(n, "orderStatus"));
          }
          return keys == std::multiset<std::string>{"PENDING", status[p.id]};
        },
        120s);
    INFO("order " << p.id << ": " << body);
    REQUIRE(ok);
  }
  // Delivered once by the live replicas together (the log sink's line per delivery).
  std::map<std::string, int> deliveries;
  for (auto* n : c.live("notification")) {
    for (const auto& line : read_lines(n->log_path())) {
      auto at = line.find("about order ");
      if (at == std::string::npos) continue;
      deliveries[line.substr(at + 12, line.find(')', at) - at - 11)]++;
    }
  }
  for (const auto& [what, n] : deliveries) {
    INFO(what);
    CHECK(n == 1);
  }

  // Each surviving notification replica's live client saw every order end.
  for (size_t i = 1; i < feeds.size(); ++i) {
    bool all = eventually([&] { return feeds[i]->seen(placed) == placed.size(); }, 60s);
    INFO("feed client " << i << " saw " << feeds[i]->seen(placed) << " of " << placed.size());
    CHECK(all);
  }

  // Each role's group spreads its partitions over its live replicas.
  for (const char* role : {"order", "inventory", "payment", "saga", "notification"}) {
    const size_t members = c.live(role).size();
    const std::string group = c.prefix + "-ecomd-" + role;
    bool spread = eventually([&] { return spread_over(group, members); }, 60s);
    INFO("group " << group << ": " << group_members(group).size() << " members, want " << members);
    CHECK(spread);
  }
  for (auto& [role, list] : c.replicas)
    for (auto& e : list)
      if (e->pid() > 0) CHECK(e->terminate(30s) == 0);
}

namespace {

// A PostgreSQL server of the test's own (scripts/postgres.sh on a free port), to stop and start.
struct OwnPostgres {
  uint16_t port = ecom::test::free_port();
  std::string dir =
      "/tmp/ecomd-pg-restart-" + std::to_string(::getpid()) + "-" + std::to_string(port);
  int run(const std::string& command) const {
    const std::string line = "PG_PORT=" + std::to_string(port) + " PG_DATA_DIR=" + dir + " " +
                             ECOM_SOURCE_DIR + "/scripts/postgres.sh " + command + " >>" + dir +
                             ".log 2>&1";
    return std::system(line.c_str());
  }
  std::string url() const {
    return "postgresql://ecomd@127.0.0.1:" + std::to_string(port) + "/ecomd";
  }
  OwnPostgres() { REQUIRE(run("start") == 0); }
  ~OwnPostgres() { run("clean"); }
};

}  // namespace

TEST_CASE(
    "kafka scale-out: PostgreSQL stopped for 10 s under load and started again: readiness 503 "
    "then 200, nothing lost or doubled, no restart of ecomd",
    "[kafka][postgres][scale]") {
  OwnPostgres pg;
  Cluster c;
  c.store_url = pg.url();
  c.start("all", 1);
  Ecomd& e = *c.replicas["all"].front();

  std::vector<Placed> placed;
  std::mutex placed_mu;
  std::atomic<bool> stop{false};
  std::atomic<int> refused{0}, server_errors{0}, n{0};
  auto client = [&](int seed) {
    std::mt19937 rng(seed);
    while (!stop.load()) {
      Placed p;
      p.declined = rng() % 10 == 0;
      p.a = 1 + rng() % 3;
      p.s = rng() % 4 == 0 ? 1 : 0;
      auto r = e.post("/api/orders", body_of(p, n++));
      if (r.status == 202) {
        p.id = str(parse(r.body), "orderId");
        std::lock_guard lock(placed_mu);
        placed.push_back(std::move(p));
      } else if (r.status == 503) {
        ++refused;  // the store is away: retryable, nothing stored
        std::this_thread::sleep_for(50ms);
      } else {
        ++server_errors;
        INFO(r.status << " " << r.body);
        CHECK(r.status == 503);
      }
    }
  };
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; ++i) clients.emplace_back(client, 7 + i);
  std::this_thread::sleep_for(4s);

  REQUIRE(pg.run("stop") == 0);
  const auto stopped = std::chrono::steady_clock::now();
  CHECK(eventually([&] { return e.get("/readyz").status == 503; }, 10s));
  std::this_thread::sleep_for(10s - (std::chrono::steady_clock::now() - stopped));
  REQUIRE(pg.run("start") == 0);
  CHECK(eventually([&] { return e.get("/readyz").status == 200; }, 60s));
  std::this_thread::sleep_for(4s);  // orders flow again
  stop = true;
  for (auto& t : clients) t.join();
  CHECK(server_errors.load() == 0);
  CHECK(refused.load() > 0);  // the outage was seen by clients
  REQUIRE(placed.size() > 50);

  std::map<std::string, std::string> status;
  int64_t sold_a = 0, sold_s = 0;
  for (const auto& p : placed) {
    std::string body;
    bool done = eventually(
        [&] {
          body = e.get("/api/orders/" + p.id + "?wait=20s").body;
          return terminal(str(parse(body), "status"));
        },
        180s);
    INFO("order " << p.id << ": " << body);
    REQUIRE(done);
    auto d = parse(body);
    status[p.id] = str(d, "status");
    // Each status once in the order's history: no transition applied twice.
    std::set<std::string> seen;
    for (const auto& h : d["history"].GetArray())
      CHECK(seen.insert(h["status"].GetString()).second);
    if (status[p.id] == "CONFIRMED") {
      CHECK_FALSE(p.declined);
      sold_a += p.a;
      sold_s += p.s;
    }
  }
  auto stock_ok = [&](const char* sku, int64_t initial, int64_t sold) {
    std::string body;
    bool ok = eventually(
        [&] {
          body = e.get(std::string("/api/inventory/") + sku).body;
          auto d = parse(body);
          if (!d.IsObject() || !d.HasMember("available")) return false;
          return d["reserved"].GetInt64() == 0 && d["sold"].GetInt64() == sold &&
                 d["available"].GetInt64() + sold == initial;
        },
        60s);
    INFO(sku << ": " << body << " (confirmed quantity " << sold << ")");
    CHECK(ok);
  };
  stock_ok("SKU-A", kPlenty, sold_a);
  stock_ok("SKU-S", kScarce, sold_s);
  for (const auto& p : placed) {
    std::string body;
    bool ok = eventually(
        [&] {
          body = e.get("/api/notifications?orderId=" + p.id).body;
          auto d = parse(body);
          if (!d.IsObject() || !d.HasMember("notifications")) return false;
          std::multiset<std::string> keys;
          for (const auto& x : d["notifications"].GetArray()) keys.insert(str(x, "orderStatus"));
          return keys == std::multiset<std::string>{"PENDING", status[p.id]};
        },
        60s);
    INFO("order " << p.id << ": " << body);
    CHECK(ok);
  }
  CHECK(e.terminate(30s) == 0);
}

TEST_CASE(
    "kafka scale-out: five replicas of one role started at the same instant on an empty schema "
    "all come up, and the catalogue is seeded once",
    "[kafka][postgres][scale]") {
  Cluster c;
  c.start("inventory", 5);  // each waits for its /readyz
  REQUIRE(c.live("inventory").size() == 5);
  for (auto* e : c.live("inventory")) {
    auto d = parse(e->get("/api/inventory").body);
    REQUIRE(d.IsObject());
    REQUIRE(d.HasMember("items"));
    CHECK(d["items"].Size() == 2);
    for (const auto& p : d["items"].GetArray()) {
      const std::string sku = str(p, "sku");
      CHECK(p["available"].GetInt64() == (sku == "SKU-A" ? kPlenty : kScarce));
    }
  }
  for (auto* e : c.live("inventory")) CHECK(e->terminate(30s) == 0);
}
