#include "inventory_service.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <any>
#include <array>
#include <numeric>
#include <set>
#include <utility>

#include "ecom/contract/events.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/currency.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/outbox.hpp"
#include "inventory_json.hpp"

namespace ecom::inventory {
namespace {

constexpr std::string_view kSource{"inventory"};
// Far above any real order, far below int64 overflow when lines are summed.
constexpr int64_t kMaxQuantity = 1'000'000'000;
constexpr int64_t kMaxStock = 1'000'000'000'000;
constexpr int64_t kMaxAmount = 1'000'000'000'000;
constexpr size_t kMaxNameLength = 200;

Error invalid_command(std::string field, std::string message) {
  return Error{ErrorCode::kInvalidPayload, std::move(message), std::move(field), false};
}

Error invalid_update(std::string field, std::string message) {
  return Error{ErrorCode::kValidationFailed, std::move(message), std::move(field), false};
}

// Runs a statement to its end, so no read cursor stays open across savepoints and commit.
void finish(db::Statement& s) {
  while (s.step()) {
  }
}

template <typename E>
void emit(db::Tx& tx, const E& event, const Envelope* cause) {
  db::outbox_add(tx, E::kTopic, contract::make(kSource, event, cause));
}

std::vector<contract::SkuQuantity> sku_quantities(std::span<const Line> lines) {
  std::vector<contract::SkuQuantity> out;
  out.reserve(lines.size());
  for (const auto& l : lines) out.push_back({l.sku, l.quantity});
  return out;
}

// The alert when `available` crossed a level going from `before` to `after`.
void emit_alert(db::Tx& tx, const Rules& rules, const std::string& sku, int64_t before,
                int64_t after, const Envelope* cause) {
  const int64_t t = rules.low_stock_threshold;
  if (after == 0 && before > 0) {
    emit(tx, contract::StockDepleted{sku, after, t}, cause);
  } else if (before > t && after <= t && after > 0) {
    emit(tx, contract::StockLevelLow{sku, after, t}, cause);
  } else if (before <= t && after > t) {
    emit(tx, contract::StockLevelNormalized{sku, after, t}, cause);
  }
}

// What inventory.updated says of one sku after every change orders made in one commit: the
// deltas summed, the levels as they end, the order when only one changed it, the ids of the last
// cause.
struct PendingInventoryUpdate {
  contract::InventoryUpdated event;
  bool one_order = true;
  std::optional<Envelope> cause;  ///< only id, correlation id and traceparent are kept
};

// inventory.updated for a change an order made to one sku, plus the alert when `available`
// crossed a level. inventory.updated is a last-value feed, so the changes of one commit (a whole
// batch of orders under load) make one event per sku: a consumer never needs the steps between,
// and each costs a record on the bus and a write in every consumer. Alerts stay one per
// crossing.
void emit_stock_change(db::Tx& tx, const Rules& rules, const std::string& sku, int64_t before,
                       int64_t after, int64_t reserved, const std::string& order_id,
                       const Envelope* cause, bool alerts = true) {
  std::any& slot = tx.coalesce("inventory.updated/" + sku, [](db::Tx& t, const std::any& v) {
    const auto& u = std::any_cast<const PendingInventoryUpdate&>(v);
    emit(t, u.event, u.cause ? &*u.cause : nullptr);
  });
  std::optional<Envelope> ids;
  if (cause != nullptr) {
    ids.emplace();
    ids->id = cause->id;
    ids->correlation_id = cause->correlation_id;
    ids->traceparent = cause->traceparent;
  }
  if (!slot.has_value()) {
    contract::InventoryUpdated ev;
    ev.sku = sku;
    ev.delta = after - before;
    ev.available = after;
    ev.reserved = reserved;
    ev.order_id = order_id;
    slot = PendingInventoryUpdate{std::move(ev), true, std::move(ids)};
  } else {
    auto& u = std::any_cast<PendingInventoryUpdate&>(slot);
    u.event.delta += after - before;
    u.event.available = after;
    u.event.reserved = reserved;
    u.one_order = u.one_order && u.event.order_id == order_id;
    if (!u.one_order) u.event.order_id.reset();
    if (ids) u.cause = std::move(ids);
  }
  if (alerts) emit_alert(tx, rules, sku, before, after, cause);
}

// inventory.updated for an administrative change: no orderId, and the catalogue fields as they
// are now, so a live view follows a new product, a rename, a price change or a delete.
void emit_admin_change(db::Tx& tx, const Product& p, int64_t available_before,
                       bool deleted = false) {
  contract::InventoryUpdated ev;
  ev.sku = p.sku;
  ev.delta = p.available - available_before;
  ev.available = p.available;
  ev.reserved = p.reserved;
  ev.name = p.name;
  ev.unit_amount = p.unit_amount;
  ev.currency = p.currency;
  ev.deleted = deleted;
  emit(tx, ev, nullptr);
}

// A recorded outcome (the reply's data, as first sent), decoded to replay it.
ReserveResult decode_outcome(std::string_view outcome, std::string_view data_json) {
  ReserveResult r;
  r.reserved = outcome == "RESERVED";
  if (r.reserved) {
    auto ev = contract::StockReserved::decode(data_json);
    if (!ev) return r;  // written by us; cannot happen
    r.total_amount = ev->pricing.total_amount;
    for (const auto& l : ev->pricing.items) r.items.push_back(Line{l.sku, l.quantity});
  } else {
    auto ev = contract::StockReservationFailed::decode(data_json);
    if (!ev) return r;
    r.reason = ev->reason;
    r.skus = ev->skus;
  }
  return r;
}

Product read_product(const db::Statement& s) {
  Product p;
  p.sku = s.col_text(0);
  p.name = s.col_text(1);
  p.available = s.col_int(2);
  p.reserved = s.col_int(3);
  p.sold = s.col_int(4);
  p.unit_amount = s.col_int(5);
  p.currency = s.col_text(6);
  return p;
}

constexpr std::string_view kProductColumns =
    "SELECT sku, name, available, reserved, sold, unit_amount, currency FROM products";
// The catalogue: what is on sale. Deleted products keep their row (history, settling).
constexpr std::string_view kInCatalogue{"deleted_at IS NULL"};

// One statement per step: each step is one schema version.
constexpr std::array<std::string_view, 5> kMigrations{
    R"sql(CREATE TABLE products(
  sku         TEXT PRIMARY KEY,
  name        TEXT NOT NULL,
  available   INTEGER NOT NULL CHECK (available >= 0),
  reserved    INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
  sold        INTEGER NOT NULL DEFAULT 0 CHECK (sold >= 0),
  unit_amount INTEGER NOT NULL DEFAULT 0 CHECK (unit_amount >= 0),
  currency    TEXT NOT NULL DEFAULT 'USD',
  updated_at  TEXT NOT NULL
))sql",
    R"sql(CREATE TABLE reservations(
  order_id   TEXT NOT NULL,
  sku        TEXT NOT NULL,
  quantity   INTEGER NOT NULL CHECK (quantity > 0),
  state      TEXT NOT NULL CHECK (state IN ('RESERVED', 'RELEASED', 'COMMITTED')),
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  PRIMARY KEY (order_id, sku)
))sql",
    // The first ReserveStock outcome per order, replayed verbatim on any later ReserveStock.
    R"sql(CREATE TABLE reserve_outcomes(
  order_id   TEXT PRIMARY KEY,
  outcome    TEXT NOT NULL CHECK (outcome IN ('RESERVED', 'FAILED')),
  data       TEXT NOT NULL,
  created_at TEXT NOT NULL
))sql",
    // The unit price a line was reserved (and so sold) at; NULL for reservations made before
    // the catalogue priced orders.
    "ALTER TABLE reservations ADD COLUMN unit_amount INTEGER",
    // Soft delete: when the product left the catalogue (NULL: on sale). The row stays so that
    // reservations it holds still settle and its sku is never reused for another product.
    "ALTER TABLE products ADD COLUMN deleted_at TEXT",
};

}  // namespace

