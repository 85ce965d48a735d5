#include "ecom/http/server.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/test_support.hpp"

using namespace std::chrono_literals;
using ecom::http::json;
using ecom::http::Method;
using ecom::http::Request;
using ecom::http::Response;
using ecom::http::Router;
using ecom::http::ServerOptions;
using ecom::test::http_raw;
using ecom::test::http_request;

namespace {

// A client connection driven step by step (keep-alive, half-sent requests, disconnects).
class RawConn {
 public:
  explicit RawConn(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawConn() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConn(const RawConn&) = delete;
  RawConn& operator=(const RawConn&) = delete;

  bool connected() const { return fd_ >= 0; }

  bool send(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }

  // Reads one response framed by Content-Length; empty on timeout or close.
  std::string read_response(std::chrono::milliseconds timeout = 10s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (true) {
      size_t head_end = buf_.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        size_t length = 0;
        size_t cl = lower(buf_.substr(0, head_end)).find("content-length:");
        if (cl != std::string::npos) length = std::stoul(buf_.substr(cl + 15));
        if (buf_.size() >= head_end + 4 + length) {
          std::string out = buf_.substr(0, head_end + 4 + length);
          buf_.erase(0, out.size());
          return out;
        }
      }
      if (!fill(end)) return {};
    }
  }

  // True when the server closes the connection (EOF or reset) before `timeout`.
  bool wait_closed(std::chrono::milliseconds timeout = 10s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (true) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          end - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      char c[4096];
      ssize_t n = ::recv(fd_, c, sizeof c, 0);
      if (n <= 0) return true;
      buf_.append(c, static_cast<size_t>(n));
    }
  }

 private:
  static std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  bool fill(std::chrono::steady_clock::time_point end) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char c[4096];
    ssize_t n = ::recv(fd_, c, sizeof c, 0);
    if (n <= 0) return false;
    buf_.append(c, static_cast<size_t>(n));
    return true;
  }

  int fd_ = -1;
  std::string buf_;
};

size_t count_of(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

// A real server on an ephemeral loopback port with a few test routes.
struct TestServer {
  explicit TestServer(ServerOptions options = {}) {
    router.add(Method::kGet, "/hello",
               [](const Request&) { return json(200, R"({"hello":"world"})"); });
    router.add(Method::kPost, "/echo", [](const Request& r) {
      Response res = json(201, r.body);
      res.with_header("X-Method", std::string(ecom::http::method_name(r.method)));
      return res;
    });
    router.add(Method::kGet, "/items/{id}",
               [](const Request& r) {
                 std::string ua(r.header("user-agent").value_or("-"));
                 std::string body =
                     std::string(r.param("id")) + "|" + r.query_param("q").value_or("-");
                 return Response{200, "text/plain", body + "|" + ua, {}};
               },
               {.query = {"q"}});
    router.add(Method::kGet, "/slow", [this](const Request&) {
      ++slow_entered;
      // Held until the test releases it (bounded, so a broken test cannot hang forever).
      for (int i = 0; i < 6'000 && !release_slow.load(); ++i) std::this_thread::sleep_for(5ms);
      return json(200, R"({"slow":true,"padding":")" + std::string(10'000, 'x') + "\"}");
    });
    router.add(Method::kGet, "/boom",
               [](const Request&) -> Response { throw std::runtime_error("boom"); });
    router.add(Method::kDelete, "/nothing", [](const Request&) {
      return Response{204, "", "", {}};
    });
    options.host = "127.0.0.1";
    options.port = 0;
    server = ecom::http::make_server(router, options);
    auto st = server->start();
    if (!st.ok()) FAIL("server start failed: " << st.error().message);
    REQUIRE(server->port() != 0);
  }

  uint16_t port() const { return server->port(); }

  Router router;  // declared first: must outlive the server
  std::atomic<int> slow_entered{0};
  std::atomic<bool> release_slow{false};
  std::unique_ptr<ecom::http::Server> server;
};

}  // namespace

