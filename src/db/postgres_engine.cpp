// The PostgreSQL engine: a role's store as a schema on a shared server, through libpq.
//
// One connection per store, used under Database's mutex as SQLite's is. Statements are prepared
// on the server once per connection (named s1, s2, ...), with the SQL translated from SQLite's
// dialect once (to_postgres); parameters and results travel as text. A lost connection fails the
// statement as STORE_UNAVAILABLE (503, retryable) and is re-established by the next transaction
// or read, which prepares its statements again.

#include <libpq-fe.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <vector>

#include "ecom/core/log.hpp"
#include "engine.hpp"

namespace ecom::db {
namespace {

constexpr Oid kInt8 = 20;
constexpr Oid kFloat8 = 701;

// What a SQLSTATE means for callers (PostgreSQL's Appendix A).
DbFault fault_of(std::string_view state) noexcept {
  // serialization_failure, deadlock_detected, lock_not_available (lock_timeout): retry.
  if (state == "40001" || state == "40P01" || state == "55P03") return DbFault::kBusy;
  // Connection exceptions (08), insufficient resources (53: disk full, out of memory, too many
  // connections), operator intervention (57P01-57P05: shutdown, cannot connect now, idle
  // timeouts), system errors (58: I/O). They pass without our doing.
  if (state.starts_with("08") || state.starts_with("53") || state.starts_with("58") ||
      (state.starts_with("57P") && state != "57P04"))
    return DbFault::kUnavailable;
  return DbFault::kError;
}

// libpq's text on one line (it goes into logs and JSON error bodies): runs of white space,
// its line breaks and tabs included, become one space.
std::string trimmed(const char* message) {
  std::string m;
  bool blank = false;
  for (const char* p = message != nullptr ? message : ""; *p != '\0'; ++p) {
    const bool space = *p == ' ' || *p == '\n' || *p == '\t' || *p == '\r';
    if (space) {
      blank = !m.empty();
      continue;
    }
    if (blank) m += ' ';
    blank = false;
    m += *p;
  }
  return m;
}

// A schema name goes into SQL text (SET search_path): only plain identifiers are taken.
bool plain_identifier(std::string_view s) noexcept {
  if (s.empty() || s.size() > 63) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return !(s[0] >= '0' && s[0] <= '9');
}

class PgEngine;

class PgCursor final : public Cursor {
 public:
  PgCursor(PgEngine& engine, std::string name, std::string sql, int params)
      : engine_(engine),
        name_(std::move(name)),
        sql_(std::move(sql)),
        values_(params),
        null_(params, true),
        types_(params, 0) {}
  ~PgCursor() override { PQclear(res_); }
  PgCursor(const PgCursor&) = delete;
  PgCursor& operator=(const PgCursor&) = delete;

  void reset() noexcept override {
    PQclear(res_);
    res_ = nullptr;
    ran_ = false;
    row_ = -1;
    rows_ = 0;
    // Unbound parameters are NULL, as in SQLite.
    std::fill(null_.begin(), null_.end(), true);
  }
  void bind_int(int idx, int64_t v) override {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    set(idx, std::string_view(buf, static_cast<size_t>(end - buf)), kInt8);
  }
  void bind_double(int idx, double v) override {
    char buf[32];
    const int n = std::snprintf(buf, sizeof buf, "%.17g", v);
    set(idx, std::string_view(buf, static_cast<size_t>(n)), kFloat8);
  }
  // Text goes as "unknown": the server takes the column's type, as SQLite's affinity does.
  void bind_text(int idx, std::string_view v) override { set(idx, v, 0); }
  void bind_null(int idx) override {
    check_index(idx);
    null_[static_cast<size_t>(idx - 1)] = true;
  }
  bool step() override;
  int64_t exec() override;
  int64_t col_int(int col) const override {
    const std::string_view v = col_view(col);
    if (v == "t") return 1;  // booleans (a comparison in a select list)
    if (v == "f") return 0;
    int64_t n = 0;
    std::from_chars(v.data(), v.data() + v.size(), n);  // "12.5" (numeric) reads as 12
    return n;
  }
  double col_double(int col) const override {
    if (col_null(col)) return 0;
    return std::strtod(PQgetvalue(res_, row_, col), nullptr);
  }
  std::string_view col_view(int col) const override {
    if (res_ == nullptr || row_ < 0 || col < 0 || col >= PQnfields(res_)) return {};
    if (PQgetisnull(res_, row_, col) != 0) return {};
    return {PQgetvalue(res_, row_, col), static_cast<size_t>(PQgetlength(res_, row_, col))};
  }
  bool col_null(int col) const override {
    if (res_ == nullptr || row_ < 0 || col < 0 || col >= PQnfields(res_)) return true;
    return PQgetisnull(res_, row_, col) != 0;
  }

 private:
  void check_index(int idx) const {
    if (idx < 1 || static_cast<size_t>(idx) > values_.size())
      throw DbError{0, "parameter " + std::to_string(idx) + " out of range (" +
                           std::to_string(values_.size()) + " in: " + sql_.substr(0, 120) + ")"};
  }
  void set(int idx, std::string_view v, Oid type) {
    check_index(idx);
    const auto i = static_cast<size_t>(idx - 1);
    values_[i].assign(v);
    null_[i] = false;
    types_[i] = type;
  }
  void run();

