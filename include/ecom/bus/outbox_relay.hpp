#pragma once
/// Moves committed outbox rows of one module store onto the bus, in order and in batches.

#include <chrono>
#include <memory>
#include <string_view>

#include "ecom/bus/event_bus.hpp"
#include "ecom/core/periodic_task.hpp"
#include "ecom/db/database.hpp"

namespace ecom::bus {

/// A background relay. A row is deleted only after the bus acknowledged it, so a crash at any
/// point republishes. On a PostgreSQL store shared by replicas, each relays the rows its own
/// replica wrote and those of dead replicas (set_replica_lease). Each record names its row
/// (Record::source = the outbox's id, seq = the row's): the embedded bus appends a row once however
/// often it comes; on Kafka consumers deduplicate the copies by event id through their inbox.
///
/// The relay runs as a PeriodicTask on `clock`: the idle poll, the failure backoff, the inbox
/// retention and the prune interval are all measured on it (a ManualClock in tests).
///
/// The relay task also prunes the store's inbox: rows processed more than `inbox_retention`
/// ago, in small transactions, every `inbox_prune_interval`. An inbox row is what makes a
/// redelivered event a no-op, so the retention must outlast every way an event can come again:
/// a consumer re-reading uncommitted records (they live on the bus no longer than its retention,
/// and were processed after they were published, so inbox_retention >= the bus retention covers
/// them; add a margin for clock skew between hosts) and a producer republishing rows it had
/// published but not yet deleted when it crashed (this happens at its next start, so a producer
/// down for longer than the retention may cause a double apply). Non-positive: never pruned.
class OutboxRelay final {
 public:
  OutboxRelay(db::Database& db, EventBus& bus, int batch_size = 512,
              std::chrono::milliseconds idle_poll = std::chrono::milliseconds(50),
              std::chrono::milliseconds inbox_retention = std::chrono::hours(24 * 7),
              std::chrono::milliseconds inbox_prune_interval = std::chrono::seconds(60),
              Clock& clock = SystemClock::instance());
  ~OutboxRelay();
  OutboxRelay(const OutboxRelay&) = delete;
  OutboxRelay& operator=(const OutboxRelay&) = delete;

  /// Names the role whose outbox this is, for its metrics (records published, publish latency,
  /// relay errors); without it the relay counts nothing. Call before start().
  void set_role(std::string_view role);
  /// PostgreSQL stores, shared by a role's replicas: each relay publishes its own replica's rows
  /// and says four times per `lease` that it is alive; the rows of a replica silent for `lease`
  /// (default 10 s: longer than any pause of a live one; on the database's clock) are relayed by
  /// another.
  /// Call before start().
  void set_replica_lease(std::chrono::milliseconds lease);
  /// Starts the relay task; its first pass runs at once.
  void start();
  /// Wakes the relay after a commit that added rows. Thread-safe, cheap.
  void notify() noexcept;
  /// Publishes everything pending now, on the caller's thread; true when the outbox is empty.
  bool drain(std::chrono::milliseconds deadline);
  /// Stops the relay task, then drains (bounded, in real time) on the caller's thread.
  /// Idempotent.
  void stop();
  /// Rows published since start.
  uint64_t published() const noexcept;
  /// Inbox rows pruned since start.
  uint64_t inbox_pruned() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace ecom::bus
