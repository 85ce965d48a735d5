#pragma once
/// The order saga as a pure state machine: (record, input, now) -> (new record, events to emit).
/// No I/O, no clock, no bus: the module persists the result and publishes the emissions in one
/// transaction. Every function here is pure and thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/contract/events.hpp"
#include "ecom/contract/order_status.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/result.hpp"

namespace ecom::saga {

using contract::OrderStatus;
namespace reason = contract::reason;

/// Where a saga is. kConfirmed and kCancelled are terminal for the order status, but the saga may
/// still wait there for an acknowledgement (a commit, or the undo of a late reply).
enum class SagaState {
  kAwaitingReservation,  ///< ReserveStock sent, waiting for StockReserved / ...Failed
  kAwaitingPayment,      ///< AuthorizePayment sent, waiting for PaymentAuthorized / ...Declined
  kCompensating,         ///< undo commands sent, waiting for their acknowledgements
  kConfirmed,            ///< CONFIRMED published
  kCancelled,            ///< CANCELLED published
};

/// Stable lower-case name, as stored and shown ("awaiting_reservation", ...).
std::string_view state_name(SagaState s) noexcept;
/// Parses a state_name(); false when unknown.
bool parse_state(std::string_view s, SagaState& out) noexcept;
/// True for kConfirmed and kCancelled.
constexpr bool is_terminal(SagaState s) noexcept {
  return s == SagaState::kConfirmed || s == SagaState::kCancelled;
}

/// Acknowledgements a saga still waits for (bit flags in SagaRecord::pending). Each one's command
/// is re-sent at its deadline until acknowledged.
enum PendingAck : uint32_t {
  kPendingNone = 0,
  kPendingRelease = 1,  ///< ReleaseStock sent, StockReleased not seen
  kPendingRefund = 2,   ///< RefundPayment sent, PaymentRefunded not seen
  kPendingCommit = 4,   ///< only in sagas stored by older releases: CommitStock awaited
                        ///< StockCommitted; cleared at their next deadline
};
/// Names of the set flags, e.g. {"release_stock", "refund_payment"}.
std::vector<std::string> pending_names(uint32_t pending);

/// One order line. Before the reservation `unit_amount` is the client's quote (if any) and `name`
/// is empty; after it both are the catalogue's, as the inventory priced the line.
using Item = contract::Line;

/// The persisted state of one saga (one row of `sagas`).
struct SagaRecord {
  std::string order_id;
  SagaState state = SagaState::kAwaitingReservation;
  OrderStatus status = OrderStatus::kPending;  ///< last status of the order (published or initial)
  std::string reason;                          ///< cancellation reason once decided, else empty
  std::string customer_id;
  std::string currency;
  int64_t amount = 0;  ///< catalogue total in minor units, known once stock is reserved
  std::optional<int64_t> expected_total;  ///< the client's quoted total, checked by the inventory
  std::optional<std::string> payment_token;
  std::vector<Item> items;
  std::string correlation_id;  ///< of the order flow, for events the timer emits
  std::string traceparent;
  std::string last_event_id;        ///< last input event applied (causation of timer events)
  bool stock_reserved = false;      ///< a reservation is known to exist and is not released
  bool payment_authorized = false;  ///< an authorization is known to exist and is not refunded
  uint32_t pending = kPendingNone;  ///< PendingAck flags
  int64_t deadline_ms = 0;          ///< when the current step times out; 0 = none
  int attempts = 0;                 ///< re-sends of the pending commands so far
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  bool operator==(const SagaRecord&) const = default;
};

/// What happened to a saga.
enum class InputKind {
  kOrderCreated,
  kCancellationRequested,
  kStockReserved,
  kStockReservationFailed,
  kStockReleased,
  kStockCommitted,
  kPaymentAuthorized,
  kPaymentDeclined,
  kPaymentRefunded,
  kTimeout,  ///< the clock reached the saga's deadline (from the timer, not the bus)
};
/// Stable name for logs and history ("order_created", "timeout", ...).
std::string_view input_name(InputKind k) noexcept;

/// One input, decoded from an event (or made by the timer).
struct Input {
  InputKind kind = InputKind::kTimeout;
  std::string order_id;
  // OrderCreated (items with the client's quotes) and StockReserved (items, amount and currency
  // as priced by the catalogue):
  std::string customer_id;  ///< also set by OrderCancellationRequested
  std::string currency;
  int64_t amount = 0;
  std::optional<int64_t> expected_total;
  std::optional<std::string> payment_token;
  std::vector<Item> items;
  // Failure / decline:
  std::string reason;
  // PaymentRefunded:
  bool refunded = false;
  // From the envelope (empty for a timeout):
  std::string event_id;
  std::string correlation_id;
  std::string traceparent;
};

/// Decodes an event from a saga topic. nullopt: a type the saga does not consume (ack and
/// ignore). Error (code INVALID_PAYLOAD, not retryable): data that can never be processed.
Result<std::optional<Input>> parse_input(const Envelope& e);

/// Deadlines of the steps.
struct Policy {
  int64_t reserve_timeout_ms = 30'000;       ///< ReserveStock -> reply
  int64_t payment_timeout_ms = 30'000;       ///< AuthorizePayment -> reply
  int64_t compensation_timeout_ms = 30'000;  ///< Release/Refund/Commit -> acknowledgement
  int64_t max_backoff_ms = 300'000;          ///< cap of the doubling re-send interval
};

/// An event to publish: the module wraps it with make_event("saga", type, order_id, data, cause).
struct Emission {
  std::string topic;
  std::string type;
  std::string data;  ///< JSON object text
};

/// The outcome of applying one input.
struct Transition {
  std::optional<SagaRecord> record;  ///< the saga after the input; nullopt when there is none
  bool changed = false;              ///< record must be saved (and a history row written)
  std::vector<Emission> emissions;   ///< commands and statuses, in publication order
  std::string note;                  ///< what was decided, for history and logs
  bool warn = false;                 ///< note deserves a warning (re-send, unknown saga)
};

/// Applies `input` to the saga `current` (nullopt when no saga exists for the order) at time
/// `now_ms`. Never fails: an input that does not apply is ignored with a note.
Transition decide(const std::optional<SagaRecord>& current, const Input& input, int64_t now_ms,
                  const Policy& policy);

/// The items as JSON (`[{"sku":"A","quantity":1}]`, plus `unitAmount` and `name` where known), as
/// stored in `sagas.items_json`.
std::string items_to_json(const std::vector<Item>& items);
/// Parses items_to_json() output (or an OrderCreated/StockReserved `items` array).
Result<std::vector<Item>> items_from_json(std::string_view json);

}  // namespace ecom::saga
