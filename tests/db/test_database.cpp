#include <any>
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <future>
#include <string>
#include <thread>

#include "ecom/db/database.hpp"
#include "engine.hpp"
#include "support/stores.hpp"
#include "support/test_support.hpp"

using ecom::Result;
using ecom::Status;
using ecom::db::Database;
using ecom::db::DbError;
using ecom::db::Tx;
using ecom::test::open_store;
using ecom::test::open_store_again;

namespace {

std::unique_ptr<Database> open_db(const std::string& path, ecom::db::Options o = {}) {
  auto db = Database::open(path, o);
  REQUIRE(db.ok());
  return std::move(db).value();
}

std::string pragma(Database& db, const std::string& name) {
  auto r = db.read([&](Tx& tx) -> Result<std::string> {
    auto s = tx.stmt("PRAGMA " + name);
    REQUIRE(s.step());
    return s.col_text(0);
  });
  REQUIRE(r.ok());
  return r.value();
}

int64_t count_rows(Database& db, const std::string& table) {
  auto r = db.read([&](Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt("SELECT count(*) FROM " + table);
    s.step();
    return s.col_int(0);
  });
  REQUIRE(r.ok());
  return r.value();
}

void create_items(Database& db) {
  auto st = db.transaction([](Tx& tx) -> Status {
    tx.exec("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, price REAL)");
    return {};
  });
  REQUIRE(st.ok());
}

}  // namespace

TEST_CASE("Database opens a file in WAL mode with foreign keys and NORMAL sync", "[db]") {
  ecom::test::TempDir dir;
  auto db = open_db(dir.file("a.db"));
  CHECK(pragma(*db, "journal_mode") == "wal");
  CHECK(pragma(*db, "foreign_keys") == "1");
  CHECK(pragma(*db, "synchronous") == "1");  // NORMAL
  CHECK(db->path() == dir.file("a.db"));
  CHECK(db->healthy());

  auto full = open_db(dir.file("b.db"), {.synchronous_full = true});
  CHECK(pragma(*full, "synchronous") == "2");  // FULL
}

TEST_CASE("Database::open fails with DB_ERROR when the file cannot be created", "[db]") {
  auto db = Database::open("/nonexistent-dir-for-ecomd-tests/x/y.db");
  REQUIRE_FALSE(db.ok());
  CHECK(db.error().code == ecom::ErrorCode::kDbError);
  CHECK_FALSE(db.error().retryable);
  CHECK(db.error().message.find("y.db") != std::string::npos);
}

TEST_CASE("transaction commits the body's writes and returns its value", "[db]") {
  auto db = open_store(EACH_STORE);
  create_items(*db);
  auto r = db->transaction([](Tx& tx) -> Result<int64_t> {
    tx.stmt("INSERT INTO items(name, price) VALUES(?, ?)").bind_all("apple", 1.5).exec();
    auto s = tx.stmt("SELECT id FROM items WHERE name = ?");
    s.bind(1, "apple");
    return s.step() ? s.col_int(0) : -1;
  });
  REQUIRE(r.ok());
  CHECK(r.value() == 1);  // INTEGER PRIMARY KEY numbers rows from 1 on both engines
  CHECK(count_rows(*db, "items") == 1);
}

TEST_CASE("transaction rolls back when the body returns an error", "[db]") {
  auto db = open_store(EACH_STORE);
  create_items(*db);
  auto st = db->transaction([](Tx& tx) -> Status {
    tx.stmt("INSERT INTO items(name) VALUES(?)").bind(1, "pear").exec();
    return ecom::Error{ecom::ErrorCode::kConflict, "changed my mind"};
  });
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == ecom::ErrorCode::kConflict);
  CHECK(count_rows(*db, "items") == 0);
  // The connection is usable afterwards: the transaction really ended.
  auto again = db->transaction([](Tx& tx) -> Status {
    tx.stmt("INSERT INTO items(name) VALUES(?)").bind(1, "pear").exec();
    return {};
  });
  CHECK(again.ok());
  CHECK(count_rows(*db, "items") == 1);
}

