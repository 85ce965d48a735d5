// kafka_test_consumer BOOTSTRAP GROUP TOPIC OUT_FILE STATUS_FILE COMMIT_INTERVAL_MS [STORE]
// kafka_test_consumer relay BOOTSTRAP TOPIC STORE N
//
// relay: commits N events for TOPIC to the outbox of STORE (a SQLite file) and relays them with
// an OutboxRelay that dies (SIGKILL) right after Kafka acknowledged its first publish, before
// it deletes the rows: what a crash of a relay between publish and delete leaves behind.
//
// With STORE, a SQLite file: each record is applied there (applied(id, n) counts applications,
// without an inbox) in the bus's group commit, with the group's positions (see BatchScope).
//
// A Kafka bus consumer in its own process, for tests that kill a consumer with SIGKILL or spread
// a group over processes. Each handled record is appended to OUT_FILE as
// "<event id> <partition> <offset>" with one write(2) before the handler returns, so a line is
// there for every record the bus may commit. "ready" goes to STATUS_FILE once the bus is healthy
// (producer has metadata, the group was joined). SIGTERM closes the subscription cleanly.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include "ecom/bus/kafka_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/log.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "support/kill_after_publish.hpp"

namespace {
std::atomic<bool> g_stop{false};

// A store by path or PostgreSQL URL; the parent names the schema of a PostgreSQL one in
// ECOM_TEST_STORE_SCHEMA.
ecom::Result<std::unique_ptr<ecom::db::Database>> open_store(const std::string& target) {
  ecom::db::Options options;
  if (const char* schema = std::getenv("ECOM_TEST_STORE_SCHEMA"); schema != nullptr && *schema)
    options.schema = schema;
  return ecom::db::Database::open(target, options);
}

void on_term(int) { g_stop = true; }

int relay_and_die(const std::string& bootstrap, const std::string& topic, const std::string& path,
                  int n) {
  auto db = open_store(path);
  if (!db || !ecom::db::migrate_messaging(**db)) return 2;
  auto st = (*db)->transaction([&](ecom::db::Tx& tx) -> ecom::Status {
    for (int i = 0; i < n; ++i) {
      ecom::db::outbox_add(
          tx, topic,
          ecom::make_event("test", "ecom.test.happened.v1", "k" + std::to_string(i % 9),
                           "{\"n\":" + std::to_string(i) + "}"));
    }
    return {};
  });
  if (!st) return 3;
  ecom::bus::KafkaBusOptions o;
  o.bootstrap_servers = bootstrap;
  o.client_id = "ecomd-test-relay";
  auto bus = ecom::bus::make_kafka_bus(o);
  if (!bus) return 4;
  ecom::test::KillAfterPublish dying(**bus);
  ecom::bus::OutboxRelay relay(**db, dying);
  relay.drain(std::chrono::seconds(60));  // dies in it
  return 5;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc == 6 && std::string_view(argv[1]) == "relay")
    return relay_and_die(argv[2], argv[3], argv[4], std::stoi(argv[5]));
  if (argc != 7 && argc != 8) {
    std::fprintf(stderr, "usage: %s BOOTSTRAP GROUP TOPIC OUT STATUS COMMIT_INTERVAL_MS [STORE]\n",
                 argv[0]);
    return 2;
  }
  std::unique_ptr<ecom::db::Database> store;
  if (argc == 8) {
    auto db = open_store(argv[7]);
    if (!db) return 1;
    store = std::move(db).value();
    static constexpr std::array<std::string_view, 1> kSchema{
        "CREATE TABLE applied(id TEXT PRIMARY KEY, n INTEGER NOT NULL);"};
    if (!store->migrate("applied", kSchema)) return 1;
  }
  ::signal(SIGTERM, on_term);
  ecom::bus::KafkaBusOptions o;
  o.bootstrap_servers = argv[1];
  o.client_id = "ecomd-test-child";
  o.session_timeout = std::chrono::seconds(6);
  o.commit_interval = std::chrono::milliseconds(std::stoll(argv[6]));
  o.health_interval = std::chrono::milliseconds(300);
  auto bus = ecom::bus::make_kafka_bus(o);
  if (!bus) {
    std::fprintf(stderr, "bus: %s\n", bus.error().message.c_str());
    return 1;
  }
  int out = ::open(argv[4], O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (out < 0) return 1;
  auto sub =
      (*bus)->subscribe({.group = argv[2], .topics = {argv[3]}, .store = store.get()},
                        [out, &store](const ecom::bus::Message& m) {
                          if (store) {
                            auto st = store->transaction([&](ecom::db::Tx& tx) -> ecom::Status {
                              tx.stmt(
                                    "INSERT INTO applied(id, n) VALUES(?, 1) "
                                    "ON CONFLICT(id) DO UPDATE SET n = applied.n + 1")
                                  .bind(1, m.envelope.id)
                                  .exec();
                              return {};
                            });
                            if (!st) return ecom::bus::Outcome::retry(st.error().message);
                          }
                          std::string line = m.envelope.id + " " + std::to_string(m.partition) +
                                             " " + std::to_string(m.offset) + "\n";
                          if (::write(out, line.data(), line.size()) < 0)
                            return ecom::bus::Outcome::retry("write failed");
                          return ecom::bus::Outcome::ack();
                        });
  if (!sub) {
    std::fprintf(stderr, "subscribe: %s\n", sub.error().message.c_str());
    return 1;
  }
  bool reported = false;
  while (!g_stop) {
    if (!reported && (*bus)->healthy()) {
      int fd = ::open(argv[5], O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ssize_t n = ::write(fd, "ready\n", 6);
        (void)n;
        ::close(fd);
      }
      reported = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  (*sub)->close();
  ::close(out);
  return 0;
}
