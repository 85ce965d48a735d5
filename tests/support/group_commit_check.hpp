#pragma once
/// The group-commit contract every bus keeps, checked the same way on each: handlers of a
/// subscription with a store run in batches of that store, and when a batch fails to commit,
/// everything in it is handled again (nothing is lost, nothing applied twice, per-key order holds).

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <string>
#include <vector>

#include "ecom/bus/event_bus.hpp"
#include "ecom/db/database.hpp"
#include "support/test_support.hpp"

namespace ecom::test {

/// Publishes 300 events over 10 keys to `topic` on `bus` and consumes them with a store. The
/// handler of the 100th event sabotages its first attempt the way a disk error does (SQLite
/// abandons the whole transaction), so its batch, with the handlers before it, never commits.
inline void check_group_commit(bus::EventBus& bus, const std::string& topic,
                               const std::string& group, const std::string& db_path) {
  auto opened = db::Database::open(db_path);
  REQUIRE(opened.ok());
  auto store = std::move(opened).value();
  REQUIRE(store
              ->transaction([](db::Tx& tx) -> Status {
                tx.exec(
                    "CREATE TABLE applied(seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, "
                    "n INTEGER UNIQUE)");
                return {};
              })
              .ok());

  std::atomic<int> deliveries{0};
  std::atomic<bool> sabotaged{false};
  auto handler = [&](const bus::Message& m) -> bus::Outcome {
    ++deliveries;
    const std::string& data = m.envelope.data;  // {"n":N}
    const int n = std::stoi(data.substr(data.find(':') + 1));
    auto r = store->transaction([&](db::Tx& tx) -> Status {
      tx.stmt("INSERT OR IGNORE INTO applied(key, n) VALUES(?, ?)").bind_all(m.key, n).exec();
      if (n == 100 && !sabotaged.exchange(true)) tx.exec("ROLLBACK");
      return {};
    });
    return r ? bus::Outcome::ack() : bus::Outcome::retry(r.error().message);
  };
  bus::SubscriptionOptions options{.group = group, .topics = {topic}};
  options.store = store.get();
  options.initial_backoff = std::chrono::milliseconds(20);
  auto sub = bus.subscribe(options, handler);
  REQUIRE(sub.ok());

  constexpr int kEvents = 300;
  std::vector<bus::Record> records;
  for (int n = 0; n < kEvents; ++n) {
    Envelope e = make_event("test", "ecom.test.v1", "key-" + std::to_string(n % 10),
                            "{\"n\":" + std::to_string(n) + "}");
    records.push_back(bus::Record{topic, e.subject, encode_envelope(e)});
  }
  REQUIRE(bus.publish(records).ok());

  auto applied = [&] {
    auto r = store->read([](db::Tx& tx) -> Result<int64_t> {
      auto s = tx.stmt("SELECT count(*) FROM applied");
      s.step();
      return s.col_int(0);
    });
    return r ? *r : -1;
  };
  REQUIRE(eventually([&] { return applied() == kEvents; }, std::chrono::seconds(60)));
  (*sub)->close();
  CHECK(sabotaged.load());
  // The sabotaged batch was handled again: more deliveries than events.
  CHECK(deliveries.load() > kEvents);
  // Per key, the order of application is the order of publication.
  auto order = store->read([](db::Tx& tx) -> Result<std::map<std::string, std::vector<int>>> {
    std::map<std::string, std::vector<int>> by_key;
    auto s = tx.stmt("SELECT key, n FROM applied ORDER BY seq");
    while (s.step()) by_key[s.col_text(0)].push_back(static_cast<int>(s.col_int(1)));
    return by_key;
  });
  REQUIRE(order.ok());
  CHECK(order->size() == 10);
  for (const auto& [key, ns] : *order) {
    CHECK(ns.size() == kEvents / 10);
    CHECK(std::is_sorted(ns.begin(), ns.end()));
  }
}

}  // namespace ecom::test
