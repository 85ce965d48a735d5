#pragma once
/// HTTP types independent of Beast: requests, responses, the router and the one error mapping.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ecom/core/result.hpp"

namespace ecom::http {

enum class Method { kGet, kHead, kPost, kPut, kPatch, kDelete, kOptions, kOther };

/// Parses an upper-case method name.
Method parse_method(std::string_view s) noexcept;
std::string_view method_name(Method m) noexcept;

/// A received request. Header names are lower-cased.
struct Request {
  Method method = Method::kGet;
  /// The method as received when it is none of Method's (kOther): errors and logs name it.
  std::string method_token;
  std::string target;  ///< path and query as received
  std::string path;    ///< decoded path without query
  std::string query;   ///< raw query string without '?'
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::vector<std::pair<std::string, std::string>> params;  ///< path parameters, set by the router

  /// A header value by lower-case name.
  std::optional<std::string_view> header(std::string_view lower_name) const;
  /// A path parameter, e.g. "id" for "/api/orders/{id}".
  std::string_view param(std::string_view name) const;
  /// A decoded query parameter.
  std::optional<std::string> query_param(std::string_view name) const;
};

/// The request's method as received ("PROPFIND", not "OTHER").
std::string_view method_name(const Request& r) noexcept;

/// A response to send.
struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;

  Response& with_header(std::string name, std::string value) {
    headers.emplace_back(std::move(name), std::move(value));
    return *this;
  }
};

/// A JSON response with the given status.
Response json(int status, std::string body);

/// The HTTP status for an Error code; the only place that maps errors to statuses.
int status_for(const Error& e) noexcept;
/// `{"error":{"code","message","field"?}}` with the mapped status.
Response error_response(const Error& e);
/// Shorthand for a validation error about `field`.
Error validation_error(std::string field, std::string message);
/// The integer query parameter `name` (`fallback` when absent); VALIDATION_FAILED naming it when
/// it is not an integer from `min` to `max`.
Result<int64_t> int_query_param(const Request& req, std::string_view name, int64_t fallback,
                                int64_t min, int64_t max);

/// What a route accepts besides its method and path. Every route declares the query parameters it
/// reads: the router answers any other one (or one given twice) with 400 VALIDATION_FAILED naming
/// it, before the handler runs, so a typo or an unsupported filter (`?staus=`, `?offset=`) is
/// refused instead of silently ignored.
struct RouteOptions {
  std::vector<std::string> query;  ///< allowed query parameter names; none by default
  bool any_content_type = false;   ///< accept a body of any Content-Type (JSON only otherwise)
};

/// The query parameters of `req` that `allowed` does not name, or that appear twice: the first
/// such one as VALIDATION_FAILED naming it; ok when every parameter is allowed and given once.
Status check_query(const Request& req, const std::vector<std::string>& allowed);

/// Handles one request on an HTTP thread; must not throw (the server answers 500 if it does).
using Handler = std::function<Response(const Request&)>;

/// Completes a deferred request. Call exactly once, from any thread; later calls are ignored.
using Responder = std::function<void(Response)>;
/// A handler that answers later (long-poll). It must not block: it keeps the responder and calls it
/// when the answer is ready. If the client disconnects first, the responder becomes a no-op.
using AsyncHandler = std::function<void(const Request&, Responder)>;

/// A server-push byte stream to one client (used for Server-Sent Events). Thread-safe.
class Stream {
 public:
  virtual ~Stream() = default;
  /// Queues bytes for the client. Returns false when the stream is closed, or when the client has
  /// fallen more than the server's stream buffer limit behind: a slow client is then dropped (the
  /// stream closes) rather than allowed to grow memory without bound.
  virtual bool write(std::string data) = 0;
  /// Ends the stream after the queued bytes are sent. Idempotent.
  virtual void close() = 0;
  /// True once the client went away, close() was called, or the server is stopping.
  virtual bool closed() const = 0;
  /// Registers a callback run once when the stream ends (any reason), on a server thread. Set it
  /// inside the stream handler; if the stream already ended, it runs at once.
  virtual void on_close(std::function<void()> fn) = 0;
};