std::span<const std::string_view> migrations() { return kMigrations; }

bool valid_sku(std::string_view sku) noexcept {
  if (sku.empty() || sku.size() > 64) return false;
  return std::all_of(sku.begin(), sku.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.';
  });
}

bool valid_currency(std::string_view c) noexcept { return is_iso4217(c); }

Result<ReserveCommand> parse_reserve_stock(std::string_view data_json) {
  auto ev = contract::ReserveStock::decode(data_json);
  if (!ev) return ev.error();
  ReserveCommand cmd{std::move(ev->order_id), {}, std::move(ev->currency), {}, ev->expected_total};
  for (size_t i = 0; i < ev->items.size(); ++i) {
    auto& item = ev->items[i];
    if (item.quantity > kMaxQuantity) {
      const std::string at = "items[" + std::to_string(i) + "].quantity";
      return invalid_command(at, at + " must be an integer between 1 and 1000000000");
    }
    if (item.unit_amount) cmd.quotes.push_back(Quote{item.sku, *item.unit_amount});
    auto same = std::find_if(cmd.items.begin(), cmd.items.end(),
                             [&](const Line& l) { return l.sku == item.sku; });
    if (same != cmd.items.end()) {
      same->quantity += item.quantity;
    } else {
      cmd.items.push_back(Line{std::move(item.sku), item.quantity});
    }
  }
  return cmd;
}