TEST_CASE("transaction rolls back and maps a DbError from a statement", "[db]") {
  auto db = open_store(EACH_STORE);
  create_items(*db);
  SECTION("constraint violation mid-body") {
    auto st = db->transaction([](Tx& tx) -> Status {
      tx.stmt("INSERT INTO items(name) VALUES(?)").bind(1, "fig").exec();
      tx.stmt("INSERT INTO items(name) VALUES(?)").bind(1, "fig").exec();  // UNIQUE fails
      return {};
    });
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == ecom::ErrorCode::kDbError);
    CHECK_FALSE(st.error().retryable);
    // SQLite: "UNIQUE constraint failed", PostgreSQL: "violates unique constraint".
    CHECK((st.error().message.find("UNIQUE") != std::string::npos ||
           st.error().message.find("unique") != std::string::npos));
    CHECK(count_rows(*db, "items") == 0);
  }
  SECTION("invalid SQL") {
    auto st = db->transaction([](Tx& tx) -> Status {
      tx.stmt("INSERT INTO items(name) VALUES(?)").bind(1, "kiwi").exec();
      tx.stmt("SELEKT nonsense").exec();  // PostgreSQL prepares at the first run
      return {};
    });
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == ecom::ErrorCode::kDbError);
    CHECK(count_rows(*db, "items") == 0);
  }
  SECTION("a thrown DbError from the body itself") {
    auto r = db->transaction([](Tx& tx) -> Result<int> {
      tx.stmt("INSERT INTO items(name) VALUES(?)").bind(1, "lime").exec();
      throw DbError{5 /* SQLITE_BUSY */, "simulated", ecom::db::DbFault::kBusy};
    });
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ecom::ErrorCode::kDbBusy);
    CHECK(r.error().retryable);
    CHECK(count_rows(*db, "items") == 0);
  }
}

TEST_CASE("read maps errors and sees committed data", "[db]") {
  auto db = open_store(EACH_STORE);
  create_items(*db);
  auto bad = db->read([](Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt("SELECT nope FROM items");
    s.step();
    return int64_t{0};
  });
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == ecom::ErrorCode::kDbError);
}

TEST_CASE("Statement binds and reads every type, cached statements are reset", "[db]") {
  auto db = open_store(EACH_STORE);
  // PostgreSQL's text cannot hold a NUL byte (SQLite's can): the contract is UTF-8 text.
  const std::string text = db->postgres() ? std::string("x\x01y") : std::string("x\0y", 3);
  auto st = db->transaction([&](Tx& tx) -> Status {
    tx.exec("CREATE TABLE t(i INTEGER, d REAL, s TEXT, n TEXT)");
    for (int i = 0; i < 3; ++i) {
      // Same SQL text each time: the cached statement must come back reset and unbound.
      auto s = tx.stmt("INSERT INTO t(i, d, s, n) VALUES(?, ?, ?, ?)");
      s.bind(1, int64_t{1} << 40 | i).bind(2, 0.25 * i).bind(3, text);
      if (i == 0) s.bind(4, "set");
      s.exec();
    }
    return {};
  });
  REQUIRE(st.ok());
  auto rows = db->read([&](Tx& tx) -> Result<std::vector<std::string>> {
    std::vector<std::string> out;
    auto s = tx.stmt("SELECT i, d, s, n FROM t ORDER BY i");
    while (s.step()) {
      CHECK((s.col_int(0) >> 40) == 1);
      CHECK(s.col_view(2).size() == 3);
      CHECK(s.col_text(2) == text);
      out.push_back(std::to_string(s.col_int(0) & 0xff) + ":" + std::to_string(s.col_double(1)) +
                    ":" + (s.col_null(3) ? std::string("null") : s.col_text(3)));
    }
    return out;
  });
  REQUIRE(rows.ok());
  REQUIRE(rows->size() == 3);
  CHECK((*rows)[0] == "0:0.000000:set");
  CHECK((*rows)[1] == "1:0.250000:null");  // binding of row 0 did not leak into row 1
  CHECK((*rows)[2] == "2:0.500000:null");
}

TEST_CASE("a read left mid-result does not pin an old snapshot", "[db]") {
  ecom::test::TempDir dir;
  auto a = open_db(dir.file("s.db"));
  auto b = open_db(dir.file("s.db"));
  create_items(*a);
  REQUIRE(a->transaction([](Tx& tx) -> Status {
             tx.exec("INSERT INTO items(name) VALUES('a'), ('b'), ('c')");
             return {};
           }).ok());
  // Step once and abandon the statement, as a "first row only" lookup does.
  auto first = a->read([](Tx& tx) -> Result<std::string> {
    auto s = tx.stmt("SELECT name FROM items ORDER BY id");
    REQUIRE(s.step());
    return s.col_text(0);
  });
  REQUIRE(first.ok());
  REQUIRE(b->transaction([](Tx& tx) -> Status {
             tx.exec("INSERT INTO items(name) VALUES('d')");
             return {};
           }).ok());
  CHECK(count_rows(*a, "items") == 4);
  // And `a` can still write (a stale snapshot would make BEGIN IMMEDIATE fail with BUSY_SNAPSHOT).
  auto w = a->transaction([](Tx& tx) -> Status {
    tx.exec("INSERT INTO items(name) VALUES('e')");
    return {};
  });
  CHECK(w.ok());
}

