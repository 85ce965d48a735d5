#pragma once
// What the parts of the notification store share: the projection's rows (orders, feed entries,
// notifications), how they are read and written, and their JSON. Internal to src/notification.

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <array>
#include <cctype>

#include "ecom/contract/events.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/json.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/outbox.hpp"
#include "store.hpp"

namespace ecom::notification::rows {

using Writer = json::Writer;

constexpr std::string_view kConsumer{"notification"};

// Forward-only status order, the contract's rule (terminal states never move); -1 for a stored
// text that is no status.
inline int rank(std::string_view status) {
  auto s = contract::parse_order_status(status);
  return s ? contract::rank(*s) : -1;
}

// The same rank in SQL, generated from the contract so the two can never disagree.
inline std::string rank_sql(std::string_view column) {
  std::string sql = "(CASE " + std::string(column);
  for (auto s : contract::kAllStatuses)
    sql += fmt::format(" WHEN '{}' THEN {}", contract::name(s), contract::rank(s));
  return sql + " ELSE -1 END)";
}

// core/json's writers, under the names this store has always used.
using json::key;
using json::str;
inline void field(Writer& w, std::string_view k, std::string_view v) {
  json::write_string(w, k, v);
}
template <typename F>
std::string json_object(F&& fill) {
  return json::object(std::forward<F>(fill));
}

// The event's own time, or now when it has none.
inline int64_t event_time(const Envelope& e) { return parse_rfc3339_ms(e.time).value_or(now_ms()); }

// --- projection rows -------------------------------------------------------------------------

struct OrderRow {
  std::string id;
  std::optional<std::string> customer_id;  // unset until OrderCreated was seen
  std::string currency;
  std::optional<int64_t> total_amount;  // unset until the catalogue priced it (STOCK_RESERVED)
  std::string status;
  std::string reason;
  int64_t updated_at = 0;
};

constexpr std::string_view kOrderColumns =
    "id, customer_id, currency, total_amount, status, reason, updated_at";

inline OrderRow read_order(db::Statement& s) {
  OrderRow o;
  o.id = s.col_text(0);
  if (!s.col_null(1)) o.customer_id = s.col_text(1);
  o.currency = s.col_text(2);
  if (!s.col_null(3)) o.total_amount = s.col_int(3);
  o.status = s.col_text(4);
  o.reason = s.col_text(5);
  o.updated_at = s.col_int(6);
  return o;
}

// The column list is spelled out (not formatted from kOrderColumns) so that the statement cache
// is hit without building the SQL text on every call.
// `lock`: in a write that depends on the row (replicas share a PostgreSQL store; see src/db).
inline std::optional<OrderRow> load_order(db::Tx& tx, std::string_view id, bool lock = false) {
  static constexpr std::string_view kSelect =
      "SELECT id, customer_id, currency, total_amount, status, reason, updated_at FROM orders "
      "WHERE id = ?";
  static constexpr std::string_view kLocked =
      "SELECT id, customer_id, currency, total_amount, status, reason, updated_at FROM orders "
      "WHERE id = ? FOR UPDATE";
  auto s = tx.stmt(lock ? kLocked : kSelect);
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return read_order(s);
}

// Status fields shared by `status` events and the summaries in snapshots.
inline void write_order_fields(Writer& w, const OrderRow& o) {
  field(w, "orderId", o.id);
  field(w, "status", o.status);
  if (!o.reason.empty()) field(w, "reason", o.reason);
  if (o.customer_id) {
    field(w, "customerId", *o.customer_id);
    if (o.total_amount) {
      key(w, "totalAmount");
      w.Int64(*o.total_amount);
    }
    field(w, "currency", o.currency);
  }
}

inline std::string status_payload(const OrderRow& o, int64_t at) {
  return json_object([&](Writer& w) {
    write_order_fields(w, o);
    field(w, "at", format_rfc3339(at));
  });
}

// A feed row to be written; rows of one event go in one INSERT, in order (seq order).
struct FeedEntry {
  std::string_view order_id;  // empty: NULL
  std::string_view kind;
  std::string payload;
  int64_t at = 0;
};

inline void bind_feed(db::Statement& s, int first, const FeedEntry& e) {
  if (e.order_id.empty())
    s.bind_null(first);
  else
    s.bind(first, e.order_id);
  s.bind(first + 1, e.kind).bind(first + 2, e.payload).bind(first + 3, e.at);
}

inline void append_feed(db::Tx& tx, const FeedEntry& e) {
  auto s = tx.stmt("INSERT INTO feed (order_id, kind, payload, at) VALUES (?, ?, ?, ?)");
  bind_feed(s, 1, e);
  s.exec();
}

// A status row and the notification it created: one statement, two rows, seq in this order.
inline void append_feed(db::Tx& tx, const FeedEntry& a, const FeedEntry& b) {
  auto s =
      tx.stmt("INSERT INTO feed (order_id, kind, payload, at) VALUES (?, ?, ?, ?), (?, ?, ?, ?)");
  bind_feed(s, 1, a);
  bind_feed(s, 5, b);
  s.exec();
}

inline void insert_history(db::Tx& tx, std::string_view order_id, std::string_view status,
                           std::string_view reason, int64_t at) {
  auto s = tx.stmt(
      "INSERT INTO order_history (order_id, status, reason, at) VALUES (?, ?, ?, ?) "
      "ON CONFLICT DO NOTHING");
  s.bind(1, order_id).bind(2, status).bind(4, at);
  if (reason.empty())
    s.bind_null(3);
  else
    s.bind(3, reason);
  s.exec();
}

constexpr std::string_view kNotificationColumns =
    "id, order_id, customer_id, status_key, channel, subject, body, status, attempts, created_at, "
    "sent_at, last_error";

inline void write_notification(Writer& w, db::Statement& s) {
  field(w, "id", s.col_view(0));
  field(w, "orderId", s.col_view(1));
  field(w, "customerId", s.col_view(2));
  field(w, "orderStatus", s.col_view(3));
  field(w, "channel", s.col_view(4));
  field(w, "subject", s.col_view(5));
  field(w, "body", s.col_view(6));
  field(w, "status", s.col_view(7));
  key(w, "attempts");
  w.Int64(s.col_int(8));
  field(w, "createdAt", format_rfc3339(s.col_int(9)));
  if (!s.col_null(10)) field(w, "sentAt", format_rfc3339(s.col_int(10)));
  if (!s.col_null(11)) field(w, "lastError", s.col_view(11));
}

}  // namespace ecom::notification::rows
