#include "delivery.hpp"

#include <algorithm>

#include "ecom/core/backoff.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/log.hpp"

namespace ecom::notification {
namespace {

constexpr std::string_view kTag{"notification"};
constexpr int kBatch = 32;
constexpr int64_t kMaxBackoffMs = 10 * 60 * 1000;
// Upper bound of one idle wait, so that a lost wake-up costs at most this.
constexpr std::chrono::milliseconds kIdleWait{1'000};
constexpr std::chrono::milliseconds kTroubleWait{500};
// Outcomes are recorded at the latest this long after the first of them (a slow webhook).
constexpr std::chrono::milliseconds kRecordAfter{100};

class LogSink final : public Sink {
 public:
  std::string_view channel() const noexcept override { return "log"; }
  Attempt send(const Delivery& d) override {
    // The body only at debug: a notification's text is the customer's, not the operator's.
    log::info(kTag, "notify customer {} about order {} ({}): {}", d.customer_id, d.order_id,
              d.order_status, d.subject);
    log::debug(kTag, "notification {} body: {}", d.id, d.body);
    return {true, false, {}};
  }
  int max_attempts() const noexcept override { return 1; }
  std::chrono::milliseconds backoff() const noexcept override {
    return std::chrono::milliseconds(0);
  }
};

}  // namespace

std::unique_ptr<Sink> make_log_sink() { return std::make_unique<LogSink>(); }

namespace {
metrics::Counter attempts_counter(std::string_view channel, std::string_view status) {
  return metrics::registry().counter(
      "ecomd_notifications_total",
      "Notification delivery attempts by channel and result "
      "(sent, retry, failed: given up).",
      {{"role", "notification"}, {"channel", channel}, {"status", status}});
}
}  // namespace

DeliveryWorker::DeliveryWorker(Store& store, Sink& sink, bus::OutboxRelay& outbox, Clock& clock)
    : store_(store),
      sink_(sink),
      outbox_(outbox),
      clock_(clock),
      sent_(attempts_counter(sink.channel(), "sent")),
      retried_(attempts_counter(sink.channel(), "retry")),
      failed_(attempts_counter(sink.channel(), "failed")),
      task_("notification.delivery", clock, kIdleWait, [this](int64_t now) { return step(now); }) {}

DeliveryWorker::~DeliveryWorker() { stop(); }

void DeliveryWorker::start() { task_.start(); }

void DeliveryWorker::notify() { task_.wake(); }

void DeliveryWorker::stop() { task_.stop(); }

void DeliveryWorker::attempt(const Delivery& d, Outcomes& out) {
  Attempt a = sink_.send(d);
  int64_t now = clock_.now_ms();
  if (a.ok) {
    sent_.inc();
    out.sent.push_back(SentAttempt{&d, now});
    return;
  }
  int attempt = d.attempts + 1;
  std::optional<int64_t> retry_at;
  if (a.retryable && attempt < sink_.max_attempts()) {
    const Backoff backoff{std::max(sink_.backoff(), std::chrono::milliseconds(0)),
                          std::chrono::milliseconds(kMaxBackoffMs)};
    retry_at = now + backoff.after(attempt).count();
    retried_.inc();
    log::warn(kTag, "notification {} attempt {} failed ({}); retrying in {} ms", d.id, attempt,
              a.error, *retry_at - now);
  } else {
    failed_.inc();
    log::error(kTag, "notification {} FAILED after {} attempt(s): {}", d.id, attempt, a.error);
  }
  out.failed.push_back(FailedAttempt{&d, std::move(a.error), retry_at});
}

bool DeliveryWorker::record(Outcomes& out) {
  bool ok = true;
  if (!out.sent.empty()) {
    auto st = store_.mark_sent_batch(out.sent, sink_.channel());
    if (!st && out.sent.size() > 1) {
      // One at a time, so that whatever made the batch fail costs only the notifications it
      // concerns, as when every notification had its own transaction.
      log::warn(kTag, "{} sent notifications not recorded together ({}); recording one by one",
                out.sent.size(), st.error().message);
      bool any = false;
      for (const auto& s : out.sent) {
        if (auto one = store_.mark_sent(*s.delivery, sink_.channel(), s.sent_at); !one) {
          // Stays PENDING: it is sent again later (receivers deduplicate on the notification id).
          log::warn(kTag, "notification {} sent but not recorded: {}", s.delivery->id,
                    one.error().message);
          ok = false;
        } else {
          any = true;
        }
      }
      if (any) outbox_.notify();
    } else if (!st) {
      log::warn(kTag, "notification {} sent but not recorded: {}", out.sent.front().delivery->id,
                st.error().message);
      ok = false;
    } else {
      outbox_.notify();  // once for the whole batch of NotificationSent rows
    }
    out.sent.clear();
  }
  if (!out.failed.empty()) {
    auto st = store_.mark_failed_batch(out.failed);
    if (!st && out.failed.size() > 1) {
      for (const auto& f : out.failed) {
        if (auto one = store_.mark_failed(*f.delivery, f.error, f.retry_at); !one) {
          log::warn(kTag, "notification {}: cannot record the failed attempt: {}", f.delivery->id,
                    one.error().message);
          ok = false;
        }
      }
    } else if (!st) {
      log::warn(kTag, "notification {}: cannot record the failed attempt: {}",
                out.failed.front().delivery->id, st.error().message);
      ok = false;
    }
    out.failed.clear();
  }
  return ok;
}

std::optional<std::chrono::milliseconds> DeliveryWorker::step(int64_t now) {
  Outcomes out;
  auto due = store_.due(now, kBatch);
  if (!due) {
    // A store in trouble must not turn the loop into a busy one: wait a little.
    log::warn(kTag, "cannot read pending notifications: {}", due.error().message);
    return kTroubleWait;
  }
  // The outcomes of the batch are recorded together (one transaction for the sent ones, one for
  // the failed ones), and also whenever sending has taken kRecordAfter since the oldest
  // unrecorded outcome, so that a slow sink does not hold finished ones back.
  bool trouble = false;
  auto first_unrecorded = std::chrono::steady_clock::now();
  for (const auto& d : *due) {
    if (task_.stop_requested()) break;  // stop after the attempt in flight
    if (out.sent.empty() && out.failed.empty()) first_unrecorded = std::chrono::steady_clock::now();
    attempt(d, out);
    if (std::chrono::steady_clock::now() - first_unrecorded >= kRecordAfter) {
      if (!record(out)) trouble = true;
    }
  }
  // Attempts made before a stop are recorded too: they have been sent.
  if (!record(out)) trouble = true;
  if (trouble) return kTroubleWait;
  if (due->size() == static_cast<size_t>(kBatch)) return std::chrono::milliseconds(0);  // more
  auto next = store_.next_due_at();
  if (next && next.value()) {
    return std::min<std::chrono::milliseconds>(
        kIdleWait, std::chrono::milliseconds(std::max<int64_t>(**next - clock_.now_ms(), 0)));
  }
  return std::nullopt;  // the period: kIdleWait
}

}  // namespace ecom::notification
