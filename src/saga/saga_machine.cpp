#include "saga_machine.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "ecom/core/backoff.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/topics.hpp"

namespace ecom::saga {
namespace {

constexpr std::array<std::pair<SagaState, std::string_view>, 5> kStateNames{{
    {SagaState::kAwaitingReservation, "awaiting_reservation"},
    {SagaState::kAwaitingPayment, "awaiting_payment"},
    {SagaState::kCompensating, "compensating"},
    {SagaState::kConfirmed, "confirmed"},
    {SagaState::kCancelled, "cancelled"},
}};

template <typename E>
Emission emission(const E& e) {
  return {std::string(E::kTopic), std::string(E::kType), e.encode()};
}

// The inventory prices the order from its catalogue while it reserves: it refuses a currency
// other than the products' and any client quote (unitAmount, expectedTotal) that differs.
Emission reserve_stock(const SagaRecord& r) {
  return emission(contract::ReserveStock{r.order_id, r.currency, r.items, r.expected_total});
}

Emission release_stock(const SagaRecord& r) { return emission(contract::ReleaseStock{r.order_id}); }

Emission commit_stock(const SagaRecord& r) { return emission(contract::CommitStock{r.order_id}); }

Emission authorize_payment(const SagaRecord& r) {
  // The token stays absent like in OrderCreated, so the gateway answers MISSING_TOKEN itself.
  return emission(contract::AuthorizePayment{r.order_id, r.amount, r.currency, r.payment_token});
}

Emission refund_payment(const SagaRecord& r) {
  return emission(contract::RefundPayment{r.order_id});
}

Emission status_changed(const SagaRecord& r, int64_t now_ms) {
  contract::OrderStatusChanged e{r.order_id, r.status, r.reason, format_rfc3339(now_ms), {}};
  // The order learns its catalogue pricing here, once: the total and the lines as sold.
  if (r.status == OrderStatus::kStockReserved)
    e.pricing = contract::Pricing{r.amount, r.currency, r.items};
  return emission(e);
}

/// The order's cancellation reason for a StockReservationFailed reason: a price or currency the
/// client got wrong is worth telling apart; an unknown sku is, to the customer, out of stock.
std::string_view cancel_reason_for_reservation(std::string_view failure) {
  if (failure == reason::kPriceChanged) return reason::kPriceChanged;
  if (failure == reason::kCurrencyMismatch) return reason::kCurrencyMismatch;
  return reason::kOutOfStock;
}

/// The re-send interval after `attempts` re-sends: doubling from the compensation timeout.
int64_t backoff_ms(const Policy& p, int attempts) {
  const std::chrono::milliseconds base(std::max<int64_t>(p.compensation_timeout_ms, 1));
  const std::chrono::milliseconds cap(std::max(p.max_backoff_ms, p.compensation_timeout_ms));
  return Backoff{base, cap}.after(attempts + 1).count();
}

/// Applies one input to a known saga. Kept as a class so the helpers share the record.
class Step {
 public:
  Step(const SagaRecord& r, const Input& in, int64_t now, const Policy& p)
      : r_(r), in_(in), now_(now), p_(p) {}

  Transition run() {
    if (in_.kind == InputKind::kTimeout) {
      if (r_.deadline_ms == 0 || now_ < r_.deadline_ms) return ignore("deadline not due");
      return on_timeout();
    }
    switch (in_.kind) {
      case InputKind::kStockReleased:
        return acknowledge(kPendingRelease, "stock released");
      case InputKind::kPaymentRefunded:
        return acknowledge(kPendingRefund, in_.refunded ? "payment refunded"
                                                        : "refund acknowledged (nothing held)");
      case InputKind::kStockCommitted:
        return acknowledge(kPendingCommit, "stock committed");
      default:
        break;
    }
    switch (r_.state) {
      case SagaState::kAwaitingReservation:
        return awaiting_reservation();
      case SagaState::kAwaitingPayment:
        return awaiting_payment();
      case SagaState::kCompensating:
      case SagaState::kConfirmed:
      case SagaState::kCancelled:
        return decided();
    }
    return ignore("unknown state");
  }

 private:
  Transition awaiting_reservation() {
    switch (in_.kind) {
      case InputKind::kStockReserved:
        r_.stock_reserved = true;
        r_.state = SagaState::kAwaitingPayment;
        // The payment is authorized for what the catalogue priced, never a client's number.
        r_.amount = in_.amount;
        r_.items = in_.items;
        publish(OrderStatus::kStockReserved);
        emit(authorize_payment(r_));
        set_deadline(p_.payment_timeout_ms);
        return done("stock reserved and priced at " + std::to_string(r_.amount) + " " +
                    r_.currency + "; AuthorizePayment sent");
      case InputKind::kStockReservationFailed:
        r_.state = SagaState::kCancelled;
        r_.reason = cancel_reason_for_reservation(in_.reason);
        r_.deadline_ms = 0;
        publish(OrderStatus::kCancelled);
        return done("stock reservation failed (" + in_.reason + "); cancelled");
      case InputKind::kCancellationRequested:
        compensate(reason::kCustomerCancelled, kPendingRelease);
        return done("customer cancelled while awaiting reservation; ReleaseStock sent");
      default:
        return ignore_unexpected();
    }
  }

