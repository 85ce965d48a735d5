#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "ecom/core/envelope.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "support/stores.hpp"
#include "support/test_support.hpp"

using ecom::Envelope;
using ecom::Result;
using ecom::Status;
using ecom::db::Database;
using ecom::db::Tx;

namespace {

std::unique_ptr<Database> messaging_db(const std::string& engine) {
  auto db = ecom::test::open_store(engine);
  REQUIRE(ecom::db::migrate_messaging(*db).ok());
  return db;
}

int64_t pending(Database& db) {
  auto r = db.read([](Tx& tx) -> Result<int64_t> { return ecom::db::outbox_pending(tx); });
  REQUIRE(r.ok());
  return r.value();
}

std::vector<ecom::db::OutboxRow> peek(Database& db, int limit) {
  auto r = db.read([&](Tx& tx) -> Result<std::vector<ecom::db::OutboxRow>> {
    return ecom::db::outbox_peek(tx, limit);
  });
  REQUIRE(r.ok());
  return std::move(r).value();
}

Envelope event(std::string subject, int n) {
  return ecom::make_event("order", "ecom.order.created.v1", std::move(subject),
                          "{\"n\":" + std::to_string(n) + "}");
}

}  // namespace

TEST_CASE("migrate_messaging is idempotent", "[db][outbox]") {
  ecom::test::TempDir dir;
  for (int i = 0; i < 2; ++i) {
    auto db = Database::open(dir.file("m.db"));
    REQUIRE(db.ok());
    REQUIRE(ecom::db::migrate_messaging(**db).ok());
    REQUIRE(ecom::db::migrate_messaging(**db).ok());
  }
}

TEST_CASE("outbox rows are queued in commit order and only when the transaction commits",
          "[db][outbox]") {
  auto db = messaging_db(EACH_STORE);
  std::vector<Envelope> sent;
  for (int batch = 0; batch < 3; ++batch) {
    auto st = db->transaction([&](Tx& tx) -> Status {
      for (int i = 0; i < 2; ++i) {
        Envelope e = event("o-" + std::to_string(i), batch * 2 + i);
        ecom::db::outbox_add(tx, "orders.created", e);
        sent.push_back(e);
      }
      return {};
    });
    REQUIRE(st.ok());
  }
  // A rolled-back transaction leaves nothing behind.
  auto rolled = db->transaction([&](Tx& tx) -> Status {
    ecom::db::outbox_add(tx, "orders.created", event("o-x", 99));
    return ecom::Error{ecom::ErrorCode::kConflict, "abort"};
  });
  REQUIRE_FALSE(rolled.ok());
  CHECK(pending(*db) == 6);

  auto rows = peek(*db, 4);
  REQUIRE(rows.size() == 4);
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i > 0) CHECK(rows[i].seq > rows[i - 1].seq);
    CHECK(rows[i].topic == "orders.created");
    CHECK(rows[i].key == sent[i].subject);
    auto decoded = ecom::decode_envelope(rows[i].payload);
    REQUIRE(decoded.ok());
    CHECK(decoded->id == sent[i].id);
    CHECK(decoded->data == sent[i].data);
  }

  REQUIRE(db->transaction([&](Tx& tx) -> Status {
              ecom::db::outbox_remove_through(tx, rows[2].seq);
              return {};
            }).ok());
  CHECK(pending(*db) == 3);
  auto rest = peek(*db, 100);
  REQUIRE(rest.size() == 3);
  CHECK(rest[0].seq == rows[3].seq);
  auto decoded = ecom::decode_envelope(rest.back().payload);
  REQUIRE(decoded.ok());
  CHECK(decoded->id == sent.back().id);
}

TEST_CASE("outbox sequence numbers never repeat after rows are removed", "[db][outbox]") {
  auto db = messaging_db(EACH_STORE);
  auto add_one = [&] {
    REQUIRE(db->transaction([&](Tx& tx) -> Status {
                ecom::db::outbox_add(tx, "t", event("k", 1));
                return {};
              }).ok());
  };
  add_one();
  auto first = peek(*db, 1);
  REQUIRE(db->transaction([&](Tx& tx) -> Status {
              ecom::db::outbox_remove_through(tx, first[0].seq);
              return {};
            }).ok());
  add_one();
  auto second = peek(*db, 1);
  REQUIRE(second.size() == 1);
  CHECK(second[0].seq > first[0].seq);
}

TEST_CASE("inbox_claim is true once per consumer and event, and rolls back with its transaction",
          "[db][inbox]") {
  auto db = messaging_db(EACH_STORE);
  auto claim = [&](const char* consumer, const char* id) {
    auto r = db->transaction(
        [&](Tx& tx) -> Result<bool> { return ecom::db::inbox_claim(tx, consumer, id); });
    REQUIRE(r.ok());
    return r.value();
  };
  CHECK(claim("order", "e1"));
  CHECK_FALSE(claim("order", "e1"));
  CHECK(claim("saga", "e1"));  // another consumer has its own record
  CHECK(claim("order", "e2"));

  // A claim made in a transaction that fails is forgotten: the redelivery applies it.
  auto failed = db->transaction([&](Tx& tx) -> Status {
    CHECK(ecom::db::inbox_claim(tx, "order", "e3"));
    return ecom::Error{ecom::ErrorCode::kDbBusy, "simulated", "", true};
  });
  REQUIRE_FALSE(failed.ok());
  CHECK(claim("order", "e3"));
  CHECK_FALSE(claim("order", "e3"));
}

