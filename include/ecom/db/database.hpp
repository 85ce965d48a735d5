#pragma once
/// A module's store: SQLite (a file per role, the default: WAL mode) or PostgreSQL (a schema per
/// role on a shared server, for roles that run several replicas). Cached prepared statements,
/// explicit transactions, group commit and versioned migrations, the same on both; the SQL is
/// SQLite's dialect, translated once for PostgreSQL (src/db/README.md). Neither engine's types
/// leave src/db.
///
/// Thread safety: a Database is shared by the HTTP threads and the bus consumer threads of its
/// module. Every access goes through transaction() or read(), which serialise on one mutex: SQLite
/// allows one writer anyway, and a single connection keeps the prepared-statement cache simple.

#include <any>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "ecom/core/batch_scope.hpp"
#include "ecom/core/result.hpp"

namespace ecom::db {

/// What a store failure means for callers: a bug or bad SQL (DB_ERROR, 500), contention that a
/// retry gets past (DB_BUSY, 503), or a store that cannot write or be reached for now (full disk,
/// I/O error, connection lost: STORE_UNAVAILABLE, 503).
enum class DbFault { kError, kBusy, kUnavailable };

/// Thrown only inside transaction()/read() bodies by Statement on a store failure; caught there
/// and returned as an Error, so it never crosses a module boundary.
struct DbError {
  int code;  ///< the engine's own code (SQLite result code; 0 for PostgreSQL and module errors)
  std::string message;
  DbFault fault = DbFault::kError;
};

class Cursor;
class Engine;

/// A prepared statement from the connection's cache. Reset and unbound on every stmt() call.
class Statement final {
 public:
  explicit Statement(Cursor* c) : c_(c) {}
  /// Binds a parameter (1-based index). Returns *this for chaining.
  Statement& bind(int idx, int64_t v);
  Statement& bind(int idx, int v) { return bind(idx, static_cast<int64_t>(v)); }
  Statement& bind(int idx, double v);
  Statement& bind(int idx, std::string_view v);
  Statement& bind(int idx, const char* v) { return bind(idx, std::string_view(v)); }
  Statement& bind(int idx, const std::string& v) { return bind(idx, std::string_view(v)); }
  Statement& bind_null(int idx);
  /// Binds the value, or NULL when there is none.
  template <typename T>
  Statement& bind(int idx, const std::optional<T>& v) {
    return v ? bind(idx, *v) : bind_null(idx);
  }
  /// Binds all arguments from index 1 in order.
  template <typename... Args>
  Statement& bind_all(Args&&... args) {
    int i = 0;
    (bind(++i, std::forward<Args>(args)), ...);
    return *this;
  }
  /// Advances; true when a row is available.
  bool step();
  /// Runs to completion (for INSERT/UPDATE/DELETE); returns rows changed.
  int64_t exec();
  int64_t col_int(int col) const;
  double col_double(int col) const;
  std::string col_text(int col) const;
  std::string_view col_view(int col) const;
  bool col_null(int col) const;

 private:
  Cursor* c_;
};

/// Options for opening a store.
struct Options {
  bool synchronous_full = false;  ///< SQLite: FULL fsyncs every commit; NORMAL (default) is
                                  ///< durable across process crashes, which is what kill -9 needs
  int busy_timeout_ms = 5000;
  /// PostgreSQL: the schema of every statement, created when missing (one per role).
  std::string schema = "public";
  /// PostgreSQL: the password, when the URL has none (never logged).
  std::string password;
};

/// True when `target` names a PostgreSQL server (postgresql:// or postgres://) rather than a file.
bool is_postgres_url(std::string_view target) noexcept;
/// `target` with any password in it replaced by "***", for logs and messages.
std::string redact_url(std::string_view target);

/// One connection and its statement cache.
class Database final : public BatchScope {
 public:
  /// Opens (creating) the SQLite file at `target` (":memory:" works for tests), or connects to
  /// the PostgreSQL server `target` names (postgresql://...) in `options.schema`.
  static Result<std::unique_ptr<Database>> open(const std::string& target, Options options = {});
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  /// The handle a transaction or read body works with.
  class Tx final {
   public:
    /// Resets statements the body left mid-result, so no read snapshot outlives the body.
    ~Tx();
    Tx(const Tx&) = delete;
    Tx& operator=(const Tx&) = delete;
    /// A cached prepared statement, reset and ready to bind.
    Statement stmt(std::string_view sql);
    /// Executes one or more statements without parameters or results.
    void exec(std::string_view sql);
    /// The highest value the AUTOINCREMENT column `column` of `table` has handed out, rows
    /// deleted since included; 0 when none.
    int64_t sequence_high(std::string_view table, std::string_view column);
    /// Serialises, until the end of the transaction, the transactions of every replica that
    /// lock the same `key`: for a row that does not exist yet, which `FOR UPDATE` cannot lock
    /// (two replicas creating one saga). PostgreSQL: a transaction-scoped advisory lock; SQLite
    /// writes one transaction at a time, so nothing.
    void lock_key(std::string_view key);
    /// This connection's id among the replicas that share a PostgreSQL store (random, made at
    /// open: a restart is a new one); empty on SQLite, whose store has one writer process.
    const std::string& replica_id() const noexcept { return db_.replica_id_; }