  Transition awaiting_payment() {
    switch (in_.kind) {
      case InputKind::kPaymentAuthorized:
        r_.payment_authorized = true;
        r_.state = SagaState::kConfirmed;
        // CommitStock waits for no acknowledgement: it leaves through the outbox of this very
        // transaction, the bus delivers it until the inventory has applied it (once), so a
        // re-send could only repeat it — and a StockCommitted reply would cost an event, a
        // consume and a saga transaction per order to learn nothing. ReleaseStock and
        // RefundPayment keep theirs: CANCELLED is published only once both are done.
        emit(commit_stock(r_));
        // CONFIRMED only: a PAYMENT_AUTHORIZED status here would be decided in the same
        // transition and carry nothing CONFIRMED does not (it outranks it), yet cost an event
        // for every consumer of orders.status. The status stays in the contract for readers.
        publish(OrderStatus::kConfirmed);
        r_.deadline_ms = 0;
        r_.attempts = 0;
        return done("payment authorized; CommitStock sent; confirmed");
      case InputKind::kPaymentDeclined:
        compensate(reason::kPaymentDeclined, kPendingRelease);
        return done("payment declined (" + in_.reason + "); ReleaseStock sent");
      case InputKind::kCancellationRequested:
        compensate(reason::kCustomerCancelled, kPendingRelease | kPendingRefund);
        return done(
            "customer cancelled while awaiting payment; ReleaseStock and RefundPayment sent");
      default:
        return ignore_unexpected();
    }
  }

  /// Compensating, confirmed or cancelled: only late replies that hold something need work.
  Transition decided() {
    const bool confirmed = r_.state == SagaState::kConfirmed;
    switch (in_.kind) {
      case InputKind::kStockReserved:
        // A reservation we did not know of (it landed after a timeout or cancel): undo it. One
        // we already know of is covered by the release already sent.
        if (confirmed || r_.stock_reserved) return ignore("duplicate StockReserved");
        r_.stock_reserved = true;
        add_pending(kPendingRelease);
        return done("late StockReserved; ReleaseStock sent");
      case InputKind::kPaymentAuthorized:
        if (confirmed || r_.payment_authorized) return ignore("duplicate PaymentAuthorized");
        r_.payment_authorized = true;
        add_pending(kPendingRefund);
        return done("late PaymentAuthorized; RefundPayment sent");
      case InputKind::kCancellationRequested:
        return ignore(confirmed ? "cancellation after confirmation ignored"
                                : "cancellation ignored: already cancelling or cancelled");
      case InputKind::kOrderCreated:
        return ignore("duplicate OrderCreated");
      default:
        return ignore_unexpected();
    }
  }

  Transition on_timeout() {
    switch (r_.state) {
      case SagaState::kAwaitingReservation:
        compensate(reason::kTimeout, kPendingRelease);
        return done("reservation timed out; ReleaseStock sent", true);
      case SagaState::kAwaitingPayment:
        compensate(reason::kTimeout, kPendingRelease | kPendingRefund);
        return done("payment timed out; ReleaseStock and RefundPayment sent", true);
      default:
        break;
    }
    // A saga stored by a release that awaited StockCommitted (which the inventory no longer
    // sends): its CommitStock went out with CONFIRMED, there is nothing to re-send.
    r_.pending &= ~kPendingCommit;
    if (r_.pending == kPendingNone) {
      r_.deadline_ms = 0;  // nothing to wait for: a stale deadline
      return done("stale deadline cleared");
    }
    ++r_.attempts;
    emit_pending(r_.pending);
    r_.deadline_ms = now_ + backoff_ms(p_, r_.attempts);
    std::string what;
    for (const auto& n : pending_names(r_.pending)) what += (what.empty() ? "" : ", ") + n;
    return done("not acknowledged in time; re-sent (attempt " + std::to_string(r_.attempts + 1) +
                    "): " + what + "; next deadline in " + std::to_string(r_.deadline_ms - now_) +
                    " ms",
                true);
  }

