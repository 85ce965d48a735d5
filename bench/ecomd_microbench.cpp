// ecomd-microbench: the building blocks under one order, measured alone.
//
//   envelope   make_event + encode_envelope, and decode_envelope (per event)
//   outbox     SQLite commits on a module store: one outbox row per transaction, the shape of a
//              bus handler (inbox claim + 2 outbox rows), and 64 rows per transaction (group
//              commit)
//   relay      OutboxRelay moving committed rows onto the embedded bus
//   bus        publish -> consume throughput (batched publish) and one-record latency, for the
//              embedded bus and, with --brokers, the Kafka bus
//
// Each case runs for --seconds (default 2) on files in a fresh temp directory. See
// docs/performance.md.

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "ecom/bus/embedded_bus.hpp"
#include "ecom/bus/event_bus.hpp"
#include "ecom/bus/kafka_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

struct Options {
  double seconds = 2;
  std::string brokers;  // empty: no Kafka cases
  std::string only;     // run only cases whose name starts with this
  std::string json_path;
  std::string dir;
};

struct Row {
  std::string name;
  double rate = 0;  // per second
  std::string unit;
  std::string note;
};

std::vector<Row> g_rows;

void add_row(std::string name, double rate, std::string unit, std::string note = {}) {
  std::printf("  %-54s %12.0f %-10s %s\n", name.c_str(), rate, unit.c_str(), note.c_str());
  std::fflush(stdout);
  g_rows.push_back(Row{std::move(name), rate, std::move(unit), std::move(note)});
}

[[noreturn]] void die(const std::string& m) {
  std::fprintf(stderr, "ecomd-microbench: %s\n", m.c_str());
  std::exit(1);
}

// A realistic event: an OrderCreated envelope of about 600 bytes.
ecom::Envelope sample_event() {
  std::string id = ecom::new_uuid();
  std::string data =
      R"({"orderId":")" + id +
      R"(","customerId":"bench-042","currency":"USD","totalAmount":2500,)"
      R"("items":[{"sku":"BENCH-0001","quantity":2,"unitAmount":1250}],"paymentToken":"tok_visa"})";
  return ecom::make_event("order", ecom::event_types::kOrderCreated, id, data);
}

// Runs `op` in rounds until `seconds` elapsed; returns operations per second.
double timed(double seconds, int64_t ops_per_call, const std::function<void()>& op) {
  const int64_t end = now_ns() + static_cast<int64_t>(seconds * 1e9);
  int64_t ops = 0;
  const int64_t start = now_ns();
  int64_t t = start;
  while (t < end) {
    for (int i = 0; i < 16; ++i) op();
    ops += 16 * ops_per_call;
    t = now_ns();
  }
  return static_cast<double>(ops) / (static_cast<double>(t - start) / 1e9);
}

// --- envelope ------------------------------------------------------------------------------------

void bench_envelope(const Options& o) {
  ecom::Envelope e = sample_event();
  std::string encoded = ecom::encode_envelope(e);
  size_t sink = 0;
  double make = timed(o.seconds, 1, [&] { sink += sample_event().id.size(); });
  add_row("envelope: make_event (uuid, time, traceparent)", make, "events/s");
  double enc = timed(o.seconds, 1, [&] { sink += ecom::encode_envelope(e).size(); });
  add_row("envelope: encode_envelope", enc, "events/s",
          std::to_string(encoded.size()) + " B, " +
              std::to_string(static_cast<int>(enc * encoded.size() / 1e6)) + " MB/s");
  double dec = timed(o.seconds, 1, [&] {
    auto d = ecom::decode_envelope(encoded);
    if (!d) die("decode failed: " + d.error().message);
    sink += d->data.size();
  });
  add_row("envelope: decode_envelope (validating)", dec, "events/s",
          std::to_string(static_cast<int>(dec * encoded.size() / 1e6)) + " MB/s");
  if (sink == 0) std::printf(" ");
}

// --- outbox --------------------------------------------------------------------------------------

std::unique_ptr<ecom::db::Database> open_store(const std::string& path) {
  auto db = ecom::db::Database::open(path);
  if (!db) die(db.error().message);
  if (auto st = ecom::db::migrate_messaging(**db); !st) die(st.error().message);
  return std::move(db).value();
}

void clear_outbox(ecom::db::Database& db) {
  (void)db.transaction([](ecom::db::Tx& tx) -> ecom::Status {
    tx.exec("DELETE FROM outbox");
    return {};
  });
}

