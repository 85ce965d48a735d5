#include "saga_store.hpp"

#include <algorithm>
#include <array>

namespace ecom::saga::store {
namespace {

constexpr std::array<std::string_view, 5> kMigrations{
    R"sql(CREATE TABLE sagas(
  order_id TEXT PRIMARY KEY,
  state TEXT NOT NULL,
  status TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  customer_id TEXT NOT NULL DEFAULT '',
  currency TEXT NOT NULL DEFAULT '',
  amount INTEGER NOT NULL DEFAULT 0,
  payment_token TEXT,
  items_json TEXT NOT NULL DEFAULT '[]',
  correlation_id TEXT NOT NULL DEFAULT '',
  traceparent TEXT NOT NULL DEFAULT '',
  last_event_id TEXT NOT NULL DEFAULT '',
  stock_reserved INTEGER NOT NULL DEFAULT 0,
  payment_authorized INTEGER NOT NULL DEFAULT 0,
  pending INTEGER NOT NULL DEFAULT 0,
  deadline_ms INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL))sql",
    // Partial: the timer only ever looks for rows that have a deadline.
    "CREATE INDEX sagas_deadline ON sagas(deadline_ms) WHERE deadline_ms > 0",
    R"sql(CREATE TABLE saga_history(
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  order_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  input TEXT NOT NULL,
  event_id TEXT NOT NULL DEFAULT '',
  from_state TEXT NOT NULL,
  to_state TEXT NOT NULL,
  note TEXT NOT NULL))sql",
    "CREATE INDEX saga_history_order ON saga_history(order_id, seq)",
    // The client's quoted total, passed to the inventory's price check (NULL: none quoted).
    "ALTER TABLE sagas ADD COLUMN expected_total INTEGER",
};

constexpr std::string_view kColumns =
    "order_id, state, status, reason, customer_id, currency, amount, payment_token, items_json, "
    "correlation_id, traceparent, last_event_id, stock_reserved, payment_authorized, pending, "
    "deadline_ms, attempts, created_at, updated_at, expected_total";

// Insert or replace the saga's row (every column but the key from the new values).
std::string upsert_sql() {
  std::string sql = "INSERT INTO sagas(" + std::string(kColumns) +
                    ") VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(order_id) DO "
                    "UPDATE SET ";
  std::string_view rest = kColumns.substr(kColumns.find(',') + 1);
  bool first = true;
  while (!rest.empty()) {
    const auto comma = rest.find(',');
    std::string_view col = rest.substr(0, comma);
    while (!col.empty() && col.front() == ' ') col.remove_prefix(1);
    if (!first) sql += ", ";
    first = false;
    sql.append(col).append("=excluded.").append(col);
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  }
  return sql;
}

SagaRecord from_row(const db::Statement& s) {
  SagaRecord r;
  r.order_id = s.col_text(0);
  if (!parse_state(s.col_view(1), r.state))
    throw db::DbError{0, "saga " + r.order_id + " has unknown state " + s.col_text(1)};
  auto status = contract::parse_order_status(s.col_view(2));
  if (!status) throw db::DbError{0, "saga " + r.order_id + " has unknown status " + s.col_text(2)};
  r.status = *status;
  r.reason = s.col_text(3);
  r.customer_id = s.col_text(4);
  r.currency = s.col_text(5);
  r.amount = s.col_int(6);
  if (!s.col_null(7)) r.payment_token = s.col_text(7);
  auto items = items_from_json(s.col_view(8));
  if (!items) throw db::DbError{0, "saga " + r.order_id + ": " + items.error().message};
  r.items = std::move(items.value());
  r.correlation_id = s.col_text(9);
  r.traceparent = s.col_text(10);
  r.last_event_id = s.col_text(11);
  r.stock_reserved = s.col_int(12) != 0;
  r.payment_authorized = s.col_int(13) != 0;
  r.pending = static_cast<uint32_t>(s.col_int(14));
  r.deadline_ms = s.col_int(15);
  r.attempts = static_cast<int>(s.col_int(16));
  r.created_at_ms = s.col_int(17);
  r.updated_at_ms = s.col_int(18);
  if (!s.col_null(19)) r.expected_total = s.col_int(19);
  return r;
}

