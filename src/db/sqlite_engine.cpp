// The SQLite engine: one file per role, WAL mode, background checkpoints.

#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "ecom/core/periodic_task.hpp"
#include "engine.hpp"

namespace ecom::db {
namespace {

DbFault fault_of(int rc) noexcept {
  const int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) return DbFault::kBusy;
  // Faults of the machine, not of the request or of our SQL: they pass (space is freed, the
  // volume remounted), so callers answer 503 and retry rather than 500.
  if (primary == SQLITE_FULL || primary == SQLITE_IOERR || primary == SQLITE_READONLY ||
      primary == SQLITE_CANTOPEN || primary == SQLITE_NOMEM || primary == SQLITE_PROTOCOL)
    return DbFault::kUnavailable;
  return DbFault::kError;
}

[[noreturn]] void throw_rc(int rc, std::string message) {
  throw DbError{rc, std::move(message), fault_of(rc)};
}

[[noreturn]] void throw_error(sqlite3* h, int rc) {
  throw_rc(rc, h != nullptr ? sqlite3_errmsg(h) : sqlite3_errstr(rc));
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

void exec_or_throw(sqlite3* h, const char* sql) {
  std::string msg;
  if (int rc = exec_raw(h, sql, &msg); rc != SQLITE_OK) throw_rc(rc, std::move(msg));
}

class SqliteCursor final : public Cursor {
 public:
  explicit SqliteCursor(sqlite3_stmt* s) : s_(s) {}
  ~SqliteCursor() override { sqlite3_finalize(s_); }
  SqliteCursor(const SqliteCursor&) = delete;
  SqliteCursor& operator=(const SqliteCursor&) = delete;

  void reset() noexcept override {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  void bind_int(int idx, int64_t v) override { check(sqlite3_bind_int64(s_, idx, v)); }
  void bind_double(int idx, double v) override { check(sqlite3_bind_double(s_, idx, v)); }
  void bind_text(int idx, std::string_view v) override {
    // SQLITE_TRANSIENT copies: the caller's string may die before step().
    check(sqlite3_bind_text64(s_, idx, v.data(), v.size(), SQLITE_TRANSIENT, SQLITE_UTF8));
  }
  void bind_null(int idx) override { check(sqlite3_bind_null(s_, idx)); }
  bool step() override {
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    std::string message = sqlite3_errmsg(sqlite3_db_handle(s_));
    sqlite3_reset(s_);
    throw_rc(rc, std::move(message));
  }
  int64_t exec() override {
    while (step()) {
    }
    return sqlite3_changes64(sqlite3_db_handle(s_));
  }
  int64_t col_int(int col) const override { return sqlite3_column_int64(s_, col); }
  double col_double(int col) const override { return sqlite3_column_double(s_, col); }
  std::string_view col_view(int col) const override {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, col));
    if (p == nullptr) return {};
    return {p, static_cast<size_t>(sqlite3_column_bytes(s_, col))};
  }
  bool col_null(int col) const override { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

 private:
  void check(int rc) const {
    if (rc != SQLITE_OK) throw_error(sqlite3_db_handle(s_), rc);
  }
  sqlite3_stmt* s_;
};

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
struct Checkpointer {
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

class SqliteEngine final : public Engine {
 public:
  SqliteEngine(sqlite3* h, std::string path) : h_(h), path_(std::move(path)) {}
  ~SqliteEngine() override {
    // The hook points at the checkpointer: unhook before it goes.
    sqlite3_wal_hook(h_, nullptr, nullptr);
    checkpointer_.reset();
    stmts_.clear();  // finalized before the connection closes
    sqlite3_close_v2(h_);
  }
  SqliteEngine(const SqliteEngine&) = delete;
  SqliteEngine& operator=(const SqliteEngine&) = delete;

  Cursor& prepare(std::string_view sql) override {
    auto it = stmts_.find(sql);
    if (it != stmts_.end()) return *it->second;
    const std::string key(sql);  // cached under what the module wrote
    sql = to_sqlite(sql);
    sqlite3_stmt* s = nullptr;
    int rc = sqlite3_prepare_v3(h_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &s, nullptr);
    if (rc != SQLITE_OK) {
      std::string msg = sqlite3_errmsg(h_);
      sqlite3_finalize(s);
      constexpr size_t kShown = 120;
      std::string shown(sql.substr(0, kShown));
      if (sql.size() > kShown) shown += "...";
      throw_rc(rc, msg + " (in: " + shown + ")");
    }
    if (s == nullptr) throw DbError{SQLITE_MISUSE, "empty SQL statement"};
    auto& c = stmts_[key];
    c = std::make_unique<SqliteCursor>(s);
    return *c;
  }

  void exec(std::string_view sql) override {
    std::string text(sql);  // sqlite3_exec needs a terminator
    exec_or_throw(h_, text.c_str());
  }

  void begin() override {
    end_reads();
    exec_or_throw(h_, "BEGIN IMMEDIATE");
  }
  void commit() override {
    end_reads();
    exec_or_throw(h_, "COMMIT");
  }
  void rollback() noexcept override {
    end_reads();
    if (sqlite3_get_autocommit(h_) == 0) exec_raw(h_, "ROLLBACK", nullptr);
  }
  void savepoint() override {
    end_reads();
    exec_or_throw(h_, "SAVEPOINT unit");
  }
  void release_savepoint() override { exec_or_throw(h_, "RELEASE unit"); }
  void undo_savepoint() override { exec_or_throw(h_, "ROLLBACK TO unit; RELEASE unit"); }
  bool in_transaction() const noexcept override { return sqlite3_get_autocommit(h_) == 0; }
  DbFault last_fault() const noexcept override { return fault_of(sqlite3_extended_errcode(h_)); }

  // A statement stepped to a row but not to the end keeps its read transaction (and so its WAL
  // snapshot) open; it must not outlive the transaction()/read() body that used it.
  void end_reads() noexcept override {
    for (sqlite3_stmt* s = sqlite3_next_stmt(h_, nullptr); s != nullptr;
         s = sqlite3_next_stmt(h_, s)) {
      if (sqlite3_stmt_busy(s)) sqlite3_reset(s);
    }
  }
  void ensure_connected() override {}
  int64_t sequence_high(std::string_view table, std::string_view) override {
    Cursor& c = prepare("SELECT seq FROM sqlite_sequence WHERE name = ?");
    c.reset();
    c.bind_text(1, table);
    const int64_t high = c.step() ? c.col_int(0) : 0;
    c.reset();
    return high;
  }
  void lock_migrations() override {}
  void probe_write() override {
    exec_or_throw(h_,
                  "CREATE TABLE IF NOT EXISTS store_probe(b BLOB);"
                  "INSERT INTO store_probe VALUES(randomblob(8192));"
                  "DELETE FROM store_probe;");
  }

  void start_checkpointer() {
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

 private:
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  sqlite3* h_;
  std::string path_;
  std::unordered_map<std::string, std::unique_ptr<SqliteCursor>, Hash, std::equal_to<>> stmts_;
  std::unique_ptr<Checkpointer> checkpointer_;  ///< background WAL checkpoints (file stores)
};

}  // namespace

Result<std::unique_ptr<Engine>> open_sqlite(const std::string& path, const Options& options) {
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
  auto engine = std::make_unique<SqliteEngine>(h, path);

  sqlite3_busy_timeout(h, options.busy_timeout_ms);
  std::string pragmas = "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA synchronous=";
  pragmas += options.synchronous_full ? "FULL;" : "NORMAL;";
  // Reads through a memory map instead of read() copies, and a page cache big enough for the
  // hot part of a module store. Checkpoints: see Checkpointer above.
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
      engine->start_checkpointer();
      return std::unique_ptr<Engine>(std::move(engine));
    }
    if (fault_of(prc) != DbFault::kBusy || std::chrono::steady_clock::now() >= deadline)
      return classify(
          DbError{prc, "cannot configure database '" + path + "': " + msg, fault_of(prc)});
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace ecom::db
