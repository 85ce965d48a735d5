#include "store.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <type_traits>
#include <variant>

#include "ecom/contract/events.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/outbox.hpp"
#include "store_rows.hpp"

// The projection: the schema, and apply(), which folds order and stock events into the orders,
// their history, the live feed and the notifications, in the event's own transaction.
namespace ecom::notification {
namespace {

using namespace rows;

constexpr std::array<std::string_view, 1> kMigrations = {
    R"(CREATE TABLE orders (
         id TEXT PRIMARY KEY,
         customer_id TEXT,
         currency TEXT,
         total_amount INTEGER,
         status TEXT NOT NULL,
         reason TEXT,
         created_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL);
       CREATE INDEX orders_by_status ON orders(status);
       CREATE INDEX orders_by_update ON orders(updated_at DESC);
       CREATE TABLE order_history (
         order_id TEXT NOT NULL,
         status TEXT NOT NULL,
         reason TEXT,
         at INTEGER NOT NULL,
         PRIMARY KEY (order_id, status)) WITHOUT ROWID;
       CREATE TABLE notifications (
         id TEXT PRIMARY KEY,
         customer_id TEXT NOT NULL,
         order_id TEXT NOT NULL,
         status_key TEXT NOT NULL,
         channel TEXT NOT NULL,
         subject TEXT NOT NULL,
         body TEXT NOT NULL,
         status TEXT NOT NULL CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
         attempts INTEGER NOT NULL DEFAULT 0,
         created_at INTEGER NOT NULL,
         sent_at INTEGER,
         last_error TEXT,
         next_attempt_at INTEGER,
         correlation_id TEXT,
         causation_id TEXT,
         traceparent TEXT,
         UNIQUE (order_id, status_key));
       CREATE INDEX notifications_by_customer ON notifications(customer_id, created_at DESC);
       CREATE INDEX notifications_due ON notifications(status, next_attempt_at);
       CREATE TABLE feed (
         seq INTEGER PRIMARY KEY AUTOINCREMENT,
         order_id TEXT,
         kind TEXT NOT NULL,
         payload TEXT NOT NULL,
         at INTEGER NOT NULL);
       CREATE INDEX feed_by_order ON feed(order_id, seq) WHERE order_id IS NOT NULL;)",
};

}  // namespace

Store::Store(db::Database& db, Templates templates, std::string channel)
    : db_(db), templates_(std::move(templates)), channel_(std::move(channel)) {}

Status Store::migrate() { return db_.migrate("notification", kMigrations); }

namespace {

// Everything apply() needs while inside its transaction.
struct Applier {
  db::Tx& tx;
  const Templates& templates;
  const std::string& channel;
  const Envelope& cause;
  Applied applied;

  void feed(FeedEntry e) {
    append_feed(tx, e);
    ++applied.feed_rows;
  }

  // At most one notification per order and status: the UNIQUE constraint makes a second attempt
  // (a redelivery under a new event id, or a second event for the same status) a no-op. Returns
  // the feed row of the notification it created, for the caller to write.
  std::optional<FeedEntry> notify(const OrderRow& o, std::string_view status,
                                  std::string_view reason, int64_t now) {
    auto template_key = template_key_for_status(status);
    if (!template_key || !o.customer_id) return std::nullopt;
    auto t = templates.find(*template_key);
    if (t == templates.end()) return std::nullopt;
    TemplateVars vars{o.id,
                      *o.customer_id,
                      std::string(status),
                      std::string(reason),
                      o.total_amount.value_or(0),
                      o.currency};
    Template text = render(t->second, vars);
    std::string id = new_uuid();
    auto s = tx.stmt(
        "INSERT INTO notifications (id, customer_id, order_id, status_key, channel, subject, "
        "body, status, attempts, created_at, next_attempt_at, correlation_id, causation_id, "
        "traceparent) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'PENDING', 0, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING");
    s.bind_all(id, *o.customer_id, o.id, status, channel, text.subject, text.body, now, now,
               cause.correlation_id, cause.id, cause.traceparent);
    if (s.exec() == 0) return std::nullopt;
    ++applied.notifications;
    // Built from the values just inserted (what write_notification() would read back).
    std::string payload = json_object([&](Writer& w) {
      field(w, "id", id);
      field(w, "orderId", o.id);
      field(w, "customerId", *o.customer_id);
      field(w, "orderStatus", status);
      field(w, "channel", channel);
      field(w, "subject", text.subject);
      field(w, "body", text.body);
      field(w, "status", "PENDING");
      key(w, "attempts");
      w.Int64(0);
      field(w, "createdAt", format_rfc3339(now));
    });
    return FeedEntry{o.id, feed_kind::kNotification, std::move(payload), now};
  }