    /// Writes a value once per commit instead of once per unit of work: Kafka Streams' record
    /// cache, for last-value feeds. The first call for `key` in a transaction (or in the batch
    /// that holds it) registers `flush` and returns an empty slot; later calls return the same
    /// slot, for the caller to merge into. Just before the commit, each `flush(tx, slot)` runs in
    /// the order the keys were first used. A unit that rolls back takes its changes back.
    using Flush = std::function<void(Tx&, const std::any&)>;
    std::any& coalesce(const std::string& key, Flush flush);

   private:
    friend class Database;
    explicit Tx(Database& db) : db_(db) {}
    Database& db_;
  };

  /// Runs `body` inside BEGIN IMMEDIATE..COMMIT. The body returns Result<T>; an error result or a
  /// DbError rolls back. Contention (SQLITE_BUSY, a PostgreSQL
  /// serialization failure or deadlock) surfaces as a retryable error. Inside batch() on the same
  /// thread the body runs in a SAVEPOINT of the batch's transaction instead: an error rolls back
  /// only this body, and its effects become durable when the batch commits.
  template <typename F>
  auto transaction(F&& body) -> decltype(body(std::declval<Tx&>())) {
    using R = decltype(body(std::declval<Tx&>()));
    if (in_batch()) return unit(std::forward<F>(body));
    std::lock_guard lock(mu_);
    if (auto st = begin(); !st) return R(st.error());
    Tx tx(*this);
    try {
      R r = body(tx);
      if (!r) {
        rollback();
        return r;
      }
      flush_coalesced(tx);
      if (auto st = commit(); !st) return R(st.error());
      return r;
    } catch (const DbError& e) {
      rollback();
      return R(to_error(e));
    }
  }

  /// BatchScope: batch(body), for a bus that group-commits a fetched run in this store.
  Status run(const std::function<void()>& body) override { return batch(body); }
  /// BatchScope: the consumer positions, in table consumer_positions (created on first use).
  Status save_positions(std::string_view group,
                        std::span<const ConsumedPosition> positions) override;
  Result<std::vector<ConsumedPosition>> load_positions(std::string_view group) override;

  /// Group commit: runs `body` (returning void) inside one write transaction, in which every
  /// transaction() call made by this thread is a savepoint. Many small units of work then share
  /// one commit (one WAL append and lock round) instead of one each. Returns the commit's status;
  /// on error nothing `body` did is durable, whatever its units returned, and the caller must
  /// treat every unit as not applied. Other threads' transaction() and read() calls wait until
  /// the batch ends, so keep batches short. A batch inside a batch just runs `body`.
  template <typename F>
  Status batch(F&& body) {
    if (in_batch()) {
      body();
      return batch_status();
    }
    std::lock_guard lock(mu_);
    if (auto st = begin(); !st) return st;
    BatchGuard guard(*this);
    try {
      body();
    } catch (const DbError& e) {
      guard.end();
      rollback();
      return to_error(e);
    } catch (...) {
      guard.end();
      rollback();
      throw;
    }
    check_batch_alive();
    Status st = batch_status();
    guard.end();
    if (!st) {
      rollback();
      return st;
    }
    try {
      Tx tx(*this);
      flush_coalesced(tx);
    } catch (const DbError& e) {
      rollback();
      return to_error(e);
    }
    return commit();
  }

  /// Runs `body` for reading (no explicit transaction: one statement sees one snapshot).
  template <typename F>
  auto read(F&& body) -> decltype(body(std::declval<Tx&>())) {
    using R = decltype(body(std::declval<Tx&>()));
    std::unique_lock lock(mu_, std::defer_lock);
    const bool batched = in_batch();
    if (!batched) lock.lock();
    Tx tx(*this);
    try {
      if (!batched) start_read();
      return body(tx);
    } catch (const DbError& e) {
      // A failed read inside a batch may have made the engine abandon the batch's transaction.
      if (batched) check_batch_alive();
      return R(to_error(e));
    }
  }