TEST_CASE("a locked database maps to retryable DB_BUSY", "[db]") {
  ecom::test::TempDir dir;
  auto holder = open_db(dir.file("busy.db"));
  auto waiter = open_db(dir.file("busy.db"), {.busy_timeout_ms = 50});
  create_items(*holder);

  std::promise<void> locked;
  std::promise<void> release;
  auto release_f = release.get_future();
  bool holder_ok = false;  // Catch assertions are not thread-safe: checked after join
  std::thread t([&] {
    auto st = holder->transaction([&](Tx& tx) -> Status {
      tx.exec("INSERT INTO items(name) VALUES('held')");
      locked.set_value();
      release_f.wait();
      return {};
    });
    holder_ok = st.ok();
  });
  locked.get_future().wait();
  auto st = waiter->transaction([](Tx& tx) -> Status {
    tx.exec("INSERT INTO items(name) VALUES('blocked')");
    return {};
  });
  release.set_value();
  t.join();
  CHECK(holder_ok);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == ecom::ErrorCode::kDbBusy);
  CHECK(st.error().retryable);
  // Once released, the waiter proceeds.
  auto later = waiter->transaction([](Tx& tx) -> Status {
    tx.exec("INSERT INTO items(name) VALUES('later')");
    return {};
  });
  CHECK(later.ok());
  CHECK(count_rows(*waiter, "items") == 2);
}

TEST_CASE("migrate applies each step once and records versions per component", "[db]") {
  ecom::test::TempDir dir;
  const std::string path = dir.file("m.db");
  const std::string engine = EACH_STORE;
  auto first = open_store(engine, {}, path);
  // Plain CREATE TABLE fails if run twice, so a repeated step would surface as an error.
  constexpr std::array<std::string_view, 2> v2{
      "CREATE TABLE a(x INTEGER)",
      "CREATE TABLE b(y INTEGER); INSERT INTO b VALUES(1)",
  };
  constexpr std::array<std::string_view, 3> v3{v2[0], v2[1], "INSERT INTO b VALUES(2)"};
  auto version = [](Database& db, const char* component) {
    auto r = db.read([&](Tx& tx) -> Result<int64_t> {
      auto s = tx.stmt("SELECT version FROM schema_version WHERE component=?");
      s.bind(1, component);
      return s.step() ? s.col_int(0) : 0;
    });
    REQUIRE(r.ok());
    return r.value();
  };
  {
    auto db = open_store_again(engine, *first, path);
    REQUIRE(db->migrate("comp", v2).ok());
    CHECK(version(*db, "comp") == 2);
    REQUIRE(db->migrate("comp", v2).ok());
    CHECK(count_rows(*db, "b") == 1);
    CHECK(version(*db, "other") == 0);
  }
  {
    auto db = open_store_again(engine, *first, path);  // versions survive reopening
    REQUIRE(db->migrate("comp", v3).ok());
    CHECK(version(*db, "comp") == 3);
    CHECK(count_rows(*db, "b") == 2);
    // Components are independent.
    constexpr std::array<std::string_view, 1> other{"CREATE TABLE c(z INTEGER)"};
    REQUIRE(db->migrate("other", other).ok());
    CHECK(version(*db, "other") == 1);
    CHECK(version(*db, "comp") == 3);
  }
}

TEST_CASE("a migration step may drop what an earlier one made", "[db]") {
  ecom::test::TempDir dir;
  const std::string path = dir.file("drop.db");
  const std::string engine = EACH_STORE;
  auto first = open_store(engine, {}, path);
  constexpr std::array<std::string_view, 1> v1{
      "CREATE TABLE t(x INTEGER, y INTEGER); CREATE INDEX t_by_x ON t(x)"};
  constexpr std::array<std::string_view, 2> v2{
      v1[0], "DROP INDEX t_by_x; CREATE INDEX t_by_x ON t(x, y); DROP TABLE IF EXISTS gone"};
  REQUIRE(open_store_again(engine, *first, path)->migrate("comp", v1).ok());
  // Run on a reopened store, where the version row exists: the DROP must not find it locked.
  auto st = open_store_again(engine, *first, path)->migrate("comp", v2);
  INFO(st.error().message);
  REQUIRE(st.ok());
}

TEST_CASE("a failing migration step rolls back and keeps the previous version", "[db]") {
  auto db = open_store(EACH_STORE);
  constexpr std::array<std::string_view, 3> steps{
      "CREATE TABLE ok1(x INTEGER)",
      "CREATE TABLE half(x INTEGER); THIS IS NOT SQL",
      "CREATE TABLE never(x INTEGER)",
  };
  auto st = db->migrate("broken", steps);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message.find("broken v2") != std::string::npos);
  auto tables = db->read([&](Tx& tx) -> Result<std::vector<std::string>> {
    std::vector<std::string> out;
    auto s = tx.stmt(db->postgres() ? "SELECT table_name FROM information_schema.tables WHERE "
                                      "table_schema = current_schema() ORDER BY table_name"
                                    : "SELECT name FROM sqlite_master WHERE type='table' ORDER "
                                      "BY name");
    while (s.step()) out.push_back(s.col_text(0));
    return out;
  });
  REQUIRE(tables.ok());
  CHECK(*tables == std::vector<std::string>{"ok1", "schema_version"});
  auto v = db->read([](Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt("SELECT version FROM schema_version WHERE component='broken'");
    return s.step() ? s.col_int(0) : 0;
  });
  REQUIRE(v.ok());
  CHECK(v.value() == 1);
}

