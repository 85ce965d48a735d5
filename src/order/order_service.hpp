#pragma once
// The order service: what the order module does, without HTTP. Two background tasks:
// - the writer stores every accepted order, many per commit (group commit), and answers each
//   only after its commit;
// - the waiter reaper answers long polls (GET ?wait=) when their order turns terminal or their
//   wait ends, so no HTTP thread is ever blocked.
// Thread-safe after start().

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ecom/bus/handler.hpp"
#include "ecom/contract/order_status.hpp"
#include "ecom/core/metrics.hpp"
#include "ecom/core/periodic_task.hpp"
#include "ecom/core/result.hpp"
#include "order_store.hpp"

namespace ecom {
namespace bus {
class OutboxRelay;
}  // namespace bus
namespace db {
class Database;
}  // namespace db
}  // namespace ecom

namespace ecom::order {

class OrderService {
 public:
  /// Group commit: at most this many orders share one commit; at most this many wait for the
  /// writer (beyond that create() refuses: bounded memory, and the client retries).
  static constexpr size_t kMaxBatch = 256;
  static constexpr size_t kMaxQueued = 10'000;
  /// Long polls: at most this long, and at most this many at once.
  static constexpr int64_t kMaxWaitMs = 60'000;
  static constexpr size_t kMaxWaiters = 10'000;

  using CreateCallback = std::function<void(Result<store::Created>)>;
  using OrderCallback = std::function<void(Result<store::OrderView>)>;

  /// Whether create() took the order.
  enum class Admission { kQueued, kStopping, kFull };

  OrderService(db::Database& db, bus::OutboxRelay& outbox, Clock& clock);
  ~OrderService();
  OrderService(const OrderService&) = delete;
  OrderService& operator=(const OrderService&) = delete;

  /// Starts the writer and the reaper.
  void start();
  /// Refuses new orders, lets the batch being stored finish (and be answered), refuses what is
  /// still queued (UNAVAILABLE: never stored, the client may retry) and answers every long poll
  /// with the order as it is. Idempotent.
  void stop() noexcept;

  /// Queues a prepared order; `done` is called once, after its commit (or with its error).
  /// Not kQueued: `done` is not called and nothing is stored.
  Admission create(store::NewOrderRow row, CreateCallback done);

  /// The order now, or (wait_ms > 0, not terminal) when it turns terminal or the wait ends.
  /// `done` is called once. A full waiter table answers UNAVAILABLE at once.
  void get(const std::string& id, int64_t wait_ms, OrderCallback done);

  /// One page of GET /api/orders.
  Result<store::OrderPage> list(const store::ListQuery& query);
  Result<store::CancelOutcome> cancel(const std::string& id);

  /// The `orders.status` handler: applies OrderStatusChanged (inbox-deduplicated).
  bus::Outcome on_status(const bus::Message& m);

 private:
  void store_batch(std::vector<std::pair<store::NewOrderRow, CreateCallback>>& jobs);
  std::optional<std::chrono::milliseconds> write_step();
  std::optional<std::chrono::milliseconds> reap_step(int64_t now);
  void wake_if_terminal(const std::string& id);
  Result<store::OrderView> load(const std::string& id);

  db::Database& db_;
  bus::OutboxRelay& outbox_;
  Clock& clock_;

  // The writer's queue.
  std::mutex create_mu_;
  std::deque<std::pair<store::NewOrderRow, CreateCallback>> create_queue_;
  bool create_stopping_ = false;
  PeriodicTask writer_;

  // Long-poll waiters, by order id; orders the bus turned terminal, for the reaper to answer.
  struct Waiter {
    int64_t deadline_ms;
    OrderCallback done;
  };
  std::mutex wait_mu_;
  std::multimap<std::string, Waiter> waiters_;
  std::vector<std::string> to_wake_;
  int64_t next_poll_ms_ = 0;  // reaper only: the next look at every waited-for order
  bool wait_stopping_ = false;
  PeriodicTask reaper_;

  // Orders created, and orders that turned terminal by status and reason (bounded: the
  // contract's reasons, anything else counted as OTHER). Counted where the change is applied,
  // once per order: a replayed POST or a redelivered status is not counted again.
  struct Metrics {
    Metrics();
    void terminal(contract::OrderStatus status, std::string_view reason) const noexcept;
    metrics::Counter created;
    metrics::Counter confirmed;
    std::vector<std::pair<std::string_view, metrics::Counter>> cancelled;  // by reason
  };
  const Metrics metrics_;
};

}  // namespace ecom::order
