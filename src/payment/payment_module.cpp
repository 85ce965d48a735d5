#include "ecom/payment/payment_module.hpp"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <utility>

#include "ecom/bus/event_bus.hpp"
#include "ecom/bus/handler.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/contract/events.hpp"
#include "ecom/core/json.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/metrics.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "ecom/http/router.hpp"
#include "payment_service.hpp"

namespace ecom::payment {
namespace {

constexpr std::string_view kTag = PaymentModule::kName;
// Simulated latency is bounded so a misconfiguration cannot park a partition indefinitely.
constexpr int64_t kMaxLatencyMs = 30'000;

std::string payment_json(const Payment& p) {
  return json::object([&](json::Writer& w) {
    json::write_string(w, "orderId", p.order_id);
    json::key(w, "paymentId");
    if (p.payment_id.empty()) {
      w.Null();
    } else {
      json::str(w, p.payment_id);
    }
    json::write_string(w, "status", p.status);
    json::write_int64(w, "amount", p.amount);
    json::write_string(w, "currency", p.currency);
    if (!p.reason.empty()) json::write_string(w, "reason", p.reason);
    json::write_string(w, "createdAt", p.created_at);
    json::write_string(w, "updatedAt", p.updated_at);
  });
}

}  // namespace

struct PaymentModule::Impl {
  Rules rules;
  std::chrono::milliseconds latency{0};
  db::Database* db = nullptr;
  bus::OutboxRelay* outbox = nullptr;
  std::unique_ptr<bus::Subscription> subscription;

  std::mutex mu;
  std::condition_variable stopping_cv;
  bool stopping = false;

  // Payments by outcome, counted once per order (a replayed command is not counted again).
  metrics::Counter payments(std::string_view status) {
    return metrics::registry().counter("ecomd_payments_total", "Payment outcomes by status.",
                                       {{"role", kTag}, {"status", status}});
  }
  const metrics::Counter authorized = payments("authorized");
  const metrics::Counter declined = payments("declined");
  const metrics::Counter no_answer = payments("no_answer");
  const metrics::Counter refunded = payments("refunded");