void bench_outbox(const Options& o) {
  auto db = open_store(o.dir + "/outbox.db");
  ecom::Envelope e = sample_event();
  auto tx1 = timed(o.seconds, 1, [&] {
    auto r = db->transaction([&](ecom::db::Tx& tx) -> ecom::Status {
      ecom::db::outbox_add(tx, ecom::topics::kOrdersCreated, e);
      return {};
    });
    if (!r) die(r.error().message);
  });
  add_row("outbox: commit, 1 row per transaction", tx1, "commits/s", "WAL, synchronous=NORMAL");
  clear_outbox(*db);

  int64_t n = 0;
  auto handler = timed(o.seconds, 1, [&] {
    auto r = db->transaction([&](ecom::db::Tx& tx) -> ecom::Status {
      std::string id = "evt-" + std::to_string(++n);
      if (!ecom::db::inbox_claim(tx, "saga", id)) die("inbox claim failed");
      ecom::db::outbox_add(tx, ecom::topics::kInventoryCommands, e);
      ecom::db::outbox_add(tx, ecom::topics::kOrdersStatus, e);
      return {};
    });
    if (!r) die(r.error().message);
  });
  add_row("outbox: handler-shaped tx (inbox + 2 rows)", handler, "commits/s");
  clear_outbox(*db);

  auto batched = timed(o.seconds, 64, [&] {
    auto r = db->transaction([&](ecom::db::Tx& tx) -> ecom::Status {
      for (int i = 0; i < 64; ++i) ecom::db::outbox_add(tx, ecom::topics::kOrdersCreated, e);
      return {};
    });
    if (!r) die(r.error().message);
  });
  add_row("outbox: 64 rows per transaction (group commit)", batched, "rows/s");
  clear_outbox(*db);

  // The encode inside outbox_add is part of the cost above; this isolates SQLite's share.
  std::string payload = ecom::encode_envelope(e);
  auto raw = timed(o.seconds, 1, [&] {
    auto r = db->transaction([&](ecom::db::Tx& tx) -> ecom::Status {
      tx.stmt("INSERT INTO outbox(topic, key, payload, created_at) VALUES(?, ?, ?, ?)")
          .bind_all(ecom::topics::kOrdersCreated, e.subject, payload, int64_t{0})
          .exec();
      return {};
    });
    if (!r) die(r.error().message);
  });
  add_row("outbox: commit, pre-encoded row (SQLite only)", raw, "commits/s");

  // What a store owned by one process could do: no fcntl lock/unlock round trips per
  // transaction (a candidate fix, see docs/performance.md). Not what ecomd does today.
  auto excl = open_store(o.dir + "/outbox-exclusive.db");
  (void)excl->read([](ecom::db::Tx& tx) -> ecom::Status {
    tx.exec("PRAGMA locking_mode=EXCLUSIVE");
    return {};
  });
  auto exclusive = timed(o.seconds, 1, [&] {
    auto r = excl->transaction([&](ecom::db::Tx& tx) -> ecom::Status {
      ecom::db::outbox_add(tx, ecom::topics::kOrdersCreated, e);
      return {};
    });
    if (!r) die(r.error().message);
  });
  add_row("outbox: 1 row/tx, locking_mode=EXCLUSIVE (what-if)", exclusive, "commits/s");
}

// --- relay ---------------------------------------------------------------------------------------

void bench_relay(const Options& o) {
  auto store = open_store(o.dir + "/relay.db");
  ecom::bus::EmbeddedBusOptions bo;
  bo.path = o.dir + "/relay-bus.db";
  auto bus = ecom::bus::make_embedded_bus(bo);
  if (!bus) die(bus.error().message);
  constexpr int kRows = 50'000;
  ecom::Envelope e = sample_event();
  for (int done = 0; done < kRows; done += 500) {
    auto r = store->transaction([&](ecom::db::Tx& tx) -> ecom::Status {
      for (int i = 0; i < 500; ++i) ecom::db::outbox_add(tx, ecom::topics::kOrdersCreated, e);
      return {};
    });
    if (!r) die(r.error().message);
  }
  ecom::bus::OutboxRelay relay(*store, **bus);
  int64_t start = now_ns();
  relay.start();
  while (relay.published() < static_cast<uint64_t>(kRows))
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  double secs = static_cast<double>(now_ns() - start) / 1e9;
  relay.stop();
  add_row("relay: outbox -> embedded bus (batches of 512)", kRows / secs, "rows/s",
          std::to_string(kRows) + " rows");
}

