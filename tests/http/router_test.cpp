#include "ecom/http/router.hpp"

#include <rapidjson/document.h>

#include <catch2/catch.hpp>
#include <stdexcept>
#include <string>

using ecom::Error;
using ecom::http::error_response;
using ecom::http::json;
using ecom::http::Method;
using ecom::http::Request;
using ecom::http::Response;
using ecom::http::Router;
using ecom::http::status_for;
using ecom::http::validation_error;

namespace {

Request make(Method m, std::string target, std::string body = {},
             std::vector<std::pair<std::string, std::string>> headers = {}) {
  Request r;
  r.method = m;
  r.target = std::move(target);
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

// Echoes which route ran plus its parameters, so tests can see what matched.
ecom::http::Handler named(std::string name) {
  return [name](const Request& r) {
    std::string body = name;
    for (const auto& [k, v] : r.params) body += "|" + k + "=" + v;
    return Response{200, "text/plain", body, {}};
  };
}

std::string header_of(const Response& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (k == name) return v;
  }
  return {};
}

}  // namespace

TEST_CASE("methods parse and print", "[http][router]") {
  for (Method m : {Method::kGet, Method::kHead, Method::kPost, Method::kPut, Method::kPatch,
                   Method::kDelete, Method::kOptions}) {
    CHECK(ecom::http::parse_method(ecom::http::method_name(m)) == m);
  }
  CHECK(ecom::http::parse_method("get") == Method::kOther);
  CHECK(ecom::http::parse_method("BREW") == Method::kOther);
  CHECK(ecom::http::method_name(Method::kPost) == "POST");
}

TEST_CASE("path parameters are extracted and percent-decoded", "[http][router]") {
  Router router;
  router.add(Method::kPost, "/api/orders/{id}/cancel", named("cancel"));
  router.add(Method::kGet, "/api/orders/{id}", named("get"));
  router.add(Method::kGet, "/a/{x}/b/{y}", named("two"), {.query = {"z"}});
  REQUIRE(router.size() == 3);

  auto req = make(Method::kPost, "/api/orders/o-123/cancel");
  Response r = router.dispatch(req);
  CHECK(r.status == 200);
  CHECK(r.body == "cancel|id=o-123");
  CHECK(req.param("id") == "o-123");
  CHECK(req.param("missing").empty());

  // An encoded slash stays inside its segment; '+' is literal in paths.
  req = make(Method::kGet, "/api/orders/a%2Fb%20c+d");
  r = router.dispatch(req);
  CHECK(r.body == "get|id=a/b c+d");
  CHECK(req.path == "/api/orders/a/b c+d");

  req = make(Method::kGet, "/a/1/b/2?z=1");
  r = router.dispatch(req);
  CHECK(r.body == "two|x=1|y=2");
  CHECK(req.query == "z=1");
  CHECK(req.path == "/a/1/b/2");

  // An empty segment is not a parameter value.
  req = make(Method::kGet, "/api/orders/");
  CHECK(router.dispatch(req).status == 404);
}

TEST_CASE("a literal segment beats a parameter regardless of order", "[http][router]") {
  Router router;
  router.add(Method::kGet, "/api/orders/{id}", named("by-id"));
  router.add(Method::kGet, "/api/orders/search", named("search"));
  auto req = make(Method::kGet, "/api/orders/search");
  CHECK(router.dispatch(req).body == "search");
  req = make(Method::kGet, "/api/orders/42");
  CHECK(router.dispatch(req).body == "by-id|id=42");
}

TEST_CASE("hand-built requests with only a path are routed", "[http][router]") {
  Router router;
  router.add(Method::kGet, "/api/orders/{id}", named("get"));
  Request req;
  req.method = Method::kGet;
  req.path = "/api/orders/7";
  CHECK(router.dispatch(req).body == "get|id=7");
}

TEST_CASE("unknown path is 404 with the error shape", "[http][router]") {
  Router router;
  router.add(Method::kGet, "/healthz", named("h"));
  auto req = make(Method::kGet, "/nope");
  Response r = router.dispatch(req);
  CHECK(r.status == 404);
  CHECK(r.content_type == "application/json");
  CHECK(r.body == R"({"error":{"code":"NOT_FOUND","message":"no route for /nope"}})");
}

