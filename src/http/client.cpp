// The outgoing HTTP client; a second Beast translation unit, kept apart from the server so that
// neither pulls in the other's templates.
#include "ecom/http/client.hpp"

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/verb.hpp>
#include <boost/beast/http/write.hpp>
#include <cctype>
#include <optional>
#include <string>
#include <utility>  // must precede Asio with Boost 1.74 + C++20 coroutines

namespace ecom::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

// Webhook answers are small; a peer sending more is misbehaving.
constexpr size_t kResponseBodyLimit = 8 << 20;

struct Url {
  std::string host;  // without brackets
  std::string port = "80";
  std::string host_header;  // authority as written
  std::string target = "/";
};

Error bad_url(std::string_view url, std::string_view why) {
  return Error{ErrorCode::kBadUrl, "invalid URL '" + std::string(url) + "': " + std::string(why),
               "url", false};
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

Result<Url> parse_url(std::string_view url) {
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
      return bad_url(url, "contains spaces or control characters");
    }
  }
  size_t sep = url.find("://");
  if (sep == std::string_view::npos) return bad_url(url, "expected http://host[:port]/path");
  std::string_view scheme = url.substr(0, sep);
  if (!iequals(scheme, "http")) {
    return Error{ErrorCode::kUnsupportedScheme,
                 "unsupported URL scheme '" + std::string(scheme) + "' (only http:// is supported)",
                 "url", false};
  }
  std::string_view rest = url.substr(sep + 3);
  size_t hash = rest.find('#');
  if (hash != std::string_view::npos) rest = rest.substr(0, hash);
  size_t path_start = rest.find_first_of("/?");
  std::string_view authority = rest.substr(0, path_start);

  Url out;
  if (path_start != std::string_view::npos) {
    std::string_view target = rest.substr(path_start);
    out.target = target.front() == '?' ? "/" + std::string(target) : std::string(target);
  }
  if (authority.find('@') != std::string_view::npos) {
    return bad_url(url, "credentials in URLs are not supported");
  }
  out.host_header = std::string(authority);
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad_url(url, "unterminated IPv6 address");
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad_url(url, "unexpected text after the IPv6 address");
      port = after.substr(1);
      if (port.empty()) return bad_url(url, "empty port");
    }
  } else {
    size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port = authority.substr(colon + 1);
      if (port.empty()) return bad_url(url, "empty port");
    }
  }
  if (out.host.empty()) return bad_url(url, "missing host");
  if (!port.empty()) {
    unsigned value = 0;
    for (char c : port) {
      if (c < '0' || c > '9' || port.size() > 5) return bad_url(url, "invalid port");
      value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return bad_url(url, "port out of range");
    out.port = std::to_string(value);
  }
  return out;
}

bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (char c : s) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) ||
              std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

// One call's I/O objects and outcome; the watchdog and the steps share them.
struct Call {
  explicit Call(asio::io_context& ioc) : resolver(ioc), socket(ioc), watchdog(ioc) {}

  tcp::resolver resolver;
  tcp::socket socket;
  asio::steady_timer watchdog;
  beast::flat_buffer buffer;
  bhttp::request<bhttp::string_body> request;
  bhttp::response_parser<bhttp::string_body> parser;
  std::string where;  // host:port, for messages
  bool timed_out = false;
  std::optional<Result<ClientResponse>> result;

  void fail(std::string_view step, const beast::error_code& ec) {
    if (result) return;
    if (timed_out) {
      result = Error{ErrorCode::kUpstreamTimeout, "no answer from " + where + " in time", {}, true};
    } else {
      result = Error{ErrorCode::kUpstreamUnavailable,
                     std::string(step) + " " + where + " failed: " + ec.message(),
                     {},
                     true};
    }
    watchdog.cancel();
  }
};

bool is_malformed_response(const beast::error_code& ec) {
  if (ec == bhttp::error::body_limit || ec == bhttp::error::header_limit) return true;
  if (ec.category() != bhttp::make_error_code(bhttp::error::bad_method).category()) return false;
  return ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message;
}

}  // namespace

