// The outgoing client against a real server on a loopback port.
#include "ecom/http/client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "ecom/http/server.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using ecom::http::json;
using ecom::http::Method;
using ecom::http::Request;
using ecom::http::Response;
using ecom::http::Router;

namespace {

struct EchoServer {
  EchoServer() {
    router.add(Method::kPost, "/hook/{id}",
               [this](const Request& r) {
                 std::lock_guard<std::mutex> lock(mu);
                 seen = r;
                 return json(202, R"({"received":")" + std::string(r.param("id")) + "\"}");
               },
               {.query = {"x"}});
    router.add(Method::kGet, "/fail", [](const Request&) {
      return Response{500, "text/plain", "upstream broke", {}};
    });
    ecom::http::ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    server = ecom::http::make_server(router, options);
    auto st = server->start();
    if (!st.ok()) FAIL("server start failed: " << st.error().message);
  }

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(server->port()) + path;
  }

  Router router;
  std::mutex mu;
  Request seen;
  std::unique_ptr<ecom::http::Server> server;
};

// A listener that never accepts: connections complete in the backlog and then hear nothing.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 16);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  uint16_t port_ = 0;
};

}  // namespace

TEST_CASE("client: POST with a body and headers", "[http][client]") {
  EchoServer s;
  auto r = ecom::http::request("POST", s.url("/hook/42?x=1"), R"({"event":"paid"})",
                               {{"X-Signature", "abc"}}, 10s);
  REQUIRE(r.ok());
  CHECK(r->status == 202);
  CHECK(r->body == R"({"received":"42"})");

  std::lock_guard<std::mutex> lock(s.mu);
  CHECK(s.seen.body == R"({"event":"paid"})");
  CHECK(s.seen.query == "x=1");
  CHECK(s.seen.header("content-type") == std::optional<std::string_view>("application/json"));
  CHECK(s.seen.header("content-length") == std::optional<std::string_view>("16"));
  CHECK(s.seen.header("x-signature") == std::optional<std::string_view>("abc"));
  CHECK(s.seen.header("host") ==
        std::optional<std::string_view>("127.0.0.1:" + std::to_string(s.server->port())));
  auto ua = s.seen.header("user-agent");
  REQUIRE(ua);
  CHECK(ua->rfind("ecomd", 0) == 0);
}

TEST_CASE("client: error statuses are passed through", "[http][client]") {
  EchoServer s;
  auto r = ecom::http::request("GET", s.url("/fail"), "", {}, 10s);
  REQUIRE(r.ok());
  CHECK(r->status == 500);
  CHECK(r->body == "upstream broke");

  r = ecom::http::request("GET", s.url("/missing"), "", {}, 10s);
  REQUIRE(r.ok());
  CHECK(r->status == 404);
}

TEST_CASE("client: connection refused is a retryable error", "[http][client]") {
  uint16_t port = ecom::test::free_port();
  auto r = ecom::http::request("POST", "http://127.0.0.1:" + std::to_string(port) + "/hook", "{}",
                               {}, 10s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ecom::ErrorCode::kUpstreamUnavailable);
  CHECK(r.error().retryable);
}

TEST_CASE("client: a silent server times out with a retryable error", "[http][client]") {
  SilentListener silent;
  auto r = ecom::http::request("POST", "http://127.0.0.1:" + std::to_string(silent.port()) + "/",
                               "{}", {}, 300ms);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ecom::ErrorCode::kUpstreamTimeout);
  CHECK(r.error().retryable);
}

TEST_CASE("client: bad URLs and unsupported schemes are not retryable", "[http][client]") {
  for (const char* url :
       {"", "127.0.0.1:8080/x", "http://", "http:///path", "http://host:0/", "http://host:99999/",
        "http://host:abc/", "http://user:pw@host/", "http://host/with space", "http://[::1/"}) {
    INFO(url);
    auto r = ecom::http::request("GET", url, "", {}, 1s);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ecom::ErrorCode::kBadUrl);
    CHECK_FALSE(r.error().retryable);
  }
  auto r = ecom::http::request("GET", "https://example.com/", "", {}, 1s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ecom::ErrorCode::kUnsupportedScheme);
  CHECK_FALSE(r.error().retryable);

  EchoServer s;
  r = ecom::http::request("GET", s.url("/fail"), "", {{"X-Bad", "a\r\nInjected: 1"}}, 1s);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ecom::ErrorCode::kBadRequest);
}
