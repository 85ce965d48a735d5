#include "order_store.hpp"

#include <fmt/format.h>

#include <array>

#include "ecom/core/topics.hpp"
#include "ecom/db/outbox.hpp"

namespace ecom::order::store {
namespace {

using contract::OrderStatus;

constexpr std::array<std::string_view, 6> kMigrations = {
    R"(CREATE TABLE orders (
         id TEXT PRIMARY KEY,
         customer_id TEXT NOT NULL,
         currency TEXT NOT NULL,
         status TEXT NOT NULL,
         reason TEXT,
         total_amount INTEGER NOT NULL,
         payment_token TEXT,
         items TEXT NOT NULL,
         correlation_id TEXT NOT NULL,
         cancel_requested_at INTEGER,
         created_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL);
       CREATE INDEX orders_by_customer ON orders(customer_id, created_at DESC);
       CREATE INDEX orders_by_time ON orders(created_at DESC);)",
    R"(CREATE TABLE order_history (
         order_id TEXT NOT NULL,
         seq INTEGER NOT NULL,
         status TEXT NOT NULL,
         reason TEXT,
         at INTEGER NOT NULL,
         PRIMARY KEY (order_id, seq)) WITHOUT ROWID;)",
    R"(CREATE TABLE idempotency_keys (
         key TEXT PRIMARY KEY,
         request TEXT NOT NULL,
         order_id TEXT NOT NULL,
         status_code INTEGER NOT NULL,
         created_at INTEGER NOT NULL);)",
    R"(CREATE INDEX idempotency_by_time ON idempotency_keys(created_at);)",
    // Prices come from the catalogue (the inventory): an order is priced when its stock is
    // reserved. Orders stored before this version were priced by the client: keep their totals.
    R"(ALTER TABLE orders ADD COLUMN priced_at INTEGER;
       UPDATE orders SET priced_at = created_at;)",
    // GET /api/orders pages by (created_at, id) and filters by customer or status: indexes in
    // that order let a page start at its cursor and stop after `limit` rows instead of sorting.
    R"(DROP INDEX orders_by_customer;
       DROP INDEX orders_by_time;
       CREATE INDEX orders_by_time ON orders(created_at, id);
       CREATE INDEX orders_by_customer ON orders(customer_id, created_at, id);
       CREATE INDEX orders_by_status ON orders(status, created_at, id);)",
};

// The columns read_order() reads, in its order.
constexpr std::string_view kOrderColumns =
    "id, customer_id, currency, status, reason, total_amount, items, correlation_id, created_at, "
    "updated_at, cancel_requested_at, priced_at";

OrderView read_order(const db::Statement& s) {
  OrderView o;
  o.id = s.col_text(0);
  o.customer_id = s.col_text(1);
  o.currency = s.col_text(2);
  o.status = s.col_text(3);
  if (!s.col_null(4)) o.reason = s.col_text(4);
  // Absent until the catalogue priced the order (its stock reserved): never a client's number.
  if (!s.col_null(11)) o.total_amount = s.col_int(5);
  o.items_json = s.col_text(6);
  o.correlation_id = s.col_text(7);
  o.created_at_ms = s.col_int(8);
  o.updated_at_ms = s.col_int(9);
  o.cancellation_requested = !s.col_null(10);
  return o;
}

Error not_found(std::string_view id) {
  return Error{ErrorCode::kNotFound, fmt::format("order \"{}\" does not exist", id), "id", false};
}

}  // namespace

bool OrderView::terminal() const {
  auto s = contract::parse_order_status(status);
  return s && contract::is_terminal(*s);
}

Status migrate(db::Database& db) { return db.migrate("order", kMigrations); }

Result<Created> insert(db::Tx& tx, const NewOrderRow& row, int64_t now) {
  if (!row.key.empty()) {
    auto s = tx.stmt(
        "SELECT k.request, k.order_id, o.status, o.correlation_id FROM idempotency_keys k "
        "JOIN orders o ON o.id = k.order_id WHERE k.key = ?");
    s.bind(1, row.key);
    if (s.step()) {
      if (s.col_view(0) != row.canonical)
        return Error{ErrorCode::kIdempotencyConflict,
                     "Idempotency-Key was already used with a different request body",
                     "Idempotency-Key", false};
      return Created{s.col_text(1), s.col_text(2), s.col_text(3), true};
    }
  }
  const NewOrder& order = row.order;
  const std::string& id = row.event.subject;
  const std::string_view pending = contract::name(OrderStatus::kPending);
  tx.stmt(
        "INSERT INTO orders (id, customer_id, currency, status, total_amount, payment_token, "
        "items, correlation_id, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)")
      .bind_all(id, order.customer_id, order.currency, pending, int64_t{0}, order.payment_token,
                row.items, row.event.correlation_id, now, now)
      .exec();
  tx.stmt("INSERT INTO order_history (order_id, seq, status, at) VALUES (?, 1, ?, ?)")
      .bind_all(id, pending, now)
      .exec();
  if (!row.key.empty()) {
    tx.stmt(
          "INSERT INTO idempotency_keys (key, request, order_id, status_code, created_at) "
          "VALUES (?,?,?,202,?)")
        .bind_all(row.key, row.canonical, id, now)
        .exec();
  }
  db::outbox_add(tx, topics::kOrdersCreated, row.event);
  return Created{id, std::string(pending), row.event.correlation_id, false};
}