// --- batch (group commit) -------------------------------------------------------------------

namespace {

Status insert_item(Database& db, const std::string& name) {
  return db.transaction([&](Tx& tx) -> Status {
    tx.stmt("INSERT INTO items(name) VALUES(?)").bind(1, name).exec();
    return {};
  });
}

// Commits seen by the file: a second connection reads data_version, which changes only when
// another connection commits.
int64_t data_version(Database& db) {
  auto r = db.read([](Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt("PRAGMA data_version");
    s.step();
    return s.col_int(0);
  });
  REQUIRE(r.ok());
  return r.value();
}

}  // namespace

TEST_CASE("batch commits many units in one transaction", "[db][batch]") {
  ecom::test::TempDir dir;
  auto db = open_db(dir.file("b.db"));
  auto observer = open_db(dir.file("b.db"));
  create_items(*db);
  const int64_t before = data_version(*observer);
  auto st = db->batch([&] {
    for (int i = 0; i < 50; ++i) REQUIRE(insert_item(*db, "item" + std::to_string(i)).ok());
    // Units see each other's writes before the commit.
    CHECK(count_rows(*db, "items") == 50);
  });
  REQUIRE(st.ok());
  CHECK(count_rows(*observer, "items") == 50);
  CHECK(data_version(*observer) == before + 1);  // exactly one commit for 50 units
}

TEST_CASE("a failing unit in a batch rolls back only itself", "[db][batch]") {
  auto db = open_store(EACH_STORE);
  create_items(*db);
  std::vector<bool> ok;
  auto st = db->batch([&] {
    ok.push_back(insert_item(*db, "a").ok());
    // A constraint violation (DbError) and an error result: each undoes only its own writes.
    ok.push_back(insert_item(*db, "a").ok());
    ok.push_back(db->transaction([&](Tx& tx) -> Status {
                     tx.stmt("INSERT INTO items(name) VALUES('b')").exec();
                     return ecom::Error{ecom::ErrorCode::kConflict, "changed my mind"};
                   }).ok());
    ok.push_back(insert_item(*db, "c").ok());
  });
  REQUIRE(st.ok());
  CHECK(ok == std::vector<bool>{true, false, false, true});
  auto names = db->read([](Tx& tx) -> Result<std::string> {
    std::string all;
    auto s = tx.stmt("SELECT name FROM items ORDER BY name");
    while (s.step()) all += s.col_text(0);
    return all;
  });
  CHECK(names.value() == "ac");
}

namespace {

// Adds `n` to the coalesced counter `key`, flushed as one row (key, total) at commit.
Status add_coalesced(Database& db, const std::string& key, int64_t n, bool fail = false) {
  return db.transaction([&](Tx& tx) -> Status {
    std::any& slot = tx.coalesce(key, [key](Tx& t, const std::any& v) {
      t.stmt("INSERT INTO items(name) VALUES(?)")
          .bind_all(key + "=" + std::to_string(std::any_cast<int64_t>(v)))
          .exec();
    });
    slot = (slot.has_value() ? std::any_cast<int64_t>(slot) : 0) + n;
    if (fail) return ecom::Error{ecom::ErrorCode::kConflict, "undo this unit"};
    return {};
  });
}

std::string item_names(Database& db) {
  return db
      .read([](Tx& tx) -> Result<std::string> {
        std::string all;
        auto s = tx.stmt("SELECT name FROM items ORDER BY id");
        while (s.step()) all += s.col_text(0) + " ";
        return all;
      })
      .value();
}

}  // namespace

TEST_CASE("coalesced writes of a batch are made once, at its commit, without the rolled-back units",
          "[db][batch][coalesce]") {
  auto db = open_store(EACH_STORE);
  create_items(*db);
  auto st = db->batch([&] {
    REQUIRE(add_coalesced(*db, "x", 1).ok());
    REQUIRE(add_coalesced(*db, "y", 10).ok());
    CHECK_FALSE(add_coalesced(*db, "x", 100, /*fail=*/true).ok());  // takes its +100 back
    CHECK_FALSE(add_coalesced(*db, "z", 7, /*fail=*/true).ok());    // and its new key
    REQUIRE(add_coalesced(*db, "x", 2).ok());
    // A unit with a nested transaction: the inner unit's change survives the outer's release,
    // and goes with the outer one when that rolls back.
    REQUIRE(db->transaction([&](Tx&) -> Status { return add_coalesced(*db, "y", 20); }).ok());
    CHECK_FALSE(db->transaction([&](Tx&) -> Status {
                    REQUIRE(add_coalesced(*db, "y", 300).ok());
                    return ecom::Error{ecom::ErrorCode::kConflict, "undo with the inner one"};
                  }).ok());
    CHECK(count_rows(*db, "items") == 0);  // nothing is written before the commit
  });
  REQUIRE(st.ok());
  CHECK(item_names(*db) == "x=3 y=30 ");  // first-use order
}