TEST_CASE("known path with another method is 405 with Allow", "[http][router]") {
  Router router;
  router.add(Method::kPost, "/api/orders", named("create"));
  router.add(Method::kGet, "/api/orders", named("list"));
  router.add(Method::kGet, "/api/orders/{id}", named("get"));
  auto req = make(Method::kDelete, "/api/orders");
  Response r = router.dispatch(req);
  CHECK(r.status == 405);
  CHECK(header_of(r, "Allow") == "GET, HEAD, POST");
  CHECK(r.body.find(R"("code":"METHOD_NOT_ALLOWED")") != std::string::npos);

  req = make(Method::kPut, "/api/orders/1");
  r = router.dispatch(req);
  CHECK(r.status == 405);
  CHECK(header_of(r, "Allow") == "GET, HEAD");
}

TEST_CASE("HEAD falls back to GET, an explicit HEAD route wins", "[http][router]") {
  Router router;
  router.add(Method::kGet, "/a", named("get-a"));
  router.add(Method::kGet, "/b", named("get-b"));
  router.add(Method::kHead, "/b", named("head-b"));
  Method seen = Method::kOther;
  router.add(Method::kGet, "/c", [&](const Request& r) {
    seen = r.method;
    return json(200, "{}");
  });

  auto req = make(Method::kHead, "/a");
  Response r = router.dispatch(req);
  CHECK(r.status == 200);
  CHECK(r.body == "get-a");  // the server drops the body but keeps its length

  req = make(Method::kHead, "/b");
  CHECK(router.dispatch(req).body == "head-b");

  req = make(Method::kHead, "/c");
  CHECK(router.dispatch(req).status == 200);
  CHECK(seen == Method::kHead);

  router.add(Method::kPost, "/d", named("post-d"));
  req = make(Method::kHead, "/d");
  CHECK(router.dispatch(req).status == 405);
}

TEST_CASE("bodies of POST/PUT/PATCH must be JSON", "[http][router]") {
  Router router;
  router.add(Method::kPost, "/p", named("post"));
  router.add(Method::kPut, "/p", named("put"));
  router.add(Method::kPatch, "/p", named("patch"));
  router.add(Method::kDelete, "/p", named("delete"));
  router.add(Method::kPost, "/hook", named("hook"), {.any_content_type = true});

  auto with_type = [](Method m, const std::string& type, std::string body = "{}") {
    return make(m, "/p", std::move(body), {{"content-type", type}});
  };

  for (Method m : {Method::kPost, Method::kPut, Method::kPatch}) {
    auto req = with_type(m, "text/plain");
    Response r = router.dispatch(req);
    CHECK(r.status == 415);
    CHECK(r.body.find(R"("code":"UNSUPPORTED_MEDIA_TYPE")") != std::string::npos);

    req = with_type(m, "application/x-www-form-urlencoded");
    CHECK(router.dispatch(req).status == 415);
    req = with_type(m, "application/json");
    CHECK(router.dispatch(req).status == 200);
    req = with_type(m, "application/json; charset=utf-8");
    CHECK(router.dispatch(req).status == 200);
    req = with_type(m, "Application/JSON ;charset=UTF-8");
    CHECK(router.dispatch(req).status == 200);
    req = with_type(m, "application/jsonx");
    CHECK(router.dispatch(req).status == 415);
    // No body, nothing to reject.
    req = with_type(m, "text/plain", "");
    CHECK(router.dispatch(req).status == 200);
  }
  // Other methods are not checked.
  auto req = with_type(Method::kDelete, "text/plain");
  CHECK(router.dispatch(req).status == 200);
  // Routes may opt out.
  req =
      make(Method::kPost, "/hook", "a=b", {{"content-type", "application/x-www-form-urlencoded"}});
  CHECK(router.dispatch(req).status == 200);
  // The route is resolved first: 404 beats 415.
  req = make(Method::kPost, "/nope", "x", {{"content-type", "text/plain"}});
  CHECK(router.dispatch(req).status == 404);
}