TEST_CASE("server: GET and POST round trip", "[http][server]") {
  TestServer s;

  auto r = http_request(s.port(), "GET", "/hello");
  CHECK(r.status == 200);
  CHECK(r.body == R"({"hello":"world"})");
  CHECK(r.header("content-type") == "application/json");
  CHECK(r.header("content-length") == std::to_string(r.body.size()));
  CHECK(r.header("server") == "ecomd");

  const std::string payload = R"({"items":[{"sku":"A-1","quantity":2}]})";
  r = http_request(s.port(), "POST", "/echo", payload);
  CHECK(r.status == 201);
  CHECK(r.body == payload);
  CHECK(r.header("x-method") == "POST");

  r = http_request(s.port(), "GET", "/items/a%20b%2Fc?q=x+y%21", {}, {{"User-Agent", "Tester/1"}});
  CHECK(r.status == 200);
  CHECK(r.header("content-type") == "text/plain");
  CHECK(r.body == "a b/c|x y!|Tester/1");

  r = http_request(s.port(), "POST", "/echo", "a=b", {{"Content-Type", "text/plain"}});
  CHECK(r.status == 415);
  CHECK(r.body.find("UNSUPPORTED_MEDIA_TYPE") != std::string::npos);

  r = http_request(s.port(), "GET", "/nope");
  CHECK(r.status == 404);
  CHECK(r.body == R"({"error":{"code":"NOT_FOUND","message":"no route for /nope"}})");

  r = http_request(s.port(), "PUT", "/hello");
  CHECK(r.status == 405);
  CHECK(r.header("allow") == "GET, HEAD");

  r = http_request(s.port(), "DELETE", "/nothing");
  CHECK(r.status == 204);
  CHECK(r.header("content-length").empty());
  CHECK(r.body.empty());
}