TEST_CASE("coalesced writes outside a batch happen at the transaction's commit or not at all",
          "[db][coalesce]") {
  auto db = open_store(EACH_STORE);
  create_items(*db);
  REQUIRE(add_coalesced(*db, "a", 5).ok());
  CHECK_FALSE(add_coalesced(*db, "b", 6, /*fail=*/true).ok());
  REQUIRE(add_coalesced(*db, "a", 1).ok());  // a new transaction: a new slot
  CHECK(item_names(*db) == "a=5 a=1 ");
  // A batch that fails to commit writes none of them, and leaves no slot behind.
  CHECK_THROWS(db->batch([&] {
    REQUIRE(add_coalesced(*db, "c", 1).ok());
    throw std::runtime_error("boom");
  }));
  REQUIRE(add_coalesced(*db, "d", 2).ok());
  CHECK(item_names(*db) == "a=5 a=1 d=2 ");
}

TEST_CASE("a batch whose body throws leaves nothing behind", "[db][batch]") {
  auto db = open_store(EACH_STORE);
  create_items(*db);
  CHECK_THROWS_AS(db->batch([&] {
    REQUIRE(insert_item(*db, "a").ok());
    throw std::runtime_error("boom");
  }),
                  std::runtime_error);
  CHECK(count_rows(*db, "items") == 0);
  // Not stuck in the batch: a plain transaction commits on its own again.
  REQUIRE(insert_item(*db, "z").ok());
  CHECK(count_rows(*db, "items") == 1);
}

TEST_CASE("a batch whose transaction the store abandoned reports failure and keeps nothing",
          "[db][batch]") {
  auto db = open_store(EACH_STORE);
  create_items(*db);
  std::vector<bool> ok;
  auto st = db->batch([&] {
    ok.push_back(insert_item(*db, "a").ok());
    // What SQLite does on SQLITE_FULL or an I/O error: the whole transaction is gone.
    ok.push_back(db->transaction([](Tx& tx) -> Status {
                     tx.exec("ROLLBACK");
                     return {};
                   }).ok());
    ok.push_back(insert_item(*db, "b").ok());
  });
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().retryable);
  CHECK(ok == std::vector<bool>{true, false, false});
  CHECK(count_rows(*db, "items") == 0);
  REQUIRE(insert_item(*db, "z").ok());
  CHECK(count_rows(*db, "items") == 1);
}

TEST_CASE("other threads wait for a batch and then see all of it", "[db][batch]") {
  auto db = open_store(EACH_STORE);
  create_items(*db);
  std::promise<void> started;
  std::promise<void> release;
  std::thread owner([&] {
    auto st = db->batch([&] {
      REQUIRE(insert_item(*db, "a").ok());
      started.set_value();
      release.get_future().wait();
      REQUIRE(insert_item(*db, "b").ok());
    });
    CHECK(st.ok());
  });
  started.get_future().wait();
  auto seen = std::async(std::launch::async, [&] { return count_rows(*db, "items"); });
  CHECK(seen.wait_for(std::chrono::milliseconds(100)) == std::future_status::timeout);
  release.set_value();
  owner.join();
  CHECK(seen.get() == 2);
}

TEST_CASE("WAL frames are checkpointed in the background and the WAL stays bounded",
          "[db][checkpoint]") {
  ecom::test::TempDir dir;
  const std::string path = dir.file("c.db");
  auto db = open_db(path);
  create_items(*db);
  auto file_size = [](const std::string& f) -> int64_t {
    std::error_code ec;
    auto n = std::filesystem::file_size(f, ec);
    return ec ? 0 : static_cast<int64_t>(n);
  };
  // ~30 MB in 7,000 commits of one 4 KB row each, and never an explicit checkpoint.
  const std::string blob(4096, 'x');
  for (int i = 0; i < 7000; ++i) {
    auto st = db->transaction([&](Tx& tx) -> Status {
      tx.stmt("INSERT INTO items(name, price) VALUES(?, ?)")
          .bind_all(blob + std::to_string(i), 1.0)
          .exec();
      return {};
    });
    REQUIRE(st.ok());
  }
  // The rows reached the database file itself (copied back by checkpoints) ...
  CHECK(ecom::test::eventually([&] { return file_size(path) > 20'000'000; }));
  // ... and the WAL was restarted rather than growing with the data (8,000 pages of 4 KB before a
  // commit checkpoints in the foreground, plus what one commit adds).
  CHECK(file_size(path + "-wal") < 40'000'000);
  CHECK(count_rows(*db, "items") == 7000);
}