  PgEngine& engine_;
  std::string name_;
  std::string sql_;
  std::vector<std::string> values_;
  std::vector<bool> null_;
  std::vector<Oid> types_;    ///< of the first run, which prepares the statement
  uint64_t prepared_in_ = 0;  ///< the connection (PgEngine::generation) it was prepared on
  PGresult* res_ = nullptr;
  bool ran_ = false;
  int row_ = -1;
  int rows_ = 0;
  int64_t changes_ = 0;
};

class PgEngine final : public Engine {
 public:
  PgEngine(PGconn* conn, std::string url, std::string schema)
      : conn_(conn), url_(std::move(url)), schema_(std::move(schema)) {}
  ~PgEngine() override {
    stmts_.clear();
    PQfinish(conn_);
  }
  PgEngine(const PgEngine&) = delete;
  PgEngine& operator=(const PgEngine&) = delete;

  // Session settings and the schema, on every new connection.
  void set_up_session() {
    PQsetNoticeProcessor(
        conn_, [](void*, const char*) {}, nullptr);  // "already exists, skipping"
    // Concurrent CREATE SCHEMA IF NOT EXISTS of replicas starting together can still collide on
    // the catalogue's unique index: an advisory lock (transaction-scoped) orders them.
    run_simple("BEGIN; SELECT pg_advisory_xact_lock(hashtext('ecomd.schema." + schema_ +
               "')); CREATE SCHEMA IF NOT EXISTS \"" + schema_ + "\"; COMMIT");
    // lock_timeout: a row or table lock held longer than this fails as busy (503, retried)
    // instead of stalling the caller, like SQLite's busy timeout.
    run_simple("SET search_path TO \"" + schema_ +
               "\"; SET lock_timeout = '5s'; SET client_encoding = 'UTF8'");
    ++generation_;
  }

  Cursor& prepare(std::string_view sql) override {
    auto it = stmts_.find(sql);
    if (it != stmts_.end()) return *it->second;
    int params = 0;
    std::string translated = to_postgres(sql, &params);
    auto& c = stmts_[std::string(sql)];
    c = std::make_unique<PgCursor>(*this, "s" + std::to_string(++named_), std::move(translated),
                                   params);
    return *c;
  }

  void exec(std::string_view sql) override { run_simple(to_postgres(sql)); }

  void begin() override {
    ensure_connected();
    run_simple("BEGIN");
  }
  void commit() override {
    // An error inside the transaction that nobody undid (a body caught its DbError) aborted it:
    // PostgreSQL would answer COMMIT with a ROLLBACK, so the caller must not think it committed.
    if (PQtransactionStatus(conn_) == PQTRANS_INERROR) {
      rollback();
      throw DbError{0, "the transaction was aborted by an earlier error"};
    }
    PGresult* r = PQexec(conn_, "COMMIT");
    check(r);
    const bool rolled_back = std::string_view(PQcmdStatus(r)) == "ROLLBACK";
    PQclear(r);
    if (rolled_back) throw DbError{0, "the transaction was rolled back by the server"};
  }
  void rollback() noexcept override {
    if (PQstatus(conn_) != CONNECTION_OK) return;
    if (PQtransactionStatus(conn_) == PQTRANS_IDLE) return;
    PQclear(PQexec(conn_, "ROLLBACK"));
  }
  void savepoint() override { run_simple("SAVEPOINT unit"); }
  void release_savepoint() override { run_simple("RELEASE SAVEPOINT unit"); }
  void undo_savepoint() override {
    run_simple("ROLLBACK TO SAVEPOINT unit; RELEASE SAVEPOINT unit");
  }
  bool in_transaction() const noexcept override {
    if (PQstatus(conn_) != CONNECTION_OK) return false;
    const auto st = PQtransactionStatus(conn_);
    return st == PQTRANS_INTRANS || st == PQTRANS_INERROR || st == PQTRANS_ACTIVE;
  }
  DbFault last_fault() const noexcept override {
    return PQstatus(conn_) != CONNECTION_OK ? DbFault::kUnavailable : last_fault_;
  }
  void end_reads() noexcept override {}  // results arrive whole: no snapshot stays open

  void ensure_connected() override {
    if (PQstatus(conn_) == CONNECTION_OK) return;
    PQreset(conn_);
    if (PQstatus(conn_) != CONNECTION_OK) {
      last_fault_ = DbFault::kUnavailable;
      throw DbError{
          0,
          "cannot reach PostgreSQL at " + redact_url(url_) + ": " + trimmed(PQerrorMessage(conn_)),
          DbFault::kUnavailable};
    }
    log::info("db", "reconnected to PostgreSQL at {} (schema {})", redact_url(url_), schema_);
    set_up_session();
  }