// --- bus -----------------------------------------------------------------------------------------

struct Sink {
  std::atomic<int64_t> received{0};
  std::atomic<int64_t> last_latency_sum{0};
  std::mutex mu;
  std::vector<int64_t> latencies;  // ns, latency phase only
  std::atomic<bool> record{false};
};

// The publish time travels in the key ("t<ns>"), so the consumer can take the latency.
ecom::bus::Handler counting_handler(Sink& sink) {
  return [&sink](const ecom::bus::Message& m) {
    if (sink.record.load(std::memory_order_relaxed) && m.key.size() > 1 && m.key[0] == 't') {
      int64_t sent = std::strtoll(m.key.c_str() + 1, nullptr, 10);
      std::lock_guard lock(sink.mu);
      sink.latencies.push_back(now_ns() - sent);
    }
    sink.received.fetch_add(1, std::memory_order_relaxed);
    return ecom::bus::Outcome::ack();
  };
}

// Built with snprintf: GCC 12 warns falsely (-Wrestrict) on "literal" + std::to_string(...).
std::string tagged(char tag, int64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%c%" PRId64, tag, n);
  return buf;
}

bool wait_for(const std::function<bool()>& cond, double seconds) {
  auto end = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  while (!cond()) {
    if (Clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

int64_t pct(std::vector<int64_t>& v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[i];
}

void bench_bus(const Options& o, ecom::bus::EventBus& bus, const std::string& name,
               const std::string& topic) {
  Sink sink;
  ecom::bus::SubscriptionOptions so;
  so.group = "microbench-" + std::to_string(getpid()) + "-" + std::to_string(now_ns());
  so.topics = {topic};
  auto sub = bus.subscribe(so, counting_handler(sink));
  if (!sub) die(sub.error().message);
  std::string value = ecom::encode_envelope(sample_event());

  // Warm-up: the consumer joined its group and got its partitions once one record came through.
  ecom::bus::Record first{topic, "warmup", value};
  if (auto st = bus.publish(std::span<const ecom::bus::Record>(&first, 1)); !st)
    die(st.error().message);
  if (!wait_for([&] { return sink.received.load() >= 1; }, 60))
    die(name + ": the consumer got nothing in 60 s");

  // Throughput: batches of 500 from one thread while the consumer drains.
  constexpr int kBatch = 500;
  std::vector<ecom::bus::Record> batch;
  for (int i = 0; i < kBatch; ++i) batch.push_back({topic, tagged('k', i), value});
  int64_t base = sink.received.load();
  int64_t published = 0;
  int64_t start = now_ns();
  int64_t end = start + static_cast<int64_t>(o.seconds * 1e9);
  while (now_ns() < end) {
    if (auto st = bus.publish(batch); !st) die(name + " publish: " + st.error().message);
    published += kBatch;
  }
  double pub_secs = static_cast<double>(now_ns() - start) / 1e9;
  if (!wait_for([&] { return sink.received.load() - base >= published; }, 120))
    die(name + ": not everything was consumed within 120 s");
  double all_secs = static_cast<double>(now_ns() - start) / 1e9;
  add_row(name + ": publish, batches of 500", static_cast<double>(published) / pub_secs,
          "records/s", std::to_string(value.size()) + " B values");
  add_row(name + ": publish -> consumed (end to end)", static_cast<double>(published) / all_secs,
          "records/s", std::to_string(published) + " records");

  // Latency: one record per publish() at 500/s.
  sink.record = true;
  base = sink.received.load();
  int64_t sent = 0;
  const int64_t interval = 2'000'000;
  int64_t next = now_ns();
  end = next + static_cast<int64_t>(o.seconds * 1e9);
  while (next < end) {
    while (now_ns() < next) std::this_thread::sleep_for(std::chrono::microseconds(100));
    ecom::bus::Record r{topic, tagged('t', now_ns()), value};
    if (auto st = bus.publish(std::span<const ecom::bus::Record>(&r, 1)); !st)
      die(st.error().message);
    ++sent;
    next += interval;
  }
  if (!wait_for([&] { return sink.received.load() - base >= sent; }, 60))
    die(name + ": latency records lost");
  std::vector<int64_t> lat;
  {
    std::lock_guard lock(sink.mu);
    lat = sink.latencies;
  }
  char note[96];
  int64_t p50 = pct(lat, 0.5), p99 = pct(lat, 0.99);
  std::snprintf(note, sizeof note, "p50 %.2f ms, p99 %.2f ms (%zu records)", p50 / 1e6, p99 / 1e6,
                lat.size());
  add_row(name + ": one record, publish -> handler @500/s", static_cast<double>(sent) / o.seconds,
          "records/s", note);
  (*sub)->close();
}

void bench_embedded_bus(const Options& o) {
  ecom::bus::EmbeddedBusOptions bo;
  bo.path = o.dir + "/bus.db";
  auto bus = ecom::bus::make_embedded_bus(bo);
  if (!bus) die(bus.error().message);
  bench_bus(o, **bus, "embedded bus", std::string(ecom::topics::kOrdersCreated));
}

void bench_kafka_bus(const Options& o) {
  ecom::bus::KafkaBusOptions ko;
  ko.bootstrap_servers = o.brokers;
  ko.topic_prefix =
      "microbench-" + std::to_string(getpid()) + "-" + std::to_string(now_ns() / 1'000'000) + ".";
  ko.client_id = "ecomd-microbench";
  ecom::bus::TopicsConfig topics;
  ecom::bus::TopicSpec spec;
  spec.name = std::string(ecom::topics::kOrdersCreated);
  spec.dlq = false;
  topics.topics.push_back(spec);
  if (auto st = ecom::bus::ensure_topics(ko, topics); !st)
    die("kafka topics: " + st.error().message);
  auto bus = ecom::bus::make_kafka_bus(ko);
  if (!bus) die(bus.error().message);
  bench_bus(o, **bus, "kafka bus", std::string(ecom::topics::kOrdersCreated));
}

void write_json(const Options& o) {
  std::FILE* f = std::fopen(o.json_path.c_str(), "w");
  if (f == nullptr) die("cannot write " + o.json_path);
  std::fprintf(f, "{\n  \"seconds\": %.2f,\n  \"results\": [\n", o.seconds);
  for (size_t i = 0; i < g_rows.size(); ++i) {
    std::fprintf(f,
                 "    {\"name\": \"%s\", \"rate\": %.1f, \"unit\": \"%s\", \"note\": \"%s\"}%s\n",
                 g_rows[i].name.c_str(), g_rows[i].rate, g_rows[i].unit.c_str(),
                 g_rows[i].note.c_str(), i + 1 < g_rows.size() ? "," : "");
  }
  std::fprintf(f, "  ]\n}\n");
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&](std::string_view name) -> std::string {
      if (a.size() > name.size() && a[name.size()] == '=')
        return std::string(a.substr(name.size() + 1));
      if (i + 1 >= argc) die("missing value for " + std::string(name));
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::puts(
          "usage: ecomd-microbench [--seconds S] [--brokers HOST:PORT] [--only "
          "envelope|outbox|relay|embedded|kafka] [--json PATH]");
      return 0;
    }
    if (a.starts_with("--seconds"))
      o.seconds = std::atof(value("--seconds").c_str());
    else if (a.starts_with("--brokers"))
      o.brokers = value("--brokers");
    else if (a.starts_with("--only"))
      o.only = value("--only");
    else if (a.starts_with("--json"))
      o.json_path = value("--json");
    else
      die("unknown option " + std::string(a));
  }
  if (o.seconds <= 0) die("--seconds must be positive");
  ecom::log::set_level(ecom::log::Level::kWarn);
  auto tmp = fs::temp_directory_path() / ("ecomd-microbench-" + std::to_string(getpid()));
  fs::create_directories(tmp);
  o.dir = tmp.string();

  auto want = [&](std::string_view name) { return o.only.empty() || name.starts_with(o.only); };
  std::printf("ecomd-microbench (%.1f s per case)\n  %-54s %12s %-10s %s\n", o.seconds, "case",
              "rate", "unit", "");
  if (want("envelope")) bench_envelope(o);
  if (want("outbox")) bench_outbox(o);
  if (want("relay")) bench_relay(o);
  if (want("embedded")) bench_embedded_bus(o);
  if (want("kafka")) {
    if (o.brokers.empty())
      std::printf("  (kafka bus: skipped, no --brokers)\n");
    else
      bench_kafka_bus(o);
  }
  if (!o.json_path.empty()) write_json(o);
  std::error_code ec;
  fs::remove_all(tmp, ec);
  return 0;
}