TEST_CASE(
    "a read that loses the batch's transaction fails the batch, and later units do not "
    "commit on their own",
    "[db][batch]") {
  auto db = open_store(EACH_STORE);
  create_items(*db);
  std::vector<bool> ok;
  auto st = db->batch([&] {
    ok.push_back(insert_item(*db, "a").ok());
    // An I/O error in a read: SQLite abandons the whole transaction.
    auto r = db->read([](Tx& tx) -> Status {
      tx.exec("ROLLBACK");
      throw DbError{10, "disk I/O error"};
    });
    ok.push_back(r.ok());
    ok.push_back(insert_item(*db, "b").ok());
  });
  REQUIRE_FALSE(st.ok());
  CHECK(ok == std::vector<bool>{true, false, false});
  CHECK(count_rows(*db, "items") == 0);
}

TEST_CASE("consumer positions: saved with the batch, overwritten, and lost with a failed one",
          "[db][positions]") {
  auto db = open_store(EACH_STORE);
  Database& d = *db;
  auto loaded = d.load_positions("g");
  REQUIRE(loaded.ok());
  CHECK(loaded->empty());

  std::vector<ecom::ConsumedPosition> first{{"t", 0, 5}, {"t", 1, 7}, {"u", 0, 1}};
  REQUIRE(d.run([&] { REQUIRE(d.save_positions("g", first).ok()); }).ok());
  CHECK(d.load_positions("g").value() == first);
  CHECK(d.load_positions("other")->empty());  // per group

  // Overwritten, backwards too (a topic recreated from offset 0).
  std::vector<ecom::ConsumedPosition> back{{"t", 0, 2}};
  REQUIRE(d.save_positions("g", back).ok());  // outside a batch: its own transaction
  CHECK(d.load_positions("g")->front() == ecom::ConsumedPosition{"t", 0, 2});

  // A batch that does not commit takes its positions with it, like its effects.
  REQUIRE(d.transaction([](Tx& tx) -> Status {
             tx.exec("CREATE TABLE effects(n INTEGER)");
             return {};
           }).ok());
  Status failed = d.run([&] {
    REQUIRE(d.transaction([](Tx& tx) -> Status {
               tx.exec("INSERT INTO effects VALUES(1)");
               return {};
             }).ok());
    std::vector<ecom::ConsumedPosition> moved{{"t", 0, 99}};
    REQUIRE(d.save_positions("g", moved).ok());
    // A unit that leaves the transaction broken fails the whole batch.
    (void)d.transaction([](Tx& tx) -> Status {
      tx.exec("ROLLBACK");
      return {};
    });
  });
  CHECK_FALSE(failed.ok());
  CHECK(d.load_positions("g")->front() == ecom::ConsumedPosition{"t", 0, 2});
  auto n = d.read([](Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt("SELECT count(*) FROM effects");
    return s.step() ? s.col_int(0) : -1;
  });
  CHECK(n.value() == 0);
}

TEST_CASE("consumer positions: source marks are kept per partition, updated, and rolled back",
          "[db][positions]") {
  auto db = open_store(EACH_STORE);
  Database& d = *db;
  using ecom::ConsumedPosition;
  using ecom::SourceMark;
  std::vector<ConsumedPosition> first{{"t", 0, 5, {{"a", 3}, {"b", 9}}}, {"t", 1, 7, {{"a", 4}}}};
  REQUIRE(d.run([&] { REQUIRE(d.save_positions("g", first).ok()); }).ok());
  CHECK(d.load_positions("g").value() == first);

  // A save names the marks it moves; the others stay as stored.
  std::vector<ConsumedPosition> moved{{"t", 0, 8, {{"a", 6}}}};
  REQUIRE(d.save_positions("g", moved).ok());
  auto loaded = d.load_positions("g").value();
  REQUIRE(loaded.size() == 2);
  CHECK(loaded[0] == ConsumedPosition{"t", 0, 8, {{"a", 6}, {"b", 9}}});
  CHECK(loaded[1] == first[1]);
  CHECK(d.load_positions("other")->empty());

  // Marks leave with a batch that does not commit, as positions and effects do.
  Status failed = d.run([&] {
    std::vector<ConsumedPosition> ahead{{"t", 1, 50, {{"a", 40}, {"c", 1}}}};
    REQUIRE(d.save_positions("g", ahead).ok());
    (void)d.transaction([](Tx& tx) -> Status {
      tx.exec("ROLLBACK");
      return {};
    });
  });
  CHECK_FALSE(failed.ok());
  CHECK(d.load_positions("g").value()[1] == first[1]);
}