  Transition acknowledge(uint32_t flag, std::string what) {
    if ((r_.pending & flag) == 0) return ignore("unexpected or duplicate: " + what);
    r_.pending &= ~flag;
    if (flag == kPendingRelease) r_.stock_reserved = false;
    if (flag == kPendingRefund) r_.payment_authorized = false;
    if (r_.state == SagaState::kCompensating &&
        (r_.pending & (kPendingRelease | kPendingRefund)) == 0) {
      r_.state = SagaState::kCancelled;
      publish(OrderStatus::kCancelled);
      what += "; compensation complete; cancelled (" + r_.reason + ")";
    }
    // The other acknowledgements keep their deadline: they have been waiting as long.
    if (r_.pending == kPendingNone) {
      r_.deadline_ms = 0;
      r_.attempts = 0;
    }
    return done(std::move(what));
  }

  /// Decides to cancel: the undo commands are sent now and acknowledged before CANCELLED.
  void compensate(std::string_view why, uint32_t pending) {
    r_.state = SagaState::kCompensating;
    r_.reason = why;
    r_.pending |= pending;
    emit_pending(pending);
    set_deadline(p_.compensation_timeout_ms);
  }

  void add_pending(uint32_t flag) {
    const bool had = r_.pending != kPendingNone;
    r_.pending |= flag;
    emit_pending(flag);
    if (!had) set_deadline(p_.compensation_timeout_ms);
  }

  void emit_pending(uint32_t flags) {
    if (flags & kPendingRelease) emit(release_stock(r_));
    if (flags & kPendingRefund) emit(refund_payment(r_));
    if (flags & kPendingCommit) emit(commit_stock(r_));
  }

  void set_deadline(int64_t in_ms) {
    r_.deadline_ms = now_ + in_ms;
    r_.attempts = 0;
  }
  void emit(Emission e) { t_.emissions.push_back(std::move(e)); }
  void publish(OrderStatus st) {
    r_.status = st;
    emit(status_changed(r_, now_));
  }

  Transition done(std::string note, bool warn = false) {
    r_.updated_at_ms = now_;
    if (!in_.event_id.empty()) r_.last_event_id = in_.event_id;
    t_.record = std::move(r_);
    t_.changed = true;
    t_.note = std::move(note);
    t_.warn = warn;
    return std::move(t_);
  }
  Transition ignore(std::string note) {
    t_.record = std::move(r_);
    t_.changed = false;
    t_.emissions.clear();
    t_.note = std::move(note);
    return std::move(t_);
  }
  Transition ignore_unexpected() {
    return ignore(std::string(input_name(in_.kind)) + " unexpected in state " +
                  std::string(state_name(r_.state)) + "; ignored");
  }

