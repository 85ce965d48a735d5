#include "ecom/saga/saga_machine.hpp"

#include <algorithm>
#include <array>
#include <utility>

#include "ecom/core/backoff.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/json.hpp"
#include "ecom/core/topics.hpp"

namespace ecom::saga {
namespace {

using json::key;
using json::write_int64;
using json::write_string;
using json::Writer;

constexpr std::array<std::pair<SagaState, std::string_view>, 5> kStateNames{{
    {SagaState::kAwaitingReservation, "awaiting_reservation"},
    {SagaState::kAwaitingPayment, "awaiting_payment"},
    {SagaState::kCompensating, "compensating"},
    {SagaState::kConfirmed, "confirmed"},
    {SagaState::kCancelled, "cancelled"},
}};

void write_items(Writer& w, const std::vector<Item>& items) {
  w.StartArray();
  for (const auto& it : items) {
    w.StartObject();
    write_string(w, "sku", it.sku);
    write_int64(w, "quantity", it.quantity);
    w.EndObject();
  }
  w.EndArray();
}

std::string order_only(const SagaRecord& r) {
  return json::object([&](Writer& w) { write_string(w, "orderId", r.order_id); });
}

Emission reserve_stock(const SagaRecord& r) {
  return {std::string(topics::kInventoryCommands), std::string(event_types::kReserveStock),
          json::object([&](Writer& w) {
            write_string(w, "orderId", r.order_id);
            key(w, "items");
            write_items(w, r.items);
          })};
}

Emission release_stock(const SagaRecord& r) {
  return {std::string(topics::kInventoryCommands), std::string(event_types::kReleaseStock),
          order_only(r)};
}

Emission commit_stock(const SagaRecord& r) {
  return {std::string(topics::kInventoryCommands), std::string(event_types::kCommitStock),
          order_only(r)};
}

Emission authorize_payment(const SagaRecord& r) {
  return {std::string(topics::kPaymentsCommands), std::string(event_types::kAuthorizePayment),
          json::object([&](Writer& w) {
            write_string(w, "orderId", r.order_id);
            write_int64(w, "amount", r.amount);
            write_string(w, "currency", r.currency);
            // Absent like in OrderCreated, so the gateway answers MISSING_TOKEN itself.
            if (r.payment_token) write_string(w, "paymentToken", *r.payment_token);
          })};
}

Emission refund_payment(const SagaRecord& r) {
  return {std::string(topics::kPaymentsCommands), std::string(event_types::kRefundPayment),
          order_only(r)};
}

Emission status_changed(const SagaRecord& r, int64_t now_ms) {
  return {std::string(topics::kOrdersStatus), std::string(event_types::kOrderStatusChanged),
          json::object([&](Writer& w) {
            write_string(w, "orderId", r.order_id);
            write_string(w, "status", r.status);
            if (!r.reason.empty()) write_string(w, "reason", r.reason);
            write_string(w, "at", format_rfc3339(now_ms));
          })};
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
        publish(status::kStockReserved);
        emit(authorize_payment(r_));
        set_deadline(p_.payment_timeout_ms);
        return done("stock reserved; AuthorizePayment sent");
      case InputKind::kStockReservationFailed:
        r_.state = SagaState::kCancelled;
        r_.reason = reason::kOutOfStock;
        r_.deadline_ms = 0;
        publish(status::kCancelled);
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
        emit(commit_stock(r_));
        publish(status::kPaymentAuthorized);
        publish(status::kConfirmed);
        r_.pending |= kPendingCommit;
        set_deadline(p_.compensation_timeout_ms);
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
      publish(status::kCancelled);
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
  void publish(std::string_view st) {
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

constexpr std::string_view kInvalidPayload{"INVALID_PAYLOAD"};

Error invalid(std::string msg, std::string field = {}) {
  return Error{std::string(kInvalidPayload), std::move(msg), std::move(field), false};
}

Result<std::vector<Item>> parse_items(const rapidjson::Value& v, bool require_non_empty) {
  if (!v.IsArray()) return invalid("items must be an array", "items");
  if (require_non_empty && v.Empty()) return invalid("items must not be empty", "items");
  std::vector<Item> items;
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    const auto& e = v[i];
    const std::string field = "items[" + std::to_string(i) + "]";
    if (!e.IsObject()) return invalid(field + " must be an object", field);
    const auto* sku = json::find(e, "sku");
    const auto* qty = json::find(e, "quantity");
    if (!sku || !sku->IsString() || sku->GetStringLength() == 0)
      return invalid(field + ".sku must be a non-empty string", field + ".sku");
    if (!qty || !qty->IsInt64() || qty->GetInt64() <= 0)
      return invalid(field + ".quantity must be a positive integer", field + ".quantity");
    items.push_back({std::string(sku->GetString(), sku->GetStringLength()), qty->GetInt64()});
  }
  return items;
}

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
      r.status = status::kPending;
      r.customer_id = in.customer_id;
      r.currency = in.currency;
      r.amount = in.amount;
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
      r.status = status::kCancelled;
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

Result<std::optional<Input>> parse_input(const Envelope& e) {
  static constexpr std::array<std::pair<std::string_view, InputKind>, 9> kTypes{{
      {event_types::kOrderCreated, InputKind::kOrderCreated},
      {event_types::kOrderCancellationRequested, InputKind::kCancellationRequested},
      {event_types::kStockReserved, InputKind::kStockReserved},
      {event_types::kStockReservationFailed, InputKind::kStockReservationFailed},
      {event_types::kStockReleased, InputKind::kStockReleased},
      {event_types::kStockCommitted, InputKind::kStockCommitted},
      {event_types::kPaymentAuthorized, InputKind::kPaymentAuthorized},
      {event_types::kPaymentDeclined, InputKind::kPaymentDeclined},
      {event_types::kPaymentRefunded, InputKind::kPaymentRefunded},
  }};
  auto it =
      std::find_if(kTypes.begin(), kTypes.end(), [&](const auto& p) { return p.first == e.type; });
  if (it == kTypes.end()) return std::optional<Input>();

  auto doc = json::parse_object(e.data, invalid("data is not a JSON object"));
  if (!doc) return doc.error();
  const auto& d = doc.value();

  Input in;
  in.kind = it->second;
  in.event_id = e.id;
  in.correlation_id = e.correlation_id;
  in.traceparent = e.traceparent;

  if (const auto* v = json::find(d, "orderId")) {
    if (!v->IsString()) return invalid("orderId must be a string", "orderId");
    in.order_id.assign(v->GetString(), v->GetStringLength());
  } else {
    in.order_id = e.subject;
  }
  if (in.order_id.empty()) return invalid("orderId is missing", "orderId");

  auto opt_string = [&](std::string_view name, std::string& out) -> Status {
    auto v = json::optional_string(d, name, kInvalidPayload);
    if (!v) return v.error();
    if (v.value()) out = std::move(*v.value());
    return {};
  };

  switch (in.kind) {
    case InputKind::kOrderCreated: {
      if (auto st = opt_string("customerId", in.customer_id); !st) return st.error();
      if (auto st = opt_string("currency", in.currency); !st) return st.error();
      if (in.currency.empty()) return invalid("currency is missing", "currency");
      const auto* amount = json::find(d, "totalAmount");
      if (!amount || !amount->IsInt64() || amount->GetInt64() < 0)
        return invalid("totalAmount must be a non-negative integer", "totalAmount");
      in.amount = amount->GetInt64();
      const auto* items = json::find(d, "items");
      if (!items) return invalid("items is missing", "items");
      auto parsed = parse_items(*items, true);
      if (!parsed) return parsed.error();
      in.items = std::move(parsed.value());
      auto token = json::optional_string(d, "paymentToken", kInvalidPayload, json::Null::kAbsent);
      if (!token) return token.error();
      in.payment_token = std::move(token.value());
      break;
    }
    case InputKind::kCancellationRequested:
      if (auto st = opt_string("customerId", in.customer_id); !st) return st.error();
      break;
    case InputKind::kStockReservationFailed:
    case InputKind::kPaymentDeclined:
      if (auto st = opt_string("reason", in.reason); !st) return st.error();
      break;
    case InputKind::kPaymentRefunded:
      if (const auto* v = json::find(d, "refunded")) {
        if (!v->IsBool()) return invalid("refunded must be a boolean", "refunded");
        in.refunded = v->GetBool();
      }
      break;
    default:
      break;
  }
  return std::optional<Input>(std::move(in));
}

std::string items_to_json(const std::vector<Item>& items) {
  rapidjson::StringBuffer buf;
  Writer w(buf);
  write_items(w, items);
  return json::to_string(buf);
}

Result<std::vector<Item>> items_from_json(std::string_view json) {
  rapidjson::Document d;
  d.Parse(json.data(), json.size());
  if (d.HasParseError()) return invalid("items is not valid JSON", "items");
  return parse_items(d, false);
}

}  // namespace ecom::saga