Result<std::string> parse_order_ref(std::string_view data_json) {
  // ReleaseStock and CommitStock share the shape {orderId}.
  auto ev = contract::ReleaseStock::decode(data_json);
  if (!ev) return ev.error();
  return std::move(ev->order_id);
}

ReserveResult reserve_stock(db::Tx& tx, const Rules& rules, const ReserveCommand& cmd,
                            const Envelope& cause) {
  {
    auto prior = tx.stmt("SELECT outcome, data FROM reserve_outcomes WHERE order_id = ?");
    prior.bind(1, cmd.order_id);
    if (prior.step()) {
      const std::string outcome = prior.col_text(0);
      std::string data = prior.col_text(1);
      finish(prior);
      ReserveResult r = decode_outcome(outcome, data);
      r.repeated = true;
      // The first answer, byte for byte: the same prices even if the catalogue changed since.
      db::outbox_add(tx, topics::kInventoryEvents,
                     make_event(kSource,
                                r.reserved ? event_types::kStockReserved
                                           : event_types::kStockReservationFailed,
                                cmd.order_id, std::move(data), &cause));
      return r;
    }
  }

  // Price every line from the catalogue first: the order is charged these prices or none.
  ReserveResult r;
  std::vector<contract::Line> priced;  // the lines as sold
  priced.reserve(cmd.items.size());
  std::vector<std::string> unknown, other_currency, price_changed;
  for (const auto& line : cmd.items) {
    // A deleted product is not for sale: it fails like an unknown sku.
    auto s = tx.stmt(
        "SELECT name, unit_amount, currency FROM products WHERE sku = ? AND deleted_at IS NULL");
    s.bind(1, line.sku);
    if (!s.step()) {
      unknown.push_back(line.sku);
      continue;
    }
    priced.push_back(contract::Line{line.sku, line.quantity, s.col_int(1), s.col_text(0)});
    if (s.col_view(2) != cmd.currency) other_currency.push_back(line.sku);
    finish(s);
  }
  bool overflow = false;
  for (const auto& p : priced) {
    int64_t line_total = 0;
    overflow = overflow || __builtin_mul_overflow(p.quantity, *p.unit_amount, &line_total) ||
               __builtin_add_overflow(r.total_amount, line_total, &r.total_amount);
    for (const auto& q : cmd.quotes)
      if (q.sku == p.sku && q.unit_amount != *p.unit_amount &&
          std::find(price_changed.begin(), price_changed.end(), q.sku) == price_changed.end())
        price_changed.push_back(q.sku);
  }
  if (price_changed.empty() && !overflow && cmd.expected_total &&
      *cmd.expected_total != r.total_amount) {
    for (const auto& line : cmd.items) price_changed.push_back(line.sku);  // the total is at fault
  }
  if (!unknown.empty()) {
    r.reason = "UNKNOWN_SKU";
    r.skus = std::move(unknown);
  } else if (!other_currency.empty()) {
    r.reason = "CURRENCY_MISMATCH";
    r.skus = std::move(other_currency);
  } else if (!price_changed.empty()) {
    r.reason = "PRICE_CHANGED";
    r.skus = std::move(price_changed);
  } else if (overflow) {
    r.reason = "AMOUNT_LIMIT_EXCEEDED";
  } else {
    // The conditional UPDATE is the guard: a line is taken only if enough is available at that
    // instant, so no interleaving can drive `available` below zero. The savepoint undoes the
    // lines already taken when a later one is short (all or nothing).
    struct Taken {
      int64_t available;
      int64_t reserved;
    };
    std::vector<Taken> taken(cmd.items.size());
    // In sku order: replicas sharing a PostgreSQL store lock the rows of two orders in the same
    // order, so they wait for each other instead of deadlocking.
    std::vector<size_t> by_sku(cmd.items.size());
    std::iota(by_sku.begin(), by_sku.end(), size_t{0});
    std::stable_sort(by_sku.begin(), by_sku.end(),
                     [&](size_t a, size_t b) { return cmd.items[a].sku < cmd.items[b].sku; });
    tx.exec("SAVEPOINT reserve_stock");
    for (size_t i : by_sku) {
      const auto& line = cmd.items[i];
      auto s = tx.stmt(
          "UPDATE products SET available = available - ?1, reserved = reserved + ?1, "
          "updated_at = ?3 WHERE sku = ?2 AND available >= ?1 RETURNING available, reserved");
      s.bind_all(line.quantity, line.sku, now_rfc3339());
      if (s.step()) {
        taken[i] = {s.col_int(0), s.col_int(1)};
        finish(s);
      } else {
        r.skus.push_back(line.sku);
      }
    }
    if (!r.skus.empty()) {
      tx.exec("ROLLBACK TO reserve_stock; RELEASE reserve_stock");
      r.reason = "OUT_OF_STOCK";
    } else {
      tx.exec("RELEASE reserve_stock");
      const std::string now = now_rfc3339();
      for (size_t i = 0; i < cmd.items.size(); ++i) {
        const auto& line = cmd.items[i];
        tx.stmt(
              "INSERT INTO reservations(order_id, sku, quantity, state, created_at, updated_at, "
              "unit_amount) VALUES (?, ?, ?, 'RESERVED', ?, ?, ?)")
            .bind_all(cmd.order_id, line.sku, line.quantity, now, now, *priced[i].unit_amount)
            .exec();
        emit_stock_change(tx, rules, line.sku, taken[i].available + line.quantity,
                          taken[i].available, taken[i].reserved, cmd.order_id, &cause);
      }
      r.reserved = true;
      r.items = cmd.items;
    }
  }

  if (!r.reserved) r.total_amount = 0;
  Envelope reply =
      r.reserved
          ? contract::make(
                kSource,
                contract::StockReserved{cmd.order_id, {r.total_amount, cmd.currency, priced}},
                &cause)
          : contract::make(
                kSource, contract::StockReservationFailed{cmd.order_id, r.reason, r.skus}, &cause);
  tx.stmt("INSERT INTO reserve_outcomes(order_id, outcome, data, created_at) VALUES (?, ?, ?, ?)")
      .bind_all(cmd.order_id, r.reserved ? "RESERVED" : "FAILED", reply.data, now_rfc3339())
      .exec();
  db::outbox_add(tx, topics::kInventoryEvents, reply);
  return r;
}

