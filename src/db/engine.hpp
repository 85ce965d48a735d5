#pragma once
// What Database needs of a storage engine: SQLite (a file per role) or PostgreSQL (a schema per
// role on a shared server). Database keeps every policy (transactions, group commit with
// savepoints, coalesced writes, fault tracking, migrations); an engine only runs SQL. Engine
// calls are serialised by Database's mutex. Failures are thrown as DbError with their fault
// already classified, so Database never looks at an engine's own codes.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "ecom/db/database.hpp"

namespace ecom::db {

/// A prepared statement of an engine (owned by the engine's cache).
class Cursor {
 public:
  virtual ~Cursor() = default;
  /// Forgets the last run's rows and bindings.
  virtual void reset() noexcept = 0;
  virtual void bind_int(int idx, int64_t v) = 0;
  virtual void bind_double(int idx, double v) = 0;
  virtual void bind_text(int idx, std::string_view v) = 0;
  virtual void bind_null(int idx) = 0;
  /// Runs the statement on the first call after reset(); true while a row is available.
  virtual bool step() = 0;
  /// Runs to completion; rows changed.
  virtual int64_t exec() = 0;
  virtual int64_t col_int(int col) const = 0;
  virtual double col_double(int col) const = 0;
  virtual std::string_view col_view(int col) const = 0;
  virtual bool col_null(int col) const = 0;
};

class Engine {
 public:
  virtual ~Engine() = default;
  /// A cached statement for `sql` (SQLite's dialect; the engine translates its own once).
  virtual Cursor& prepare(std::string_view sql) = 0;
  /// One or more statements without parameters or results.
  virtual void exec(std::string_view sql) = 0;
  /// Starts a write transaction (SQLite: BEGIN IMMEDIATE, so writers queue on the file lock
  /// instead of failing at their first write). Reconnects first where the engine can.
  virtual void begin() = 0;
  virtual void commit() = 0;
  virtual void rollback() noexcept = 0;
  /// A SAVEPOINT named `unit`, and its release or undo (ROLLBACK TO + RELEASE).
  virtual void savepoint() = 0;
  virtual void release_savepoint() = 0;
  virtual void undo_savepoint() = 0;
  /// True while the connection has a transaction open (an aborted one included, whose
  /// savepoint can still be undone); false once the engine rolled it back on its own.
  virtual bool in_transaction() const noexcept = 0;
  /// The fault of the last failure, for a transaction the engine gave up by itself.
  virtual DbFault last_fault() const noexcept = 0;
  /// Ends statements a body left mid-result, so no read snapshot outlives the body.
  virtual void end_reads() noexcept = 0;
  /// Called before reads outside a transaction: reconnects a lost connection where the engine
  /// can (throws DbError kUnavailable when it cannot).
  virtual void ensure_connected() = 0;
  /// Inside a migration's transaction: keeps other processes migrating the same store out
  /// until it commits (SQLite: BEGIN IMMEDIATE did; PostgreSQL: an advisory lock).
  virtual void lock_migrations() = 0;
  /// See Tx::sequence_high.
  virtual int64_t sequence_high(std::string_view table, std::string_view column) = 0;
  /// A small write and its undo in one transaction body, to tell whether the store can write.
  virtual void probe_write() = 0;
};

/// The Error a failure is for callers (Database::transaction() and friends return it).
Error classify(const DbError& e);

/// Opens `path` (a file or ":memory:") as SQLite.
Result<std::unique_ptr<Engine>> open_sqlite(const std::string& path, const Options& options);
/// Connects to `url` (postgresql://...) and makes `options.schema` the schema of every statement.
Result<std::unique_ptr<Engine>> open_postgres(const std::string& url, const Options& options);

/// SQLite's dialect as PostgreSQL reads it: `?` and `?N` become `$N`; in DDL INTEGER becomes
/// BIGINT, INTEGER PRIMARY KEY AUTOINCREMENT an identity column, BLOB BYTEA, REAL DOUBLE
/// PRECISION, and WITHOUT ROWID goes. Quoted text is left alone. `params` gets the highest
/// parameter number. Every other difference is avoided in the modules' SQL (docs: src/db/README).
std::string to_postgres(std::string_view sql, int* params = nullptr);

/// The one PostgreSQL clause modules may write: a trailing `FOR UPDATE` or `FOR UPDATE SKIP
/// LOCKED` (a row lock, for replicas that share a store). SQLite, which runs one write
/// transaction at a time anyway, gets the statement without it.
std::string_view to_sqlite(std::string_view sql) noexcept;

}  // namespace ecom::db
