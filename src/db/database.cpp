#include "ecom/db/database.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <string>
#include <thread>

#include "ecom/core/log.hpp"
#include "engine.hpp"

namespace ecom::db {

bool is_postgres_url(std::string_view target) noexcept {
  return target.starts_with("postgresql://") || target.starts_with("postgres://");
}

std::string redact_url(std::string_view target) {
  // scheme://user:password@host...: the password is between the first ':' after the scheme
  // and the last '@' of the authority.
  const auto scheme = target.find("://");
  if (scheme == std::string_view::npos) return std::string(target);
  const auto begin = scheme + 3;
  auto end = target.find_first_of("/?", begin);
  if (end == std::string_view::npos) end = target.size();
  const auto at = target.rfind('@', end);
  if (at == std::string_view::npos || at < begin) return std::string(target);
  const auto colon = target.find(':', begin);
  if (colon == std::string_view::npos || colon > at) return std::string(target);
  std::string out(target.substr(0, colon + 1));
  out += "***";
  out += target.substr(at);
  return out;
}

Error classify(const DbError& e) {
  switch (e.fault) {
    case DbFault::kBusy:
      return Error{ErrorCode::kDbBusy, "database busy: " + e.message, "", true};
    case DbFault::kUnavailable:
      return Error{ErrorCode::kStoreUnavailable, "the store cannot write: " + e.message, "", true};
    case DbFault::kError:
      break;
  }
  return Error{ErrorCode::kDbError, "database error: " + e.message, "", false};
}

// ---------------------------------------------------------------------------------------------
// Statement

Statement& Statement::bind(int idx, int64_t v) {
  c_->bind_int(idx, v);
  return *this;
}

Statement& Statement::bind(int idx, double v) {
  c_->bind_double(idx, v);
  return *this;
}

Statement& Statement::bind(int idx, std::string_view v) {
  c_->bind_text(idx, v);
  return *this;
}

Statement& Statement::bind_null(int idx) {
  c_->bind_null(idx);
  return *this;
}

bool Statement::step() { return c_->step(); }
int64_t Statement::exec() { return c_->exec(); }
int64_t Statement::col_int(int col) const { return c_->col_int(col); }
double Statement::col_double(int col) const { return c_->col_double(col); }
std::string Statement::col_text(int col) const { return std::string(c_->col_view(col)); }
std::string_view Statement::col_view(int col) const { return c_->col_view(col); }
bool Statement::col_null(int col) const { return c_->col_null(col); }

// ---------------------------------------------------------------------------------------------
// Database

namespace {

// 32 hex digits. Uniqueness, not secrecy: random_device seeds it from the OS.
std::string random_id() {
  std::random_device rd;
  std::string id;
  for (int i = 0; i < 4; ++i) id += fmt::format("{:08x}", rd());
  return id;
}

}  // namespace

Database::Database(std::unique_ptr<Engine> engine, std::string path, bool postgres)
    : engine_(std::move(engine)),
      path_(std::move(path)),
      postgres_(postgres),
      replica_id_(postgres ? random_id() : std::string()) {}

Result<std::unique_ptr<Database>> Database::open(const std::string& target, Options options) {
  const bool postgres = is_postgres_url(target);
  auto engine = postgres ? open_postgres(target, options) : open_sqlite(target, options);
  if (!engine) return engine.error();
  std::string path = postgres ? redact_url(target) + " schema " + options.schema : target;
  return std::unique_ptr<Database>(
      new Database(std::move(engine).value(), std::move(path), postgres));
}

Database::~Database() = default;

Statement Database::Tx::stmt(std::string_view sql) {
  Cursor& c = db_.engine_->prepare(sql);
  c.reset();
  return Statement(&c);
}

void Database::Tx::exec(std::string_view sql) { db_.engine_->exec(sql); }

int64_t Database::Tx::sequence_high(std::string_view table, std::string_view column) {
  return db_.engine_->sequence_high(table, column);
}

void Database::Tx::lock_key(std::string_view key) {
  if (!db_.postgres_) return;
  // hashtext: 32 bits are enough, a collision only makes two keys wait for each other.
  stmt("SELECT pg_advisory_xact_lock(hashtext(?))").bind(1, key).step();
}

Database::Tx::~Tx() { db_.engine_->end_reads(); }

Status Database::begin() {
  coalesced_.clear();
  coalesced_undo_.clear();
  try {
    engine_->begin();
  } catch (const DbError& e) {
    return to_error(e);
  }
  return {};
}

void Database::start_read() { engine_->ensure_connected(); }

Status Database::commit() {
  try {
    engine_->commit();
  } catch (const DbError& e) {
    rollback();
    return to_error(e);
  }
  note_written();
  return {};
}

void Database::rollback() noexcept {
  coalesced_.clear();
  coalesced_undo_.clear();
  engine_->rollback();
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
  batch_fault_ = DbFault::kError;
  batch_fenced_ = false;
  batch_owner_.store(std::this_thread::get_id(), std::memory_order_relaxed);
}

void Database::leave_batch() noexcept {
  batch_owner_.store(std::thread::id{}, std::memory_order_relaxed);
}

Status Database::batch_status() const {
  if (!batch_failed_) return {};
  if (batch_fenced_) return Error{ErrorCode::kConflict, batch_error_, "", true};
  // A full disk that rolled the batch back is a storage fault like any other (503).
  if (Error e = classify(DbError{0, batch_error_, batch_fault_});
      e.code == ErrorCode::kStoreUnavailable) {
    return Error{e.code, "the batch was rolled back: " + e.message, "", true};
  }
  return Error{ErrorCode::kDbError, "database error: the batch was rolled back: " + batch_error_,
               "", true};
}

void Database::check_batch_alive() noexcept {
  if (!batch_failed_ && !engine_->in_transaction()) {
    batch_failed_ = true;
    batch_error_ = "the store rolled back the transaction";
    batch_fault_ = engine_->last_fault();
    if (batch_fault_ == DbFault::kUnavailable) note_fault("the batch was rolled back by the store");
  }
}

void Database::savepoint() {
  engine_->savepoint();
  coalesced_undo_.push_back(CoalescedUndo{coalesced_.size(), {}});
}

void Database::end_savepoint(bool undo) noexcept {
  engine_->end_reads();
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
  // Some errors (SQLITE_FULL, SQLITE_IOERR, a lost connection, ...) make the store roll back the
  // whole transaction; the units before this one are then gone, and committing the rest would
  // lose them silently.
  check_batch_alive();
  if (batch_failed_) return;
  try {
    if (undo)
      engine_->undo_savepoint();
    else
      engine_->release_savepoint();
  } catch (const DbError& e) {
    batch_failed_ = true;
    batch_error_ = e.message;
    batch_fault_ = e.fault;
    return;
  }
  if (!engine_->in_transaction()) {
    batch_failed_ = true;
    batch_error_ = "savepoint lost";
    batch_fault_ = engine_->last_fault();
  }
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

namespace {

// The version of `component` in schema_version (0: none yet).
int64_t stored_version(Database::Tx& tx, std::string_view component) {
  auto q = tx.stmt("SELECT version FROM schema_version WHERE component=?");
  q.bind(1, component);
  const int64_t current = q.step() ? q.col_int(0) : 0;
  // Run to the end: a statement left mid-read makes DROP TABLE / DROP INDEX in a step fail
  // with "database table is locked".
  while (q.step()) {
  }
  return current;
}

}  // namespace

Status Database::migrate(std::string_view component, std::span<const std::string_view> steps) {
  auto created = transaction([&](Tx& tx) -> Status {
    engine_->lock_migrations();
    tx.exec(
        "CREATE TABLE IF NOT EXISTS schema_version("
        "component TEXT PRIMARY KEY, version INTEGER NOT NULL)");
    // A store a newer ecomd migrated: its tables may hold what this binary does not know (a
    // column it would not fill, a table it would not clean). Refused, not half-used.
    const int64_t current = stored_version(tx, component);
    const auto known = static_cast<int64_t>(steps.size());
    if (current > known)
      return Error{ErrorCode::kConfigInvalid,
                   fmt::format("store {}: {} is at schema version {}, newer than this ecomd "
                               "knows ({}); run the ecomd that wrote it (or a newer one), or "
                               "restore a backup of this version",
                               path_, component, current, known),
                   "store", false};
    return {};
  });
  if (!created) return created;
  for (size_t i = 0; i < steps.size(); ++i) {
    const int64_t version = static_cast<int64_t>(i) + 1;
    // The version is re-read inside each step's transaction, so processes migrating the same
    // file concurrently apply every step exactly once.
    auto st = transaction([&](Tx& tx) -> Status {
      engine_->lock_migrations();
      if (stored_version(tx, component) >= version) return {};
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
    auto probe = transaction([&](Tx&) -> Status {
      engine_->probe_write();
      return {};
    });
    if (!probe) return false;
  }
  std::unique_lock lock(mu_, std::defer_lock);
  const bool batched = in_batch();
  if (!batched) lock.lock();
  try {
    if (!batched) start_read();
    Tx tx(*this);
    auto s = tx.stmt("SELECT 1");
    return s.step() && s.col_int(0) == 1;
  } catch (const DbError&) {
    return false;
  }
}

}  // namespace ecom::db