Result<OrderView> find(db::Tx& tx, std::string_view id) {
  static const std::string sql = fmt::format("SELECT {} FROM orders WHERE id = ?", kOrderColumns);
  auto s = tx.stmt(sql);
  s.bind(1, id);
  if (!s.step()) return not_found(id);
  OrderView o = read_order(s);
  auto h = tx.stmt("SELECT status, reason, at FROM order_history WHERE order_id = ? ORDER BY seq");
  h.bind(1, id);
  while (h.step()) {
    HistoryEntry e{h.col_text(0), std::nullopt, h.col_int(2)};
    if (!h.col_null(1)) e.reason = h.col_text(1);
    o.history.push_back(std::move(e));
  }
  return o;
}

OrderPage list(db::Tx& tx, const ListQuery& q) {
  // One statement text per combination of filters (and status count), so each is prepared once
  // and then served from the statement cache.
  std::string sql = fmt::format("SELECT {} FROM orders WHERE 1 = 1", kOrderColumns);
  if (q.customer_id) sql += " AND customer_id = ?";
  if (!q.statuses.empty()) {
    sql += " AND status IN (?";
    for (size_t i = 1; i < q.statuses.size(); ++i) sql += ", ?";
    sql += ")";
  }
  if (q.from_ms) sql += " AND created_at >= ?";
  if (q.to_ms) sql += " AND created_at < ?";
  if (q.after) sql += " AND (created_at, id) < (?, ?)";
  sql += " ORDER BY created_at DESC, id DESC LIMIT ?";

  auto s = tx.stmt(sql);
  int idx = 1;
  if (q.customer_id) s.bind(idx++, *q.customer_id);
  for (auto st : q.statuses) s.bind(idx++, contract::name(st));
  if (q.from_ms) s.bind(idx++, *q.from_ms);
  if (q.to_ms) s.bind(idx++, *q.to_ms);
  if (q.after) {
    s.bind(idx++, q.after->created_at_ms);
    s.bind(idx++, q.after->id);
  }
  s.bind(idx, q.limit + 1);  // one more than asked: tells whether another page follows
  OrderPage page;
  while (s.step()) page.orders.push_back(read_order(s));
  if (page.orders.size() > static_cast<size_t>(q.limit)) {
    page.orders.resize(static_cast<size_t>(q.limit));
    page.next = PageKey{page.orders.back().created_at_ms, page.orders.back().id};
  }
  return page;
}

Result<CancelOutcome> request_cancel(db::Tx& tx, std::string_view source, std::string_view id,
                                     int64_t now) {
  auto s = tx.stmt(
      "SELECT status, customer_id, cancel_requested_at, correlation_id FROM orders WHERE id = ? "
      "FOR UPDATE");
  s.bind(1, id);
  if (!s.step()) return not_found(id);
  std::string status = s.col_text(0);
  auto parsed = contract::parse_order_status(status);
  if (parsed && contract::is_terminal(*parsed))
    return Error{ErrorCode::kConflict,
                 fmt::format("order is {} and can no longer be cancelled", status), "status",
                 false};
  if (!s.col_null(2)) return CancelOutcome{status, false};  // already requested: same answer
  std::string customer = s.col_text(1);
  std::string correlation = s.col_text(3);
  auto event = contract::make(
      source, contract::OrderCancellationRequested{std::string(id), std::move(customer)});
  event.correlation_id = std::move(correlation);  // the cancellation belongs to the order's flow
  tx.stmt("UPDATE orders SET cancel_requested_at = ?, updated_at = ? WHERE id = ?")
      .bind_all(now, now, id)
      .exec();
  db::outbox_add(tx, topics::kOrdersCancellations, event);
  return CancelOutcome{std::move(status), true};
}

bool apply_status(db::Tx& tx, const contract::OrderStatusChanged& ev, int64_t now) {
  // Locked: a cancel on another replica must see this transition, or the other way round.
  auto s = tx.stmt("SELECT status FROM orders WHERE id = ? FOR UPDATE");
  s.bind(1, ev.order_id);
  if (!s.step()) return false;
  auto current = contract::parse_order_status(s.col_view(0));
  // Never move a terminal order, never go backwards (redeliveries, reordering).
  if (!current || contract::rank(ev.status) <= contract::rank(*current)) return false;
  std::optional<std::string> reason;
  if (!ev.reason.empty()) reason = ev.reason;
  tx.stmt("UPDATE orders SET status = ?, reason = ?, updated_at = ? WHERE id = ?")
      .bind_all(contract::name(ev.status), reason, now, ev.order_id)
      .exec();
  if (ev.pricing) {
    // STOCK_RESERVED carries the catalogue's pricing: the total and the lines as sold.
    tx.stmt("UPDATE orders SET total_amount = ?, items = ?, priced_at = ? WHERE id = ?")
        .bind_all(ev.pricing->total_amount, contract::encode_lines(ev.pricing->items), now,
                  ev.order_id)
        .exec();
  }
  tx.stmt(
        "INSERT INTO order_history (order_id, seq, status, reason, at) "
        "SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM order_history WHERE order_id = ?")
      .bind_all(ev.order_id, contract::name(ev.status), reason, now, ev.order_id)
      .exec();
  return true;
}

}  // namespace ecom::order::store
