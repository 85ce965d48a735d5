#pragma once
/// The notification module's store (`notification.db`): its own projection of orders, the
/// notifications it sends, and the persistent feed that live subscribers (SSE, WebSocket) read.
///
/// Thread safety: every method is one db transaction or read, so it may be called from any thread.

#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/core/envelope.hpp"
#include "ecom/core/result.hpp"
#include "ecom/db/database.hpp"
#include "templates.hpp"

namespace ecom::notification {

/// Feed row kinds; also the SSE `event:` names.
namespace feed_kind {
inline constexpr std::string_view kStatus{"status"};              ///< an order status change
inline constexpr std::string_view kNotification{"notification"};  ///< a notification was created
inline constexpr std::string_view kInventory{"inventory"};        ///< an inventory.updated payload
inline constexpr std::string_view kAlert{"alert"};                ///< an inventory.alerts payload
}  // namespace feed_kind

/// One feed row. `payload` is one-line JSON.
struct FeedRow {
  int64_t seq = 0;
  std::string order_id;  ///< empty for inventory and alert rows
  std::string kind;
  std::string payload;
  int64_t at = 0;  ///< epoch ms
};

/// How a live stream begins: an optional snapshot, then replayed rows, then live rows with
/// seq > position.
struct StreamStart {
  bool snapshot = false;      ///< send `snapshot_json` first, with id `position`
  std::string snapshot_json;  ///< the snapshot event's data
  std::vector<FeedRow> rows;  ///< rows to replay, in seq order
  int64_t position = 0;       ///< the highest seq this start covers
};

/// What applying one consumed event did.
struct Applied {
  bool duplicate = false;  ///< the inbox had seen the event: no effect
  int feed_rows = 0;       ///< feed rows written
  int notifications = 0;   ///< notifications created
};

/// A notification due for delivery.
struct Delivery {
  std::string id;
  std::string order_id;
  std::string customer_id;
  std::string order_status;
  std::string channel;
  std::string subject;
  std::string body;
  int attempts = 0;  ///< attempts made before this one
  int64_t created_at = 0;
  std::string correlation_id;
  std::string causation_id;
  std::string traceparent;
};

/// A successful delivery attempt, for Store::mark_sent_batch().
struct SentAttempt {
  const Delivery* delivery = nullptr;  ///< must outlive the call
  int64_t sent_at = 0;                 ///< epoch ms
};

/// A failed delivery attempt, for Store::mark_failed_batch().
struct FailedAttempt {
  const Delivery* delivery = nullptr;  ///< must outlive the call
  std::string error;
  std::optional<int64_t> retry_at;  ///< PENDING again at this time; nullopt: FAILED
};

/// Filter of list_notifications(); at least one of the ids is set.
struct NotificationQuery {
  std::optional<std::string> customer_id;
  std::optional<std::string> order_id;
  int limit = 50;
};

/// The store. Thread-safe (see above).
class Store final {
 public:
  /// `templates` render new notifications; `channel` is stored as their channel.
  Store(db::Database& db, Templates templates, std::string channel);

  /// Creates or upgrades the tables (migration component "notification").
  Status migrate();

  /// Applies one consumed event in ONE transaction: inbox claim (consumer "notification"),
  /// projection, at most one notification per order and status, feed rows. Events of other types
  /// are ignored. `delivered_once`: bus::Message::once (no inbox row needed). Errors:
  /// INVALID_PAYLOAD (bad payload, never retryable) or a store error.
  Result<Applied> apply(const Envelope& e, bool delivered_once = false);

  /// The start of `GET /api/orders/{id}/events`: without `last_event_id`, or when it is older than
  /// the oldest retained row (or unknown), a snapshot first; else that order's rows after it.
  /// nullopt when the order is unknown. Rows above `horizon` (those the live pump has not
  /// released yet: on a shared PostgreSQL store they become visible out of seq order) are left
  /// to the pump, and the start's position is at most `horizon`.
  Result<std::optional<StreamStart>> start_order_stream(
      std::string_view order_id, std::optional<int64_t> last_event_id,
      int64_t horizon = std::numeric_limits<int64_t>::max());
  /// The start of `GET /api/events` (status, inventory and alert rows); a snapshot instead of a
  /// replay also when more than `max_replay` rows would be replayed.
  Result<StreamStart> start_all_stream(std::optional<int64_t> last_event_id, int max_replay,
                                       int64_t horizon = std::numeric_limits<int64_t>::max());
  /// Rows with seq > `after`, oldest first, at most `limit`.
  Result<std::vector<FeedRow>> feed_after(int64_t after, int limit);
  /// The last seq ever assigned (0 when none).
  Result<int64_t> last_seq();
  /// Deletes all but the newest `retain` rows, at most `max_rows` of them (oldest first, in small
  /// transactions); returns how many were deleted.
  Result<int64_t> prune_feed(int64_t retain,
                             int64_t max_rows = std::numeric_limits<int64_t>::max());

  /// `{"orders":{"PENDING":n,...}}` from the projection.
  Result<std::string> stats_json();
  /// `{"notifications":[...]}`, newest first.
  Result<std::string> list_notifications_json(const NotificationQuery& q);

  /// PENDING notifications due at `now_ms`, oldest first. On PostgreSQL, where replicas share
  /// the store, they are also taken for this replica (not due for the others for a minute,
  /// or until marked), so each is delivered by one.
  Result<std::vector<Delivery>> due(int64_t now_ms, int limit);
  /// When the next PENDING notification is due (nullopt: none pending).
  Result<std::optional<int64_t>> next_due_at();
  /// Marks SENT via `channel` and queues NotificationSent in the same transaction.
  Status mark_sent(const Delivery& d, std::string_view channel, int64_t now_ms);
  /// Records a failed attempt: PENDING again at `retry_at`, or FAILED when nullopt.
  Status mark_failed(const Delivery& d, std::string_view error, std::optional<int64_t> retry_at);
  /// mark_sent() for many notifications in ONE transaction (one commit): all are recorded or,
  /// on error, none. Notifications no longer PENDING are skipped (no second NotificationSent).
  Status mark_sent_batch(std::span<const SentAttempt> sent, std::string_view channel);
  /// mark_failed() for many attempts in ONE transaction: all are recorded or, on error, none.
  Status mark_failed_batch(std::span<const FailedAttempt> failed);

 private:
  std::vector<Delivery> read_due(db::Tx& tx, int64_t now, int limit);
  db::Database& db_;
  Templates templates_;
  std::string channel_;
};

/// The SSE wire form: `id: N\nevent: KIND\ndata: JSON\n\n`.
std::string sse_event(int64_t id, std::string_view event, std::string_view data_json);
/// The WebSocket message form: `{"id":N,"event":"KIND","data":JSON}`.
std::string ws_event(int64_t id, std::string_view event, std::string_view data_json);

}  // namespace ecom::notification
