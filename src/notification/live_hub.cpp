#include "live_hub.hpp"

#include <algorithm>

namespace ecom::notification {
namespace {

// Events queued for a subscriber whose start is still being sent; beyond this it is dropped.
constexpr size_t kMaxPending = 10'000;
constexpr std::string_view kKeepAlive{": keep-alive\n\n"};

}  // namespace

Subscriber::Subscriber(std::string order_id, std::shared_ptr<http::Stream> stream)
    : order_id_(std::move(order_id)), stream_(std::move(stream)) {}

Subscriber::Subscriber(std::string order_id, std::shared_ptr<http::WebSocket> socket)
    : order_id_(std::move(order_id)), socket_(std::move(socket)) {}

bool Subscriber::wants(std::string_view kind, std::string_view order_id) const {
  if (order_id_.empty()) return kind != feed_kind::kNotification;
  return order_id == order_id_ && (kind == feed_kind::kStatus || kind == feed_kind::kNotification);
}

bool Subscriber::send_locked(const std::string& sse, const std::string& ws) {
  bool ok = stream_ ? stream_->write(sse) : socket_->send(ws);
  if (!ok) dead_ = true;
  return ok;
}

void Subscriber::drop_locked() {
  dead_ = true;
  pending_.clear();
  if (stream_) stream_->close();
  if (socket_) socket_->close();
}

void Subscriber::begin(const StreamStart& start) {
  std::lock_guard lock(mu_);
  if (dead_) return;
  position_ = start.position;
  if (start.snapshot && !send_locked(sse_event(start.position, "snapshot", start.snapshot_json),
                                     ws_event(start.position, "snapshot", start.snapshot_json)))
    return;
  for (const auto& row : start.rows) {
    if (!send_locked(sse_event(row.seq, row.kind, row.payload),
                     ws_event(row.seq, row.kind, row.payload)))
      return;
    position_ = std::max(position_, row.seq);
  }
  for (const auto& e : pending_) {
    if (e->seq <= position_) continue;  // already covered by the start
    if (!send_locked(e->sse, e->ws)) return;
    position_ = e->seq;
  }
  pending_.clear();
  ready_ = true;
}

void Subscriber::deliver(const std::shared_ptr<const LiveEvent>& e) {
  if (dead_ || !wants(e->kind, e->order_id)) return;
  std::lock_guard lock(mu_);
  if (dead_) return;
  if (!ready_) {
    if (pending_.size() >= kMaxPending) return drop_locked();
    pending_.push_back(e);  // shared, not copied
    return;
  }
  if (e->seq <= position_) return;
  if (send_locked(e->sse, e->ws)) position_ = e->seq;
}

void Subscriber::keepalive() {
  if (dead_ || !stream_) return;
  std::lock_guard lock(mu_);
  if (!ready_ || dead_) return;
  send_locked(std::string(kKeepAlive), {});
}

void Subscriber::close() {
  std::lock_guard lock(mu_);
  drop_locked();
}

void LiveHub::add(std::shared_ptr<Subscriber> s) {
  std::lock_guard lock(mu_);
  subs_.push_back(std::move(s));
}

std::vector<std::shared_ptr<Subscriber>> LiveHub::snapshot() {
  std::lock_guard lock(mu_);
  return subs_;
}

void LiveHub::publish(const std::vector<FeedRow>& rows) {
  if (rows.empty()) return;
  // Copy the list, then write without the hub lock: adding a subscriber never waits for a fan-out.
  auto subs = snapshot();
  if (subs.empty()) return;
  for (const auto& row : rows) {
    // Encode once for everyone, and only the forms some subscriber takes: with only /api/events
    // watching, notification rows (order streams only) are not formatted at all.
    bool sse = false, ws = false;
    for (const auto& s : subs) {
      if (!s->dead() && s->wants(row.kind, row.order_id)) (s->websocket() ? ws : sse) = true;
      if (sse && ws) break;
    }
    if (!sse && !ws) continue;
    auto e = std::make_shared<const LiveEvent>(
        LiveEvent{row.seq, row.order_id, row.kind,
                  sse ? sse_event(row.seq, row.kind, row.payload) : std::string(),
                  ws ? ws_event(row.seq, row.kind, row.payload) : std::string()});
    for (const auto& s : subs) s->deliver(e);
  }
}

void LiveHub::keepalive() {
  for (const auto& s : snapshot()) s->keepalive();
}

void LiveHub::sweep() {
  std::lock_guard lock(mu_);
  std::erase_if(subs_, [](const std::shared_ptr<Subscriber>& s) { return s->dead(); });
}

void LiveHub::close_all() {
  std::vector<std::shared_ptr<Subscriber>> subs;
  {
    std::lock_guard lock(mu_);
    subs.swap(subs_);
  }
  for (const auto& s : subs) s->close();
}

size_t LiveHub::size() {
  std::lock_guard lock(mu_);
  return subs_.size();
}

}  // namespace ecom::notification
