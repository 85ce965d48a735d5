#pragma once
/// Shared helpers of the bus tests: fast bus options, event factory, a thread-safe collector of
/// deliveries and direct queries on the bus file.

#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ecom/bus/embedded_bus.hpp"
#include "ecom/bus/event_bus.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/db/database.hpp"
#include "support/collector.hpp"

namespace ecom::test {

using namespace std::chrono_literals;

/// Short intervals so tests run quickly. The session timeout stays long by default: a loaded
/// machine must not evict a live member in tests that expect exactly-once delivery.
inline bus::EmbeddedBusOptions fast_bus_options(std::string path,
                                                std::chrono::milliseconds session = 10s) {
  bus::EmbeddedBusOptions o;
  o.path = std::move(path);
  o.batch_size = 64;
  o.poll_interval = 10ms;
  o.heartbeat_interval = 50ms;
  o.session_timeout = session;
  return o;
}

inline std::unique_ptr<bus::EventBus> open_bus(const bus::EmbeddedBusOptions& o) {
  auto b = bus::make_embedded_bus(o);
  INFO((b.ok() ? std::string()
               : std::string(ecom::name(b.error().code)) + ": " + b.error().message));
  REQUIRE(b.ok());
  return std::move(b).value();
}

inline Envelope test_event(std::string key, int n) {
  return make_event("test", "ecom.test.happened.v1", std::move(key),
                    "{\"n\":" + std::to_string(n) + "}");
}

inline bus::Record to_record(std::string topic, const Envelope& e) {
  return bus::Record{std::move(topic), e.subject, encode_envelope(e)};
}

/// Runs `f(tx)` as a read on a separate connection to the bus file.
template <typename F>
auto query_file(const std::string& path, F f) {
  auto db = db::Database::open(path);
  REQUIRE(db.ok());
  auto r = (*db)->read(f);
  REQUIRE(r.ok());
  return std::move(r).value();
}

/// Runs `f(tx)` in a write transaction on a separate connection to the bus file (e.g. to age
/// records for retention tests).
template <typename F>
auto write_file(const std::string& path, F f) {
  auto db = db::Database::open(path);
  REQUIRE(db.ok());
  auto r = (*db)->transaction(f);
  REQUIRE(r.ok());
  return std::move(r).value();
}

/// A dead-lettered record as stored in `<topic>.dlq`.
struct DlqRecord {
  std::string key;
  std::string value;
  std::string headers;
};

inline std::vector<DlqRecord> dlq_records(const std::string& path, const std::string& topic) {
  return query_file(path, [&](db::Tx& tx) -> Result<std::vector<DlqRecord>> {
    std::vector<DlqRecord> out;
    auto s = tx.stmt(R"(SELECT key, value, headers FROM records WHERE topic=? )"
                     R"(ORDER BY "partition", "offset")");
    s.bind(1, bus::dlq_topic(topic));
    while (s.step()) out.push_back({s.col_text(0), s.col_text(1), s.col_text(2)});
    return out;
  });
}

/// A key that lands in a different partition than every key in `others`.
inline std::string key_outside(const std::vector<std::string>& others, int partitions,
                               const std::string& prefix) {
  for (int i = 0;; ++i) {
    std::string k = prefix + std::to_string(i);
    bool clash = false;
    for (const auto& o : others) {
      clash = clash || bus::partition_for(o, partitions) == bus::partition_for(k, partitions);
    }
    if (!clash) return k;
  }
}

}  // namespace ecom::test
