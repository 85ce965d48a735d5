#include "ecom/saga/saga_module.hpp"

#include <atomic>
#include <chrono>
#include <exception>

#include "ecom/bus/event_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/backoff.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/json.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "ecom/http/router.hpp"
#include "saga_machine.hpp"
#include "saga_store.hpp"

namespace ecom::saga {
namespace {

constexpr std::string_view kTag = SagaModule::kName;
constexpr int kDueBatch = 256;
constexpr std::chrono::milliseconds kScanBackoffCap{5'000};
constexpr int kHistoryLimit = 500;
constexpr int kListLimit = 100;

using json::key;
using json::str;
using json::write_bool;
using json::write_int64;
using json::write_string;
using json::Writer;

void str_or_null(Writer& w, std::string_view v) {
  if (v.empty()) {
    w.Null();
  } else {
    str(w, v);
  }
}
void time_or_null(Writer& w, int64_t ms) {
  if (ms > 0) {
    str(w, format_rfc3339(ms));
  } else {
    w.Null();
  }
}

void write_summary(Writer& w, const SagaRecord& r) {
  write_string(w, "orderId", r.order_id);
  write_string(w, "state", state_name(r.state));
  write_string(w, "status", contract::name(r.status));
  key(w, "reason");
  str_or_null(w, r.reason);
  write_bool(w, "stockReserved", r.stock_reserved);
  write_bool(w, "paymentAuthorized", r.payment_authorized);
  key(w, "pending");
  w.StartArray();
  for (const auto& n : pending_names(r.pending)) str(w, n);
  w.EndArray();
  key(w, "deadline");
  time_or_null(w, r.deadline_ms);
  write_int64(w, "deadlineMs", r.deadline_ms);
  key(w, "attempts");
  w.Int(r.attempts);
}

std::string saga_json(const SagaRecord& r, const std::vector<store::HistoryRow>& history) {
  return json::object([&](Writer& w) {
    write_summary(w, r);
    write_string(w, "customerId", r.customer_id);
    // Unknown (null), not "", for a saga cancelled before it saw the order: "" is no currency.
    key(w, "currency");
    str_or_null(w, r.currency);
    write_int64(w, "amount", r.amount);
    // The token itself is a payment secret; operators only need to know whether there was one.
    write_bool(w, "hasPaymentToken", r.payment_token.has_value());
    key(w, "items");
    const std::string items = items_to_json(r.items);
    w.RawValue(items.data(), items.size(), rapidjson::kArrayType);
    write_string(w, "correlationId", r.correlation_id);
    key(w, "createdAt");
    time_or_null(w, r.created_at_ms);
    key(w, "updatedAt");
    time_or_null(w, r.updated_at_ms);
    key(w, "history");
    w.StartArray();
    for (const auto& h : history) {
      w.StartObject();
      write_string(w, "at", format_rfc3339(h.at_ms));
      write_string(w, "input", h.input);
      key(w, "eventId");
      str_or_null(w, h.event_id);
      write_string(w, "from", h.from_state);
      write_string(w, "to", h.to_state);
      write_string(w, "note", h.note);
      w.EndObject();
    }
    w.EndArray();
  });
}

}  // namespace

struct SagaModule::Impl {
  bus::EventBus* bus = nullptr;
  bus::OutboxRelay* outbox = nullptr;
  db::Database* db = nullptr;
  Policy policy;
  std::chrono::milliseconds timer_interval{100};
  Clock* clock = &SystemClock::instance();
  std::unique_ptr<bus::Subscription> subscription;
  std::unique_ptr<PeriodicTask> timer;  // the deadline scan
  std::atomic<int> scan_failures{0};    // in a row: the scan backs off, and logs once per outage
};

SagaModule::SagaModule() : impl_(std::make_unique<Impl>()) {}

SagaModule::~SagaModule() { stop(); }

namespace {

struct Applied {
  bool duplicate = false;
  std::string from_state;
  Transition t;
};

// Loads, decides, saves and queues the emissions in one transaction, so the saga state and the
// commands it implies (the compensations included) commit together or not at all. Re-reading
// inside the transaction serialises the bus threads and the timer on the same saga.
Result<Applied> apply(db::Database& db, bus::OutboxRelay& outbox, const Clock& clock,
                      const Policy& policy, const Input& in, const Envelope* cause,
                      bool delivered_once = false) {
  auto res = db.transaction([&](db::Tx& tx) -> Result<Applied> {
    Applied a;
    if (cause && !db::inbox_claim(tx, kTag, cause->id, delivered_once)) {
      a.duplicate = true;
      return a;
    }
    // Locked, as replicas share a PostgreSQL store: a reply and a timeout of one saga (or two
    // replicas' timers) never both act on the same old state. A timer passes over a saga that
    // another transaction holds: its holder moves it on, and a deadline still due is seen at
    // the next scan, so each one fires once across replicas.
    auto current =
        store::load(tx, in.order_id,
                    in.kind == InputKind::kTimeout ? store::Lock::kSkipLocked : store::Lock::kWait);
    if (!current && in.kind != InputKind::kTimeout) {
      // No row to lock: an OrderCreated and a cancellation of one order, consumed by two
      // replicas, would both start it. The first to lock the key starts it; the other reads it.
      tx.lock_key(in.order_id);
      current = store::load(tx, in.order_id, store::Lock::kWait);
    }
    const int64_t now = clock.now_ms();
    a.from_state = current ? std::string(state_name(current->state)) : "none";
    a.t = decide(current, in, now, policy);
    if (in.kind == InputKind::kTimeout && !a.t.changed) return a;  // a reply got there first
    if (a.t.changed) store::save(tx, *a.t.record);
    if (a.t.record) {
      store::add_history(tx, in.order_id,
                         {now, std::string(input_name(in.kind)), in.event_id, a.from_state,
                          std::string(state_name(a.t.record->state)), a.t.note});
    }
    // Timer-made events have no incoming event: they continue the order's flow.
    Envelope flow;
    const Envelope* c = cause;
    if (!c && a.t.record) {
      flow.id = a.t.record->last_event_id;
      flow.correlation_id = a.t.record->correlation_id;
      flow.traceparent = a.t.record->traceparent;
      c = &flow;
    }
    for (const auto& e : a.t.emissions) {
      db::outbox_add(tx, e.topic, make_event(kTag, e.type, in.order_id, e.data, c));
    }
    return a;
  });
  if (res && !res->t.emissions.empty()) outbox.notify();
  return res;
}

void log_applied(const Input& in, const Applied& a) {
  if (a.duplicate) {
    log::debug(kTag, "order {}: {} {} already applied; skipped", in.order_id, input_name(in.kind),
               in.event_id);
    return;
  }
  const auto& t = a.t;
  const std::string to = t.record ? std::string(state_name(t.record->state)) : "none";
  if (t.warn) {
    log::warn(kTag, "order {}: {}: {}", in.order_id, input_name(in.kind), t.note);
  } else if (t.changed && to != a.from_state &&
             (t.record->state == SagaState::kCompensating || is_terminal(t.record->state))) {
    log::info(kTag, "order {}: {} -> {}: {}", in.order_id, a.from_state, to, t.note);
  } else {
    log::debug(kTag, "order {}: {} ({} -> {}): {}", in.order_id, input_name(in.kind), a.from_state,
               to, t.note);
  }
}

}  // namespace

// Every value is a positive number of milliseconds; the per-step timeouts default to
// step_timeout_ms, and the backoff cap may not be below the compensation timeout it doubles.
Status SagaModule::configure(const ConfigSection& config) {
  constexpr int64_t kMaxMs = 365LL * 24 * 3'600'000;
  int64_t step = 30'000;
  std::optional<int64_t> reserve, payment, compensation, max_backoff;
  std::chrono::milliseconds interval{100};
  if (auto st = ConfigSpec{}
                    .integer("step_timeout_ms", step, 1, kMaxMs)
                    .integer("reserve_timeout_ms", reserve, 1, kMaxMs)
                    .integer("payment_timeout_ms", payment, 1, kMaxMs)
                    .integer("compensation_timeout_ms", compensation, 1, kMaxMs)
                    .integer("max_backoff_ms", max_backoff, 1, kMaxMs)
                    .millis("timer_interval_ms", interval, 1, 60'000)
                    .read(config);
      !st)
    return st;
  Policy& p = impl_->policy;
  p.reserve_timeout_ms = reserve.value_or(step);
  p.payment_timeout_ms = payment.value_or(step);
  p.compensation_timeout_ms = compensation.value_or(step);
  p.max_backoff_ms = max_backoff.value_or(std::max<int64_t>(300'000, p.compensation_timeout_ms));
  if (p.max_backoff_ms < p.compensation_timeout_ms)
    return config_invalid(config.path_of("max_backoff_ms") + " must not be below " +
                              config.path_of("compensation_timeout_ms"),
                          config.path_of("max_backoff_ms"));
  impl_->timer_interval = interval;
  return {};
}

Status SagaModule::start(ModuleContext& ctx) {
  Impl& s = *impl_;
  s.bus = &ctx.bus;
  s.outbox = &ctx.outbox;
  s.db = &ctx.db;

  if (auto st = store::migrate(ctx.db); !st) return st;

  db::Database* dbp = &ctx.db;
  ctx.router.add(http::Method::kGet, "/api/sagas/{orderId}", [dbp](const http::Request& req) {
    const std::string id(req.param("orderId"));
    struct View {
      std::optional<SagaRecord> rec;
      std::vector<store::HistoryRow> history;
    };
    auto v = dbp->read([&](db::Tx& tx) -> Result<View> {
      View out;
      out.rec = store::load(tx, id);
      if (out.rec) out.history = store::history(tx, id, kHistoryLimit);
      return out;
    });
    if (!v) return http::error_response(v.error());
    if (!v->rec)
      return http::error_response(Error{ErrorCode::kNotFound, "no saga for order " + id});
    return http::json(200, saga_json(*v->rec, v->history));
  });
  ctx.router.add(http::Method::kGet, "/api/sagas", [dbp](const http::Request&) {
    struct View {
      std::vector<std::pair<std::string, int64_t>> counts;
      std::vector<SagaRecord> waiting;
    };
    auto v = dbp->read([&](db::Tx& tx) -> Result<View> {
      return View{store::count_by_state(tx), store::with_deadline(tx, kListLimit)};
    });
    if (!v) return http::error_response(v.error());
    return http::json(200, json::object([&](Writer& w) {
                        key(w, "counts");
                        w.StartObject();
                        for (const auto& [state, n] : v->counts) json::write_int64(w, state, n);
                        w.EndObject();
                        key(w, "waiting");  // sagas with a deadline, the most overdue first
                        w.StartArray();
                        for (const auto& r : v->waiting) {
                          w.StartObject();
                          write_summary(w, r);
                          w.EndObject();
                        }
                        w.EndArray();
                      }));
  });

  auto waiting =
      ctx.db.read([](db::Tx& tx) -> Result<int64_t> { return store::count_with_deadline(tx); });
  if (!waiting) return waiting.error();

  s.clock = &ctx.clock;
  const Clock* clock = s.clock;
  auto sub = ctx.bus.subscribe(
      {.group = "ecomd-saga",
       .topics = {std::string(topics::kOrdersCreated), std::string(topics::kOrdersCancellations),
                  std::string(topics::kInventoryEvents), std::string(topics::kPaymentsEvents)},
       .store = &ctx.db},
      [&s, clock](const bus::Message& m) -> bus::Outcome {
        try {
          auto parsed = parse_input(m.envelope);
          if (!parsed) {
            log::warn(kTag, "{} event {} on {} rejected: {}", m.envelope.type, m.envelope.id,
                      m.topic, parsed.error().message);
            return bus::Outcome::dead_letter(parsed.error().message);
          }
          if (!parsed->has_value()) {
            log::debug(kTag, "ignoring {} on {}", m.envelope.type, m.topic);
            return bus::Outcome::ack();
          }
          const Input& in = **parsed;
          auto applied = apply(*s.db, *s.outbox, *clock, s.policy, in, &m.envelope, m.once);
          if (!applied) {
            log::warn(kTag, "order {}: {} not applied (will retry): {}", in.order_id,
                      input_name(in.kind), applied.error().message);
            return bus::Outcome::retry(applied.error().message);
          }
          log_applied(in, *applied);
          return bus::Outcome::ack();
        } catch (const std::exception& e) {
          return bus::Outcome::retry(e.what());
        } catch (...) {
          return bus::Outcome::retry("unknown exception");
        }
      });
  if (!sub) return sub.error();
  s.subscription = std::move(sub.value());

  s.timer = std::make_unique<PeriodicTask>(
      "saga.timer", ctx.clock, s.timer_interval,
      [this](int64_t) -> std::optional<std::chrono::milliseconds> {
        // A full batch means more may be due: scan again at once.
        if (fire_due() >= kDueBatch) return std::chrono::milliseconds(0);
        // A store that cannot be read (PostgreSQL down) is not
        // asked ten times a second.
        if (int f = impl_->scan_failures.load(); f > 0)
          return Backoff{impl_->timer_interval, kScanBackoffCap}.after(f);
        return std::nullopt;
      });
  s.timer->start();

  log::info(kTag,
            "started: {} saga(s) waiting on a deadline; timeouts reserve={}ms payment={}ms "
            "compensation={}ms (re-send backoff up to {}ms)",
            *waiting, s.policy.reserve_timeout_ms, s.policy.payment_timeout_ms,
            s.policy.compensation_timeout_ms, s.policy.max_backoff_ms);
  return {};
}

int SagaModule::fire_due() {
  Impl& s = *impl_;
  if (!s.db) return 0;
  const int64_t now = s.clock->now_ms();
  auto ids = s.db->read([&](db::Tx& tx) -> Result<std::vector<std::string>> {
    return store::due(tx, now, kDueBatch);
  });
  if (!ids) {
    if (s.scan_failures.fetch_add(1) == 0)
      log::warn(kTag, "deadline scan failed: {}; retrying with a backoff", ids.error().message);
    return 0;
  }
  if (s.scan_failures.exchange(0) > 0) log::info(kTag, "deadline scan works again");
  int changed = 0;
  for (const auto& id : *ids) {
    Input in;
    in.kind = InputKind::kTimeout;
    in.order_id = id;
    auto applied = apply(*s.db, *s.outbox, *s.clock, s.policy, in, nullptr);
    if (!applied) {
      log::warn(kTag, "order {}: timeout not applied (will retry): {}", id,
                applied.error().message);
      continue;
    }
    if (applied->t.changed) {
      ++changed;
      log_applied(in, *applied);
    }
  }
  return changed;
}

void SagaModule::stop() noexcept {
  if (!impl_) return;
  Impl& s = *impl_;
  if (s.subscription) {
    s.subscription->close();
    s.subscription.reset();
  }
  s.timer.reset();  // stops and joins
}

}  // namespace ecom::saga
