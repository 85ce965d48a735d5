#include "ecom/http/router.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <exception>

#include "ecom/core/log.hpp"
#include "ecom/core/utf8.hpp"
#include "url.hpp"

namespace ecom::http {

namespace detail {

namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

void percent_decode_into(std::string_view s, bool plus_as_space, std::string& out) {
  out.clear();
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '%' && i + 2 < s.size()) {
      int hi = hex_value(s[i + 1]);
      int lo = hex_value(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(plus_as_space && c == '+' ? ' ' : c);
  }
}

std::string percent_decode(std::string_view s, bool plus_as_space) {
  std::string out;
  percent_decode_into(s, plus_as_space, out);
  return out;
}

}  // namespace detail

namespace {

constexpr std::string_view kTag{"http"};

// Order used for the Allow header.
constexpr std::array<Method, 7> kAllMethods{Method::kGet,    Method::kHead,  Method::kPost,
                                            Method::kPut,    Method::kPatch, Method::kDelete,
                                            Method::kOptions};

bool is_param(std::string_view segment) noexcept {
  return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}

std::string_view param_name(std::string_view segment) noexcept {
  return segment.substr(1, segment.size() - 2);
}

// "/a/b" -> {"a","b"}; "/" -> {}; "/a/" -> {"a",""} (trailing slashes are significant).
template <typename Out>
void split_path(std::string_view path, Out&& emit) {
  if (!path.empty() && path.front() == '/') path.remove_prefix(1);
  if (path.empty()) return;
  while (true) {
    size_t slash = path.find('/');
    emit(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
}

char ascii_lower(char c) noexcept { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "application/json; charset=utf-8" is JSON; parameters are not inspected.
bool is_json_media_type(std::string_view content_type) noexcept {
  size_t semi = content_type.find(';');
  return iequals(trim(content_type.substr(0, semi)), "application/json");
}

// True when the comma-separated header value `list` contains `token` (case-insensitive).
bool has_token(std::string_view list, std::string_view token) noexcept {
  while (!list.empty()) {
    size_t comma = list.find(',');
    if (iequals(trim(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// The handshake details (key, version) are checked by the server when it accepts the upgrade.
bool is_websocket_upgrade(const Request& r) noexcept {
  auto upgrade = r.header("upgrade");
  auto connection = r.header("connection");
  return upgrade && connection && has_token(*upgrade, "websocket") &&
         has_token(*connection, "upgrade");
}

// RFC 6455 4.2.1: the key is a base64-encoded 16-byte nonce, so exactly 24 characters: 21
// of the alphabet, one whose low four bits are zero (the last 2 bits of the 16th byte), "==".
bool is_websocket_key(std::string_view key) noexcept {
  constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  if (key.size() != 24 || !key.ends_with("==")) return false;
  for (size_t i = 0; i < 21; ++i) {
    if (kAlphabet.find(key[i]) == std::string_view::npos) return false;
  }
  return std::string_view("AQgw").find(key[21]) != std::string_view::npos;
}

bool has_body_semantics(Method m) noexcept {
  return m == Method::kPost || m == Method::kPut || m == Method::kPatch;
}

unsigned method_bit(Method m) noexcept { return 1u << static_cast<unsigned>(m); }

// True when route `a` is a strictly better match than `b` for the same path: the first segment
// where they differ in kind decides, and a literal beats a parameter ("/orders/search" wins over
// "/orders/{id}" regardless of registration order).
bool more_specific(const std::vector<std::string>& a, const std::vector<std::string>& b) noexcept {
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    bool pa = is_param(a[i]);
    bool pb = is_param(b[i]);
    if (pa != pb) return !pa;
  }
  return false;
}

}  // namespace

Method parse_method(std::string_view s) noexcept {
  if (s == "GET") return Method::kGet;
  if (s == "POST") return Method::kPost;
  if (s == "HEAD") return Method::kHead;
  if (s == "PUT") return Method::kPut;
  if (s == "PATCH") return Method::kPatch;
  if (s == "DELETE") return Method::kDelete;
  if (s == "OPTIONS") return Method::kOptions;
  return Method::kOther;
}

std::string_view method_name(Method m) noexcept {
  switch (m) {
    case Method::kGet:
      return "GET";
    case Method::kHead:
      return "HEAD";
    case Method::kPost:
      return "POST";
    case Method::kPut:
      return "PUT";
    case Method::kPatch:
      return "PATCH";
    case Method::kDelete:
      return "DELETE";
    case Method::kOptions:
      return "OPTIONS";
    case Method::kOther:
      break;
  }
  return "OTHER";
}

std::string_view method_name(const Request& r) noexcept {
  if (r.method == Method::kOther && !r.method_token.empty()) return r.method_token;
  return method_name(r.method);
}

std::optional<std::string_view> Request::header(std::string_view lower_name) const {
  for (const auto& [name, value] : headers) {
    if (name == lower_name) return std::string_view(value);
  }
  return std::nullopt;
}

std::string_view Request::param(std::string_view name) const {
  for (const auto& [key, value] : params) {
    if (key == name) return value;
  }
  return {};
}

std::optional<std::string> Request::query_param(std::string_view name) const {
  std::optional<std::string> found;
  std::string key;
  detail::for_each_query_pair(query, [&](std::string_view k, std::string_view v, bool) {
    detail::percent_decode_into(k, true, key);
    if (key != name) return true;
    found = detail::percent_decode(v, true);
    return false;
  });
  return found;
}

Response json(int status, std::string body) {
  Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

int status_for(const Error& e) noexcept { return http_status(e.code); }

Response error_response(const Error& e) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  w.StartObject();
  w.Key("error");
  w.StartObject();
  w.Key("code");
  const std::string_view code = name(e.code);
  w.String(code.data(), static_cast<rapidjson::SizeType>(code.size()));
  w.Key("message");
  w.String(e.message.data(), static_cast<rapidjson::SizeType>(e.message.size()));
  if (!e.field.empty()) {
    w.Key("field");
    w.String(e.field.data(), static_cast<rapidjson::SizeType>(e.field.size()));
  }
  w.EndObject();
  w.EndObject();
  const int status = status_for(e);
  Response r = json(status, std::string(buf.GetString(), buf.GetSize()));
  // A 503 passes (a full disk freed, a broker back): say when to try again.
  if (status == 503) r.headers.emplace_back("Retry-After", "1");
  return r;
}

Error validation_error(std::string field, std::string message) {
  return Error{ErrorCode::kValidationFailed, std::move(message), std::move(field), false};
}

Result<int64_t> int_query_param(const Request& req, std::string_view name, int64_t fallback,
                                int64_t min, int64_t max) {
  auto text = req.query_param(name);
  if (!text) return fallback;
  int64_t n = 0;
  auto [p, ec] = std::from_chars(text->data(), text->data() + text->size(), n);
  if (ec != std::errc() || p != text->data() + text->size() || n < min || n > max)
    return validation_error(std::string(name),
                            fmt::format("{} must be an integer from {} to {}", name, min, max));
  return n;
}

Status check_query(const Request& req, const std::vector<std::string>& allowed) {
  std::vector<std::string> seen;
  std::string key;
  Status st;
  detail::for_each_query_pair(req.query, [&](std::string_view k, std::string_view, bool) {
    detail::percent_decode_into(k, true, key);
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      st = validation_error(
          key, list.empty()
                   ? fmt::format("unknown query parameter '{}': this route takes none", key)
                   : fmt::format("unknown query parameter '{}' (allowed: {})", key, list));
      return false;
    }
    // Which of two values counts would be a guess: refuse instead.
    if (std::find(seen.begin(), seen.end(), key) != seen.end()) {
      st = validation_error(key, fmt::format("query parameter '{}' is given more than once", key));
      return false;
    }
    seen.push_back(key);
    return true;
  });
  return st;
}

void Router::add(Method method, std::string pattern, Handler handler, RouteOptions options) {
  add_route(Route{method, {}, std::move(handler), std::move(options)}, pattern);
}

void Router::add_async(Method method, std::string pattern, AsyncHandler handler,
                       RouteOptions options) {
  add_route(Route{method, {}, {}, std::move(options), Match::Kind::kAsync, std::move(handler)},
            pattern);
}

void Router::add_stream(std::string pattern, StreamHandler handler, RouteOptions options) {
  add_route(
      Route{Method::kGet, {}, {}, std::move(options), Match::Kind::kStream, {}, std::move(handler)},
      pattern);
}

void Router::add_websocket(std::string pattern, WebSocketHandler handler, RouteOptions options) {
  add_route(Route{Method::kGet,
                  {},
                  {},
                  std::move(options),
                  Match::Kind::kWebSocket,
                  {},
                  {},
                  std::move(handler)},
            pattern);
}

void Router::add_route(Route route, std::string_view pattern) {
  split_path(pattern, [&](std::string_view s) { route.segments.emplace_back(s); });
  route.label = std::string(method_name(route.method)) + " " + std::string(pattern);
  routes_.push_back(std::move(route));
}

Response Router::dispatch(Request& request) const {
  Match m = match(request);
  if (m.kind == Match::Kind::kResponse) return std::move(m.response);
  // Deferred, streaming and WebSocket routes need a connection: only the server can serve them.
  log::error(kTag, "{} {} is not a plain route; dispatch() cannot serve it", method_name(request),
             request.path);
  return error_response(Error{ErrorCode::kInternal, "internal error", {}, false});
}

namespace {

// Text is valid UTF-8 everywhere (ecom/core/utf8.hpp): checked here once, before any route, so
// no handler stores, publishes or echoes bytes a strict client cannot read. The field at fault:
// "path", the query parameter, the header, or "body".
std::optional<Response> invalid_text(const Request& r) {
  if (!valid_utf8(r.path))
    return error_response(
        validation_error("path", "the path is not valid UTF-8 (after percent-decoding)"));
  std::string key, value;
  std::optional<Error> bad_query;
  detail::for_each_query_pair(r.query, [&](std::string_view k, std::string_view v, bool) {
    detail::percent_decode_into(k, true, key);
    detail::percent_decode_into(v, true, value);
    if (!valid_utf8(key))
      bad_query = validation_error("query", "a query parameter name is not valid UTF-8");
    else if (!valid_utf8(value))
      bad_query = validation_error(key, "query parameter " + key + " is not valid UTF-8");
    return !bad_query;
  });
  if (bad_query) return error_response(*bad_query);
  for (const auto& [name, v] : r.headers) {
    if (!valid_utf8(v))
      return error_response(validation_error(name, "header " + name + " is not valid UTF-8"));
  }
  if (auto at = invalid_utf8_at(r.body))
    return error_response(Error{ErrorCode::kMalformedJson,
                                fmt::format("the body is not valid UTF-8 (at byte {})", *at),
                                "body", false});
  return std::nullopt;
}

}  // namespace

Match Router::match(Request& request) const {
  std::string_view route = kUnmatchedRoute;
  auto answer = [&route](Response r) {
    Match m;
    m.response = std::move(r);
    m.route = route;
    return m;
  };

  // The server fills target/path/query; hand-built requests may carry only one of them.
  std::string_view raw_path;
  bool raw = false;
  if (!request.target.empty()) {
    std::string_view target(request.target);
    size_t q = target.find('?');
    raw_path = target.substr(0, q);
    raw = true;
    if (request.path.empty()) request.path = detail::percent_decode(raw_path, false);
    if (request.query.empty() && q != std::string_view::npos) {
      request.query.assign(target.substr(q + 1));
    }
  } else {
    raw_path = request.path;
  }
  if (auto bad = invalid_text(request)) return answer(std::move(*bad));

  // Split the raw path and decode per segment so an encoded '/' (%2F) stays inside its segment.
  std::vector<std::string> segments;
  segments.reserve(8);
  split_path(raw_path, [&](std::string_view s) {
    if (raw && s.find('%') != std::string_view::npos) {
      segments.push_back(detail::percent_decode(s, false));
    } else {
      segments.emplace_back(s);
    }
  });

  const Route* best = nullptr;
  // HEAD falls back to a GET route that answers with a response (plain or async) when no HEAD
  // route matches; a stream or WebSocket GET has no meaningful HEAD.
  const Route* best_get = nullptr;
  unsigned allowed = 0;
  bool head_via_get = false;
  for (const Route& route : routes_) {
    if (route.segments.size() != segments.size()) continue;
    bool match = true;
    for (size_t i = 0; i < segments.size() && match; ++i) {
      const std::string& pat = route.segments[i];
      match = is_param(pat) ? !segments[i].empty() : pat == segments[i];
    }
    if (!match) continue;
    allowed |= method_bit(route.method);
    const bool answers = route.kind == Match::Kind::kResponse || route.kind == Match::Kind::kAsync;
    if (answers && route.method == Method::kGet) head_via_get = true;
    if (route.method == request.method) {
      if (!best || more_specific(route.segments, best->segments)) best = &route;
    } else if (request.method == Method::kHead && route.method == Method::kGet && answers) {
      if (!best_get || more_specific(route.segments, best_get->segments)) best_get = &route;
    }
  }
  if (!best) best = best_get;

  if (!best) {
    if (allowed == 0) {
      return answer(
          error_response(Error{ErrorCode::kNotFound, "no route for " + request.path, {}, false}));
    }
    if (head_via_get) allowed |= method_bit(Method::kHead);
    std::string allow;
    for (Method m : kAllMethods) {
      if (!(allowed & method_bit(m))) continue;
      if (!allow.empty()) allow += ", ";
      allow += method_name(m);
    }
    Response r = error_response(
        Error{ErrorCode::kMethodNotAllowed,
              std::string(method_name(request)) + " is not allowed for " + request.path,
              {},
              false});
    r.with_header("Allow", std::move(allow));
    return answer(std::move(r));
  }

  route = best->label;
  // Before the body checks: a request the route cannot understand is refused whatever it sends.
  if (auto st = check_query(request, best->options.query); !st)
    return answer(error_response(st.error()));

  if (!best->options.any_content_type && has_body_semantics(request.method) &&
      !request.body.empty()) {
    // A missing Content-Type is tolerated (many tools omit it for JSON); a wrong one is not.
    auto ct = request.header("content-type");
    if (ct && !is_json_media_type(*ct)) {
      return answer(error_response(Error{
          ErrorCode::kUnsupportedMediaType, "Content-Type must be application/json", {}, false}));
    }
  }

  request.params.clear();
  for (size_t i = 0; i < segments.size(); ++i) {
    const std::string& pat = best->segments[i];
    if (is_param(pat)) request.params.emplace_back(param_name(pat), std::move(segments[i]));
  }

  Match result;
  result.route = route;
  switch (best->kind) {
    case Match::Kind::kResponse:
      break;
    case Match::Kind::kAsync:
      result.kind = Match::Kind::kAsync;
      result.async = &best->async;
      return result;
    case Match::Kind::kStream:
      result.kind = Match::Kind::kStream;
      result.stream = &best->stream;
      return result;
    case Match::Kind::kWebSocket:
      if (!is_websocket_upgrade(request)) {
        Response r = error_response(Error{ErrorCode::kUpgradeRequired,
                                          request.path + " requires a WebSocket upgrade",
                                          {},
                                          false});
        r.with_header("Upgrade", "websocket");
        return answer(std::move(r));
      }
      if (auto key = request.header("sec-websocket-key"); !key || !is_websocket_key(*key)) {
        return answer(error_response(
            Error{ErrorCode::kBadRequest,
                  key ? "Sec-WebSocket-Key must be 16 random bytes in base64 (24 characters)"
                      : "a WebSocket upgrade needs a Sec-WebSocket-Key",
                  "Sec-WebSocket-Key", false}));
      }
      result.kind = Match::Kind::kWebSocket;
      result.websocket = &best->websocket;
      return result;
  }

  try {
    return answer(best->handler(request));
  } catch (const std::exception& e) {
    log::error(kTag, "{} {} handler threw: {}", method_name(request), request.path, e.what());
  } catch (...) {
    log::error(kTag, "{} {} handler threw a non-standard exception", method_name(request),
               request.path);
  }
  return answer(error_response(Error{ErrorCode::kInternal, "internal error", {}, false}));
}

}  // namespace ecom::http
