#pragma once
/// Moves committed outbox rows of one module store onto the bus, in order and in batches.

#include <chrono>
#include <memory>

#include "ecom/bus/event_bus.hpp"
#include "ecom/db/database.hpp"

namespace ecom::bus {

/// A background relay. A row is deleted only after the bus acknowledged it, so a crash at any
/// point republishes (consumers deduplicate by event id through their inbox).
class OutboxRelay final {
 public:
  OutboxRelay(db::Database& db, EventBus& bus, int batch_size = 512,
              std::chrono::milliseconds idle_poll = std::chrono::milliseconds(50));
  ~OutboxRelay();
  OutboxRelay(const OutboxRelay&) = delete;
  OutboxRelay& operator=(const OutboxRelay&) = delete;

  /// Starts the relay thread.
  void start();
  /// Wakes the relay after a commit that added rows. Thread-safe, cheap.
  void notify() noexcept;
  /// Publishes everything pending now, on the caller's thread; true when the outbox is empty.
  bool drain(std::chrono::milliseconds deadline);
  /// Drains (bounded) and stops the thread. Idempotent.
  void stop();
  /// Rows published since start.
  uint64_t published() const noexcept;

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace ecom::bus