  /// Applies the migrations of `component` not applied yet, each in its own transaction, and
  /// records them in `schema_version`. Step i (0-based) is version i+1.
  Status migrate(std::string_view component, std::span<const std::string_view> steps);
  /// What the store was opened with (a PostgreSQL URL without its password, and the schema).
  const std::string& path() const { return path_; }
  /// True for a PostgreSQL store.
  bool postgres() const noexcept { return postgres_; }
  /// See Tx::replica_id.
  const std::string& replica_id() const noexcept { return replica_id_; }
  /// True while the connection is open, answers a trivial query, and is not in a storage fault.
  /// A fault (a write failed with STORE_UNAVAILABLE: full disk, read-only file, I/O error) lasts
  /// until a commit succeeds; while it lasts each call probes with a small write (a row of
  /// table store_probe, deleted in the same transaction), so readiness comes back on its own.
  bool healthy();
  /// True between a storage fault and the next successful commit.
  bool faulted() const noexcept { return faulted_.load(std::memory_order_relaxed); }

 private:
  Database(std::unique_ptr<Engine> engine, std::string path, bool postgres);
  Status begin();
  // Before a read outside a transaction: reconnects a lost connection (throws DbError).
  void start_read();
  Status commit();
  void rollback() noexcept;
  // The Error of a failure (busy, STORE_UNAVAILABLE or DB_ERROR), noting a storage fault (see
  // healthy()).
  Error to_error(const DbError& e);
  // A storage fault began (logged once) / a commit succeeded (logged once, if there was one).
  void note_fault(const std::string& why) noexcept;
  void note_written() noexcept;

  // Marks the batch owned by this thread for its lifetime (also on exceptions).
  class BatchGuard final {
   public:
    explicit BatchGuard(Database& db) : db_(db) { db_.enter_batch(); }
    ~BatchGuard() { end(); }
    void end() noexcept {
      if (active_) db_.leave_batch();
      active_ = false;
    }

   private:
    Database& db_;
    bool active_ = true;
  };
  bool in_batch() const noexcept {
    return batch_owner_.load(std::memory_order_relaxed) == std::this_thread::get_id();
  }
  void enter_batch() noexcept;
  void leave_batch() noexcept;
  Status batch_status() const;
  // Marks the batch failed when the engine no longer has its transaction open (SQLite rolls back
  // on its own after some errors, a lost PostgreSQL connection takes it): a SAVEPOINT then would
  // start, and its RELEASE commit, a new one.
  void check_batch_alive() noexcept;
  void savepoint();
  Status ensure_positions();
  std::atomic<bool> positions_ready_{false};
  // Runs and forgets the coalesced writes (see Tx::coalesce); throws DbError.
  void flush_coalesced(Tx& tx);
  // Ends the innermost savepoint: released, or rolled back first (`undo`). A failure to do so
  // means SQLite gave up the whole transaction: the batch is then marked failed.
  void end_savepoint(bool undo) noexcept;

  // One unit of work inside the batch owned by this thread (mu_ is already held).
  template <typename F>
  auto unit(F&& body) -> decltype(body(std::declval<Tx&>())) {
    using R = decltype(body(std::declval<Tx&>()));
    check_batch_alive();
    if (auto st = batch_status(); !st) return R(st.error());
    try {
      savepoint();
    } catch (const DbError& e) {
      return R(to_error(e));
    }
    Tx tx(*this);
    try {
      R r = body(tx);
      end_savepoint(!r);
      if (r) {
        if (auto st = batch_status(); !st) return R(st.error());
      }
      return r;
    } catch (const DbError& e) {
      end_savepoint(true);
      return R(to_error(e));
    } catch (...) {
      end_savepoint(true);
      throw;
    }
  }

  std::mutex mu_;
  std::atomic<std::thread::id> batch_owner_{};
  bool batch_failed_ = false;  ///< guarded by mu_: the engine rolled the batch back under us
  std::string batch_error_;
  DbFault batch_fault_ = DbFault::kError;  ///< what failed the batch
  bool batch_fenced_ = false;  ///< failed by a position another consumer moved (kConflict)
  std::atomic<bool> faulted_{false};
  // Tx::coalesce's slots of the open transaction, in first-use order, and per open savepoint
  // what to restore when its unit rolls back: the slot count at its start and the first value
  // of each older slot it touched. Guarded by mu_ (the transaction's owner).
  struct Coalesced {
    std::string key;
    std::any value;
    Tx::Flush flush;
  };
  struct CoalescedUndo {
    size_t slots = 0;
    std::vector<std::pair<size_t, std::any>> before;
  };
  std::vector<Coalesced> coalesced_;
  std::vector<CoalescedUndo> coalesced_undo_;
  std::unique_ptr<Engine> engine_;
  std::string path_;
  bool postgres_ = false;
  std::string replica_id_;
};

using Tx = Database::Tx;

}  // namespace ecom::db
