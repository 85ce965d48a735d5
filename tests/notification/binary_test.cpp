// Live push against the real binary (--role=all, embedded bus): an order's statuses over SSE,
// resume after a disconnect, and 500 concurrent clients.

#include <poll.h>
#include <sys/resource.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "harness.hpp"
#include "sse_client.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using ecom::test::Ecomd;
using ecom::test::parse_json;
using ecom::test::SseClient;
using ecom::test::SseEvent;
using ecom::test::str_of;
using ecom::test::TempDir;

namespace {

const std::vector<std::string> kLifecycle{"PENDING", "STOCK_RESERVED", "CONFIRMED"};

// A catalogue with one product; a slow payment gateway so that a client connecting right after
// placing the order sees the later statuses arrive live.
std::string write_config(const TempDir& dir, int payment_latency_ms) {
  std::string path = dir.file("ecomd.json");
  std::ofstream(path) << R"({"inventory":{"admin_token":"t","seed":[
      {"sku":"SKU-A","name":"Plenty","available":100000,"unitAmount":1000}]},
    "payment":{"latency_ms":)"
                      << payment_latency_ms << R"(},
    "notification":{"keepalive_ms":1000}})";
  return path;
}

std::string place(const Ecomd& e, const std::string& customer = "c-1") {
  auto r = e.post(
      "/api/orders",
      R"({"customerId":")" + customer +
          R"(","currency":"USD","items":[{"sku":"SKU-A","quantity":1,"unitAmount":1000}],"paymentToken":"tok_visa"})");
  REQUIRE(r.status == 202);
  return str_of(parse_json(r.body), "orderId");
}

// Opens the order's stream; the notification module may not have seen the order yet (404).
std::unique_ptr<SseClient> open_order_stream(
    const Ecomd& e, const std::string& id,
    const std::vector<std::pair<std::string, std::string>>& headers = {}) {
  std::unique_ptr<SseClient> c;
  bool ok = ecom::test::eventually(
      [&] {
        c = std::make_unique<SseClient>(e.port(), "/api/orders/" + id + "/events", headers);
        return c->wait_head(10s) && c->status() == 200;
      },
      30s);
  REQUIRE(ok);
  return c;
}

std::vector<std::string> history(const SseEvent& snapshot) {
  std::vector<std::string> out;
  auto d = parse_json(snapshot.data);
  for (const auto& h : d["history"].GetArray()) out.push_back(h["status"].GetString());
  return out;
}

// Reads status events until CONFIRMED (or CANCELLED), appending their statuses to `statuses`.
// Returns the last event id seen; fails on a snapshot unless `snapshot_ok`.
int64_t read_until_terminal(SseClient& c, std::vector<std::string>& statuses, int64_t last_id,
                            int* live = nullptr) {
  auto end = std::chrono::steady_clock::now() + 60s;
  while (statuses.empty() || (statuses.back() != "CONFIRMED" && statuses.back() != "CANCELLED")) {
    REQUIRE(std::chrono::steady_clock::now() < end);
    auto e = c.next(30s);
    REQUIRE(e);
    int64_t id = std::stoll(e->id);
    CHECK(id > last_id);  // ids only grow: nothing is sent twice
    last_id = id;
    if (e->event == "snapshot") {
      for (const auto& s : history(*e)) statuses.push_back(s);
    } else if (e->event == "status") {
      statuses.push_back(str_of(parse_json(e->data), "status"));
      if (live) ++*live;
    }
  }
  return last_id;
}

}  // namespace

TEST_CASE("binary: an SSE client sees PENDING to CONFIRMED for its order",
          "[notification][binary][sse]") {
  TempDir dir;
  Ecomd e(dir.path(), {"--role=all", "--config=" + write_config(dir, 2000)});
  auto id = place(e);
  auto c = open_order_stream(e, id);
  auto snap = c->next(15s);
  REQUIRE(snap);
  REQUIRE(snap->event == "snapshot");
  std::vector<std::string> statuses = history(*snap);
  CHECK(str_of(parse_json(snap->data), "orderId") == id);
  int live = 0;
  read_until_terminal(*c, statuses, std::stoll(snap->id), &live);
  CHECK(statuses == kLifecycle);
  CHECK(live >= 1);  // the payment took 2 s: at least CONFIRMED arrived live
  // The CONFIRMED notification follows its status on the same stream.
  bool noted = false;
  while (!noted) {
    auto n = c->next(15s);
    REQUIRE(n);
    if (n->event == "notification")
      noted = str_of(parse_json(n->data), "orderStatus") == "CONFIRMED";
  }
  CHECK(e.terminate() == 0);
}