/// Opens a stream. Return std::nullopt to start streaming (status 200, `Content-Type:
/// text/event-stream`, `Cache-Control: no-cache`, no length); return a Response (e.g. 404) to
/// answer normally instead, in which case the stream is discarded.
using StreamHandler =
    std::function<std::optional<Response>(const Request&, std::shared_ptr<Stream>)>;

/// One WebSocket connection (text messages). Thread-safe.
class WebSocket {
 public:
  virtual ~WebSocket() = default;
  /// Queues a text message; false when closed or the client fell behind the buffer limit (then the
  /// connection is closed).
  virtual bool send(std::string text) = 0;
  /// Starts the closing handshake. Idempotent.
  virtual void close() = 0;
  /// True once closed for any reason.
  virtual bool closed() const = 0;
};

/// Callbacks of one WebSocket connection, run on a server thread, one at a time per connection.
struct WebSocketCallbacks {
  std::function<void(std::string_view text)> on_message;  ///< each complete text message
  std::function<void()> on_close;                         ///< once, when the connection ends
};

/// Accepts a WebSocket upgrade and returns its callbacks (the socket may be used at once).
using WebSocketHandler =
    std::function<WebSocketCallbacks(const Request&, std::shared_ptr<WebSocket>)>;

/// What a request resolved to.
struct Match {
  enum class Kind { kResponse, kAsync, kStream, kWebSocket };
  Kind kind = Kind::kResponse;
  Response response;  ///< kResponse: the answer (handler already ran, or an error)
  const AsyncHandler* async = nullptr;          ///< kAsync
  const StreamHandler* stream = nullptr;        ///< kStream
  const WebSocketHandler* websocket = nullptr;  ///< kWebSocket
  /// The route's template, "<METHOD> <pattern>" (e.g. "GET /api/orders/{id}"), or
  /// kUnmatchedRoute: a bounded metric label. Points into the router.
  std::string_view route;
};

/// Match::route of a request no route matched (404, 405).
inline constexpr std::string_view kUnmatchedRoute = "unmatched";

/// Maps method + path pattern to handlers. Patterns use `{name}` segments, e.g.
/// "/api/orders/{id}/cancel". Register during start-up only; dispatch is then thread-safe.
class Router final {
 public:
  /// Adds a route. Requests with a body must be application/json unless
  /// `options.any_content_type`; query parameters must be among `options.query`.
  void add(Method method, std::string pattern, Handler handler, RouteOptions options = {});
  /// Adds a route answered later (long-poll).
  void add_async(Method method, std::string pattern, AsyncHandler handler,
                 RouteOptions options = {});
  /// Adds a GET route that streams (Server-Sent Events).
  void add_stream(std::string pattern, StreamHandler handler, RouteOptions options = {});
  /// Adds a GET route that upgrades to WebSocket; a plain GET on it answers 426.
  void add_websocket(std::string pattern, WebSocketHandler handler, RouteOptions options = {});
  /// Routes a request: 404 for no path match, 405 (with Allow) when only the method differs,
  /// 400 for a query parameter the route does not declare, 415 when a POST/PUT/PATCH body is not
  /// JSON. Plain routes are run and their response returned.
  Response dispatch(Request& request) const;
  /// Resolves a request to its route kind (runs plain handlers; sets path params). Used by the
  /// server.
  Match match(Request& request) const;
  /// Number of routes.
  size_t size() const noexcept { return routes_.size(); }

 private:
  struct Route {
    Method method;
    std::vector<std::string> segments;
    Handler handler;
    RouteOptions options;
    Match::Kind kind = Match::Kind::kResponse;
    AsyncHandler async;
    StreamHandler stream;
    WebSocketHandler websocket;
    std::string label;  ///< Match::route
  };
  void add_route(Route route, std::string_view pattern);
  std::vector<Route> routes_;
};

}  // namespace ecom::http