TEST_CASE("a full store answers STORE_UNAVAILABLE, is not ready, and recovers on its own",
          "[db][faults]") {
  // SQLite's own size limit stands in for a full disk: the same SQLITE_FULL on the same paths.
  ecom::test::TempDir dir;
  auto opened = Database::open(dir.file("full.db"));
  REQUIRE(opened.ok());
  Database& db = **opened;
  REQUIRE(db.transaction([](Tx& tx) -> Status {
              tx.exec("CREATE TABLE t(b BLOB)");
              return {};
            }).ok());
  auto set_limit = [&](int64_t pages) {
    REQUIRE(db.read([&](Tx& tx) -> Status {
                tx.exec("PRAGMA max_page_count=" + std::to_string(pages));
                return {};
              }).ok());
  };
  auto pages = db.read([](Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt("PRAGMA page_count");
    return s.step() ? s.col_int(0) : -1;
  });
  REQUIRE(pages.ok());
  set_limit(pages.value() + 4);
  auto insert = [&] {
    return db.transaction([](Tx& tx) -> Status {
      tx.exec("INSERT INTO t VALUES(randomblob(16000))");
      return {};
    });
  };
  Status st;
  for (int i = 0; i < 20 && st.ok(); ++i) st = insert();
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == ecom::ErrorCode::kStoreUnavailable);
  CHECK(st.error().retryable);
  CHECK(ecom::http_status(st.error().code) == 503);
  CHECK(db.faulted());
  CHECK_FALSE(db.healthy());  // the probe's write fails too
  CHECK_FALSE(db.healthy());

  set_limit(1'000'000);  // space freed
  CHECK(db.healthy());   // the probe wrote: ready again without any other write
  CHECK_FALSE(db.faulted());
  CHECK(insert().ok());
}

TEST_CASE("consumer positions: a fenced save applies only from the offset its consumer knew",
          "[db][positions]") {
  auto db = open_store(EACH_STORE);
  Database& d = *db;
  using P = ecom::ConsumedPosition;
  auto saved = [&](int64_t next, int64_t expected) {
    std::vector<P> one{P{"t", 0, next, {}, expected}};
    return d.save_positions("g", one);
  };
  REQUIRE(saved(5, -1).ok());   // the first position of the partition
  Status again = saved(6, -1);  // someone else stored one meanwhile
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == ecom::ErrorCode::kConflict);
  REQUIRE(saved(9, 5).ok());
  Status stale = saved(12, 5);
  REQUIRE_FALSE(stale.ok());
  CHECK(stale.error().code == ecom::ErrorCode::kConflict);
  CHECK(stale.error().message.find("t[0]") != std::string::npos);
  CHECK(d.load_positions("g")->front().next == 9);

  // In a batch, a fenced save fails the batch with its effects, as kConflict.
  REQUIRE(d.transaction([](Tx& tx) -> Status {
             tx.exec("CREATE TABLE effects(n INTEGER)");
             return {};
           }).ok());
  Status batch = d.run([&] {
    REQUIRE(d.transaction([](Tx& tx) -> Status {
               tx.exec("INSERT INTO effects VALUES(1)");
               return {};
             }).ok());
    std::vector<P> one{P{"t", 0, 20, {}, 7}};
    CHECK(d.save_positions("g", one).error().code == ecom::ErrorCode::kConflict);
  });
  REQUIRE_FALSE(batch.ok());
  CHECK(batch.error().code == ecom::ErrorCode::kConflict);
  CHECK(d.load_positions("g")->front().next == 9);
  CHECK(d.read([](Tx& tx) -> Result<int64_t> {
           auto s = tx.stmt("SELECT count(*) FROM effects");
           return s.step() ? s.col_int(0) : -1;
         }).value() == 0);
  // The next batch starts clean.
  REQUIRE(d.run([&] { REQUIRE(saved(10, 9).ok()); }).ok());
  CHECK(d.load_positions("g")->front().next == 10);
}