TEST_CASE("inbox_prune deletes the oldest rows before the cutoff, at most `limit` at a time",
          "[db][inbox]") {
  auto db = messaging_db(EACH_STORE);
  // processed_at 1000, 2000, ... 10000 for e1..e10; e4 and e8 under another consumer.
  REQUIRE(db->transaction([&](Tx& tx) -> Status {
              for (int i = 1; i <= 10; ++i) {
                const std::string consumer = i % 4 == 0 ? "saga" : "order";
                const std::string id = "e" + std::to_string(i);
                REQUIRE(ecom::db::inbox_claim(tx, consumer, id));
                tx.stmt("UPDATE inbox SET processed_at=? WHERE consumer=? AND event_id=?")
                    .bind_all(int64_t{1000} * i, consumer, id)
                    .exec();
              }
              return {};
            }).ok());
  auto prune = [&](int64_t older_than, int limit) {
    auto r = db->transaction(
        [&](Tx& tx) -> Result<int64_t> { return ecom::db::inbox_prune(tx, older_than, limit); });
    REQUIRE(r.ok());
    return r.value();
  };
  auto remaining = [&] {
    auto r = db->read([](Tx& tx) -> Result<std::vector<std::string>> {
      std::vector<std::string> out;
      auto s = tx.stmt("SELECT event_id FROM inbox ORDER BY processed_at");
      while (s.step()) out.push_back(s.col_text(0));
      return out;
    });
    REQUIRE(r.ok());
    return r.value();
  };

  CHECK(prune(5'500, 3) == 3);  // the oldest three of the five before the cutoff
  CHECK(remaining() == std::vector<std::string>{"e4", "e5", "e6", "e7", "e8", "e9", "e10"});
  CHECK(prune(5'500, 0) == 0);
  CHECK(prune(5'500, 100) == 2);  // the cutoff is exclusive: e6 (6000) stays
  CHECK(prune(5'500, 100) == 0);
  CHECK(remaining() == std::vector<std::string>{"e6", "e7", "e8", "e9", "e10"});
  CHECK(prune(9'000, 100) == 3);  // e9 was processed at exactly 9000: kept
  CHECK(remaining() == std::vector<std::string>{"e9", "e10"});

  // A pruned event is no longer recognised as a duplicate.
  auto claim = db->transaction(
      [&](Tx& tx) -> Result<bool> { return ecom::db::inbox_claim(tx, "order", "e1"); });
  REQUIRE(claim.ok());
  CHECK(*claim);
}

TEST_CASE("migrate_messaging upgrades a v1 store with the inbox time index", "[db][inbox]") {
  ecom::test::TempDir dir;
  {
    auto db = Database::open(dir.file("old.db"));
    REQUIRE(db.ok());
    // The v1 schema as an older build left it, with a row in the inbox.
    REQUIRE((*db)
                ->transaction([](Tx& tx) -> Status {
                  tx.exec(
                      "CREATE TABLE schema_version(component TEXT PRIMARY KEY, version INTEGER "
                      "NOT NULL);"
                      "INSERT INTO schema_version VALUES('messaging', 1);"
                      "CREATE TABLE outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT "
                      "NULL, key TEXT NOT NULL, payload TEXT NOT NULL, created_at INTEGER NOT "
                      "NULL);"
                      "CREATE TABLE inbox(consumer TEXT NOT NULL, event_id TEXT NOT NULL, "
                      "processed_at INTEGER NOT NULL, PRIMARY KEY(consumer, event_id)) WITHOUT "
                      "ROWID;"
                      "INSERT INTO inbox VALUES('order', 'old', 1);");
                  return {};
                })
                .ok());
  }
  auto db = Database::open(dir.file("old.db"));
  REQUIRE(db.ok());
  REQUIRE(ecom::db::migrate_messaging(**db).ok());
  auto r = (*db)->read([](Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt(
        "SELECT (SELECT count(*) FROM sqlite_master WHERE type='index' AND "
        "name='inbox_by_time') * 10 + (SELECT version FROM schema_version WHERE "
        "component='messaging')");
    return s.step() ? s.col_int(0) : -1;
  });
  REQUIRE(r.ok());
  CHECK(r.value() == 14);  // the index exists, version 4 (v3: the outbox's source id, v4: replicas)
  auto source =
      (*db)->read([](Tx& tx) -> Result<std::string> { return ecom::db::outbox_source(tx); });
  REQUIRE(source.ok());
  CHECK(source.value().size() == 32);  // 128 random bits, hex
  auto pruned = (*db)->transaction(
      [](Tx& tx) -> Result<int64_t> { return ecom::db::inbox_prune(tx, 2, 10); });
  REQUIRE(pruned.ok());
  CHECK(pruned.value() == 1);
}
