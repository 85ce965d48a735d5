#pragma once
/// The lifetime of a subscription's consumer thread, one rule for both buses.
///
/// Everything the thread touches (handler, client handle, partition state) lives in one
/// ConsumerWorker, owned jointly by three parties: the thread itself (until its loop returned),
/// the Subscription handle, and the bus (its ConsumerWorkers list). So whoever lets go first, the
/// thread never touches freed memory:
/// - close() from any other thread stops the worker and joins its thread;
/// - close() from the handler (a handler that closes or destroys its own subscription) cannot
///   join the thread it runs on: it only stops the worker, whose loop ends once the handler
///   returned. The handle may be freed at once; the thread still owns the worker. The bus owns it
///   too and joins that thread at its next subscribe() or in its destructor. So no thread is ever
///   detached, a worker is destroyed only after its thread ended (its last act, leaving the group,
///   done) and on another thread, and a bus is gone only after every consumer thread it started.

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "ecom/bus/event_bus.hpp"

namespace ecom::bus {

/// The name of a consumer thread of `group`: "in:" and the group without the "ecomd-" of ours.
std::string consumer_thread_name(std::string_view group);

class ConsumerWorker {
 public:
  ConsumerWorker() = default;
  ConsumerWorker(const ConsumerWorker&) = delete;
  ConsumerWorker& operator=(const ConsumerWorker&) = delete;
  virtual ~ConsumerWorker();

  /// Starts the thread of `worker`, which owns it until run() returned. Throws what std::thread
  /// throws (the worker then never ran).
  static void start(const std::shared_ptr<ConsumerWorker>& worker, std::string name);

  /// Asks the loop to end; joins the thread unless called on it (then the owner of the worker's
  /// ConsumerWorkers list joins it later). Idempotent, thread-safe.
  void close();

  /// True once run() returned.
  bool finished() const noexcept { return finished_.load(); }

 protected:
  /// The loop: until stopping(), then leaves cleanly. Runs on the worker's thread.
  virtual void run() = 0;
  /// Wakes run() from a wait, after a stop was requested.
  virtual void wake() {}
  bool stopping() const noexcept { return stop_.load(); }
  /// For a loop that ends on its own account (a fenced member).
  void request_stop() noexcept { stop_ = true; }
  /// True on this worker's own thread (inside its handler, say).
  bool on_own_thread() const noexcept;

 private:
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  std::mutex join_mu_;  // serialises the start and the joins of thread_
  std::thread thread_;
};

/// The workers a bus started. Those whose thread ended are joined and dropped as new ones come.
class ConsumerWorkers {
 public:
  ConsumerWorkers() = default;
  ConsumerWorkers(const ConsumerWorkers&) = delete;
  ConsumerWorkers& operator=(const ConsumerWorkers&) = delete;
  ~ConsumerWorkers() { close_all(); }

  void add(std::shared_ptr<ConsumerWorker> worker);
  /// Closes (stops and joins) every worker.
  void close_all();

 private:
  std::mutex mu_;
  std::vector<std::shared_ptr<ConsumerWorker>> workers_;
};

/// The Subscription handle of a worker, on either bus: closing or destroying it closes the
/// worker (from its own handler too, see above).
class WorkerSubscription final : public Subscription {
 public:
  explicit WorkerSubscription(std::shared_ptr<ConsumerWorker> worker)
      : worker_(std::move(worker)) {}
  ~WorkerSubscription() override { worker_->close(); }
  void close() override { worker_->close(); }

 private:
  std::shared_ptr<ConsumerWorker> worker_;
};

}  // namespace ecom::bus
