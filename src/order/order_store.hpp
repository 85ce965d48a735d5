#pragma once
// The order module's SQL: the schema and every statement on `orders`, `order_history` and
// `idempotency_keys`. Functions run inside the caller's transaction (db::Tx) and return rows as
// plain values; JSON is order_json's job.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/contract/events.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/result.hpp"
#include "ecom/db/database.hpp"
#include "validation.hpp"

namespace ecom::order::store {

/// Migrates the order schema.
Status migrate(db::Database& db);

/// One status the order reached.
struct HistoryEntry {
  std::string status;
  std::optional<std::string> reason;
  int64_t at_ms = 0;
};

/// An order as stored.
struct OrderView {
  std::string id;
  std::string customer_id;
  std::string currency;
  std::string status;
  std::optional<std::string> reason;
  std::optional<int64_t> total_amount;  ///< absent until priced (STOCK_RESERVED)
  std::string items_json;               ///< the lines, as contract::encode_lines wrote them
  std::string correlation_id;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  bool cancellation_requested = false;
  std::vector<HistoryEntry> history;  ///< only filled by find()
  /// CONFIRMED or CANCELLED.
  bool terminal() const;
};

/// A new order as the writer stores it, prepared on the HTTP thread.
struct NewOrderRow {
  NewOrder order;
  std::string key;        ///< Idempotency-Key; empty when absent
  std::string canonical;  ///< canonical request, only with a key
  std::string items;      ///< encoded items (the orders.items column)
  Envelope event;         ///< OrderCreated; its subject is the new order's id
};

/// The answer to a POST: the new order, or the earlier one of a repeated Idempotency-Key.
struct Created {
  std::string order_id;
  std::string status;
  std::string correlation_id;
  bool replayed = false;
};

/// Stores the order, its first history row, its Idempotency-Key and its OrderCreated (outbox);
/// a known key with the same canonical request answers the first order (replayed), with another
/// request IDEMPOTENCY_CONFLICT.
Result<Created> insert(db::Tx& tx, const NewOrderRow& row, int64_t now_ms);

/// The order with its history; NOT_FOUND when unknown.
Result<OrderView> find(db::Tx& tx, std::string_view id);

/// A position in the listing order (newest first: created_at, then id, both descending). Both
/// never change once an order is stored, so a page that resumes after a key returns every order
/// older than it exactly once, whatever was inserted meanwhile (new orders are newer: they sort
/// before the key).
struct PageKey {
  int64_t created_at_ms = 0;
  std::string id;
  bool operator==(const PageKey&) const = default;
};

/// The filters and the page of GET /api/orders; every filter is optional.
struct ListQuery {
  std::optional<std::string> customer_id;
  std::vector<contract::OrderStatus> statuses;  ///< any of these; empty: every status
  std::optional<int64_t> from_ms;               ///< created at or after
  std::optional<int64_t> to_ms;                 ///< created before
  std::optional<PageKey> after;                 ///< only orders after this one (the cursor)
  int limit = 20;
};

/// One page of orders, without history.
struct OrderPage {
  std::vector<OrderView> orders;
  std::optional<PageKey> next;  ///< where the next page starts; absent on the last page
};

/// The orders matching `q`, newest first, at most `q.limit`.
OrderPage list(db::Tx& tx, const ListQuery& q);

/// What a cancellation request did.
struct CancelOutcome {
  std::string status;  ///< the order's status when asked
  bool emitted;        ///< false: already requested before (same answer, no new event)
};

/// Marks the order as cancellation-requested and queues OrderCancellationRequested (once).
/// NOT_FOUND when unknown; CONFLICT when the order is already terminal.
Result<CancelOutcome> request_cancel(db::Tx& tx, std::string_view source, std::string_view id,
                                     int64_t now_ms);

/// Applies a status change forward only (terminal orders never move) and, on STOCK_RESERVED,
/// the catalogue's pricing. False when nothing changed (unknown order, not later).
bool apply_status(db::Tx& tx, const contract::OrderStatusChanged& ev, int64_t now_ms);

}  // namespace ecom::order::store