TEST_CASE("server: HEAD gets the GET headers without a body", "[http][server]") {
  TestServer s;
  std::string reply =
      http_raw(s.port(), "HEAD /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10s);
  CHECK(reply.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(reply.find("Content-Length: 17\r\n") != std::string::npos);
  CHECK(reply.size() == reply.find("\r\n\r\n") + 4);  // no body follows the head
}

TEST_CASE("server: a throwing handler answers 500 and the server keeps serving", "[http][server]") {
  TestServer s;
  auto r = http_request(s.port(), "GET", "/boom");
  CHECK(r.status == 500);
  CHECK(r.body == R"({"error":{"code":"INTERNAL","message":"internal error"}})");
  CHECK(http_request(s.port(), "GET", "/hello").status == 200);
}

TEST_CASE("server: keep-alive serves several requests on one connection", "[http][server]") {
  TestServer s;

  SECTION("pipelined") {
    std::string reply = http_raw(s.port(),
                                 "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                                 "GET /items/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    CHECK(count_of(reply, "HTTP/1.1 200 OK") == 2);
    CHECK(reply.find(R"({"hello":"world"})") != std::string::npos);
    CHECK(reply.find("7|-|-") != std::string::npos);
    CHECK(reply.find("Connection: close") != std::string::npos);
  }

  SECTION("sequential") {
    RawConn c(s.port());
    REQUIRE(c.connected());
    for (int i = 0; i < 3; ++i) {
      REQUIRE(c.send("GET /items/" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n"));
      std::string reply = c.read_response();
      CHECK(reply.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
      CHECK(reply.find(std::to_string(i) + "|-|-") != std::string::npos);
      CHECK(reply.find("Connection: close") == std::string::npos);
    }
    const std::string body = R"({"n":1})";
    REQUIRE(
        c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Content-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body));
    std::string reply = c.read_response();
    CHECK(reply.rfind("HTTP/1.1 201 Created\r\n", 0) == 0);
    CHECK(reply.substr(reply.size() - body.size()) == body);
  }

  SECTION("HTTP/1.0 closes by default") {
    std::string reply = http_raw(s.port(), "GET /hello HTTP/1.0\r\n\r\n", 10s);
    CHECK(reply.rfind("HTTP/1.0 200 OK\r\n", 0) == 0);
    CHECK(reply.find(R"({"hello":"world"})") != std::string::npos);
  }
}

TEST_CASE("server: Expect 100-continue is honoured", "[http][server]") {
  TestServer s;
  RawConn c(s.port());
  REQUIRE(c.connected());
  const std::string body = R"({"x":1})";
  REQUIRE(
      c.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Expect: 100-continue\r\nContent-Length: " +
             std::to_string(body.size()) + "\r\n\r\n"));
  std::string interim = c.read_response();
  CHECK(interim.rfind("HTTP/1.1 100 Continue\r\n", 0) == 0);
  REQUIRE(c.send(body));
  std::string reply = c.read_response();
  CHECK(reply.rfind("HTTP/1.1 201 Created\r\n", 0) == 0);
  CHECK(reply.substr(reply.size() - body.size()) == body);
}

TEST_CASE("server: bodies over the limit get 413", "[http][server]") {
  ServerOptions options;
  options.body_limit = 1024;
  TestServer s(options);

  auto r = http_request(s.port(), "POST", "/echo", std::string(1024, ' '));
  CHECK(r.status == 201);  // exactly at the limit is fine

  r = http_request(s.port(), "POST", "/echo", std::string(4096, ' '));
  CHECK(r.status == 413);
  CHECK(r.header("content-type") == "application/json");
  CHECK(r.body ==
        R"({"error":{"code":"PAYLOAD_TOO_LARGE","message":"request body exceeds 1024 bytes"}})");

  // Chunked bodies are only known to be too large while reading them.
  std::string chunk(800, 'a');
  char size_hex[16];
  std::snprintf(size_hex, sizeof size_hex, "%zx", chunk.size());
  std::string reply =
      http_raw(s.port(),
               "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               "Transfer-Encoding: chunked\r\n\r\n" +
                   std::string(size_hex) + "\r\n" + chunk + "\r\n" + size_hex + "\r\n" + chunk +
                   "\r\n0\r\n\r\n",
               10s);
  CHECK(reply.rfind("HTTP/1.1 413 ", 0) == 0);
  CHECK(reply.find("PAYLOAD_TOO_LARGE") != std::string::npos);
  CHECK(reply.find("Connection: close") != std::string::npos);
}

TEST_CASE("server: oversized headers get 431, HTTP/1.1 without Host 400, other codings 501",
          "[http][server]") {
  TestServer s;
  std::string reply = http_raw(
      s.port(), "GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(9000, 'a') + "\r\n\r\n",
      10s);
  CHECK(reply.rfind("HTTP/1.1 431 ", 0) == 0);
  CHECK(reply.find("HEADERS_TOO_LARGE") != std::string::npos);
  CHECK(reply.find("Connection: close") != std::string::npos);

  reply = http_raw(s.port(), "GET /hello HTTP/1.1\r\n\r\n", 10s);
  CHECK(reply.rfind("HTTP/1.1 400 ", 0) == 0);
  CHECK(reply.find(R"("field":"Host")") != std::string::npos);
  // HTTP/1.0 has no Host requirement.
  reply = http_raw(s.port(), "GET /hello HTTP/1.0\r\n\r\n", 10s);
  CHECK(reply.rfind("HTTP/1.0 200 ", 0) == 0);

  // gzip before chunked: the body would reach the handler compressed. Refused, not decoded.
  reply = http_raw(s.port(),
                   "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                   10s);
  CHECK(reply.rfind("HTTP/1.1 501 ", 0) == 0);
  CHECK(reply.find("NOT_IMPLEMENTED") != std::string::npos);
  CHECK(reply.find("Transfer-Encoding") != std::string::npos);
  // Plain chunked still works.
  reply = http_raw(s.port(),
                   "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
                   10s);
  CHECK(reply.rfind("HTTP/1.1 201 ", 0) == 0);
}

TEST_CASE("server: an unknown method is named as sent in the 405", "[http][server]") {
  TestServer s;
  std::string reply =
      http_raw(s.port(), "PROPFIND /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10s);
  CHECK(reply.rfind("HTTP/1.1 405 ", 0) == 0);
  CHECK(reply.find("PROPFIND is not allowed for /hello") != std::string::npos);
  CHECK(reply.find("OTHER") == std::string::npos);
}

TEST_CASE("server: malformed requests get 400 and are closed", "[http][server]") {
  TestServer s;
  for (const char* bad :
       {"GARBAGE\r\n\r\n", "GET /hello HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET /hello HTTP/9.x\r\n\r\n", "POST /echo HTTP/1.1\r\nContent-Length: abc\r\n\r\n"}) {
    INFO(bad);
    std::string reply = http_raw(s.port(), bad, 10s);
    CHECK(reply.rfind("HTTP/1.1 400 Bad Request\r\n", 0) == 0);
    CHECK(reply.find(R"({"error":{"code":"BAD_REQUEST","message":"malformed HTTP request)") !=
          std::string::npos);
    CHECK(reply.find("Connection: close") != std::string::npos);
  }
  CHECK(http_request(s.port(), "GET", "/hello").status == 200);
}

TEST_CASE("server: slow and idle clients are disconnected after the read timeout",
          "[http][server]") {
  ServerOptions options;
  options.read_timeout = 300ms;
  TestServer s(options);

  SECTION("half a header") {
    RawConn c(s.port());
    REQUIRE(c.connected());
    REQUIRE(c.send("GET /hello HTTP/1.1\r\nHo"));
    CHECK(c.wait_closed(15s));
  }

  SECTION("idle keep-alive connection") {
    RawConn c(s.port());
    REQUIRE(c.connected());
    REQUIRE(c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
    CHECK(c.read_response().rfind("HTTP/1.1 200 OK", 0) == 0);
    CHECK(c.wait_closed(15s));
  }

  // Other clients are unaffected.
  CHECK(http_request(s.port(), "GET", "/hello").status == 200);
}

TEST_CASE("server: many concurrent clients", "[http][server]") {
  ServerOptions options;
  options.threads = 3;
  TestServer s(options);
  std::vector<std::future<int>> results;
  for (int t = 0; t < 8; ++t) {
    results.push_back(std::async(std::launch::async, [&s, t] {
      int ok = 0;
      RawConn c(s.port());
      for (int i = 0; i < 50 && c.connected(); ++i) {
        std::string id = std::to_string(t) + "-" + std::to_string(i);
        if (!c.send("GET /items/" + id + " HTTP/1.1\r\nHost: x\r\n\r\n")) break;
        std::string reply = c.read_response(30s);
        if (reply.rfind("HTTP/1.1 200 OK", 0) == 0 && reply.find(id + "|-|-") != std::string::npos)
          ++ok;
      }
      for (int i = 0; i < 10; ++i) {
        if (http_request(s.port(), "POST", "/echo", "{}").status == 201) ++ok;
      }
      return ok;
    }));
  }
  for (auto& f : results) CHECK(f.get() == 60);
}

TEST_CASE("server: graceful stop finishes in-flight requests and refuses new ones",
          "[http][server]") {
  ServerOptions options;
  options.read_timeout = 60s;  // so only stop() can close the idle connection promptly
  TestServer s(options);
  const uint16_t port = s.port();

  // An idle keep-alive connection that stop() should close without waiting for the grace period.
  RawConn idle(port);
  REQUIRE(idle.connected());
  REQUIRE(idle.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(idle.read_response().rfind("HTTP/1.1 200 OK", 0) == 0);

  // A keep-alive request still in its handler when stop() is called.
  RawConn busy(port);
  REQUIRE(busy.connected());
  REQUIRE(busy.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n"));
  // And a one-shot client on another connection.
  auto oneshot = std::async(std::launch::async,
                            [port] { return http_request(port, "GET", "/slow", {}, {}, 30s); });
  REQUIRE(ecom::test::eventually([&] { return s.slow_entered.load() == 2; }, 30s));

  // Both handlers are in flight when stop() begins; they finish 300 ms into it.
  std::thread releaser([&] {
    std::this_thread::sleep_for(300ms);
    s.release_slow = true;
  });
  auto started = std::chrono::steady_clock::now();
  s.server->stop(30s);
  auto took = std::chrono::steady_clock::now() - started;
  releaser.join();
  // Generous: the point is that stop() did not sit out the 30 s grace for the idle connection.
  CHECK(took < 20s);

  std::string reply = busy.read_response();
  CHECK(reply.rfind("HTTP/1.1 200 OK", 0) == 0);
  CHECK(reply.find("Connection: close") != std::string::npos);
  CHECK(reply.find(std::string(10'000, 'x') + "\"}") != std::string::npos);
  CHECK(busy.wait_closed(5s));

  auto r = oneshot.get();
  CHECK(r.status == 200);
  CHECK(r.body.size() > 10'000);

  CHECK(idle.wait_closed(5s));

  // The listener is gone.
  CHECK(http_request(port, "GET", "/hello", {}, {}, 2s).status == 0);
  RawConn late(port);
  CHECK_FALSE(late.connected());

  s.server->stop();  // idempotent
}

TEST_CASE("server: start fails with BIND_FAILED when the port is taken", "[http][server]") {
  TestServer s;
  Router router;
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = s.port();
  auto other = ecom::http::make_server(router, options);
  auto st = other->start();
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == ecom::ErrorCode::kBindFailed);
  CHECK(st.error().message.find("127.0.0.1:" + std::to_string(s.port())) != std::string::npos);
  CHECK_FALSE(st.error().retryable);
  // The first server is unaffected.
  CHECK(http_request(s.port(), "GET", "/hello").status == 200);
}
