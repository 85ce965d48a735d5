#pragma once
// Delivery of stored notifications: the sinks (log, webhook, smtp) and the worker task that
// drives them with retries, off the bus consumer threads.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/metrics.hpp"
#include "ecom/core/periodic_task.hpp"
#include "store.hpp"
#include "transport.hpp"

namespace ecom::notification {

/// Settings of the webhook sink (config `notification.webhook`).
struct WebhookOptions {
  std::string url;  ///< https://, or http:// to a loopback host
  /// The HMAC-SHA256 key of the X-Ecomd-Signature header (ECOMD_WEBHOOK_SECRET or secret_file).
  std::string secret;
  std::string ca_file;  ///< CA bundle that verifies the receiver; empty: the system's
  std::chrono::milliseconds timeout{2'000};
  int max_attempts = 5;
  std::chrono::milliseconds backoff{200};  ///< before the 2nd attempt; doubles after each failure
};

/// Settings of the smtp sink (config `notification.smtp`).
struct SmtpOptions {
  SmtpServer server;
  std::string from;         ///< mailbox: the envelope sender and the From header
  std::string to_template;  ///< the recipient, `{customerId}` replaced by the order's customer
  int max_attempts = 5;
  std::chrono::milliseconds backoff{1'000};
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
  /// The channel recorded on sent notifications ("log", "webhook", "smtp").
  virtual std::string_view channel() const noexcept = 0;
  virtual Attempt send(const Delivery& d) = 0;
  /// Attempts before a notification is FAILED.
  virtual int max_attempts() const noexcept = 0;
  /// Wait after the first failed attempt.
  virtual std::chrono::milliseconds backoff() const noexcept = 0;
};

/// Writes one log line per notification; never fails.
std::unique_ptr<Sink> make_log_sink();
/// POSTs the notification as JSON, signed (X-Ecomd-Signature); 2xx is success, 5xx/408/429 and
/// transport errors (TLS and timeouts included) are retried, other statuses fail at once.
/// `clock` dates the signatures.
std::unique_ptr<Sink> make_webhook_sink(WebhookOptions options,
                                        Clock& clock = SystemClock::instance());
/// Mails the notification to the customer's address; a 5xx reply fails at once (unknown mailbox,
/// rejected credentials), transport errors and 4xx replies are retried. `clock` dates the mail.
std::unique_ptr<Sink> make_smtp_sink(SmtpOptions options, Clock& clock = SystemClock::instance());

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
