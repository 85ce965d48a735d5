#include "order_service.hpp"

#include <algorithm>
#include <climits>
#include <exception>

#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/log.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "ecom/order/order_module.hpp"

namespace ecom::order {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view kTag = OrderModule::kName;

// The writer is woken by every create(); the period only bounds an idle wait. The reaper sleeps
// until the next deadline (or a wake-up), at most this long.
constexpr auto kIdlePeriod = 1000ms;
// Replicas sharing a PostgreSQL store: an order's status may be consumed by another replica,
// which cannot wake this one's waiters, so they are looked at this often (one read per order
// waited for). A LISTEN/NOTIFY channel would save the reads, at the price of a second
// connection per replica; long polls are few next to the orders they wait for.
constexpr auto kSharedStorePoll = 200ms;

// The reason label of a cancellation whose reason is none of the contract's.
constexpr std::string_view kOther{"OTHER"};

Error unavailable(std::string message) {
  return Error{ErrorCode::kUnavailable, std::move(message), {}, true};
}

}  // namespace

OrderService::Metrics::Metrics() {
  auto& registry = metrics::registry();
  const std::string_view role = OrderModule::kName;
  created = registry.counter("ecomd_orders_created_total", "Orders stored (replays excluded).",
                             {{"role", role}});
  auto terminal = [&](contract::OrderStatus status, std::string_view reason) {
    return registry.counter(
        "ecomd_orders_terminal_total",
        "Orders that reached a terminal status, by status and reason.",
        {{"role", role}, {"status", contract::name(status)}, {"reason", reason}});
  };
  confirmed = terminal(contract::OrderStatus::kConfirmed, "");
  namespace r = contract::reason;
  for (std::string_view why : {r::kOutOfStock, r::kPriceChanged, r::kCurrencyMismatch,
                               r::kPaymentDeclined, r::kCustomerCancelled, r::kTimeout, kOther})
    cancelled.emplace_back(why, terminal(contract::OrderStatus::kCancelled, why));
}

void OrderService::Metrics::terminal(contract::OrderStatus status,
                                     std::string_view reason) const noexcept {
  if (status == contract::OrderStatus::kConfirmed) return confirmed.inc();
  if (status != contract::OrderStatus::kCancelled) return;
  for (const auto& [why, counter] : cancelled) {
    if (why == reason || why == kOther) return counter.inc();  // kOther is last
  }
}

OrderService::OrderService(db::Database& db, bus::OutboxRelay& outbox, Clock& clock)
    : db_(db),
      outbox_(outbox),
      clock_(clock),
      writer_("order.writer", clock, kIdlePeriod, [this](int64_t) { return write_step(); }),
      reaper_("order.reaper", clock, kIdlePeriod, [this](int64_t now) { return reap_step(now); }) {}

OrderService::~OrderService() { stop(); }

void OrderService::start() {
  {
    std::lock_guard lock(create_mu_);
    create_stopping_ = false;
  }
  {
    std::lock_guard lock(wait_mu_);
    wait_stopping_ = false;
  }
  writer_.start();
  reaper_.start();
}

void OrderService::stop() noexcept {
  {
    // First, so orders arriving from now on are refused at once.
    std::lock_guard lock(create_mu_);
    create_stopping_ = true;
  }
  // The batch being stored is finished and answered; what is still queued was never started.
  writer_.stop();
  std::deque<std::pair<store::NewOrderRow, CreateCallback>> left;
  {
    std::lock_guard lock(create_mu_);
    left.swap(create_queue_);
  }
  for (auto& [row, done] : left) done(unavailable("the order service is shutting down"));

  reaper_.stop();
  std::multimap<std::string, Waiter> waiting;
  {
    std::lock_guard lock(wait_mu_);
    wait_stopping_ = true;
    waiting.swap(waiters_);
    to_wake_.clear();
  }
  for (auto& [id, w] : waiting) w.done(load(id));
}

// --- create: group commit -----------------------------------------------------------------------

OrderService::Admission OrderService::create(store::NewOrderRow row, CreateCallback done) {
  {
    std::lock_guard lock(create_mu_);
    if (create_stopping_) return Admission::kStopping;
    if (create_queue_.size() >= kMaxQueued) return Admission::kFull;
    create_queue_.emplace_back(std::move(row), std::move(done));
  }
  writer_.wake();
  return Admission::kQueued;
}

// Group commit: whatever queued while the previous commit ran is stored in one batch, then
// every POST is answered.
std::optional<std::chrono::milliseconds> OrderService::write_step() {
  std::vector<std::pair<store::NewOrderRow, CreateCallback>> jobs;
  bool more = false;
  {
    std::lock_guard lock(create_mu_);
    if (create_stopping_) return std::nullopt;
    const size_t n = std::min(create_queue_.size(), kMaxBatch);
    jobs.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      jobs.push_back(std::move(create_queue_.front()));
      create_queue_.pop_front();
    }
    more = !create_queue_.empty();
  }
  if (!jobs.empty()) store_batch(jobs);
  if (more) return 0ms;  // a full batch left some behind: at once
  return std::nullopt;
}