  int64_t sequence_high(std::string_view table, std::string_view column) override {
    // pg_sequences.last_value is NULL until the sequence hands out its first value.
    Cursor& c = prepare(
        "SELECT coalesce((SELECT last_value FROM pg_sequences WHERE schemaname || '.' || "
        "sequencename = pg_get_serial_sequence(?, ?)), 0)");
    c.reset();
    c.bind_text(1, table);
    c.bind_text(2, column);
    return c.step() ? c.col_int(0) : 0;
  }

  void lock_migrations() override {
    run_simple("SELECT pg_advisory_xact_lock(hashtext('ecomd.migrate." + schema_ + "'))");
  }
  void probe_write() override {
    run_simple(
        "CREATE TABLE IF NOT EXISTS store_probe(b BYTEA);"
        "INSERT INTO store_probe VALUES(decode(repeat('00', 8192), 'hex'));"
        "DELETE FROM store_probe;");
  }

  PGconn* conn() const noexcept { return conn_; }
  uint64_t generation() const noexcept { return generation_; }

  // Throws the failure `r` reports (r may be null: out of memory or a lost connection).
  void check(PGresult* r) {
    const auto st = r != nullptr ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) return;
    std::string state;
    std::string message;
    if (r != nullptr) {
      const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      state = s != nullptr ? s : "";
      message = trimmed(PQresultErrorMessage(r));
    }
    if (message.empty()) message = trimmed(PQerrorMessage(conn_));
    PQclear(r);
    DbFault fault = fault_of(state);
    if (PQstatus(conn_) != CONNECTION_OK) fault = DbFault::kUnavailable;
    last_fault_ = fault;
    throw DbError{0, state.empty() ? message : message + " (SQLSTATE " + state + ")", fault};
  }

 private:
  void run_simple(const std::string& sql) { PQclear(checked(PQexec(conn_, sql.c_str()))); }
  PGresult* checked(PGresult* r) {
    check(r);
    return r;
  }

  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept {
      return std::hash<std::string_view>{}(s);
    }
  };
  PGconn* conn_;
  std::string url_;
  std::string schema_;
  uint64_t generation_ = 0;
  uint64_t named_ = 0;
  DbFault last_fault_ = DbFault::kError;
  std::unordered_map<std::string, std::unique_ptr<PgCursor>, Hash, std::equal_to<>> stmts_;
};

void PgCursor::run() {
  PGconn* conn = engine_.conn();
  const int n = static_cast<int>(values_.size());
  if (prepared_in_ != engine_.generation()) {
    try {
      engine_.check(PQprepare(conn, name_.c_str(), sql_.c_str(), n, types_.data()));
    } catch (DbError& e) {
      constexpr size_t kShown = 120;
      e.message += " (in: " + sql_.substr(0, kShown) + (sql_.size() > kShown ? "...)" : ")");
      throw;
    }
    prepared_in_ = engine_.generation();
  }
  std::vector<const char*> values(values_.size());
  for (size_t i = 0; i < values_.size(); ++i) values[i] = null_[i] ? nullptr : values_[i].c_str();
  PGresult* r = PQexecPrepared(conn, name_.c_str(), n, values.data(), nullptr, nullptr, 0);
  engine_.check(r);
  res_ = r;
  ran_ = true;
  row_ = -1;
  rows_ = PQresultStatus(r) == PGRES_TUPLES_OK ? PQntuples(r) : 0;
  const char* tuples = PQcmdTuples(r);
  changes_ = (tuples != nullptr && *tuples != '\0') ? std::strtoll(tuples, nullptr, 10) : 0;
}

bool PgCursor::step() {
  if (!ran_) run();
  if (row_ + 1 >= rows_) return false;
  ++row_;
  return true;
}

int64_t PgCursor::exec() {
  if (!ran_) run();
  return changes_;
}

}  // namespace

Result<std::unique_ptr<Engine>> open_postgres(const std::string& url, const Options& options) {
  if (!plain_identifier(options.schema))
    return Error{ErrorCode::kConfigInvalid,
                 "schema \"" + options.schema +
                     "\" must be a plain identifier (a-z, 0-9, _; not starting with a digit)",
                 "store_schema", false};
  // The URL's own settings win over these defaults (later keywords override earlier ones, and
  // the URL is expanded last). The password: in the URL, PGPASSWORD or PGPASSFILE (libpq's own).
  const char* keys[] = {"connect_timeout", "application_name", "password", "dbname", nullptr};
  const char* values[] = {"5", "ecomd",
                          options.password.empty() ? nullptr : options.password.c_str(),
                          url.c_str(), nullptr};
  PGconn* conn = PQconnectdbParams(keys, values, 1);
  if (conn == nullptr) return Error{ErrorCode::kStoreUnavailable, "out of memory", "", true};
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string msg = trimmed(PQerrorMessage(conn));
    PQfinish(conn);
    return Error{ErrorCode::kStoreUnavailable,
                 "cannot connect to PostgreSQL at " + redact_url(url) + ": " + msg, "", true};
  }
  auto engine = std::make_unique<PgEngine>(conn, url, options.schema);
  try {
    engine->set_up_session();
  } catch (const DbError& e) {
    return classify(e);
  }
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace ecom::db
