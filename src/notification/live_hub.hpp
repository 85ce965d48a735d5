#pragma once
// Live subscribers (SSE streams and WebSocket connections) and the fan-out of committed feed rows
// to them. Writes never block: Stream::write / WebSocket::send only queue, and a client that falls
// too far behind is dropped by the http layer (write returns false) or here (too many events
// queued before its start was sent).

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/http/router.hpp"
#include "store.hpp"

namespace ecom::notification {

/// A feed row formatted once for every subscriber, shared by all of them (also by those that queue
/// it until their start is sent). Only the forms some subscriber needs are filled in; immutable
/// once published.
struct LiveEvent {
  int64_t seq = 0;
  std::string order_id;
  std::string kind;
  std::string sse;  // the SSE block (empty when no SSE subscriber wants the row)
  std::string ws;   // the WebSocket message (empty when no WebSocket subscriber wants it)
};

/// One subscriber: a filter and a transport. Thread-safe.
class Subscriber final {
 public:
  /// Order-scoped when `order_id` is non-empty, else everything but notifications.
  Subscriber(std::string order_id, std::shared_ptr<http::Stream> stream);
  Subscriber(std::string order_id, std::shared_ptr<http::WebSocket> socket);

  /// Sends the start (snapshot and/or replay), then what arrived meanwhile; from then on events
  /// are sent as they come.
  void begin(const StreamStart& start);
  /// Whether this subscriber takes feed rows of `kind` about `order_id` (thread-safe, lock-free).
  bool wants(std::string_view kind, std::string_view order_id) const;
  /// True for a WebSocket subscriber (it needs LiveEvent::ws), false for SSE (LiveEvent::sse).
  bool websocket() const noexcept { return socket_ != nullptr; }
  /// Sends one live event if it matches and is newer than what was sent. `e` must carry the form
  /// this subscriber needs when it matches.
  void deliver(const std::shared_ptr<const LiveEvent>& e);
  /// Writes an SSE keep-alive comment (no-op for WebSocket).
  void keepalive();
  /// Stops delivery without touching the transport (a WebSocket re-subscribed, a stream refused).
  void retire() noexcept { dead_ = true; }
  /// Stops delivery and closes the transport.
  void close();
  bool dead() const noexcept { return dead_; }

 private:
  bool send_locked(const std::string& sse, const std::string& ws);  // false: transport dropped us
  void drop_locked();

  const std::string order_id_;
  std::shared_ptr<http::Stream> stream_;
  std::shared_ptr<http::WebSocket> socket_;
  std::mutex mu_;
  bool ready_ = false;
  int64_t position_ = 0;  // highest seq sent (or covered by the snapshot)
  std::deque<std::shared_ptr<const LiveEvent>> pending_;
  std::atomic<bool> dead_{false};
};

/// The set of live subscribers. Thread-safe.
class LiveHub final {
 public:
  /// Registers before the subscriber's start is read, so nothing committed in between is missed.
  void add(std::shared_ptr<Subscriber> s);
  /// Fans committed rows out, in seq order (called by one pump thread).
  void publish(const std::vector<FeedRow>& rows);
  /// Keep-alive comment to every SSE subscriber.
  void keepalive();
  /// Forgets dead subscribers.
  void sweep();
  /// Closes every subscriber (shutdown).
  void close_all();
  /// Live subscribers, for logs and tests.
  size_t size();

 private:
  std::vector<std::shared_ptr<Subscriber>> snapshot();
  std::mutex mu_;
  std::vector<std::shared_ptr<Subscriber>> subs_;
};

}  // namespace ecom::notification
