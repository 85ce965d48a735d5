#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <array>
#include <cctype>

#include "ecom/core/clock.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/outbox.hpp"
#include "store.hpp"
#include "store_rows.hpp"

// The read side of the store: the live feed (streams, snapshots, pruning) and the queries of the
// REST API.
namespace ecom::notification {
namespace {

using namespace rows;

constexpr int kRecentOrders = 20;

}  // namespace

// --- feed reading ------------------------------------------------------------------------------

namespace {

// seq bounds of the feed: the last seq ever assigned and the oldest row still kept.
struct FeedBounds {
  int64_t last = 0;
  int64_t oldest = 1;
};

FeedBounds feed_bounds(db::Tx& tx) {
  FeedBounds b;
  b.last = tx.sequence_high("feed", "seq");
  auto m = tx.stmt("SELECT MIN(seq) FROM feed");
  b.oldest = (m.step() && !m.col_null(0)) ? m.col_int(0) : b.last + 1;
  return b;
}

// A Last-Event-ID can be resumed from when nothing after it was pruned and it is not from the
// future (a wiped store, another server).
bool resumable(const FeedBounds& b, int64_t last_event_id) {
  return last_event_id >= b.oldest - 1 && last_event_id <= b.last;
}

FeedRow read_feed_row(db::Statement& s) {
  return FeedRow{s.col_int(0), s.col_text(1), s.col_text(2), s.col_text(3), s.col_int(4)};
}

std::string order_snapshot(db::Tx& tx, const OrderRow& o) {
  struct H {
    std::string status, reason;
    int64_t at;
  };
  std::vector<H> history;
  auto h = tx.stmt("SELECT status, reason, at FROM order_history WHERE order_id = ?");
  h.bind(1, o.id);
  while (h.step()) history.push_back({h.col_text(0), h.col_text(1), h.col_int(2)});
  std::sort(history.begin(), history.end(), [](const H& a, const H& b) {
    return rank(a.status) != rank(b.status) ? rank(a.status) < rank(b.status) : a.at < b.at;
  });
  return json_object([&](Writer& w) {
    write_order_fields(w, o);
    field(w, "updatedAt", format_rfc3339(o.updated_at));
    key(w, "history");
    w.StartArray();
    for (const auto& e : history) {
      w.StartObject();
      field(w, "status", e.status);
      if (!e.reason.empty()) field(w, "reason", e.reason);
      field(w, "at", format_rfc3339(e.at));
      w.EndObject();
    }
    w.EndArray();
    key(w, "notifications");
    w.StartArray();
    auto n = tx.stmt(
        fmt::format("SELECT {} FROM notifications WHERE order_id = ? ORDER BY created_at, id",
                    kNotificationColumns));
    n.bind(1, o.id);
    while (n.step()) {
      w.StartObject();
      write_notification(w, n);
      w.EndObject();
    }
    w.EndArray();
  });
}

void write_counts(Writer& w, db::Tx& tx) {
  std::array<int64_t, std::size(contract::kAllStatuses)> counts{};
  auto s = tx.stmt("SELECT status, COUNT(*) FROM orders GROUP BY status");
  while (s.step()) {
    if (auto st = contract::parse_order_status(s.col_view(0)))
      counts[static_cast<size_t>(*st)] = s.col_int(1);
  }
  key(w, "orders");
  w.StartObject();
  for (auto st : contract::kAllStatuses) {
    key(w, contract::name(st));
    w.Int64(counts[static_cast<size_t>(st)]);
  }
  w.EndObject();
}

std::string summary_snapshot(db::Tx& tx) {
  return json_object([&](Writer& w) {
    write_counts(w, tx);
    key(w, "recent");
    w.StartArray();
    auto s = tx.stmt(fmt::format("SELECT {} FROM orders ORDER BY updated_at DESC, id DESC LIMIT ?",
                                 kOrderColumns));
    s.bind(1, kRecentOrders);
    while (s.step()) {
      OrderRow o = read_order(s);
      w.StartObject();
      write_order_fields(w, o);
      field(w, "updatedAt", format_rfc3339(o.updated_at));
      w.EndObject();
    }
    w.EndArray();
  });
}

}  // namespace

Result<std::optional<StreamStart>> Store::start_order_stream(std::string_view order_id,
                                                             std::optional<int64_t> last_event_id,
                                                             int64_t horizon) {
  // One read under the store's lock: the snapshot and `position` describe the same moment.
  return db_.read([&](db::Tx& tx) -> Result<std::optional<StreamStart>> {
    auto order = load_order(tx, order_id);
    if (!order) return std::optional<StreamStart>();
    FeedBounds b = feed_bounds(tx);
    StreamStart start;
    start.position = std::min(b.last, horizon);
    if (last_event_id && resumable(b, *last_event_id)) {
      auto s = tx.stmt(
          "SELECT seq, COALESCE(order_id, ''), kind, payload, at FROM feed "
          "WHERE order_id = ? AND seq > ? AND seq <= ? ORDER BY seq");
      s.bind(1, order_id).bind(2, *last_event_id).bind(3, start.position);
      while (s.step()) start.rows.push_back(read_feed_row(s));
      return std::optional<StreamStart>(std::move(start));
    }
    start.snapshot = true;
    start.snapshot_json = order_snapshot(tx, *order);
    return std::optional<StreamStart>(std::move(start));
  });
}

Result<StreamStart> Store::start_all_stream(std::optional<int64_t> last_event_id, int max_replay,
                                            int64_t horizon) {
  return db_.read([&](db::Tx& tx) -> Result<StreamStart> {
    FeedBounds b = feed_bounds(tx);
    StreamStart start;
    start.position = std::min(b.last, horizon);
    if (last_event_id && resumable(b, *last_event_id)) {
      auto s = tx.stmt(
          "SELECT seq, COALESCE(order_id, ''), kind, payload, at FROM feed "
          "WHERE seq > ? AND seq <= ? AND kind IN ('status', 'inventory', 'alert') ORDER BY seq "
          "LIMIT ?");
      s.bind(1, *last_event_id).bind(2, start.position).bind(3, max_replay + 1);
      while (s.step()) start.rows.push_back(read_feed_row(s));
      if (start.rows.size() <= static_cast<size_t>(max_replay)) return start;
      start.rows.clear();
    }
    start.snapshot = true;
    start.snapshot_json = summary_snapshot(tx);
    return start;
  });
}

Result<std::vector<FeedRow>> Store::feed_after(int64_t after, int limit) {
  return db_.read([&](db::Tx& tx) -> Result<std::vector<FeedRow>> {
    auto s = tx.stmt(
        "SELECT seq, COALESCE(order_id, ''), kind, payload, at FROM feed "
        "WHERE seq > ? ORDER BY seq LIMIT ?");
    s.bind(1, after).bind(2, limit);
    std::vector<FeedRow> rows;
    while (s.step()) rows.push_back(read_feed_row(s));
    return rows;
  });
}

Result<int64_t> Store::last_seq() {
  return db_.read([&](db::Tx& tx) -> Result<int64_t> { return feed_bounds(tx).last; });
}

Result<int64_t> Store::prune_feed(int64_t retain, int64_t max_rows) {
  // Bounded chunks, each its own transaction: one DELETE of everything held the store for hundreds
  // of milliseconds and stalled every consumer of the module behind it (docs/performance.md).
  constexpr int64_t kChunk = 512;
  int64_t total = 0;
  while (total < max_rows) {
    auto deleted = db_.transaction([&](db::Tx& tx) -> Result<int64_t> {
      FeedBounds b = feed_bounds(tx);
      const int64_t cut = b.last - retain;  // rows with seq <= cut go
      if (b.last - b.oldest + 1 <= retain || cut < b.oldest) return int64_t{0};
      const int64_t chunk = std::min(kChunk, max_rows - total);
      return tx.stmt("DELETE FROM feed WHERE seq <= ?")
          .bind(1, std::min(cut, b.oldest + chunk - 1))
          .exec();
    });
    if (!deleted) return deleted;
    total += *deleted;
    if (*deleted == 0) return total;
  }
  return total;
}

// --- queries -------------------------------------------------------------------------------------

Result<std::string> Store::stats_json() {
  return db_.read([&](db::Tx& tx) -> Result<std::string> {
    return json_object([&](Writer& w) { write_counts(w, tx); });
  });
}

Result<std::string> Store::list_notifications_json(const NotificationQuery& q) {
  return db_.read([&](db::Tx& tx) -> Result<std::string> {
    std::string where;
    if (q.customer_id) where += "customer_id = ?";
    if (q.order_id) where += std::string(where.empty() ? "" : " AND ") + "order_id = ?";
    auto s = tx.stmt(
        fmt::format("SELECT {} FROM notifications WHERE {} ORDER BY created_at DESC, id DESC "
                    "LIMIT ?",
                    kNotificationColumns, where));
    int idx = 1;
    if (q.customer_id) s.bind(idx++, *q.customer_id);
    if (q.order_id) s.bind(idx++, *q.order_id);
    s.bind(idx, q.limit);
    return json_object([&](Writer& w) {
      key(w, "notifications");
      w.StartArray();
      while (s.step()) {
        w.StartObject();
        write_notification(w, s);
        w.EndObject();
      }
      w.EndArray();
    });
  });
}

}  // namespace ecom::notification