TEST_CASE("query parameters are decoded", "[http][router]") {
  Request r;
  r.query = "a=1&b=hello+world&c=%41%2b%2F&d&e=&%62%62=key&f=%zz%4&f=second";
  CHECK(r.query_param("a") == std::optional<std::string>("1"));
  CHECK(r.query_param("b") == std::optional<std::string>("hello world"));
  CHECK(r.query_param("c") == std::optional<std::string>("A+/"));
  CHECK(r.query_param("d") == std::optional<std::string>(""));
  CHECK(r.query_param("e") == std::optional<std::string>(""));
  CHECK(r.query_param("bb") == std::optional<std::string>("key"));
  CHECK(r.query_param("f") == std::optional<std::string>("%zz%4"));  // malformed kept, first wins
  CHECK_FALSE(r.query_param("missing").has_value());
  CHECK_FALSE(r.query_param("").has_value());

  Request empty;
  CHECK_FALSE(empty.query_param("a").has_value());
}

TEST_CASE("a query parameter the route does not declare is a 400 naming it", "[http][router]") {
  using Kind = ecom::http::Match::Kind;
  Router router;
  router.add(Method::kGet, "/orders", named("list"), {.query = {"status", "limit"}});
  router.add(Method::kGet, "/health", named("health"));
  router.add_async(Method::kGet, "/orders/{id}", [](const Request&, ecom::http::Responder) {},
                   {.query = {"wait"}});
  router.add_stream(
      "/events", [](const Request&, std::shared_ptr<ecom::http::Stream>) { return std::nullopt; },
      {.query = {"lastEventId"}});
  auto field_of = [](const Response& r) {
    auto at = r.body.find(R"("field":")");
    if (at == std::string::npos) return std::string();
    at += 9;
    return r.body.substr(at, r.body.find('"', at) - at);
  };

  auto req = make(Method::kGet, "/orders?status=PENDING&limit=5");
  CHECK(router.dispatch(req).body == "list");
  req = make(Method::kGet, "/orders?status=PENDING&&limit=5&");  // empty pairs are nothing
  CHECK(router.dispatch(req).body == "list");

  req = make(Method::kGet, "/orders?status=PENDING&offset=20");
  Response r = router.dispatch(req);
  CHECK(r.status == 400);
  CHECK(r.body.find(R"("code":"VALIDATION_FAILED")") != std::string::npos);
  CHECK(field_of(r) == "offset");
  CHECK(r.body.find("allowed: status, limit") != std::string::npos);

  // Names are compared decoded; a flag without a value counts; a repeat is refused.
  req = make(Method::kGet, "/orders?st%61tus=PENDING");
  CHECK(router.dispatch(req).body == "list");
  req = make(Method::kGet, "/orders?verbose");
  CHECK(field_of(router.dispatch(req)) == "verbose");
  req = make(Method::kGet, "/orders?limit=1&limit=2");
  r = router.dispatch(req);
  CHECK(r.status == 400);
  CHECK(field_of(r) == "limit");

  // A route that declares nothing takes nothing; HEAD uses the GET route's list.
  req = make(Method::kGet, "/health?x=1");
  r = router.dispatch(req);
  CHECK(r.status == 400);
  CHECK(r.body.find("takes none") != std::string::npos);
  req = make(Method::kHead, "/orders?x=1");
  CHECK(router.dispatch(req).status == 400);

  // Every route kind is checked before it is handed to the server.
  req = make(Method::kGet, "/orders/7?wait=1s");
  CHECK(router.match(req).kind == Kind::kAsync);
  req = make(Method::kGet, "/orders/7?wiat=1s");
  CHECK(router.match(req).response.status == 400);
  req = make(Method::kGet, "/events?lastEventId=3");
  CHECK(router.match(req).kind == Kind::kStream);
  req = make(Method::kGet, "/events?since=3");
  CHECK(field_of(router.match(req).response) == "since");

  // 404 and 405 come first: the query of a route that does not exist is not looked at.
  req = make(Method::kGet, "/nope?x=1");
  CHECK(router.dispatch(req).status == 404);
  req = make(Method::kPost, "/orders?x=1", "{}");
  CHECK(router.dispatch(req).status == 405);
}

