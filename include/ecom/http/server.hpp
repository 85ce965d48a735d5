#pragma once
/// The HTTP/1.1 server (Boost.Beast inside src/http only).

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "ecom/core/result.hpp"
#include "ecom/http/router.hpp"

namespace ecom::http {

/// Server limits and threading.
struct ServerOptions {
  std::string host = "0.0.0.0";
  uint16_t port = 8080;  ///< 0 picks a free port
  int threads = 2;
  size_t body_limit = 1 << 20;  ///< larger bodies get 413
  std::chrono::milliseconds read_timeout{
      30'000};  ///< header+body read deadline (and idle keep-alive)
  /// Bytes a stream or WebSocket client may fall behind before it is dropped (per connection).
  /// Streams and WebSockets are exempt from read_timeout; their writes keep a deadline.
  size_t stream_buffer_limit = 1 << 20;
  /// One info line per answered request ("access" tag: method, route, status, ms, trace id).
  bool access_log = false;
};

/// A running server. start() binds and serves on background threads; stop() stops accepting,
/// lets in-flight requests finish (bounded), answers pending async requests 503, ends streams and
/// WebSockets after their queued data (running their close callbacks), then joins.
class Server {
 public:
  virtual ~Server() = default;
  /// Binds and starts serving. Fails (not retryable) when the address is taken.
  virtual Status start() = 0;
  /// The bound port (useful with port 0).
  virtual uint16_t port() const noexcept = 0;
  /// Graceful stop. Idempotent.
  virtual void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5'000)) = 0;
};

/// Creates a server that dispatches to `router` (which must outlive it).
std::unique_ptr<Server> make_server(const Router& router, ServerOptions options);

}  // namespace ecom::http
