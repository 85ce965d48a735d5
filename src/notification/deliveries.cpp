#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <array>
#include <cctype>

#include "ecom/contract/events.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/outbox.hpp"
#include "store.hpp"
#include "store_rows.hpp"

// The delivery side of the store: what is due, and the outcome of each attempt.
namespace ecom::notification {

using namespace rows;

// --- delivery ------------------------------------------------------------------------------------

namespace {

// Replicas sharing a PostgreSQL store: a notification one replica takes is not due for the
// others for this long (longer than any attempt: the sinks time out in seconds). A replica that
// dies while sending leaves it to another after that: delivered at least once, as on a crash of
// a single replica.
constexpr int64_t kClaimMs = 60'000;

// PostgreSQL: rows another replica is claiming right now are passed over, not waited for
// (SQLite drops the clause: src/db/README.md).
constexpr std::string_view kDue =
    "SELECT id, order_id, customer_id, status_key, channel, subject, body, attempts, "
    "created_at, "
    "COALESCE(correlation_id, ''), COALESCE(causation_id, ''), COALESCE(traceparent, '') "
    "FROM notifications WHERE status = 'PENDING' AND next_attempt_at <= ? "
    "ORDER BY next_attempt_at, created_at, id LIMIT ? FOR UPDATE SKIP LOCKED";

}  // namespace

Result<std::vector<Delivery>> Store::due(int64_t now, int limit) {
  if (db_.postgres()) {
    // Each notification is delivered by one replica: taken (its next attempt moved past the
    // claim) in the transaction that finds it due.
    return db_.transaction([&](db::Tx& tx) -> Result<std::vector<Delivery>> {
      auto found = read_due(tx, now, limit);
      for (const auto& d : found)
        tx.stmt("UPDATE notifications SET next_attempt_at = ? WHERE id = ?")
            .bind_all(now + kClaimMs, d.id)
            .exec();
      return found;
    });
  }
  return db_.read(
      [&](db::Tx& tx) -> Result<std::vector<Delivery>> { return read_due(tx, now, limit); });
}

std::vector<Delivery> Store::read_due(db::Tx& tx, int64_t now, int limit) {
  auto s = tx.stmt(kDue);
  s.bind(1, now).bind(2, limit);
  std::vector<Delivery> out;
  while (s.step()) {
    out.push_back(Delivery{s.col_text(0), s.col_text(1), s.col_text(2), s.col_text(3),
                           s.col_text(4), s.col_text(5), s.col_text(6),
                           static_cast<int>(s.col_int(7)), s.col_int(8), s.col_text(9),
                           s.col_text(10), s.col_text(11)});
  }
  return out;
}

Result<std::optional<int64_t>> Store::next_due_at() {
  return db_.read([&](db::Tx& tx) -> Result<std::optional<int64_t>> {
    auto s = tx.stmt("SELECT MIN(next_attempt_at) FROM notifications WHERE status = 'PENDING'");
    if (s.step() && !s.col_null(0)) return std::optional<int64_t>(s.col_int(0));
    return std::optional<int64_t>();
  });
}

namespace {

// The NotificationSent event of a notification marked SENT at `now` via `channel`.
Envelope notification_sent(const Delivery& d, std::string_view channel, int64_t now) {
  Envelope e = contract::make(
      kConsumer, contract::NotificationSent{d.id, d.order_id, d.customer_id, d.order_status,
                                            std::string(channel), d.subject, d.attempts + 1,
                                            format_rfc3339(now)});
  // The notification belongs to the order's flow: keep its correlation and trace.
  if (!d.correlation_id.empty()) e.correlation_id = d.correlation_id;
  if (!d.causation_id.empty()) e.causation_id = d.causation_id;
  if (!d.traceparent.empty()) e.traceparent = d.traceparent;
  return e;
}

}  // namespace

Status Store::mark_sent(const Delivery& d, std::string_view channel, int64_t now) {
  SentAttempt one{&d, now};
  return mark_sent_batch(std::span<const SentAttempt>(&one, 1), channel);
}

Status Store::mark_sent_batch(std::span<const SentAttempt> sent, std::string_view channel) {
  if (sent.empty()) return {};
  return db_.transaction([&](db::Tx& tx) -> Status {
    for (const auto& s : sent) {
      const Delivery& d = *s.delivery;
      int64_t changed =
          tx.stmt(
                "UPDATE notifications SET status = 'SENT', channel = ?, attempts = attempts + 1, "
                "sent_at = ?, last_error = NULL, next_attempt_at = NULL "
                "WHERE id = ? AND status = 'PENDING'")
              .bind_all(channel, s.sent_at, d.id)
              .exec();
      if (changed == 0) continue;  // already settled
      db::outbox_add(tx, topics::kNotificationsSent, notification_sent(d, channel, s.sent_at));
    }
    return {};
  });
}

Status Store::mark_failed(const Delivery& d, std::string_view error,
                          std::optional<int64_t> retry_at) {
  FailedAttempt one{&d, std::string(error), retry_at};
  return mark_failed_batch(std::span<const FailedAttempt>(&one, 1));
}

Status Store::mark_failed_batch(std::span<const FailedAttempt> failed) {
  if (failed.empty()) return {};
  return db_.transaction([&](db::Tx& tx) -> Status {
    for (const auto& f : failed) {
      auto s = tx.stmt(
          "UPDATE notifications SET status = ?, attempts = attempts + 1, last_error = ?, "
          "next_attempt_at = ? WHERE id = ? AND status = 'PENDING'");
      s.bind(1, f.retry_at ? "PENDING" : "FAILED").bind(2, f.error).bind(4, f.delivery->id);
      if (f.retry_at)
        s.bind(3, *f.retry_at);
      else
        s.bind_null(3);
      s.exec();
    }
    return {};
  });
}

}  // namespace ecom::notification