Result<ClientResponse> request(std::string_view method, std::string_view url, std::string body,
                               const std::vector<std::pair<std::string, std::string>>& headers,
                               std::chrono::milliseconds timeout) {
  auto parsed = parse_url(url);
  if (!parsed) return parsed.error();
  const Url& u = parsed.value();
  if (!is_token(method)) {
    return Error{ErrorCode::kBadRequest, "invalid HTTP method '" + std::string(method) + "'",
                 "method", false};
  }

  asio::io_context ioc(1);
  Call call(ioc);
  call.where = u.host + ":" + u.port;

  auto& req = call.request;
  const beast::string_view method_sv(method.data(), method.size());
  bhttp::verb verb = bhttp::string_to_verb(method_sv);
  if (verb == bhttp::verb::unknown) {
    req.method_string(method_sv);
  } else {
    req.method(verb);
  }
  req.target(u.target);
  req.version(11);
  req.set(bhttp::field::host, u.host_header);
  req.set(bhttp::field::user_agent, "ecomd/" ECOM_VERSION);
  if (!body.empty()) req.set(bhttp::field::content_type, "application/json");
  for (const auto& [name, value] : headers) {
    // Refuse header injection rather than send a request the caller did not mean.
    if (!is_token(name) || value.find_first_of("\r\n") != std::string::npos) {
      return Error{ErrorCode::kBadRequest, "invalid header '" + name + "'", "headers", false};
    }
    req.set(name, value);
  }
  req.keep_alive(false);
  req.body() = std::move(body);
  req.prepare_payload();
  call.parser.body_limit(kResponseBodyLimit);

  // One deadline for the whole call; on expiry every pending step is cancelled. (A hanging system
  // resolver can still hold the call until getaddrinfo returns.)
  call.watchdog.expires_after(timeout);
  call.watchdog.async_wait([&call](const beast::error_code& ec) {
    if (ec) return;  // cancelled: the call finished first
    call.timed_out = true;
    beast::error_code ignored;
    call.resolver.cancel();
    call.socket.shutdown(tcp::socket::shutdown_both, ignored);
    call.socket.close(ignored);
  });

  call.resolver.async_resolve(
      u.host, u.port,
      [&call](const beast::error_code& ec, const tcp::resolver::results_type& endpoints) {
        if (ec) return call.fail("resolving", ec);
        if (call.timed_out) return call.fail("resolving", asio::error::operation_aborted);
        asio::async_connect(
            call.socket, endpoints, [&call](const beast::error_code& ec, const tcp::endpoint&) {
              if (ec) return call.fail("connecting to", ec);
              bhttp::async_write(
                  call.socket, call.request, [&call](const beast::error_code& ec, size_t) {
                    if (ec) return call.fail("sending to", ec);
                    bhttp::async_read(
                        call.socket, call.buffer, call.parser,
                        [&call](const beast::error_code& ec, size_t) {
                          if (ec && !call.timed_out && is_malformed_response(ec)) {
                            call.result =
                                Error{ErrorCode::kUpstreamBadResponse,
                                      "malformed response from " + call.where + ": " + ec.message(),
                                      {},
                                      true};
                            call.watchdog.cancel();
                            return;
                          }
                          if (ec) return call.fail("reading from", ec);
                          auto& res = call.parser.get();
                          call.result = ClientResponse{static_cast<int>(res.result_int()),
                                                       std::move(res.body())};
                          call.watchdog.cancel();
                          beast::error_code ignored;
                          call.socket.shutdown(tcp::socket::shutdown_both, ignored);
                        });
                  });
            });
      });

  ioc.run();
  if (!call.result) {
    return Error{ErrorCode::kUpstreamUnavailable,
                 "request to " + call.where + " did not complete",
                 {},
                 true};
  }
  return std::move(*call.result);
}

}  // namespace ecom::http
