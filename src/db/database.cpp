#include "ecom/db/database.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "ecom/core/log.hpp"
#include "ecom/core/periodic_task.hpp"

namespace ecom::db {
namespace {

[[noreturn]] void throw_error(sqlite3* h, int rc) {
  throw DbError{rc, h != nullptr ? sqlite3_errmsg(h) : sqlite3_errstr(rc)};
}

void check_bind(sqlite3_stmt* s, int rc) {
  if (rc != SQLITE_OK) throw_error(sqlite3_db_handle(s), rc);
}

// A statement stepped to a row but not to the end keeps its read transaction (and so its WAL
// snapshot) open; it must not outlive the transaction()/read() body that used it.
void reset_busy_statements(sqlite3* h) noexcept {
  for (sqlite3_stmt* s = sqlite3_next_stmt(h, nullptr); s != nullptr; s = sqlite3_next_stmt(h, s)) {
    if (sqlite3_stmt_busy(s)) sqlite3_reset(s);
  }
}

int exec_raw(sqlite3* h, const char* sql, std::string* message) {
  char* err = nullptr;
  int rc = sqlite3_exec(h, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK && message != nullptr) {
    *message = err != nullptr ? err : sqlite3_errmsg(h);
  }
  sqlite3_free(err);
  return rc;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Statement

Statement& Statement::bind(int idx, int64_t v) {
  check_bind(s_, sqlite3_bind_int64(s_, idx, v));
  return *this;
}

Statement& Statement::bind(int idx, double v) {
  check_bind(s_, sqlite3_bind_double(s_, idx, v));
  return *this;
}

Statement& Statement::bind(int idx, std::string_view v) {
  // SQLITE_TRANSIENT copies: the caller's string may die before step().
  check_bind(s_, sqlite3_bind_text64(s_, idx, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  return *this;
}

Statement& Statement::bind_null(int idx) {
  check_bind(s_, sqlite3_bind_null(s_, idx));
  return *this;
}

bool Statement::step() {
  int rc = sqlite3_step(s_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  sqlite3* h = sqlite3_db_handle(s_);
  std::string message = sqlite3_errmsg(h);
  sqlite3_reset(s_);
  throw DbError{rc, std::move(message)};
}

int64_t Statement::exec() {
  while (step()) {
  }
  return sqlite3_changes64(sqlite3_db_handle(s_));
}

int64_t Statement::col_int(int col) const { return sqlite3_column_int64(s_, col); }

double Statement::col_double(int col) const { return sqlite3_column_double(s_, col); }

std::string Statement::col_text(int col) const { return std::string(col_view(col)); }

std::string_view Statement::col_view(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
  if (p == nullptr) return {};
  return {p, static_cast<size_t>(sqlite3_column_bytes(s_, col))};
}

bool Statement::col_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

// ---------------------------------------------------------------------------------------------
// Database

struct Database::Cache {
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  std::unordered_map<std::string, sqlite3_stmt*, Hash, std::equal_to<>> stmts;
};

Database::Database(sqlite3* h, std::string path)
    : h_(h), path_(std::move(path)), cache_(std::make_unique<Cache>()) {}

Result<std::unique_ptr<Database>> Database::open(const std::string& path, Options options) {
  // Memory statistics make every sqlite3_malloc take one process-wide mutex: with a store per
  // module, all bus threads contend on it. Must be set before SQLite initialises.
  static std::once_flag configured;
  std::call_once(configured, [] { sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
  sqlite3* h = nullptr;
  // NOMUTEX: every use is serialised by Database::mu_ already.
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path.c_str(), &h, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = h != nullptr ? sqlite3_errmsg(h) : sqlite3_errstr(rc);
    sqlite3_close_v2(h);
    return Error{ErrorCode::kDbError, "cannot open database '" + path + "': " + msg};
  }
  std::unique_ptr<Database> db(new Database(h, path));

  sqlite3_busy_timeout(h, options.busy_timeout_ms);
  std::string pragmas = "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA synchronous=";
  pragmas += options.synchronous_full ? "FULL;" : "NORMAL;";
  // Reads through a memory map instead of read() copies, and a page cache big enough for the
  // hot part of a module store. Checkpoints: see Checkpointer below.
  pragmas += " PRAGMA mmap_size=268435456; PRAGMA cache_size=-16384; PRAGMA temp_store=MEMORY;";
  // Switching a new file to WAL takes an exclusive lock, and SQLite reports SQLITE_BUSY for it
  // without calling the busy handler when another process is opening the same file at that
  // moment (several roles or processes sharing bus.db start together): retry until the timeout.
  std::string msg;
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(options.busy_timeout_ms);
  while (true) {
    int prc = exec_raw(h, pragmas.c_str(), &msg);
    if (prc == SQLITE_OK) {
      db->start_checkpointer();
      return db;
    }
    bool busy = (prc & 0xFF) == SQLITE_BUSY || (prc & 0xFF) == SQLITE_LOCKED;
    if (!busy || std::chrono::steady_clock::now() >= deadline) {
      Error e = classify(DbError{prc, "cannot configure database '" + path + "': " + msg});
      return e;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Checkpoints copy WAL frames back into the database file and sync it. SQLite runs them on the
// thread that commits, holding that connection, so every user of the store waits meanwhile. Here a
// thread with its own connection does the copying and syncing in the background (PASSIVE: it never
// blocks writers) once the WAL holds kBackgroundPages; a commit that finds kForegroundPages still
// runs one itself, which then has little left to copy, and restarts the WAL from its beginning
// (a background checkpoint cannot: commits keep adding frames while it runs).
//
// The thread is a PeriodicTask woken by commits; it has no time of its own to keep (its
// thresholds are WAL pages), so its period only re-checks a flag that no commit set: a run
// checkpoints only when a commit asked for it, as before.
struct Database::Checkpointer {
  static constexpr int kBackgroundPages = 1000;
  static constexpr int kForegroundPages = 8000;
  // Runs without a wake-up find nothing due and return at once.
  static constexpr std::chrono::hours kIdlePeriod{1};

  sqlite3* h = nullptr;
  int next_signal = kBackgroundPages;  ///< WAL size that wakes the task next (commit thread only)
  std::atomic<bool> due{false};
  // Stopped (joined) in the destructor before the connection its step uses is closed.
  PeriodicTask task{"db.checkpoint", SystemClock::instance(), kIdlePeriod,
                    [this](int64_t) -> std::optional<std::chrono::milliseconds> {
                      if (due.exchange(false)) {
                        sqlite3_wal_checkpoint_v2(h, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr,
                                                  nullptr);
                      }
                      return std::nullopt;
                    }};

  ~Checkpointer() {
    task.stop();
    sqlite3_close_v2(h);
  }

  static int on_commit(void* self, sqlite3* h, const char* db_name, int pages) {
    auto* c = static_cast<Checkpointer*>(self);
    // Once per kBackgroundPages of growth, not on every commit: each checkpoint ends with an
    // fsync, and a WAL that has not restarted yet stays above the threshold for many commits.
    if (pages < c->next_signal - kBackgroundPages) c->next_signal = kBackgroundPages;  // restarted
    if (pages >= kForegroundPages) {
      sqlite3_wal_checkpoint_v2(h, db_name, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
      c->next_signal = kBackgroundPages;
    } else if (pages >= c->next_signal) {
      c->next_signal = pages + kBackgroundPages;
      c->due = true;
      c->task.wake();
    }
    return SQLITE_OK;
  }
};

void Database::start_checkpointer() {
  // In-memory and temporary stores have no WAL to copy back.
  if (path_.empty() || path_ == ":memory:" || path_.starts_with("file::memory:")) return;
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(path_.c_str(), &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr) !=
      SQLITE_OK) {
    // No background checkpoints: SQLite's own, on the committing thread, still bound the WAL.
    sqlite3_close_v2(h);
    sqlite3_wal_autocheckpoint(h_, Checkpointer::kForegroundPages);
    return;
  }
  sqlite3_busy_timeout(h, 1000);
  auto c = std::make_unique<Checkpointer>();
  c->h = h;
  // No run at start: nothing is due until a commit says so.
  c->task.start(Checkpointer::kIdlePeriod);
  sqlite3_wal_hook(h_, &Checkpointer::on_commit, c.get());
  checkpointer_ = std::move(c);
}

Database::~Database() {
  // The hook points at the checkpointer: unhook before it goes.
  sqlite3_wal_hook(h_, nullptr, nullptr);
  checkpointer_.reset();
  if (cache_) {
    for (auto& [sql, s] : cache_->stmts) sqlite3_finalize(s);
  }
  sqlite3_close_v2(h_);
}

sqlite3_stmt* Database::cached(std::string_view sql) {
  auto it = cache_->stmts.find(sql);
  if (it != cache_->stmts.end()) return it->second;
  sqlite3_stmt* s = nullptr;
  int rc = sqlite3_prepare_v3(h_, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &s, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(h_);
    sqlite3_finalize(s);
    constexpr size_t kShown = 120;
    std::string shown(sql.substr(0, kShown));
    if (sql.size() > kShown) shown += "...";
    throw DbError{rc, msg + " (in: " + shown + ")"};
  }
  if (s == nullptr) throw DbError{SQLITE_MISUSE, "empty SQL statement"};
  cache_->stmts.emplace(std::string(sql), s);
  return s;
}

Statement Database::Tx::stmt(std::string_view sql) {
  sqlite3_stmt* s = db_.cached(sql);
  sqlite3_reset(s);
  sqlite3_clear_bindings(s);
  return Statement(s);
}

void Database::Tx::exec(std::string_view sql) {
  std::string text(sql);  // sqlite3_exec needs a terminator
  std::string msg;
  if (int rc = exec_raw(db_.h_, text.c_str(), &msg); rc != SQLITE_OK) throw DbError{rc, msg};
}

int64_t Database::Tx::last_insert_id() const { return sqlite3_last_insert_rowid(db_.h_); }

Database::Tx::~Tx() { reset_busy_statements(db_.h_); }

Status Database::begin() {
  coalesced_.clear();
  coalesced_undo_.clear();
  reset_busy_statements(h_);
  std::string msg;
  if (int rc = exec_raw(h_, "BEGIN IMMEDIATE", &msg); rc != SQLITE_OK) {
    return to_error(DbError{rc, msg});
  }
  return {};
}

Status Database::commit() {
  reset_busy_statements(h_);
  std::string msg;
  if (int rc = exec_raw(h_, "COMMIT", &msg); rc != SQLITE_OK) {
    rollback();
    return to_error(DbError{rc, msg});
  }
  note_written();
  return {};
}

void Database::rollback() noexcept {
  coalesced_.clear();
  coalesced_undo_.clear();
  reset_busy_statements(h_);
  if (sqlite3_get_autocommit(h_) == 0) exec_raw(h_, "ROLLBACK", nullptr);
}

std::any& Database::Tx::coalesce(const std::string& key, Flush flush) {
  auto& slots = db_.coalesced_;
  for (size_t i = 0; i < slots.size(); ++i) {
    if (slots[i].key != key) continue;
    // The caller may change the slot: keep its value from before this savepoint once.
    if (!db_.coalesced_undo_.empty()) {
      auto& level = db_.coalesced_undo_.back();
      const bool saved = std::any_of(level.before.begin(), level.before.end(),
                                     [&](const auto& b) { return b.first == i; });
      if (i < level.slots && !saved) level.before.emplace_back(i, slots[i].value);
    }
    return slots[i].value;
  }
  slots.push_back(Coalesced{key, {}, std::move(flush)});
  return slots.back().value;
}

void Database::flush_coalesced(Tx& tx) {
  auto pending = std::move(coalesced_);
  coalesced_.clear();
  for (const auto& c : pending) c.flush(tx, c.value);
}

void Database::enter_batch() noexcept {
  batch_failed_ = false;
  batch_error_.clear();
  batch_error_rc_ = 0;
  batch_owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
}

void Database::leave_batch() noexcept {
  batch_owner_.store(std::thread::id{}, std::memory_order_relaxed);
}

Status Database::batch_status() const {
  if (!batch_failed_) return {};
  // A full disk that rolled the batch back is a storage fault like any other (503).
  if (Error e = classify(DbError{batch_error_rc_, batch_error_});
      e.code == ErrorCode::kStoreUnavailable) {
    return Error{e.code, "the batch was rolled back: " + e.message, "", true};
  }
  return Error{ErrorCode::kDbError, "database error: the batch was rolled back: " + batch_error_,
               "", true};
}

void Database::check_batch_alive() noexcept {
  if (!batch_failed_ && sqlite3_get_autocommit(h_) != 0) {
    batch_failed_ = true;
    batch_error_ = "SQLite rolled back the transaction";
    batch_error_rc_ = sqlite3_extended_errcode(h_);
    if (classify(DbError{batch_error_rc_, {}}).code == ErrorCode::kStoreUnavailable)
      note_fault(std::string("the batch was rolled back: ") + sqlite3_errstr(batch_error_rc_));
  }
}

void Database::savepoint() {
  reset_busy_statements(h_);
  std::string msg;
  if (int rc = exec_raw(h_, "SAVEPOINT unit", &msg); rc != SQLITE_OK) throw DbError{rc, msg};
  coalesced_undo_.push_back(CoalescedUndo{coalesced_.size(), {}});
}

void Database::end_savepoint(bool undo) noexcept {
  reset_busy_statements(h_);
  if (!coalesced_undo_.empty()) {
    CoalescedUndo level = std::move(coalesced_undo_.back());
    coalesced_undo_.pop_back();
    if (undo) {
      for (auto& [i, value] : level.before) coalesced_[i].value = std::move(value);
      coalesced_.resize(level.slots);
    } else if (!coalesced_undo_.empty()) {
      // Released into the enclosing savepoint: what it must restore now includes this one's.
      auto& parent = coalesced_undo_.back();
      for (auto& [i, value] : level.before) {
        const bool saved = std::any_of(parent.before.begin(), parent.before.end(),
                                       [&](const auto& b) { return b.first == i; });
        if (i < parent.slots && !saved) parent.before.emplace_back(i, std::move(value));
      }
    }
  }
  // Some errors (SQLITE_FULL, SQLITE_IOERR, ...) make SQLite roll back the whole transaction;
  // the units before this one are then gone, and committing the rest would lose them silently.
  check_batch_alive();
  if (batch_failed_) return;
  std::string msg;
  int rc = undo ? exec_raw(h_, "ROLLBACK TO unit; RELEASE unit", &msg)
                : exec_raw(h_, "RELEASE unit", &msg);
  if (rc != SQLITE_OK || sqlite3_get_autocommit(h_) != 0) {
    batch_failed_ = true;
    batch_error_ = msg.empty() ? "savepoint lost" : msg;
    batch_error_rc_ = rc;
  }
}

Error Database::classify(const DbError& e) {
  int primary = e.code & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
    return Error{ErrorCode::kDbBusy, "database busy: " + e.message, "", true};
  }
  // Faults of the machine, not of the request or of our SQL: they pass (space is freed, the
  // volume remounted), so callers answer 503 and retry rather than 500.
  if (primary == SQLITE_FULL || primary == SQLITE_IOERR || primary == SQLITE_READONLY ||
      primary == SQLITE_CANTOPEN || primary == SQLITE_NOMEM || primary == SQLITE_PROTOCOL) {
    return Error{ErrorCode::kStoreUnavailable, "the store cannot write: " + e.message, "", true};
  }
  return Error{ErrorCode::kDbError, "database error: " + e.message, "", false};
}

Error Database::to_error(const DbError& e) {
  Error err = classify(e);
  if (err.code == ErrorCode::kStoreUnavailable) note_fault(err.message);
  return err;
}

void Database::note_fault(const std::string& why) noexcept {
  if (faulted_.exchange(true)) return;
  log::error("db",
             "store {}: {}; writes answer 503 STORE_UNAVAILABLE and /readyz is 503 until "
             "a write succeeds again",
             path_, why);
}

void Database::note_written() noexcept {
  if (!faulted_.load(std::memory_order_relaxed) || !faulted_.exchange(false)) return;
  log::info("db", "store {}: writing again", path_);
}

Status Database::migrate(std::string_view component, std::span<const std::string_view> steps) {
  auto created = transaction([](Tx& tx) -> Status {
    tx.exec(
        "CREATE TABLE IF NOT EXISTS schema_version("
        "component TEXT PRIMARY KEY, version INTEGER NOT NULL)");
    return {};
  });
  if (!created) return created;
  for (size_t i = 0; i < steps.size(); ++i) {
    const int64_t version = static_cast<int64_t>(i) + 1;
    // The version is re-read inside each step's transaction, so processes migrating the same
    // file concurrently apply every step exactly once.
    auto st = transaction([&](Tx& tx) -> Status {
      auto q = tx.stmt("SELECT version FROM schema_version WHERE component=?");
      q.bind(1, component);
      int64_t current = q.step() ? q.col_int(0) : 0;
      // Run to the end: a statement left mid-read makes DROP TABLE / DROP INDEX in a step fail
      // with "database table is locked".
      while (q.step()) {
      }
      if (current >= version) return {};
      tx.exec(steps[i]);
      tx.stmt(
            "INSERT INTO schema_version(component, version) VALUES(?, ?) "
            "ON CONFLICT(component) DO UPDATE SET version=excluded.version")
          .bind_all(component, version)
          .exec();
      return {};
    });
    if (!st) {
      Error e = st.error();
      e.message = "migration " + std::string(component) + " v" + std::to_string(version) +
                  " failed: " + e.message;
      return e;
    }
  }
  return {};
}

bool Database::healthy() {
  if (faulted() && !in_batch()) {
    // The probe's commit ends the fault when it succeeds (see note_written).
    auto probe = transaction([](Tx& tx) -> Status {
      tx.exec(
          "CREATE TABLE IF NOT EXISTS store_probe(b BLOB);"
          "INSERT INTO store_probe VALUES(randomblob(8192));"
          "DELETE FROM store_probe;");
      return {};
    });
    if (!probe) return false;
  }
  std::unique_lock lock(mu_, std::defer_lock);
  if (!in_batch()) lock.lock();
  if (h_ == nullptr) return false;
  try {
    Tx tx(*this);
    auto s = tx.stmt("SELECT 1");
    return s.step() && s.col_int(0) == 1;
  } catch (const DbError&) {
    return false;
  }
}

}  // namespace ecom::db