  SagaRecord r_;
  const Input& in_;
  int64_t now_;
  const Policy& p_;
  Transition t_;
};

}  // namespace

std::string_view state_name(SagaState s) noexcept {
  for (const auto& [st, n] : kStateNames)
    if (st == s) return n;
  return "unknown";
}

bool parse_state(std::string_view s, SagaState& out) noexcept {
  for (const auto& [st, n] : kStateNames) {
    if (n == s) {
      out = st;
      return true;
    }
  }
  return false;
}

std::vector<std::string> pending_names(uint32_t pending) {
  std::vector<std::string> out;
  if (pending & kPendingRelease) out.emplace_back("release_stock");
  if (pending & kPendingRefund) out.emplace_back("refund_payment");
  if (pending & kPendingCommit) out.emplace_back("commit_stock");
  return out;
}

std::string_view input_name(InputKind k) noexcept {
  switch (k) {
    case InputKind::kOrderCreated:
      return "order_created";
    case InputKind::kCancellationRequested:
      return "cancellation_requested";
    case InputKind::kStockReserved:
      return "stock_reserved";
    case InputKind::kStockReservationFailed:
      return "stock_reservation_failed";
    case InputKind::kStockReleased:
      return "stock_released";
    case InputKind::kStockCommitted:
      return "stock_committed";
    case InputKind::kPaymentAuthorized:
      return "payment_authorized";
    case InputKind::kPaymentDeclined:
      return "payment_declined";
    case InputKind::kPaymentRefunded:
      return "payment_refunded";
    case InputKind::kTimeout:
      return "timeout";
  }
  return "unknown";
}

Transition decide(const std::optional<SagaRecord>& current, const Input& in, int64_t now_ms,
                  const Policy& policy) {
  if (current) return Step(*current, in, now_ms, policy).run();

  Transition t;
  switch (in.kind) {
    case InputKind::kOrderCreated: {
      SagaRecord r;
      r.order_id = in.order_id;
      r.state = SagaState::kAwaitingReservation;
      r.status = OrderStatus::kPending;
      r.customer_id = in.customer_id;
      r.currency = in.currency;
      r.expected_total = in.expected_total;
      r.payment_token = in.payment_token;
      r.items = in.items;
      r.correlation_id = in.correlation_id;
      r.traceparent = in.traceparent;
      r.last_event_id = in.event_id;
      r.deadline_ms = now_ms + policy.reserve_timeout_ms;
      r.created_at_ms = r.updated_at_ms = now_ms;
      t.emissions.push_back(reserve_stock(r));
      t.record = std::move(r);
      t.changed = true;
      t.note = "saga started; ReserveStock sent";
      return t;
    }
    case InputKind::kCancellationRequested: {
      // The cancellation overtook OrderCreated (they travel on different topics). Nothing was
      // done yet, so the order is cancelled outright and the late OrderCreated finds it decided.
      SagaRecord r;
      r.order_id = in.order_id;
      r.state = SagaState::kCancelled;
      r.status = OrderStatus::kCancelled;
      r.reason = reason::kCustomerCancelled;
      r.customer_id = in.customer_id;
      r.correlation_id = in.correlation_id;
      r.traceparent = in.traceparent;
      r.last_event_id = in.event_id;
      r.created_at_ms = r.updated_at_ms = now_ms;
      t.emissions.push_back(status_changed(r, now_ms));
      t.record = std::move(r);
      t.changed = true;
      t.note = "cancelled before the order was seen";
      return t;
    }
    case InputKind::kTimeout:
      t.note = "no saga";
      return t;
    default:
      t.note = std::string(input_name(in.kind)) + " for unknown saga " + in.order_id + "; ignored";
      t.warn = true;
      return t;
  }
}

namespace {

// Decodes `E` from the envelope and lets `fill` copy what the saga needs into the input.
template <typename E, typename F>
Result<std::optional<Input>> decoded(const Envelope& e, InputKind kind, F&& fill) {
  auto ev = E::decode(e.data);
  if (!ev) return ev.error();
  Input in;
  in.kind = kind;
  in.order_id = ev->order_id;
  in.event_id = e.id;
  in.correlation_id = e.correlation_id;
  in.traceparent = e.traceparent;
  fill(ev.value(), in);
  return std::optional<Input>(std::move(in));
}

constexpr auto kNothing = [](const auto&, Input&) {};

}  // namespace

Result<std::optional<Input>> parse_input(const Envelope& e) {
  namespace c = contract;
  namespace et = event_types;
  const std::string_view type = e.type;
  if (type == et::kOrderCreated)
    return decoded<c::OrderCreated>(e, InputKind::kOrderCreated, [](auto& ev, Input& in) {
      in.customer_id = std::move(ev.customer_id);
      in.currency = std::move(ev.currency);
      in.items = std::move(ev.items);
      in.expected_total = ev.expected_total;
      in.payment_token = std::move(ev.payment_token);
    });
  if (type == et::kOrderCancellationRequested)
    return decoded<c::OrderCancellationRequested>(
        e, InputKind::kCancellationRequested,
        [](auto& ev, Input& in) { in.customer_id = std::move(ev.customer_id); });
  if (type == et::kStockReserved)
    return decoded<c::StockReserved>(e, InputKind::kStockReserved, [](auto& ev, Input& in) {
      // The catalogue's pricing: the only amount the saga will have authorized.
      in.amount = ev.pricing.total_amount;
      in.currency = std::move(ev.pricing.currency);
      in.items = std::move(ev.pricing.items);
    });
  if (type == et::kStockReservationFailed)
    return decoded<c::StockReservationFailed>(e, InputKind::kStockReservationFailed,
                                              [](auto& ev, Input& in) { in.reason = ev.reason; });
  if (type == et::kStockReleased)
    return decoded<c::StockReleased>(e, InputKind::kStockReleased, kNothing);
  if (type == et::kStockCommitted)
    return decoded<c::StockCommitted>(e, InputKind::kStockCommitted, kNothing);
  if (type == et::kPaymentAuthorized)
    return decoded<c::PaymentAuthorized>(e, InputKind::kPaymentAuthorized, kNothing);
  if (type == et::kPaymentDeclined)
    return decoded<c::PaymentDeclined>(e, InputKind::kPaymentDeclined,
                                       [](auto& ev, Input& in) { in.reason = ev.reason; });
  if (type == et::kPaymentRefunded)
    return decoded<c::PaymentRefunded>(e, InputKind::kPaymentRefunded,
                                       [](auto& ev, Input& in) { in.refunded = ev.refunded; });
  return std::optional<Input>();  // a type the saga does not consume
}

std::string items_to_json(const std::vector<Item>& items) { return contract::encode_lines(items); }

Result<std::vector<Item>> items_from_json(std::string_view json) {
  return contract::decode_lines(json);
}

}  // namespace ecom::saga