std::string select_sql(std::string_view tail) {
  return "SELECT " + std::string(kColumns) + " FROM sagas " + std::string(tail);
}

}  // namespace

Status migrate(db::Database& db) {
  return db.migrate("saga", std::span<const std::string_view>(kMigrations));
}

std::optional<SagaRecord> load(db::Tx& tx, std::string_view order_id, Lock lock) {
  static const std::string kPlain = select_sql("WHERE order_id = ?");
  static const std::string kWait = select_sql("WHERE order_id = ? FOR UPDATE");
  static const std::string kSkip = select_sql("WHERE order_id = ? FOR UPDATE SKIP LOCKED");
  auto s = tx.stmt(lock == Lock::kNone ? kPlain : lock == Lock::kWait ? kWait : kSkip);
  s.bind(1, order_id);
  if (!s.step()) return std::nullopt;
  return from_row(s);
}

void save(db::Tx& tx, const SagaRecord& r) {
  static const std::string sql = upsert_sql();
  auto s = tx.stmt(sql);
  s.bind_all(r.order_id, state_name(r.state), contract::name(r.status), r.reason, r.customer_id,
             r.currency, r.amount);
  if (r.payment_token) {
    s.bind(8, *r.payment_token);
  } else {
    s.bind_null(8);
  }
  s.bind(9, items_to_json(r.items))
      .bind(10, r.correlation_id)
      .bind(11, r.traceparent)
      .bind(12, r.last_event_id)
      .bind(13, r.stock_reserved ? 1 : 0)
      .bind(14, r.payment_authorized ? 1 : 0)
      .bind(15, static_cast<int64_t>(r.pending))
      .bind(16, r.deadline_ms)
      .bind(17, r.attempts)
      .bind(18, r.created_at_ms)
      .bind(19, r.updated_at_ms)
      .bind(20, r.expected_total);
  s.exec();
}

void add_history(db::Tx& tx, std::string_view order_id, const HistoryRow& h) {
  tx.stmt(
        "INSERT INTO saga_history(order_id, at, input, event_id, from_state, to_state, note) "
        "VALUES(?,?,?,?,?,?,?)")
      .bind_all(order_id, h.at_ms, h.input, h.event_id, h.from_state, h.to_state, h.note)
      .exec();
}

std::vector<HistoryRow> history(db::Tx& tx, std::string_view order_id, int limit) {
  // The latest rows: a saga that keeps re-sending is most interesting at its end.
  auto s = tx.stmt(
      "SELECT at, input, event_id, from_state, to_state, note FROM saga_history "
      "WHERE order_id = ? ORDER BY seq DESC LIMIT ?");
  s.bind_all(order_id, limit);
  std::vector<HistoryRow> out;
  while (s.step()) {
    out.push_back(
        {s.col_int(0), s.col_text(1), s.col_text(2), s.col_text(3), s.col_text(4), s.col_text(5)});
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::vector<std::string> due(db::Tx& tx, int64_t now_ms, int limit) {
  auto s = tx.stmt(
      "SELECT order_id FROM sagas WHERE deadline_ms > 0 AND deadline_ms <= ? "
      "ORDER BY deadline_ms LIMIT ?");
  s.bind_all(now_ms, limit);
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.col_text(0));
  return out;
}

int64_t count_with_deadline(db::Tx& tx) {
  auto s = tx.stmt("SELECT COUNT(*) FROM sagas WHERE deadline_ms > 0");
  return s.step() ? s.col_int(0) : 0;
}

std::vector<std::pair<std::string, int64_t>> count_by_state(db::Tx& tx) {
  auto s = tx.stmt("SELECT state, COUNT(*) FROM sagas GROUP BY state ORDER BY state");
  std::vector<std::pair<std::string, int64_t>> out;
  while (s.step()) out.emplace_back(s.col_text(0), s.col_int(1));
  return out;
}

std::vector<SagaRecord> with_deadline(db::Tx& tx, int limit) {
  static const std::string sql = select_sql("WHERE deadline_ms > 0 ORDER BY deadline_ms LIMIT ?");
  auto s = tx.stmt(sql);
  s.bind(1, limit);
  std::vector<SagaRecord> out;
  while (s.step()) out.push_back(from_row(s));
  return out;
}

}  // namespace ecom::saga::store
