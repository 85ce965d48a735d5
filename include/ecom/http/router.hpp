#pragma once
/// HTTP types independent of Beast: requests, responses, the router and the one error mapping.

#include <cstdint>
#include <functional>
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

/// Handles one request on an HTTP thread; must not throw (the server answers 500 if it does).
using Handler = std::function<Response(const Request&)>;

/// Maps method + path pattern to handlers. Patterns use `{name}` segments, e.g.
/// "/api/orders/{id}/cancel". Register during start-up only; dispatch is then thread-safe.
class Router final {
 public:
  /// Adds a route. Requests with a body must be application/json unless `any_content_type`.
  void add(Method method, std::string pattern, Handler handler, bool any_content_type = false);
  /// Routes a request: 404 for no path match, 405 (with Allow) when only the method differs,
  /// 415 when a POST/PUT/PATCH body is not JSON.
  Response dispatch(Request& request) const;
  /// Number of routes.
  size_t size() const noexcept { return routes_.size(); }

 private:
  struct Route {
    Method method;
    std::vector<std::string> segments;
    Handler handler;
    bool any_content_type = false;
  };
  std::vector<Route> routes_;
};

}  // namespace ecom::http
