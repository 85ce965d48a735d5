#pragma once
// Delivery of stored notifications: the sinks (log, webhook) and the worker task that drives
// them with retries, off the bus consumer threads.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/metrics.hpp"
#include "ecom/core/periodic_task.hpp"
#include "store.hpp"

namespace ecom::notification {

/// Settings of the webhook sink (config `notification.webhook`).
struct WebhookOptions {
  std::string url;
  std::chrono::milliseconds timeout{2'000};
  int max_attempts = 5;
  std::chrono::milliseconds backoff{200};  ///< before the 2nd attempt; doubles after each failure
};

/// The result of one delivery attempt.
struct Attempt {
  bool ok = false;
  bool retryable = true;  ///< when !ok: another attempt may succeed
  std::string error;
};

/// Where notifications go. send() is called from the worker thread only.
class Sink {
 public:
  virtual ~Sink() = default;
  /// The channel recorded on sent notifications ("log", "webhook").
  virtual std::string_view channel() const noexcept = 0;
  virtual Attempt send(const Delivery& d) = 0;
  /// Attempts before a notification is FAILED.
  virtual int max_attempts() const noexcept = 0;
  /// Wait after the first failed attempt.
  virtual std::chrono::milliseconds backoff() const noexcept = 0;
};

/// Writes one log line per notification; never fails.
std::unique_ptr<Sink> make_log_sink();
/// POSTs the notification as JSON; 2xx is success, 5xx/408/429 and transport errors are retried,
/// other statuses fail at once.
std::unique_ptr<Sink> make_webhook_sink(WebhookOptions options);

/// The delivery loop (a PeriodicTask on `clock`): picks due PENDING notifications (up to 32 at a
/// time), sends them, and records the outcomes of the batch together: SENT + NotificationSent for
/// all successful sends in one transaction, retry times or FAILED for the others in another.
class DeliveryWorker final {
 public:
  DeliveryWorker(Store& store, Sink& sink, bus::OutboxRelay& outbox,
                 Clock& clock = SystemClock::instance());
  ~DeliveryWorker();
  DeliveryWorker(const DeliveryWorker&) = delete;
  DeliveryWorker& operator=(const DeliveryWorker&) = delete;

  void start();
  /// New notifications were committed. Thread-safe, cheap.
  void notify();
  /// Stops after the attempt in flight. Idempotent.
  void stop();

 private:
  // Outcomes of attempts not recorded yet; the pointers are into the batch being delivered.
  struct Outcomes {
    std::vector<SentAttempt> sent;
    std::vector<FailedAttempt> failed;
  };

  // One turn: delivers what is due; returns when to look again.
  std::optional<std::chrono::milliseconds> step(int64_t now);
  void attempt(const Delivery& d, Outcomes& out);  // sends once, keeps the outcome in `out`
  bool record(Outcomes& out);  // records and clears `out`; false: something was not recorded

  Store& store_;
  Sink& sink_;
  bus::OutboxRelay& outbox_;
  Clock& clock_;
  // Attempts by channel and result (sent, retry, failed: given up), counted as they are made.
  metrics::Counter sent_;
  metrics::Counter retried_;
  metrics::Counter failed_;
  PeriodicTask task_;
};

}  // namespace ecom::notification