std::vector<Line> held_by_order(db::Tx& tx, std::string_view order_id) {
  std::vector<Line> lines;
  auto s = tx.stmt(
      "SELECT sku, quantity FROM reservations WHERE order_id = ? AND state = 'RESERVED' "
      "ORDER BY sku");
  s.bind(1, order_id);
  while (s.step()) lines.push_back(Line{s.col_text(0), s.col_int(1)});
  return lines;
}

namespace {

// Moves what `order_id` holds out of `reserved`, either back to `available` (release) or on to
// `sold` (commit), and closes the reservation lines.
std::vector<Line> settle(db::Tx& tx, const Rules& rules, const std::string& order_id,
                         const Envelope& cause, bool commit) {
  std::vector<Line> lines = held_by_order(tx, order_id);
  const std::string now = now_rfc3339();
  for (const auto& line : lines) {
    auto s = tx.stmt(commit ? "UPDATE products SET reserved = reserved - ?1, sold = sold + ?1, "
                              "updated_at = ?3 WHERE sku = ?2 RETURNING available, reserved"
                            : "UPDATE products SET reserved = reserved - ?1, available = "
                              "available + ?1, updated_at = ?3 WHERE sku = ?2 "
                              "RETURNING available, reserved");
    s.bind_all(line.quantity, line.sku, now);
    if (!s.step()) continue;  // rows are never removed (deletes are soft); nothing to move
    const int64_t available = s.col_int(0);
    const int64_t reserved = s.col_int(1);
    finish(s);
    const int64_t before = commit ? available : available - line.quantity;
    emit_stock_change(tx, rules, line.sku, before, available, reserved, order_id, &cause,
                      /*alerts=*/!commit);
  }
  if (!lines.empty()) {
    tx.stmt(
          "UPDATE reservations SET state = ?, updated_at = ? WHERE order_id = ? AND state = "
          "'RESERVED'")
        .bind_all(commit ? "COMMITTED" : "RELEASED", now, order_id)
        .exec();
  }
  // A commit is not acknowledged: the saga is done at CONFIRMED (saga_machine.cpp), and the
  // sale shows in inventory.updated. A release is, since CANCELLED waits for it.
  if (!commit) emit(tx, contract::StockReleased{order_id, sku_quantities(lines)}, &cause);
  return lines;
}

}  // namespace