  // The status row of `o` and, when one is created, its notification's row, in that order.
  void status_and_notify(const OrderRow& o, std::string_view status, std::string_view reason,
                         int64_t at, int64_t now) {
    FeedEntry row{o.id, feed_kind::kStatus, status_payload(o, at), at};
    auto n = notify(o, status, reason, now);
    if (!n) return feed(std::move(row));
    append_feed(tx, row, *n);
    applied.feed_rows += 2;
  }

  Result<Applied> order_created(const contract::OrderCreated& ev) {
    const std::string& order_id = ev.order_id;
    const std::string& customer = ev.customer_id;
    const std::string& currency = ev.currency;
    // No total here: the order is priced when its stock is reserved, and the STOCK_RESERVED
    // status carries it (status_changed).
    int64_t at = event_time(cause);
    int64_t now = now_ms();
    // The usual case, a new order, in one statement; a known order is read only when it exists.
    bool inserted = tx.stmt(
                          "INSERT INTO orders (id, customer_id, currency, status, created_at, "
                          "updated_at) "
                          "VALUES (?, ?, ?, 'PENDING', ?, ?) ON CONFLICT (id) DO NOTHING")
                        .bind_all(order_id, customer, currency, at, at)
                        .exec() == 1;
    if (inserted) {
      insert_history(tx, order_id, "PENDING", "", at);
      OrderRow o{order_id, customer, currency, std::nullopt, "PENDING", "", at};
      status_and_notify(o, "PENDING", "", at, now);
      return applied;
    }
    auto existing = load_order(tx, order_id, /*lock=*/true);
    if (!existing)
      return Error{ErrorCode::kInternal, "order row vanished inside its transaction", {}, true};
    if (existing->customer_id) return applied;  // a second OrderCreated for a known order
    // A status change overtook the OrderCreated (different topics): complete the order, keep its
    // later status, and send the notifications that waited for the customer.
    tx.stmt(
          "UPDATE orders SET customer_id = ?1, currency = ?2, "
          "created_at = CASE WHEN created_at <= ?3 THEN created_at ELSE ?3 END WHERE id = ?4")
        .bind_all(customer, currency, at, order_id)
        .exec();
    insert_history(tx, order_id, "PENDING", "", at);
    OrderRow o = *existing;
    o.customer_id = customer;
    o.currency = currency;
    auto h = tx.stmt("SELECT status, reason FROM order_history WHERE order_id = ?");
    h.bind(1, order_id);
    std::vector<std::pair<std::string, std::string>> history;
    while (h.step()) history.emplace_back(h.col_text(0), h.col_text(1));
    std::sort(history.begin(), history.end(),
              [](const auto& a, const auto& b) { return rank(a.first) < rank(b.first); });
    for (const auto& [status, reason] : history) {
      if (auto n = notify(o, status, reason, now)) feed(std::move(*n));
    }
    return applied;
  }

  Result<Applied> status_changed(const contract::OrderStatusChanged& ev) {
    const std::string& order_id = ev.order_id;
    const std::string status(contract::name(ev.status));
    const std::string& reason = ev.reason;
    const int new_rank = contract::rank(ev.status);
    int64_t at = parse_rfc3339_ms(ev.at).value_or(event_time(cause));
    // STOCK_RESERVED carries the catalogue total: the projection learns the price there.
    std::optional<int64_t> total;
    if (ev.pricing) total = ev.pricing->total_amount;
    // One statement for what was a read and then an insert or update: a new order is remembered
    // (a status before OrderCreated; its notification waits for the customer), a known one moves
    // only forward (terminal states never move: nothing ranks above them). No row comes back when
    // the status is not applied.
    static const std::string kUpsert =
        "INSERT INTO orders (id, status, reason, created_at, updated_at, total_amount) VALUES "
        "(?1, ?2, ?3, ?4, ?4, ?6) "
        "ON CONFLICT (id) DO UPDATE SET status = excluded.status, reason = excluded.reason, "
        "updated_at = excluded.updated_at, "
        "total_amount = COALESCE(excluded.total_amount, orders.total_amount) "
        "WHERE " +
        rank_sql("orders.status") + " < ?5 RETURNING customer_id, currency, total_amount";
    auto s = tx.stmt(kUpsert);
    s.bind_all(order_id, status, reason, at, new_rank, total);
    if (!s.step()) return applied;
    OrderRow o{order_id, std::nullopt, s.col_text(1), std::nullopt, status, reason, at};
    if (!s.col_null(2)) o.total_amount = s.col_int(2);
    if (!s.col_null(0)) o.customer_id = s.col_text(0);
    while (s.step()) {
    }
    insert_history(tx, order_id, status, reason, at);
    status_and_notify(o, status, reason, at, now_ms());
    return applied;
  }