TEST_CASE("headers are looked up by lower-case name", "[http][router]") {
  Request r;
  r.headers = {{"content-type", "application/json"}, {"x-empty", ""}};
  CHECK(r.header("content-type") == std::optional<std::string_view>("application/json"));
  CHECK(r.header("x-empty") == std::optional<std::string_view>(""));
  CHECK_FALSE(r.header("accept").has_value());
}

TEST_CASE("error responses have the exact documented shape", "[http][router]") {
  Response r = error_response(
      validation_error("items[0].quantity", "items[0].quantity must be a positive integer"));
  CHECK(r.status == 400);
  CHECK(r.content_type == "application/json");
  CHECK(
      r.body ==
      R"({"error":{"code":"VALIDATION_FAILED","message":"items[0].quantity must be a positive integer","field":"items[0].quantity"}})");

  Error e = validation_error("f", "m");
  CHECK(e.code == ecom::ErrorCode::kValidationFailed);
  CHECK(e.field == "f");
  CHECK(e.message == "m");
  CHECK_FALSE(e.retryable);

  // Field omitted when empty; strings are escaped.
  r = error_response(Error{ecom::ErrorCode::kConflict, "say \"hi\"\n\\ end", {}, false});
  CHECK(r.status == 409);
  CHECK(r.body == R"({"error":{"code":"CONFLICT","message":"say \"hi\"\n\\ end"}})");

  Response j = json(201, R"({"id":"x"})");
  CHECK(j.status == 201);
  CHECK(j.content_type == "application/json");
  CHECK(j.body == R"({"id":"x"})");
}

TEST_CASE("every error code maps to its status", "[http][router]") {
  using ecom::ErrorCode;
  const std::pair<ErrorCode, int> expected[] = {
      {ErrorCode::kValidationFailed, 400},
      {ErrorCode::kMalformedJson, 400},
      {ErrorCode::kBadRequest, 400},
      {ErrorCode::kUnauthorized, 401},
      {ErrorCode::kForbidden, 403},
      {ErrorCode::kNotFound, 404},
      {ErrorCode::kMethodNotAllowed, 405},
      {ErrorCode::kConflict, 409},
      {ErrorCode::kIdempotencyConflict, 409},
      {ErrorCode::kPayloadTooLarge, 413},
      {ErrorCode::kUnsupportedMediaType, 415},
      {ErrorCode::kUnavailable, 503},
      {ErrorCode::kUpgradeRequired, 426},
      {ErrorCode::kInternal, 500},
      {ErrorCode::kDbBusy, 503},
      {ErrorCode::kDbError, 500},
  };
  for (const auto& [code, status] : expected) {
    INFO(ecom::name(code));
    Error e{code, "m"};
    CHECK(status_for(e) == status);
    CHECK(error_response(e).status == status);
    CHECK(error_response(e).body.find(std::string(ecom::name(code))) != std::string::npos);
  }
}

TEST_CASE("a throwing handler becomes a 500 error response", "[http][router]") {
  Router router;
  router.add(Method::kGet, "/std",
             [](const Request&) -> Response { throw std::runtime_error("secret detail"); });
  router.add(Method::kGet, "/int", [](const Request&) -> Response { throw 42; });
  for (const char* target : {"/std", "/int"}) {
    auto req = make(Method::kGet, target);
    Response r = router.dispatch(req);
    CHECK(r.status == 500);
    CHECK(r.body == R"({"error":{"code":"INTERNAL","message":"internal error"}})");
  }
}

