#pragma once
/// The typed event contract: one struct per event of docs/events.md, with its type, its topic and
/// encode/decode of the envelope's `data`. Modules build and read events only through these, so
/// a field is named, typed and validated in one place.
///
/// decode() checks the shape (required fields, JSON types, non-negative amounts and positive
/// quantities): what no consumer could ever process. Its error has code INVALID_PAYLOAD, is not
/// retryable (a redelivery holds the same bytes) and names the field, e.g. "items[1].quantity";
/// the record is a dead letter. Rules of one module (a maximum quantity, a known sku) stay in the
/// module, on the typed value.
///
/// Thread safety: plain values and pure functions.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/contract/order_status.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/result.hpp"
#include "ecom/core/topics.hpp"

namespace ecom::contract {

/// One order line. In OrderCreated and ReserveStock `unit_amount` is the client's quote (absent
/// when it sent none) and `name` is empty; in StockReserved and the STOCK_RESERVED status both are
/// the catalogue's, as sold.
struct Line {
  std::string sku;
  int64_t quantity = 0;
  std::optional<int64_t> unit_amount;
  std::string name;
  bool operator==(const Line&) const = default;
};

/// Lines as the JSON array the events carry (`[{"sku","name"?,"quantity","unitAmount"?}]`), for
/// stores that keep an order's lines as they travel.
std::string encode_lines(const std::vector<Line>& lines);
/// Parses encode_lines() output; unit_amount and name are optional. Errors name "items[i].…".
Result<std::vector<Line>> decode_lines(std::string_view json_array);

/// A sku and a quantity (StockReleased / StockCommitted lines).
struct SkuQuantity {
  std::string sku;
  int64_t quantity = 0;
  bool operator==(const SkuQuantity&) const = default;
};

// --- orders ------------------------------------------------------------------------------------

/// ecom.order.created.v1 on orders.created. Not priced: the quotes are checked, never charged.
struct OrderCreated {
  static constexpr std::string_view kType = event_types::kOrderCreated;
  static constexpr std::string_view kTopic = topics::kOrdersCreated;
  std::string order_id;
  std::string customer_id;
  std::string currency;
  std::vector<Line> items;  ///< at least one
  std::optional<int64_t> expected_total;
  std::optional<std::string> payment_token;
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<OrderCreated> decode(std::string_view data);
};

/// ecom.order.cancellation-requested.v1 on orders.cancellations.
struct OrderCancellationRequested {
  static constexpr std::string_view kType = event_types::kOrderCancellationRequested;
  static constexpr std::string_view kTopic = topics::kOrdersCancellations;
  std::string order_id;
  std::string customer_id;
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<OrderCancellationRequested> decode(std::string_view data);
};

/// The catalogue's pricing of an order, carried once by the STOCK_RESERVED status.
struct Pricing {
  int64_t total_amount = 0;
  std::string currency;
  std::vector<Line> items;  ///< every line with name and unit_amount
  bool operator==(const Pricing&) const = default;
};

/// ecom.order.status-changed.v1 on orders.status.
struct OrderStatusChanged {
  static constexpr std::string_view kType = event_types::kOrderStatusChanged;
  static constexpr std::string_view kTopic = topics::kOrdersStatus;
  std::string order_id;
  OrderStatus status = OrderStatus::kPending;
  std::string reason;  ///< set on CANCELLED (reason::k*)
  std::string at;      ///< RFC 3339; empty when the producer sent none
  std::optional<Pricing> pricing;
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<OrderStatusChanged> decode(std::string_view data);
};

// --- inventory ---------------------------------------------------------------------------------

/// ecom.inventory.reserve-stock.v1 on inventory.commands: price from the catalogue and reserve,
/// all lines or none.
struct ReserveStock {
  static constexpr std::string_view kType = event_types::kReserveStock;
  static constexpr std::string_view kTopic = topics::kInventoryCommands;
  std::string order_id;
  std::string currency;
  std::vector<Line> items;  ///< at least one; unit_amount = the client's quote
  std::optional<int64_t> expected_total;
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<ReserveStock> decode(std::string_view data);
};

/// ecom.inventory.release-stock.v1 and ecom.inventory.commit-stock.v1: `{orderId}`.
template <const std::string_view& Type>
struct OrderRef {
  static constexpr std::string_view kType = Type;
  static constexpr std::string_view kTopic = topics::kInventoryCommands;
  std::string order_id;
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<OrderRef> decode(std::string_view data);
};
using ReleaseStock = OrderRef<event_types::kReleaseStock>;
using CommitStock = OrderRef<event_types::kCommitStock>;

/// ecom.inventory.stock-reserved.v1 on inventory.events: the lines as sold.
struct StockReserved {
  static constexpr std::string_view kType = event_types::kStockReserved;
  static constexpr std::string_view kTopic = topics::kInventoryEvents;
  std::string order_id;
  Pricing pricing;
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<StockReserved> decode(std::string_view data);
};

/// ecom.inventory.stock-reservation-failed.v1 on inventory.events.
struct StockReservationFailed {
  static constexpr std::string_view kType = event_types::kStockReservationFailed;
  static constexpr std::string_view kTopic = topics::kInventoryEvents;
  std::string order_id;
  std::string reason;  ///< UNKNOWN_SKU, CURRENCY_MISMATCH, PRICE_CHANGED, ..., OUT_OF_STOCK
  std::vector<std::string> skus;
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<StockReservationFailed> decode(std::string_view data);
};

/// ecom.inventory.stock-released.v1 / ecom.inventory.stock-committed.v1 on inventory.events.
template <const std::string_view& Type>
struct StockSettled {
  static constexpr std::string_view kType = Type;
  static constexpr std::string_view kTopic = topics::kInventoryEvents;
  std::string order_id;
  std::vector<SkuQuantity> items;  ///< empty: nothing was held
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<StockSettled> decode(std::string_view data);
};
using StockReleased = StockSettled<event_types::kStockReleased>;
using StockCommitted = StockSettled<event_types::kStockCommitted>;

/// ecom.inventory.updated.v1 on inventory.updated (key sku).
struct InventoryUpdated {
  static constexpr std::string_view kType = event_types::kInventoryUpdated;
  static constexpr std::string_view kTopic = topics::kInventoryUpdated;
  std::string sku;
  int64_t delta = 0;
  int64_t available = 0;
  int64_t reserved = 0;
  std::optional<std::string> order_id;  ///< absent for an administrative change
  /// The catalogue fields after an administrative change (create, update, delete), so a live
  /// stock view follows a new product, a rename or a price change without reloading; absent on
  /// the changes orders make.
  std::optional<std::string> name;
  std::optional<int64_t> unit_amount;
  std::optional<std::string> currency;
  bool deleted = false;  ///< the product left the catalogue (soft delete): drop it from views
  const std::string& subject() const { return sku; }
  std::string encode() const;
  static Result<InventoryUpdated> decode(std::string_view data);
};

/// StockLevelLow / StockDepleted / StockLevelNormalized on inventory.alerts (key sku).
template <const std::string_view& Type>
struct StockAlert {
  static constexpr std::string_view kType = Type;
  static constexpr std::string_view kTopic = topics::kInventoryAlerts;
  std::string sku;
  int64_t available = 0;
  int64_t threshold = 0;
  const std::string& subject() const { return sku; }
  std::string encode() const;
  static Result<StockAlert> decode(std::string_view data);
};
using StockLevelLow = StockAlert<event_types::kStockLevelLow>;
using StockDepleted = StockAlert<event_types::kStockDepleted>;
using StockLevelNormalized = StockAlert<event_types::kStockLevelNormalized>;

// --- payments ----------------------------------------------------------------------------------

/// ecom.payment.authorize-payment.v1 on payments.commands.
struct AuthorizePayment {
  static constexpr std::string_view kType = event_types::kAuthorizePayment;
  static constexpr std::string_view kTopic = topics::kPaymentsCommands;
  std::string order_id;
  int64_t amount = 0;
  std::string currency;
  std::optional<std::string> payment_token;  ///< absent: the gateway declines (MISSING_TOKEN)
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<AuthorizePayment> decode(std::string_view data);
};

/// ecom.payment.refund-payment.v1 on payments.commands: `{orderId}`.
struct RefundPayment {
  static constexpr std::string_view kType = event_types::kRefundPayment;
  static constexpr std::string_view kTopic = topics::kPaymentsCommands;
  std::string order_id;
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<RefundPayment> decode(std::string_view data);
};

/// ecom.payment.payment-authorized.v1 on payments.events.
struct PaymentAuthorized {
  static constexpr std::string_view kType = event_types::kPaymentAuthorized;
  static constexpr std::string_view kTopic = topics::kPaymentsEvents;
  std::string order_id;
  std::string payment_id;
  int64_t amount = 0;
  std::string currency;
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<PaymentAuthorized> decode(std::string_view data);
};

/// ecom.payment.payment-declined.v1 on payments.events.
struct PaymentDeclined {
  static constexpr std::string_view kType = event_types::kPaymentDeclined;
  static constexpr std::string_view kTopic = topics::kPaymentsEvents;
  std::string order_id;
  std::string reason;
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<PaymentDeclined> decode(std::string_view data);
};

/// ecom.payment.payment-refunded.v1 on payments.events.
struct PaymentRefunded {
  static constexpr std::string_view kType = event_types::kPaymentRefunded;
  static constexpr std::string_view kTopic = topics::kPaymentsEvents;
  std::string order_id;
  int64_t amount = 0;
  bool refunded = false;  ///< false: nothing had been authorized
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<PaymentRefunded> decode(std::string_view data);
};

// --- notifications -----------------------------------------------------------------------------

/// ecom.notification.sent.v1 on notifications.sent.
struct NotificationSent {
  static constexpr std::string_view kType = event_types::kNotificationSent;
  static constexpr std::string_view kTopic = topics::kNotificationsSent;
  std::string notification_id;
  std::string order_id;
  std::string customer_id;
  std::string order_status;
  std::string channel;
  std::string subject_line;  ///< the notification's subject (JSON `subject`)
  int64_t attempts = 0;
  std::string sent_at;  ///< RFC 3339
  const std::string& subject() const { return order_id; }
  std::string encode() const;
  static Result<NotificationSent> decode(std::string_view data);
};

/// A new envelope for `event` (type, subject and data from it); see make_event for `cause`.
template <typename E>
Envelope make(std::string_view source, const E& event, const Envelope* cause = nullptr) {
  return make_event(source, E::kType, event.subject(), event.encode(), cause);
}

}  // namespace ecom::contract
