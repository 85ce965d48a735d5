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

namespace ecom::notification {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr std::string_view kConsumer{"notification"};
constexpr int kRecentOrders = 20;

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

// Forward-only status order, the contract's rule (terminal states never move); -1 for a stored
// text that is no status.
int rank(std::string_view status) {
  auto s = contract::parse_order_status(status);
  return s ? contract::rank(*s) : -1;
}

// The same rank in SQL, generated from the contract so the two can never disagree.
std::string rank_sql(std::string_view column) {
  std::string sql = "(CASE " + std::string(column);
  for (auto s : contract::kAllStatuses)
    sql += fmt::format(" WHEN '{}' THEN {}", contract::name(s), contract::rank(s));
  return sql + " ELSE -1 END)";
}

void key(Writer& w, std::string_view k) {
  w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
}
void str(Writer& w, std::string_view v) {
  w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}
void field(Writer& w, std::string_view k, std::string_view v) {
  key(w, k);
  str(w, v);
}

template <typename F>
std::string json_object(F&& fill) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  fill(w);
  w.EndObject();
  return std::string(sb.GetString(), sb.GetSize());
}

// The event's own time, or now when it has none.
int64_t event_time(const Envelope& e) { return parse_rfc3339_ms(e.time).value_or(now_ms()); }

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