  bus::Outcome on_message(const bus::Message& m);
  bus::Outcome apply(const bus::Message& m);
  void simulate_latency();
  http::Response get(const http::Request& req);
};

PaymentModule::PaymentModule() : impl_(std::make_unique<Impl>()) {}
PaymentModule::~PaymentModule() { stop(); }

Status PaymentModule::configure(const ConfigSection& config) {
  return ConfigSpec{}
      .integer("amount_limit", impl_->rules.amount_limit, 0, INT64_MAX)  // minor units
      .millis("latency_ms", impl_->latency, 0, kMaxLatencyMs)
      .read(config);
}

Status PaymentModule::start(ModuleContext& ctx) {
  Impl& s = *impl_;
  s.db = &ctx.db;
  s.outbox = &ctx.outbox;
  {
    std::lock_guard lock(s.mu);
    s.stopping = false;
  }
  if (auto st = ctx.db.migrate(kName, migrations()); !st) return st;

  ctx.router.add(http::Method::kGet, "/api/payments/{orderId}",
                 [&s](const http::Request& r) { return s.get(r); });
  auto sub = ctx.bus.subscribe(
      bus::SubscriptionOptions{.group = "ecomd-payment",
                               .topics = {std::string(topics::kPaymentsCommands)},
                               // A simulated gateway latency would hold the
                               // store for a whole batch: one transaction each.
                               .store = s.latency.count() > 0 ? nullptr : &ctx.db},
      [&s](const bus::Message& m) { return s.on_message(m); });
  if (!sub) return sub.error();
  s.subscription = std::move(sub).value();
  log::info(kTag, "simulated gateway: amount_limit={} latency_ms={}", s.rules.amount_limit,
            s.latency.count());
  return {};
}

void PaymentModule::stop() noexcept {
  if (!impl_) return;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->stopping_cv.notify_all();  // cut a simulated delay short so close() returns promptly
  if (impl_->subscription) {
    impl_->subscription->close();
    impl_->subscription.reset();
  }
}

void PaymentModule::Impl::simulate_latency() {
  if (latency.count() <= 0) return;
  std::unique_lock lock(mu);
  stopping_cv.wait_for(lock, latency, [this] { return stopping; });
}

bus::Outcome PaymentModule::Impl::on_message(const bus::Message& m) {
  return bus::guarded(kTag, m, [&] { return apply(m); });
}

bus::Outcome PaymentModule::Impl::apply(const bus::Message& m) {
  const Envelope& env = m.envelope;

  Result<bool> applied = false;
  const metrics::Counter* outcome = nullptr;  // counted once the transaction committed
  if (env.type == event_types::kAuthorizePayment) {
    auto cmd = parse_authorize_payment(env.data);
    if (!cmd) return bus::reject(kTag, m, cmd.error());
    simulate_latency();
    {
      std::lock_guard lock(mu);
      // Shutting down mid-delay: leave the message uncommitted; it is redelivered after restart.
      if (stopping) return bus::Outcome::retry("payment module stopping");
    }
    applied = db->transaction([&](db::Tx& tx) -> Result<bool> {
      if (!db::inbox_claim(tx, kTag, env.id, m.once)) return false;
      auto r = authorize_payment(tx, rules, cmd.value(), env);
      if (!r.repeated)
        outcome = r.decision == Decision::kAuthorized ? &authorized
                  : r.decision == Decision::kDeclined ? &declined
                                                      : &no_answer;
      log::debug(kTag, "order {}: {}{}{}", cmd->order_id,
                 r.decision == Decision::kAuthorized ? "authorized"
                 : r.decision == Decision::kDeclined ? "declined "
                                                     : "no answer (simulated timeout)",
                 r.reason, r.repeated ? " (replayed)" : "");
      return true;
    });
  } else if (env.type == event_types::kRefundPayment) {
    auto order_id = parse_refund_payment(env.data);
    if (!order_id) return bus::reject(kTag, m, order_id.error());
    applied = db->transaction([&](db::Tx& tx) -> Result<bool> {
      if (!db::inbox_claim(tx, kTag, env.id, m.once)) return false;
      auto r = refund_payment(tx, order_id.value(), env);
      if (r.refunded) outcome = &refunded;
      log::debug(kTag, "order {}: refund refunded={} amount={}", order_id.value(), r.refunded,
                 r.amount);
      return true;
    });
  } else {
    return bus::reject(
        kTag, m,
        Error{ErrorCode::kInvalidPayload, "unknown command type on payments.commands", "type"});
  }

  if (!applied) return bus::store_failure(kTag, m, applied.error());
  if (applied.value() && outcome != nullptr) outcome->inc();
  if (applied.value()) outbox->notify();
  return bus::Outcome::ack();
}

http::Response PaymentModule::Impl::get(const http::Request& req) {
  const std::string order_id(req.param("orderId"));
  auto payment = db->read(
      [&](db::Tx& tx) -> Result<std::optional<Payment>> { return find_payment(tx, order_id); });
  if (!payment) {
    const Error& e = payment.error();
    if (e.code == ErrorCode::kStoreUnavailable) return http::error_response(e);
    if (e.retryable) {
      return http::error_response(
          Error{ErrorCode::kUnavailable, "the payment store is busy; retry", {}, true});
    }
    log::error(kTag, "store error: {} {}", e.code, e.message);
    return http::error_response(Error{ErrorCode::kInternal, "internal error", {}, false});
  }
  if (!payment.value()) {
    return http::error_response(
        Error{ErrorCode::kNotFound, "no payment for order " + order_id, "orderId", false});
  }
  return http::json(200, payment_json(*payment.value()));
}

}  // namespace ecom::payment