TEST_CASE(
    "consumer positions: of two replicas saving one partition from the same offset, the second "
    "waits for the first and is fenced",
    "[db][positions][postgres]") {
  auto a = open_store("postgres");
  auto b = open_store_again("postgres", *a);
  using P = ecom::ConsumedPosition;
  std::vector<P> start{P{"t", 3, 100, {}, -1}};
  REQUIRE(a->save_positions("g", start).ok());
  std::promise<void> holding;
  std::atomic<bool> b_done{false};
  Status b_result;
  std::thread other;
  Status a_result = a->run([&] {
    std::vector<P> mine{P{"t", 3, 150, {}, 100}};
    REQUIRE(a->save_positions("g", mine).ok());
    other = std::thread([&] {
      std::vector<P> theirs{P{"t", 3, 130, {}, 100}};
      b_result = b->save_positions("g", theirs);
      b_done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    CHECK_FALSE(b_done.load());  // blocked on A's uncommitted row
  });
  other.join();
  REQUIRE(a_result.ok());
  REQUIRE_FALSE(b_result.ok());
  CHECK(b_result.error().code == ecom::ErrorCode::kConflict);
  CHECK(b->load_positions("g")->front().next == 150);
}

TEST_CASE("lock_key: two replicas locking one key take turns until commit", "[db][postgres]") {
  auto a = open_store("postgres");
  auto b = open_store_again("postgres", *a);
  std::atomic<int> step{0};
  std::atomic<int> b_saw{-1};
  std::thread other;
  Status held = a->transaction([&](Tx& tx) -> Status {
    tx.lock_key("order-1");
    other = std::thread([&] {
      REQUIRE(b->transaction([&](Tx& tb) -> Status {
                 tb.lock_key("order-1");
                 b_saw = step.load();
                 return {};
               }).ok());
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    step = 1;  // still holding: B must not have got in
    return {};
  });
  other.join();
  REQUIRE(held.ok());
  CHECK(b_saw.load() == 1);
  // Another key does not wait.
  REQUIRE(a->transaction([&](Tx& tx) -> Status {
             tx.lock_key("order-2");
             return b->transaction([](Tx& tb) -> Status {
               tb.lock_key("order-3");
               return {};
             });
           }).ok());
}

TEST_CASE("migrations: five replicas opening an empty schema at the same instant all come up",
          "[db][postgres]") {
  const std::string schema = ecom::test::unique_schema("five");
  constexpr std::array<std::string_view, 3> kSteps{
      "CREATE TABLE things(id INTEGER PRIMARY KEY, name TEXT NOT NULL)",
      "ALTER TABLE things ADD COLUMN size INTEGER",
      "CREATE INDEX things_by_name ON things(name)",
  };
  std::vector<std::thread> replicas;
  std::vector<std::string> errors(5);
  std::atomic<int> ready{0};
  for (int i = 0; i < 5; ++i) {
    replicas.emplace_back([&, i] {
      ecom::db::Options o;
      o.schema = schema;
      ++ready;
      while (ready.load() < 5) std::this_thread::yield();
      auto db = Database::open(ecom::test::postgres_url(), o);
      if (!db) {
        errors[i] = db.error().message;
        return;
      }
      if (auto st = (*db)->migrate("things", kSteps); !st) errors[i] = st.error().message;
    });
  }
  for (auto& t : replicas) t.join();
  for (const auto& e : errors) CHECK(e.empty());
  ecom::db::Options o;
  o.schema = schema;
  auto db = Database::open(ecom::test::postgres_url(), o);
  REQUIRE(db.ok());
  auto version = (*db)->read([](Tx& tx) -> Result<int64_t> {
    auto s = tx.stmt("SELECT version FROM schema_version WHERE component = 'things'");
    return s.step() ? s.col_int(0) : -1;
  });
  CHECK(version.value() == 3);
  REQUIRE((*db)
              ->transaction([](Tx& tx) -> Status {
                tx.stmt("INSERT INTO things(name, size) VALUES('a', 1)").exec();
                return {};
              })
              .ok());
}

TEST_CASE("the dialect: row locks only on PostgreSQL", "[db]") {
  using ecom::db::to_sqlite;
  CHECK(to_sqlite("SELECT a FROM t WHERE id = ? FOR UPDATE") == "SELECT a FROM t WHERE id = ?");
  CHECK(to_sqlite("SELECT a FROM t FOR UPDATE SKIP LOCKED") == "SELECT a FROM t");
  CHECK(to_sqlite("SELECT 'FOR UPDATE' FROM t") == "SELECT 'FOR UPDATE' FROM t");
  CHECK(ecom::db::to_postgres("SELECT a FROM t WHERE id = ? FOR UPDATE") ==
        "SELECT a FROM t WHERE id = $1 FOR UPDATE");
  int params = 0;
  CHECK(ecom::db::to_postgres("UPDATE t SET a = ?1, b = ?1 WHERE c = ?2 AND d = 'x?'", &params) ==
        "UPDATE t SET a = $1, b = $1 WHERE c = $2 AND d = 'x?'");
  CHECK(params == 2);
  CHECK(
      ecom::db::to_postgres(
          "CREATE TABLE t(seq INTEGER PRIMARY KEY AUTOINCREMENT, b BLOB, r REAL) WITHOUT ROWID") ==
      "CREATE TABLE t(seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, b BYTEA, r DOUBLE "
      "PRECISION) ");
}

TEST_CASE("migrations: a store a newer ecomd migrated is refused, naming both versions",
          "[db][migrate]") {
  auto db = open_store(EACH_STORE);
  constexpr std::array<std::string_view, 3> kNewer{
      "CREATE TABLE t(id INTEGER PRIMARY KEY)",
      "ALTER TABLE t ADD COLUMN a TEXT",
      "ALTER TABLE t ADD COLUMN b TEXT",
  };
  REQUIRE(db->migrate("things", kNewer).ok());
  // This binary knows two steps of the component only.
  auto older = std::span<const std::string_view>(kNewer).first(2);
  Status st = db->migrate("things", older);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == ecom::ErrorCode::kConfigInvalid);
  CHECK(st.error().message.find("things is at schema version 3") != std::string::npos);
  CHECK(st.error().message.find("knows (2)") != std::string::npos);
  // The same binary again, and one that knows the component's whole history, open it.
  CHECK(db->migrate("things", kNewer).ok());
  constexpr std::array<std::string_view, 4> kNewest{kNewer[0], kNewer[1], kNewer[2],
                                                    "ALTER TABLE t ADD COLUMN c TEXT"};
  CHECK(db->migrate("things", kNewest).ok());
}