TEST_CASE("match resolves async, stream and WebSocket routes", "[http][router]") {
  using Kind = ecom::http::Match::Kind;
  Router router;
  int async_calls = 0;
  router.add(Method::kGet, "/orders/{id}", named("plain"));
  router.add_async(Method::kGet, "/orders/{id}/wait",
                   [&](const Request&, ecom::http::Responder) { ++async_calls; });
  router.add_async(Method::kPost, "/jobs", [](const Request&, ecom::http::Responder) {});
  router.add_stream(
      "/events/{topic}",
      [](const Request&, std::shared_ptr<ecom::http::Stream>) -> std::optional<Response> {
        return std::nullopt;
      });
  router.add_websocket("/ws/{room}", [](const Request&, std::shared_ptr<ecom::http::WebSocket>) {
    return ecom::http::WebSocketCallbacks{};
  });
  REQUIRE(router.size() == 5);

  auto req = make(Method::kGet, "/orders/7/wait");
  auto m = router.match(req);
  REQUIRE(m.kind == Kind::kAsync);
  REQUIRE(m.async != nullptr);
  CHECK(req.param("id") == "7");
  CHECK(async_calls == 0);  // the server runs async handlers, not match()
  CHECK(m.stream == nullptr);
  CHECK(m.websocket == nullptr);
  // HEAD falls back to an async GET like to a plain one (the server drops the body).
  req = make(Method::kHead, "/orders/7/wait");
  CHECK(router.match(req).kind == Kind::kAsync);
  req = make(Method::kPut, "/orders/7/wait");
  CHECK(header_of(router.match(req).response, "Allow") == "GET, HEAD");

  // Plain routes still run inside match().
  req = make(Method::kGet, "/orders/7");
  m = router.match(req);
  CHECK(m.kind == Kind::kResponse);
  CHECK(m.response.body == "plain|id=7");

  req = make(Method::kGet, "/events/orders%2Fpaid");
  m = router.match(req);
  REQUIRE(m.kind == Kind::kStream);
  CHECK(m.stream != nullptr);
  CHECK(req.param("topic") == "orders/paid");

  // A WebSocket route needs an upgrade request; header tokens are case-insensitive lists.
  req = make(Method::kGet, "/ws/lobby", {},
             {{"connection", "keep-alive, Upgrade"},
              {"upgrade", "WebSocket"},
              {"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="}});  // RFC 6455's example
  m = router.match(req);
  REQUIRE(m.kind == Kind::kWebSocket);
  CHECK(m.websocket != nullptr);
  CHECK(req.param("room") == "lobby");

  // The key must be base64 of 16 bytes: missing, too short, not base64, or with bits set past
  // the 16th byte is a 400 naming the header, never an upgrade.
  for (std::optional<std::string> key :
       {std::optional<std::string>(), std::optional<std::string>("x"),
        std::optional<std::string>("dGhlIHNhbXBsZSBub25jZQ"),
        std::optional<std::string>("dGhlIHNhbXBsZSBub25j!Q=="),
        std::optional<std::string>("dGhlIHNhbXBsZSBub25jZR=="),
        std::optional<std::string>("dGhlIHNhbXBsZSBub25jZQ==dGhl")}) {
    INFO(key.value_or("(none)"));
    std::vector<std::pair<std::string, std::string>> headers = {{"connection", "Upgrade"},
                                                                {"upgrade", "websocket"}};
    if (key) headers.emplace_back("sec-websocket-key", *key);
    req = make(Method::kGet, "/ws/lobby", {}, headers);
    m = router.match(req);
    REQUIRE(m.kind == Kind::kResponse);
    CHECK(m.response.status == 400);
    CHECK(m.response.body.find(R"("field":"Sec-WebSocket-Key")") != std::string::npos);
  }

  req = make(Method::kGet, "/ws/lobby");
  m = router.match(req);
  CHECK(m.kind == Kind::kResponse);
  CHECK(m.response.status == 426);
  CHECK(header_of(m.response, "Upgrade") == "websocket");
  CHECK(m.response.body.find(R"("code":"UPGRADE_REQUIRED")") != std::string::npos);
  req = make(Method::kGet, "/ws/lobby", {}, {{"upgrade", "websocket"}});  // no Connection token
  CHECK(router.match(req).response.status == 426);
  // dispatch() agrees for the plain-GET case.
  req = make(Method::kGet, "/ws/lobby");
  CHECK(router.dispatch(req).status == 426);
}