std::vector<Line> release_stock(db::Tx& tx, const Rules& rules, const std::string& order_id,
                                const Envelope& cause) {
  return settle(tx, rules, order_id, cause, /*commit=*/false);
}

std::vector<Line> commit_stock(db::Tx& tx, const Rules& rules, const std::string& order_id,
                               const Envelope& cause) {
  return settle(tx, rules, order_id, cause, /*commit=*/true);
}

namespace {

Error invalid_sku() {
  return invalid_update("sku", "sku must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-'");
}

// The fields an admin change carries, each checked when present.
Status check_fields(const ProductUpdate& u) {
  if (!valid_sku(u.sku)) return invalid_sku();
  if (u.available && (*u.available < 0 || *u.available > kMaxStock)) {
    return invalid_update("available", "available must be an integer between 0 and 1000000000000");
  }
  if (u.name && (u.name->empty() || u.name->size() > kMaxNameLength)) {
    return invalid_update("name", "name must be a non-empty string of at most 200 characters");
  }
  if (u.unit_amount && (*u.unit_amount < 0 || *u.unit_amount > kMaxAmount)) {
    return invalid_update(
        "unitAmount", "unitAmount must be an integer between 0 and 1000000000000 (minor units)");
  }
  if (u.currency && !valid_currency(*u.currency)) {
    return invalid_update("currency", "currency must be an ISO 4217 code, e.g. USD");
  }
  return {};
}

Error no_product(std::string_view sku) {
  return Error{ErrorCode::kNotFound, "no product with sku " + std::string(sku), "sku", false};
}

}  // namespace

Result<Product> create_product(db::Tx& tx, const NewProduct& n) {
  if (auto st = check_fields(ProductUpdate{n.sku, n.available, n.name, n.unit_amount, n.currency});
      !st)
    return st.error();
  auto taken = tx.stmt("SELECT deleted_at IS NOT NULL FROM products WHERE sku = ?");
  taken.bind(1, n.sku);
  if (taken.step()) {
    const bool deleted = taken.col_int(0) != 0;
    finish(taken);
    return Error{ErrorCode::kConflict,
                 deleted ? "sku " + n.sku +
                               " belonged to a deleted product; a sku is never reused, pick another"
                         : "a product with sku " + n.sku +
                               " already exists; change it with PUT /api/inventory/" + n.sku,
                 "sku", false};
  }
  Product p;
  p.sku = n.sku;
  p.name = n.name;
  p.available = n.available;
  p.unit_amount = n.unit_amount;
  p.currency = n.currency;
  tx.stmt(
        "INSERT INTO products(sku, name, available, reserved, sold, unit_amount, currency, "
        "updated_at) VALUES (?, ?, ?, 0, 0, ?, ?, ?)")
      .bind_all(p.sku, p.name, p.available, p.unit_amount, p.currency, now_rfc3339())
      .exec();
  emit_admin_change(tx, p, 0);
  return p;
}

Result<Product> update_product(db::Tx& tx, const Rules& rules, const ProductUpdate& u) {
  if (auto st = check_fields(u); !st) return st.error();
  auto existing = find_product(tx, u.sku, /*lock=*/true);
  if (!existing) return no_product(u.sku);
  Product p = *existing;
  if (u.available) p.available = *u.available;
  if (u.name) p.name = *u.name;
  if (u.unit_amount) p.unit_amount = *u.unit_amount;
  if (u.currency) p.currency = *u.currency;
  tx.stmt(
        "UPDATE products SET available = ?, name = ?, unit_amount = ?, currency = ?, "
        "updated_at = ? WHERE sku = ?")
      .bind_all(p.available, p.name, p.unit_amount, p.currency, now_rfc3339(), p.sku)
      .exec();
  emit_admin_change(tx, p, existing->available);
  emit_alert(tx, rules, p.sku, existing->available, p.available, nullptr);
  return p;
}

Result<Product> delete_product(db::Tx& tx, std::string_view sku) {
  if (!valid_sku(sku)) return invalid_sku();
  auto existing = find_product(tx, sku, /*lock=*/true);
  if (!existing) return no_product(sku);
  const std::string now = now_rfc3339();
  tx.stmt("UPDATE products SET deleted_at = ?, updated_at = ? WHERE sku = ?")
      .bind_all(now, now, sku)
      .exec();
  emit_admin_change(tx, *existing, existing->available, /*deleted=*/true);
  return *existing;
}