  Result<Applied> inventory_updated(const contract::InventoryUpdated& ev) {
    // Encoded again so the payload is one line whatever the producer's formatting (SSE data).
    feed({{}, feed_kind::kInventory, ev.encode(), event_time(cause)});
    return applied;
  }

  template <typename Alert>
  Result<Applied> alert(const Alert& ev, std::string_view name) {
    std::string payload = json_object([&](Writer& w) {
      field(w, "alert", name);
      field(w, "sku", ev.sku);
      key(w, "available");
      w.Int64(ev.available);
      key(w, "threshold");
      w.Int64(ev.threshold);
    });
    feed({{}, feed_kind::kAlert, std::move(payload), event_time(cause)});
    return applied;
  }
};

}  // namespace

namespace {

// The events the projection reads, decoded before the transaction opens (bad data is never
// retried).
using Decoded =
    std::variant<contract::OrderCreated, contract::OrderStatusChanged, contract::InventoryUpdated,
                 contract::StockLevelLow, contract::StockDepleted, contract::StockLevelNormalized>;

template <typename E>
Result<std::optional<Decoded>> decode_as(const Envelope& e) {
  auto ev = E::decode(e.data);
  if (!ev) return ev.error();
  return std::optional<Decoded>(std::move(ev).value());
}

Result<std::optional<Decoded>> decode(const Envelope& e) {
  namespace c = contract;
  if (e.type == c::OrderCreated::kType) return decode_as<c::OrderCreated>(e);
  if (e.type == c::OrderStatusChanged::kType) return decode_as<c::OrderStatusChanged>(e);
  if (e.type == c::InventoryUpdated::kType) return decode_as<c::InventoryUpdated>(e);
  if (e.type == c::StockLevelLow::kType) return decode_as<c::StockLevelLow>(e);
  if (e.type == c::StockDepleted::kType) return decode_as<c::StockDepleted>(e);
  if (e.type == c::StockLevelNormalized::kType) return decode_as<c::StockLevelNormalized>(e);
  return std::optional<Decoded>();  // not ours to interpret
}

}  // namespace

Result<Applied> Store::apply(const Envelope& e, bool delivered_once) {
  auto decoded = decode(e);
  if (!decoded) return decoded.error();
  if (!decoded.value()) return Applied{};
  const Decoded& ev = *decoded.value();

  return db_.transaction([&](db::Tx& tx) -> Result<Applied> {
    if (!db::inbox_claim(tx, kConsumer, e.id, delivered_once)) return Applied{true, 0, 0};
    Applier a{tx, templates_, channel_, e, {}};
    return std::visit(
        [&](const auto& x) -> Result<Applied> {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, contract::OrderCreated>) return a.order_created(x);
          if constexpr (std::is_same_v<T, contract::OrderStatusChanged>) return a.status_changed(x);
          if constexpr (std::is_same_v<T, contract::InventoryUpdated>)
            return a.inventory_updated(x);
          if constexpr (std::is_same_v<T, contract::StockLevelLow>)
            return a.alert(x, "STOCK_LEVEL_LOW");
          if constexpr (std::is_same_v<T, contract::StockDepleted>)
            return a.alert(x, "STOCK_DEPLETED");
          if constexpr (std::is_same_v<T, contract::StockLevelNormalized>)
            return a.alert(x, "STOCK_LEVEL_NORMALIZED");
        },
        ev);
  });
}

}  // namespace ecom::notification