// Each order is a savepoint, so one failing order does not undo the others, and a repeated
// Idempotency-Key sees the earlier order of the same batch.
void OrderService::store_batch(std::vector<std::pair<store::NewOrderRow, CreateCallback>>& jobs) {
  std::vector<Result<store::Created>> results;
  results.reserve(jobs.size());
  Status committed;
  try {
    committed = db_.batch([&] {
      const int64_t now = clock_.now_ms();
      for (const auto& [row, done] : jobs)
        results.push_back(db_.transaction([&](db::Tx& tx) { return store::insert(tx, row, now); }));
    });
  } catch (const std::exception& e) {
    log::error(kTag, "storing {} orders failed: {}", jobs.size(), e.what());
    committed = Error{ErrorCode::kInternal, "internal error", {}, false};
  } catch (...) {
    log::error(kTag, "storing {} orders failed: a non-standard exception", jobs.size());
    committed = Error{ErrorCode::kInternal, "internal error", {}, false};
  }
  size_t created = 0;
  if (committed) {
    for (const auto& r : results) created += (r && !r->replayed) ? 1 : 0;
  }
  metrics_.created.inc(static_cast<double>(created));
  if (created > 0) outbox_.notify();
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto& done = jobs[i].second;
    if (!committed) {
      done(committed.error());
    } else {
      done(std::move(results[i]));
    }
  }
}

// --- get: long polls ----------------------------------------------------------------------------

Result<store::OrderView> OrderService::load(const std::string& id) {
  return db_.read([&](db::Tx& tx) { return store::find(tx, id); });
}

void OrderService::get(const std::string& id, int64_t wait_ms, OrderCallback done) {
  auto order = load(id);
  if (!order || order->terminal() || wait_ms <= 0) return done(std::move(order));
  {
    std::lock_guard lock(wait_mu_);
    if (wait_stopping_) return done(std::move(order));
    if (waiters_.size() >= kMaxWaiters)
      return done(Error{ErrorCode::kUnavailable, "too many waiting requests; retry without wait",
                        "wait", true});
    waiters_.emplace(id, Waiter{clock_.now_ms() + wait_ms, std::move(done)});
  }
  reaper_.wake();  // the new deadline may be the nearest
  // The order may have turned terminal between load() and registration: check once more.
  wake_if_terminal(id);
}

// Answers every waiter of the order when its committed status is terminal. Reads the order
// only when someone waits for it, and once.
void OrderService::wake_if_terminal(const std::string& id) {
  {
    std::lock_guard lock(wait_mu_);
    if (waiters_.find(id) == waiters_.end()) return;
  }
  auto order = load(id);
  if (order && !order->terminal()) return;
  std::vector<Waiter> ready;
  {
    std::lock_guard lock(wait_mu_);
    auto [b, e] = waiters_.equal_range(id);
    for (auto it = b; it != e; ++it) ready.push_back(std::move(it->second));
    waiters_.erase(b, e);
  }
  for (auto& w : ready) w.done(order);
}

std::optional<std::chrono::milliseconds> OrderService::reap_step(int64_t now) {
  std::vector<std::pair<std::string, Waiter>> expired;
  std::vector<std::string> ids;
  int64_t next = INT64_MAX;
  {
    std::lock_guard lock(wait_mu_);
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->second.deadline_ms <= now) {
        expired.emplace_back(it->first, std::move(it->second));
        it = waiters_.erase(it);
      } else {
        next = std::min(next, it->second.deadline_ms);
        ++it;
      }
    }
    ids.swap(to_wake_);
    if (db_.postgres() && !waiters_.empty() && now >= next_poll_ms_) {
      next_poll_ms_ = now + kSharedStorePoll.count();
      for (auto it = waiters_.begin(); it != waiters_.end(); it = waiters_.upper_bound(it->first))
        ids.push_back(it->first);
    }
  }
  for (auto& [id, w] : expired) w.done(load(id));
  // Read after the bus batch released the store: a rolled-back status is not terminal.
  for (const auto& id : ids) wake_if_terminal(id);
  if (db_.postgres() && next != INT64_MAX) next = std::min(next, next_poll_ms_);
  if (next == INT64_MAX) return std::nullopt;
  return std::chrono::milliseconds(std::max<int64_t>(next - clock_.now_ms(), 0));
}

// --- list, cancel --------------------------------------------------------------------------------

Result<store::OrderPage> OrderService::list(const store::ListQuery& query) {
  return db_.read([&](db::Tx& tx) -> Result<store::OrderPage> { return store::list(tx, query); });
}

Result<store::CancelOutcome> OrderService::cancel(const std::string& id) {
  auto r = db_.transaction([&](db::Tx& tx) {
    return store::request_cancel(tx, OrderModule::kName, id, clock_.now_ms());
  });
  if (r && r->emitted) outbox_.notify();
  return r;
}

// --- bus -----------------------------------------------------------------------------------------

bus::Outcome OrderService::on_status(const bus::Message& m) {
  if (m.envelope.type != contract::OrderStatusChanged::kType) return bus::Outcome::ack();
  auto ev = contract::OrderStatusChanged::decode(m.envelope.data);
  if (!ev) return bus::Outcome::dead_letter(ev.error().message + ": " + m.envelope.data);
  const int64_t at = clock_.now_ms();
  auto r = db_.transaction([&](db::Tx& tx) -> Result<bool> {
    if (!db::inbox_claim(tx, OrderModule::kName, m.envelope.id, m.once)) return false;
    if (!store::apply_status(tx, *ev, at)) {
      log::debug(kTag, "status {} for order {} not applied (unknown order, or not later)",
                 contract::name(ev->status), ev->order_id);
      return false;
    }
    return true;
  });
  // Any store failure is worth retrying: the event itself was valid.
  if (!r) return bus::Outcome::retry(r.error().message);
  // Inside the bus's batch the status is not committed yet (the batch may still roll back): the
  // reaper answers the waiters, reading after the batch released the store.
  if (r.value() && contract::is_terminal(ev->status)) {
    // Counted on apply, inside the bus's batch: a batch that fails to commit is handled again
    // and counted twice (a failed group commit: rare, and logged by the bus).
    metrics_.terminal(ev->status, ev->reason);
    {
      std::lock_guard lock(wait_mu_);
      to_wake_.push_back(ev->order_id);
    }
    reaper_.wake();
  }
  return bus::Outcome::ack();
}

}  // namespace ecom::order