std::optional<Product> find_product(db::Tx& tx, std::string_view sku, bool lock) {
  auto s = tx.stmt(fmt::format("{} WHERE sku = ? AND {}{}", kProductColumns, kInCatalogue,
                               lock ? " FOR UPDATE" : ""));
  s.bind(1, sku);
  if (!s.step()) return std::nullopt;
  Product p = read_product(s);
  finish(s);
  return p;
}

std::vector<Product> list_products(db::Tx& tx) {
  std::vector<Product> out;
  auto s = tx.stmt(fmt::format("{} WHERE {} ORDER BY sku", kProductColumns, kInCatalogue));
  while (s.step()) out.push_back(read_product(s));
  return out;
}

int64_t seed_if_empty(db::Tx& tx, std::span<const Product> seed) {
  // Replicas starting together on one PostgreSQL schema: one seeds, the others then see it.
  tx.lock_key("inventory.seed");
  auto count = tx.stmt("SELECT COUNT(*) FROM products");
  if (!count.step()) return 0;
  const int64_t existing = count.col_int(0);
  finish(count);
  if (existing > 0) return 0;
  const std::string now = now_rfc3339();
  for (const auto& p : seed) {
    tx.stmt(
          "INSERT INTO products(sku, name, available, reserved, sold, unit_amount, currency, "
          "updated_at) VALUES (?, ?, ?, 0, 0, ?, ?, ?)")
        .bind_all(p.sku, p.name, p.available, p.unit_amount, p.currency, now)
        .exec();
  }
  return static_cast<int64_t>(seed.size());
}

Result<std::vector<Product>> parse_seed(const rapidjson::Value& seed, const std::string& base) {
  auto bad = [&](const std::string& where, const std::string& what) {
    return config_invalid(where + " " + what, where);
  };
  std::vector<Product> out;
  if (!seed.IsArray()) return bad(base, "must be an array of products");
  std::set<std::string> seen;
  rapidjson::SizeType i = 0;
  for (const auto& e : seed.GetArray()) {
    const std::string at = base + "[" + std::to_string(i++) + "]";
    if (!e.IsObject())
      return bad(at, "must be an object {sku, name, available, unitAmount, currency?}");
    for (const auto& m : e.GetObject()) {
      const std::string_view k(m.name.GetString(), m.name.GetStringLength());
      if (k != "sku" && k != "name" && k != "available" && k != "unitAmount" && k != "currency") {
        return bad(at + "." + std::string(k),
                   "is not a valid key (valid: sku, name, available, unitAmount, currency)");
      }
    }
    Product p;
    auto sku = e.FindMember("sku");
    if (sku == e.MemberEnd() || !sku->value.IsString() || !valid_sku(sku->value.GetString())) {
      return bad(at + ".sku", "must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-'");
    }
    p.sku = sku->value.GetString();
    if (!seen.insert(p.sku).second) return bad(at + ".sku", "duplicates sku " + p.sku);
    auto name = e.FindMember("name");
    if (name == e.MemberEnd() || !name->value.IsString() || name->value.GetStringLength() == 0 ||
        name->value.GetStringLength() > kMaxNameLength) {
      return bad(at + ".name", "must be a non-empty string of at most 200 characters");
    }
    p.name = name->value.GetString();
    auto available = e.FindMember("available");
    if (available == e.MemberEnd() || !available->value.IsInt64() ||
        available->value.GetInt64() < 0 || available->value.GetInt64() > kMaxStock) {
      return bad(at + ".available", "must be an integer >= 0");
    }
    p.available = available->value.GetInt64();
    auto amount = e.FindMember("unitAmount");
    if (amount == e.MemberEnd() || !amount->value.IsInt64() || amount->value.GetInt64() < 0 ||
        amount->value.GetInt64() > kMaxAmount) {
      return bad(at + ".unitAmount", "must be an integer >= 0 (minor units)");
    }
    p.unit_amount = amount->value.GetInt64();
    if (auto cur = e.FindMember("currency"); cur != e.MemberEnd()) {
      if (!cur->value.IsString() || !valid_currency(cur->value.GetString())) {
        return bad(at + ".currency", "must be an ISO 4217 code, e.g. USD");
      }
      p.currency = cur->value.GetString();
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace ecom::inventory