TEST_CASE("new route kinds follow the 404/405/415 rules", "[http][router]") {
  Router router;
  router.add_async(Method::kPost, "/jobs", [](const Request&, ecom::http::Responder) {});
  router.add_stream(
      "/events",
      [](const Request&, std::shared_ptr<ecom::http::Stream>) -> std::optional<Response> {
        return std::nullopt;
      });
  router.add_websocket("/ws", [](const Request&, std::shared_ptr<ecom::http::WebSocket>) {
    return ecom::http::WebSocketCallbacks{};
  });

  auto req = make(Method::kGet, "/nope");
  CHECK(router.match(req).response.status == 404);

  // Streams and WebSockets are GET-only and have no HEAD.
  req = make(Method::kPost, "/events", "{}");
  auto m = router.match(req);
  CHECK(m.response.status == 405);
  CHECK(header_of(m.response, "Allow") == "GET");
  req = make(Method::kHead, "/events");
  CHECK(router.match(req).response.status == 405);
  req = make(Method::kDelete, "/ws");
  CHECK(router.match(req).response.status == 405);

  req = make(Method::kGet, "/jobs");
  m = router.match(req);
  CHECK(m.response.status == 405);
  CHECK(header_of(m.response, "Allow") == "POST");

  // Async routes check the body type like plain ones.
  req = make(Method::kPost, "/jobs", "x", {{"content-type", "text/plain"}});
  CHECK(router.match(req).response.status == 415);
  req = make(Method::kPost, "/jobs", "{}", {{"content-type", "application/json"}});
  CHECK(router.match(req).kind == ecom::http::Match::Kind::kAsync);

  // dispatch() cannot serve routes that need a connection.
  req = make(Method::kPost, "/jobs", "{}");
  Response r = router.dispatch(req);
  CHECK(r.status == 500);
  CHECK(r.body == R"({"error":{"code":"INTERNAL","message":"internal error"}})");
  req = make(Method::kGet, "/events");
  CHECK(router.dispatch(req).status == 500);
}

TEST_CASE("text that is not valid UTF-8 is a 400 naming where it is, before any route",
          "[http][router][utf8]") {
  Router router;
  int ran = 0;
  router.add(Method::kPost, "/api/orders", [&](const Request&) {
    ++ran;
    return Response{202, "application/json", "{}", {}};
  });
  router.add(Method::kGet, "/api/orders/{id}", [&](const Request&) {
    ++ran;
    return Response{200, "application/json", "{}", {}};
  });
  struct Case {
    Request req;
    int status;
    std::string code, field;
  };
  std::vector<Case> cases;
  // The report: a paymentToken of bytes FF FE was stored and published.
  cases.push_back({make(Method::kPost, "/api/orders", "{\"paymentToken\":\"\xFF\xFE\"}"), 400,
                   "MALFORMED_JSON", "body"});
  cases.push_back({make(Method::kGet, "/api/orders/%FF%FE"), 400, "VALIDATION_FAILED", "path"});
  // A 404 echoed the raw bytes: now the path is refused before routing.
  cases.push_back({make(Method::kGet, "/nope/\xC0\xAF"), 400, "VALIDATION_FAILED", "path"});
  cases.push_back(
      {make(Method::kGet, "/api/orders/o-1?wait=%ED%A0%80"), 400, "VALIDATION_FAILED", "wait"});
  cases.push_back({make(Method::kGet, "/api/orders/o-1?%FF=1"), 400, "VALIDATION_FAILED", "query"});
  cases.push_back({make(Method::kPost, "/api/orders", "{}", {{"idempotency-key", "k\xFF"}}), 400,
                   "VALIDATION_FAILED", "idempotency-key"});
  for (auto& c : cases) {
    INFO(c.req.target);
    Response r = router.dispatch(c.req);
    CHECK(r.status == c.status);
    rapidjson::Document d;
    d.Parse<rapidjson::kParseValidateEncodingFlag>(r.body.c_str());
    REQUIRE_FALSE(d.HasParseError());  // the answer itself is valid UTF-8 JSON
    CHECK(std::string(d["error"]["code"].GetString()) == c.code);
    CHECK(std::string(d["error"]["field"].GetString()) == c.field);
  }
  CHECK(ran == 0);
  // Valid multi-byte text passes.
  auto ok = make(Method::kGet, "/api/orders/%E2%82%AC%F0%9F%9B%92", {},
                 {{"x-note", "Gr\xC3\xBC\xC3\x9F"}});
  Response passed = router.dispatch(ok);
  INFO(passed.body);
  CHECK(passed.status == 200);
}
