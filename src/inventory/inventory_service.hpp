#pragma once
/// Inventory business logic, independent of bus and HTTP wiring: every operation works inside the
/// caller's db transaction (db::Tx) and queues the events it causes with db::outbox_add, so state
/// and events commit together. SQLite failures surface as db::DbError, which the enclosing
/// Database::transaction() turns into a rollback and an Error.
///
/// Thread safety: the functions keep no state; concurrency is handled by the transaction.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/core/config.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/result.hpp"
#include "ecom/db/database.hpp"

namespace ecom::inventory {

/// A product and its stock counters. Invariant per sku: initial stock (plus admin changes) =
/// available + reserved + sold.
struct Product {
  std::string sku;
  std::string name;
  int64_t available = 0;    ///< can be reserved
  int64_t reserved = 0;     ///< held by orders not yet confirmed or released
  int64_t sold = 0;         ///< committed by confirmed orders
  int64_t unit_amount = 0;  ///< price in minor units
  std::string currency = "USD";
};

/// One order line: a sku and a positive quantity.
struct Line {
  std::string sku;
  int64_t quantity = 0;
  bool operator==(const Line&) const = default;
};

/// Tunables that shape the emitted events.
struct Rules {
  int64_t low_stock_threshold = 5;  ///< at or below this (and above 0) stock is "low"
};

/// A price the client saw for a sku (a line's `unitAmount` in the order).
struct Quote {
  std::string sku;
  int64_t unit_amount = 0;
  bool operator==(const Quote&) const = default;
};

/// A parsed ReserveStock command. Lines with the same sku are summed, first-seen order kept.
struct ReserveCommand {
  std::string order_id;
  std::vector<Line> items;
  std::string currency;                   ///< the order's; every product must be sold in it
  std::vector<Quote> quotes;              ///< the client's unit prices, one per quoted line
  std::optional<int64_t> expected_total;  ///< the client's expected total, if it sent one
};

/// Parses ReserveStock `data` (`{orderId, currency, items:[{sku, quantity, unitAmount?}],
/// expectedTotal?}`); the error (code INVALID_PAYLOAD) names the offending field.
Result<ReserveCommand> parse_reserve_stock(std::string_view data_json);
/// Parses the `{orderId}` of ReleaseStock / CommitStock; returns the order id.
Result<std::string> parse_order_ref(std::string_view data_json);

/// Schema steps for Database::migrate("inventory", ...); step i is version i+1.
std::span<const std::string_view> migrations();

/// What ReserveStock decided for an order.
struct ReserveResult {
  bool reserved = false;  ///< true: StockReserved; false: StockReservationFailed
  bool repeated = false;  ///< the order already had an outcome, which was replayed
  /// When !reserved: UNKNOWN_SKU, CURRENCY_MISMATCH, PRICE_CHANGED, AMOUNT_LIMIT_EXCEEDED (the
  /// total does not fit in 64 bits) or OUT_OF_STOCK, checked in that order.
  std::string reason;
  std::vector<std::string> skus;  ///< the lines at fault
  std::vector<Line> items;        ///< the reserved lines when reserved
  int64_t total_amount = 0;       ///< the catalogue total of the reserved lines
};

/// Prices the order from the catalogue and reserves every line or none, records the outcome for
/// the order and queues the reply on `inventory.events` (plus `inventory.updated` /
/// `inventory.alerts` per changed sku). StockReserved carries the priced lines (`name`,
/// `unitAmount`), `totalAmount` and `currency`: the only amount the order is ever charged. A
/// repeat for the same order replays the recorded outcome without touching stock.
ReserveResult reserve_stock(db::Tx& tx, const Rules& rules, const ReserveCommand& cmd,
                            const Envelope& cause);

/// Returns to `available` what the order still holds reserved and queues StockReleased with
/// those lines (empty when nothing is held: repeat, committed, or never reserved).
std::vector<Line> release_stock(db::Tx& tx, const Rules& rules, const std::string& order_id,
                                const Envelope& cause);

/// Turns what the order holds reserved into a sale (reserved -> sold); returns those lines
/// (empty when nothing is held). No reply: the saga does not wait for one.
std::vector<Line> commit_stock(db::Tx& tx, const Rules& rules, const std::string& order_id,
                               const Envelope& cause);

/// A new product (POST /api/inventory).
struct NewProduct {
  std::string sku;
  std::string name;
  int64_t unit_amount = 0;  ///< minor units
  std::string currency;     ///< ISO 4217
  int64_t available = 0;
};

/// Adds a product to the catalogue and queues `inventory.updated` with its catalogue fields (no
/// alert: there is no earlier level to cross from). CONFLICT when the sku is taken, also by a
/// deleted product: a sku names one product for good, so orders and history never mix two.
Result<Product> create_product(db::Tx& tx, const NewProduct& product);

/// An administrative change (PUT /api/inventory/{sku}). Every field is optional: an absent one
/// keeps its value (merge semantics).
struct ProductUpdate {
  std::string sku;
  std::optional<int64_t> available;  ///< the new available quantity; reservations are untouched
  std::optional<std::string> name;
  std::optional<int64_t> unit_amount;
  std::optional<std::string> currency;
};

/// Applies the fields `update` carries. NOT_FOUND when the sku is unknown or deleted. Queues
/// `inventory.updated` with the catalogue fields after the change, and an alert when `available`
/// crossed a level. Orders already priced keep their prices; new reservations use the new ones.
Result<Product> update_product(db::Tx& tx, const Rules& rules, const ProductUpdate& update);

/// Soft delete: the product leaves the catalogue (listing and lookups answer as for an unknown
/// sku, and a ReserveStock naming it fails with UNKNOWN_SKU) but its row stays, so the
/// reservations it holds still release or commit and orders keep their lines. NOT_FOUND when
/// unknown or already deleted. Queues `inventory.updated` with `deleted`. Returns the product as
/// it was when deleted.
Result<Product> delete_product(db::Tx& tx, std::string_view sku);

/// One product of the catalogue, or nullopt (also for a deleted one).
/// `lock`: for a write that depends on the row (replicas share a PostgreSQL store; see src/db).
std::optional<Product> find_product(db::Tx& tx, std::string_view sku, bool lock = false);
/// All products of the catalogue (not the deleted ones) ordered by sku.
std::vector<Product> list_products(db::Tx& tx);
/// The lines of `order_id` currently in state RESERVED, ordered by sku.
std::vector<Line> held_by_order(db::Tx& tx, std::string_view order_id);

/// Inserts `seed` when the products table is empty; returns how many rows were inserted.
int64_t seed_if_empty(db::Tx& tx, std::span<const Product> seed);

/// Reads `inventory.seed` (an array of {sku,name,available,unitAmount,currency?}); errors have
/// code CONFIG_INVALID and name the index and field, e.g. "inventory.seed[3].available".
Result<std::vector<Product>> parse_seed(const rapidjson::Value& seed, const std::string& path);

/// True when `sku` is a valid product code: 1..64 chars of [A-Za-z0-9._-].
bool valid_sku(std::string_view sku) noexcept;
/// True when `c` is an ISO 4217 currency code (ecom::is_iso4217).
bool valid_currency(std::string_view c) noexcept;

}  // namespace ecom::inventory