TEST_CASE("binary: a client that reconnects with Last-Event-ID misses nothing",
          "[notification][binary][sse]") {
  TempDir dir;
  Ecomd e(dir.path(), {"--role=all", "--config=" + write_config(dir, 2000)});
  auto id = place(e);
  std::vector<std::string> statuses;
  std::string last_id;
  {
    auto c = open_order_stream(e, id);
    auto snap = c->next(15s);
    REQUIRE(snap);
    REQUIRE(snap->event == "snapshot");
    statuses = history(*snap);
    last_id = snap->id;
  }  // disconnected mid-way (the payment is still pending)
  REQUIRE(ecom::test::eventually(
      [&] { return str_of(parse_json(e.get("/api/orders/" + id).body), "status") == "CONFIRMED"; },
      60s));

  auto again = open_order_stream(e, id, {{"Last-Event-ID", last_id}});
  auto first = again->next(15s);
  REQUIRE(first);
  CHECK(first->event != "snapshot");  // the id is retained: a replay, not a snapshot
  again->events().insert(again->events().begin(), *first);
  read_until_terminal(*again, statuses, std::stoll(last_id));
  CHECK(statuses == kLifecycle);

  // An id the feed cannot resume from (here: one from the future, as after a wiped store) yields
  // a snapshot.
  auto stale = open_order_stream(e, id, {{"Last-Event-ID", "999999999"}});
  auto snap = stale->next(15s);
  REQUIRE(snap);
  CHECK(snap->event == "snapshot");
  CHECK(str_of(parse_json(snap->data), "status") == "CONFIRMED");
}

TEST_CASE("binary: 500 concurrent SSE clients on /api/events all receive an event",
          "[notification][binary][sse][load]") {
  constexpr size_t kClients = 500;
  rlimit rl{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &rl) == 0);
  if (rl.rlim_cur < 4096) {
    rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 4096);
    REQUIRE(setrlimit(RLIMIT_NOFILE, &rl) == 0);  // inherited by the ecomd child
  }
  REQUIRE(rl.rlim_cur >= 2 * kClients + 64);

  TempDir dir;
  Ecomd e(dir.path(), {"--role=all", "--config=" + write_config(dir, 0)});
  std::vector<std::unique_ptr<SseClient>> clients;
  for (size_t i = 0; i < kClients; ++i) {
    clients.push_back(std::make_unique<SseClient>(e.port(), "/api/events"));
    REQUIRE(clients.back()->fd() >= 0);
  }

  // Pumps every client's socket until `done(client)` holds for all or the deadline passes.
  auto pump_until = [&](auto done, std::chrono::seconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      std::vector<pollfd> fds;
      std::vector<SseClient*> owners;
      size_t finished = 0;
      for (auto& c : clients) {
        if (done(*c)) {
          ++finished;
          continue;
        }
        if (c->fd() >= 0) {
          fds.push_back({c->fd(), POLLIN, 0});
          owners.push_back(c.get());
        }
      }
      if (finished == clients.size()) return finished;
      if (fds.empty()) return finished;
      if (::poll(fds.data(), fds.size(), 200) > 0) {
        for (size_t i = 0; i < fds.size(); ++i)
          if (fds[i].revents != 0) owners[i]->pump();
      }
    }
    size_t finished = 0;
    for (auto& c : clients) finished += done(*c) ? 1 : 0;
    return finished;
  };
  auto has = [](const std::string& kind, const std::string& order_id = {}) {
    return [kind, order_id](SseClient& c) {
      for (const auto& ev : c.events())
        if (ev.event == kind && (order_id.empty() || ev.data.find(order_id) != std::string::npos))
          return true;
      return false;
    };
  };

  // Every client is subscribed once it has its snapshot.
  CHECK(pump_until(has("snapshot"), 120s) == kClients);
  auto id = place(e);
  CHECK(pump_until(has("status", id), 120s) == kClients);
  size_t open = 0;
  for (auto& c : clients) open += c->eof() ? 0 : 1;
  CHECK(open == kClients);  // nobody was dropped
  // The server still answers ordinary requests.
  CHECK(e.get("/api/stats").status == 200);
  clients.clear();
  CHECK(e.terminate() == 0);
}