OrderRow read_order(db::Statement& s) {
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
std::optional<OrderRow> load_order(db::Tx& tx, std::string_view id) {
  auto s = tx.stmt(
      "SELECT id, customer_id, currency, total_amount, status, reason, updated_at FROM orders "
      "WHERE id = ?");
  s.bind(1, id);
  if (!s.step()) return std::nullopt;
  return read_order(s);
}

// Status fields shared by `status` events and the summaries in snapshots.
void write_order_fields(Writer& w, const OrderRow& o) {
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

std::string status_payload(const OrderRow& o, int64_t at) {
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

void bind_feed(db::Statement& s, int first, const FeedEntry& e) {
  if (e.order_id.empty())
    s.bind_null(first);
  else
    s.bind(first, e.order_id);
  s.bind(first + 1, e.kind).bind(first + 2, e.payload).bind(first + 3, e.at);
}

void append_feed(db::Tx& tx, const FeedEntry& e) {
  auto s = tx.stmt("INSERT INTO feed (order_id, kind, payload, at) VALUES (?, ?, ?, ?)");
  bind_feed(s, 1, e);
  s.exec();
}

// A status row and the notification it created: one statement, two rows, seq in this order.
void append_feed(db::Tx& tx, const FeedEntry& a, const FeedEntry& b) {
  auto s =
      tx.stmt("INSERT INTO feed (order_id, kind, payload, at) VALUES (?, ?, ?, ?), (?, ?, ?, ?)");
  bind_feed(s, 1, a);
  bind_feed(s, 5, b);
  s.exec();
}

void insert_history(db::Tx& tx, std::string_view order_id, std::string_view status,
                    std::string_view reason, int64_t at) {
  auto s = tx.stmt(
      "INSERT OR IGNORE INTO order_history (order_id, status, reason, at) VALUES (?, ?, ?, ?)");
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

void write_notification(Writer& w, db::Statement& s) {
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

}  // namespace

// --- wire formats ------------------------------------------------------------------------------

std::string sse_event(int64_t id, std::string_view event, std::string_view data_json) {
  return fmt::format("id: {}\nevent: {}\ndata: {}\n\n", id, event, data_json);
}

std::string ws_event(int64_t id, std::string_view event, std::string_view data_json) {
  return fmt::format(R"({{"id":{},"event":"{}","data":{}}})", id, event, data_json);
}

// --- Store ---------------------------------------------------------------------------------------

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
        "INSERT OR IGNORE INTO notifications (id, customer_id, order_id, status_key, channel, "
        "subject, "
        "body, status, attempts, created_at, next_attempt_at, correlation_id, causation_id, "
        "traceparent) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, 'PENDING', 0, ?, ?, ?, ?, ?)");
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
    // The order is priced when its stock is reserved: the status carries the total.
    std::optional<int64_t> amount;
    int64_t at = event_time(cause);
    int64_t now = now_ms();
    // The usual case, a new order, in one statement; a known order is read only when it exists.
    bool inserted = tx.stmt(
                          "INSERT INTO orders (id, customer_id, currency, total_amount, status, "
                          "created_at, updated_at) "
                          "VALUES (?, ?, ?, ?, 'PENDING', ?, ?) ON CONFLICT (id) DO NOTHING")
                        .bind_all(order_id, customer, currency, amount, at, at)
                        .exec() == 1;
    if (inserted) {
      insert_history(tx, order_id, "PENDING", "", at);
      OrderRow o{order_id, customer, currency, amount, "PENDING", "", at};
      status_and_notify(o, "PENDING", "", at, now);
      return applied;
    }
    auto existing = load_order(tx, order_id);
    if (!existing)
      return Error{ErrorCode::kInternal, "order row vanished inside its transaction", {}, true};
    if (existing->customer_id) return applied;  // a second OrderCreated for a known order
    // A status change overtook the OrderCreated (different topics): complete the order, keep its
    // later status, and send the notifications that waited for the customer.
    tx.stmt(
          "UPDATE orders SET customer_id = ?, currency = ?, total_amount = COALESCE(total_amount, "
          "?), created_at = MIN(created_at, ?) WHERE id = ?")
        .bind_all(customer, currency, amount, at, order_id)
        .exec();
    insert_history(tx, order_id, "PENDING", "", at);
    OrderRow o = *existing;
    o.customer_id = customer;
    o.currency = currency;
    if (!o.total_amount) o.total_amount = amount;
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

Result<Applied> Store::apply(const Envelope& e) {
  auto decoded = decode(e);
  if (!decoded) return decoded.error();
  if (!decoded.value()) return Applied{};
  const Decoded& ev = *decoded.value();

  return db_.transaction([&](db::Tx& tx) -> Result<Applied> {
    if (!db::inbox_claim(tx, kConsumer, e.id)) return Applied{true, 0, 0};
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

// --- feed reading ------------------------------------------------------------------------------

namespace {

// seq bounds of the feed: the last seq ever assigned and the oldest row still kept.
struct FeedBounds {
  int64_t last = 0;
  int64_t oldest = 1;
};

FeedBounds feed_bounds(db::Tx& tx) {
  FeedBounds b;
  auto s = tx.stmt("SELECT seq FROM sqlite_sequence WHERE name = 'feed'");
  if (s.step()) b.last = s.col_int(0);
  auto m = tx.stmt("SELECT MIN(seq) FROM feed");
  b.oldest = (m.step() && !m.col_null(0)) ? m.col_int(0) : b.last + 1;
  return b;
}

// A Last-Event-ID can be resumed from when nothing after it was pruned and it is not from the
// future (a wiped store, another server).
bool resumable(const FeedBounds& b, int64_t last_event_id) {
  return last_event_id >= b.oldest - 1 && last_event_id <= b.last;
}

FeedRow read_feed_row(db::Statement& s) {
  return FeedRow{s.col_int(0), s.col_text(1), s.col_text(2), s.col_text(3), s.col_int(4)};
}

std::string order_snapshot(db::Tx& tx, const OrderRow& o) {
  struct H {
    std::string status, reason;
    int64_t at;
  };
  std::vector<H> history;
  auto h = tx.stmt("SELECT status, reason, at FROM order_history WHERE order_id = ?");
  h.bind(1, o.id);
  while (h.step()) history.push_back({h.col_text(0), h.col_text(1), h.col_int(2)});
  std::sort(history.begin(), history.end(), [](const H& a, const H& b) {
    return rank(a.status) != rank(b.status) ? rank(a.status) < rank(b.status) : a.at < b.at;
  });
  return json_object([&](Writer& w) {
    write_order_fields(w, o);
    field(w, "updatedAt", format_rfc3339(o.updated_at));
    key(w, "history");
    w.StartArray();
    for (const auto& e : history) {
      w.StartObject();
      field(w, "status", e.status);
      if (!e.reason.empty()) field(w, "reason", e.reason);
      field(w, "at", format_rfc3339(e.at));
      w.EndObject();
    }
    w.EndArray();
    key(w, "notifications");
    w.StartArray();
    auto n = tx.stmt(
        fmt::format("SELECT {} FROM notifications WHERE order_id = ? ORDER BY created_at, rowid",
                    kNotificationColumns));
    n.bind(1, o.id);
    while (n.step()) {
      w.StartObject();
      write_notification(w, n);
      w.EndObject();
    }
    w.EndArray();
  });
}

void write_counts(Writer& w, db::Tx& tx) {
  std::array<int64_t, std::size(contract::kAllStatuses)> counts{};
  auto s = tx.stmt("SELECT status, COUNT(*) FROM orders GROUP BY status");
  while (s.step()) {
    if (auto st = contract::parse_order_status(s.col_view(0)))
      counts[static_cast<size_t>(*st)] = s.col_int(1);
  }
  key(w, "orders");
  w.StartObject();
  for (auto st : contract::kAllStatuses) {
    key(w, contract::name(st));
    w.Int64(counts[static_cast<size_t>(st)]);
  }
  w.EndObject();
}

std::string summary_snapshot(db::Tx& tx) {
  return json_object([&](Writer& w) {
    write_counts(w, tx);
    key(w, "recent");
    w.StartArray();
    auto s = tx.stmt(fmt::format(
        "SELECT {} FROM orders ORDER BY updated_at DESC, rowid DESC LIMIT ?", kOrderColumns));
    s.bind(1, kRecentOrders);
    while (s.step()) {
      OrderRow o = read_order(s);
      w.StartObject();
      write_order_fields(w, o);
      field(w, "updatedAt", format_rfc3339(o.updated_at));
      w.EndObject();
    }
    w.EndArray();
  });
}

}  // namespace

Result<std::optional<StreamStart>> Store::start_order_stream(std::string_view order_id,
                                                             std::optional<int64_t> last_event_id) {
  // One read under the store's lock: the snapshot and `position` describe the same moment.
  return db_.read([&](db::Tx& tx) -> Result<std::optional<StreamStart>> {
    auto order = load_order(tx, order_id);
    if (!order) return std::optional<StreamStart>();
    FeedBounds b = feed_bounds(tx);
    StreamStart start;
    start.position = b.last;
    if (last_event_id && resumable(b, *last_event_id)) {
      auto s = tx.stmt(
          "SELECT seq, COALESCE(order_id, ''), kind, payload, at FROM feed "
          "WHERE order_id = ? AND seq > ? ORDER BY seq");
      s.bind(1, order_id).bind(2, *last_event_id);
      while (s.step()) start.rows.push_back(read_feed_row(s));
      return std::optional<StreamStart>(std::move(start));
    }
    start.snapshot = true;
    start.snapshot_json = order_snapshot(tx, *order);
    return std::optional<StreamStart>(std::move(start));
  });
}

Result<StreamStart> Store::start_all_stream(std::optional<int64_t> last_event_id, int max_replay) {
  return db_.read([&](db::Tx& tx) -> Result<StreamStart> {
    FeedBounds b = feed_bounds(tx);
    StreamStart start;
    start.position = b.last;
    if (last_event_id && resumable(b, *last_event_id)) {
      auto s = tx.stmt(
          "SELECT seq, COALESCE(order_id, ''), kind, payload, at FROM feed "
          "WHERE seq > ? AND kind IN ('status', 'inventory', 'alert') ORDER BY seq LIMIT ?");
      s.bind(1, *last_event_id).bind(2, max_replay + 1);
      while (s.step()) start.rows.push_back(read_feed_row(s));
      if (start.rows.size() <= static_cast<size_t>(max_replay)) return start;
      start.rows.clear();
    }
    start.snapshot = true;
    start.snapshot_json = summary_snapshot(tx);
    return start;
  });
}

Result<std::vector<FeedRow>> Store::feed_after(int64_t after, int limit) {
  return db_.read([&](db::Tx& tx) -> Result<std::vector<FeedRow>> {
    auto s = tx.stmt(
        "SELECT seq, COALESCE(order_id, ''), kind, payload, at FROM feed "
        "WHERE seq > ? ORDER BY seq LIMIT ?");
    s.bind(1, after).bind(2, limit);
    std::vector<FeedRow> rows;
    while (s.step()) rows.push_back(read_feed_row(s));
    return rows;
  });
}

Result<int64_t> Store::last_seq() {
  return db_.read([&](db::Tx& tx) -> Result<int64_t> { return feed_bounds(tx).last; });
}

Result<int64_t> Store::prune_feed(int64_t retain, int64_t max_rows) {
  // Bounded chunks, each its own transaction: one DELETE of everything held the store for hundreds
  // of milliseconds and stalled every consumer of the module behind it (docs/performance.md).
  constexpr int64_t kChunk = 512;
  int64_t total = 0;
  while (total < max_rows) {
    auto deleted = db_.transaction([&](db::Tx& tx) -> Result<int64_t> {
      FeedBounds b = feed_bounds(tx);
      const int64_t cut = b.last - retain;  // rows with seq <= cut go
      if (b.last - b.oldest + 1 <= retain || cut < b.oldest) return int64_t{0};
      const int64_t chunk = std::min(kChunk, max_rows - total);
      return tx.stmt("DELETE FROM feed WHERE seq <= ?")
          .bind(1, std::min(cut, b.oldest + chunk - 1))
          .exec();
    });
    if (!deleted) return deleted;
    total += *deleted;
    if (*deleted == 0) return total;
  }
  return total;
}

// --- queries -------------------------------------------------------------------------------------

Result<std::string> Store::stats_json() {
  return db_.read([&](db::Tx& tx) -> Result<std::string> {
    return json_object([&](Writer& w) { write_counts(w, tx); });
  });
}

Result<std::string> Store::list_notifications_json(const NotificationQuery& q) {
  return db_.read([&](db::Tx& tx) -> Result<std::string> {
    std::string where;
    if (q.customer_id) where += "customer_id = ?";
    if (q.order_id) where += std::string(where.empty() ? "" : " AND ") + "order_id = ?";
    auto s = tx.stmt(
        fmt::format("SELECT {} FROM notifications WHERE {} ORDER BY created_at DESC, rowid DESC "
                    "LIMIT ?",
                    kNotificationColumns, where));
    int idx = 1;
    if (q.customer_id) s.bind(idx++, *q.customer_id);
    if (q.order_id) s.bind(idx++, *q.order_id);
    s.bind(idx, q.limit);
    return json_object([&](Writer& w) {
      key(w, "notifications");
      w.StartArray();
      while (s.step()) {
        w.StartObject();
        write_notification(w, s);
        w.EndObject();
      }
      w.EndArray();
    });
  });
}

// --- delivery ------------------------------------------------------------------------------------

Result<std::vector<Delivery>> Store::due(int64_t now, int limit) {
  return db_.read([&](db::Tx& tx) -> Result<std::vector<Delivery>> {
    auto s = tx.stmt(
        "SELECT id, order_id, customer_id, status_key, channel, subject, body, attempts, "
        "created_at, "
        "COALESCE(correlation_id, ''), COALESCE(causation_id, ''), COALESCE(traceparent, '') "
        "FROM notifications WHERE status = 'PENDING' AND next_attempt_at <= ? "
        "ORDER BY next_attempt_at, rowid LIMIT ?");
    s.bind(1, now).bind(2, limit);
    std::vector<Delivery> out;
    while (s.step()) {
      out.push_back(Delivery{s.col_text(0), s.col_text(1), s.col_text(2), s.col_text(3),
                             s.col_text(4), s.col_text(5), s.col_text(6),
                             static_cast<int>(s.col_int(7)), s.col_int(8), s.col_text(9),
                             s.col_text(10), s.col_text(11)});
    }
    return out;
  });
}

Result<std::optional<int64_t>> Store::next_due_at() {
  return db_.read([&](db::Tx& tx) -> Result<std::optional<int64_t>> {
    auto s = tx.stmt("SELECT MIN(next_attempt_at) FROM notifications WHERE status = 'PENDING'");
    if (s.step() && !s.col_null(0)) return std::optional<int64_t>(s.col_int(0));
    return std::optional<int64_t>();
  });
}

namespace {

// The NotificationSent event of a notification marked SENT at `now` via `channel`.
Envelope notification_sent(const Delivery& d, std::string_view channel, int64_t now) {
  Envelope e = contract::make(
      kConsumer, contract::NotificationSent{d.id, d.order_id, d.customer_id, d.order_status,
                                            std::string(channel), d.subject, d.attempts + 1,
                                            format_rfc3339(now)});
  // The notification belongs to the order's flow: keep its correlation and trace.
  if (!d.correlation_id.empty()) e.correlation_id = d.correlation_id;
  if (!d.causation_id.empty()) e.causation_id = d.causation_id;
  if (!d.traceparent.empty()) e.traceparent = d.traceparent;
  return e;
}

}  // namespace

Status Store::mark_sent(const Delivery& d, std::string_view channel, int64_t now) {
  SentAttempt one{&d, now};
  return mark_sent_batch(std::span<const SentAttempt>(&one, 1), channel);
}

Status Store::mark_sent_batch(std::span<const SentAttempt> sent, std::string_view channel) {
  if (sent.empty()) return {};
  return db_.transaction([&](db::Tx& tx) -> Status {
    for (const auto& s : sent) {
      const Delivery& d = *s.delivery;
      int64_t changed =
          tx.stmt(
                "UPDATE notifications SET status = 'SENT', channel = ?, attempts = attempts + 1, "
                "sent_at = ?, last_error = NULL, next_attempt_at = NULL "
                "WHERE id = ? AND status = 'PENDING'")
              .bind_all(channel, s.sent_at, d.id)
              .exec();
      if (changed == 0) continue;  // already settled
      db::outbox_add(tx, topics::kNotificationsSent, notification_sent(d, channel, s.sent_at));
    }
    return {};
  });
}

Status Store::mark_failed(const Delivery& d, std::string_view error,
                          std::optional<int64_t> retry_at) {
  FailedAttempt one{&d, std::string(error), retry_at};
  return mark_failed_batch(std::span<const FailedAttempt>(&one, 1));
}

Status Store::mark_failed_batch(std::span<const FailedAttempt> failed) {
  if (failed.empty()) return {};
  return db_.transaction([&](db::Tx& tx) -> Status {
    for (const auto& f : failed) {
      auto s = tx.stmt(
          "UPDATE notifications SET status = ?, attempts = attempts + 1, last_error = ?, "
          "next_attempt_at = ? WHERE id = ? AND status = 'PENDING'");
      s.bind(1, f.retry_at ? "PENDING" : "FAILED").bind(2, f.error).bind(4, f.delivery->id);
      if (f.retry_at)
        s.bind(3, *f.retry_at);
      else
        s.bind_null(3);
      s.exec();
    }
    return {};
  });
}

}  // namespace ecom::notification
