// WebSocket routes against a real server, driven by a Beast client (the only Beast use in tests).
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>  // must precede Asio with Boost 1.74 + C++20 coroutines
#include <vector>

#include "ecom/http/server.hpp"
#include "http/raw_client.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using ecom::http::Method;
using ecom::http::Request;
using ecom::http::Router;
using ecom::http::ServerOptions;
using ecom::http::WebSocket;
using ecom::http::WebSocketCallbacks;
using ecom::test::eventually;

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;

// A blocking WebSocket client whose every step has a deadline.
class WsClient {
 public:
  explicit WsClient(uint16_t port, const std::string& target = "/ws/lobby") {
    beast::error_code ec;
    ws_.next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    if (ec) return;
    ec = run([&](auto handler) { ws_.async_handshake("127.0.0.1", target, handler); });
    connected_ = !ec;
  }

  bool connected() const { return connected_; }

  beast::error_code send(const std::string& text) {
    ws_.text(true);
    return run([&](auto handler) { ws_.async_write(asio::buffer(text), handler); });
  }

  /// The next message, or nullopt with `error` set.
  std::optional<std::string> read(beast::error_code* error = nullptr,
                                  std::chrono::milliseconds timeout = 10s) {
    beast::flat_buffer buffer;
    beast::error_code ec = run([&](auto handler) { ws_.async_read(buffer, handler); }, timeout);
    if (error) *error = ec;
    if (ec) return std::nullopt;
    return beast::buffers_to_string(buffer.data());
  }

  beast::error_code close() {
    websocket::close_reason reason(websocket::close_code::normal);
    return run([&](auto handler) { ws_.async_close(reason, handler); });
  }

 private:
  template <typename Start>
  beast::error_code run(Start start, std::chrono::milliseconds timeout = 10s) {
    std::optional<beast::error_code> result;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    ioc_.restart();
    ioc_.run_for(timeout);
    if (!result) {
      beast::error_code ignored;
      ws_.next_layer().close(ignored);
      ioc_.restart();
      ioc_.run();
      return asio::error::timed_out;
    }
    return *result;
  }

  asio::io_context ioc_;
  websocket::stream<tcp::socket> ws_{ioc_};
  bool connected_ = false;
};

// Echoes messages, greets on connect, and keeps every socket so tests can push or close.
struct WsServer {
  explicit WsServer(ServerOptions options = {}) {
    router.add_websocket("/ws/{room}", [this](const Request& r, std::shared_ptr<WebSocket> ws) {
      ws->send("welcome to " + std::string(r.param("room")));
      {
        std::lock_guard<std::mutex> lock(mu);
        sockets.push_back(ws);
      }
      ++opened;
      std::weak_ptr<WebSocket> weak = ws;
      WebSocketCallbacks callbacks;
      callbacks.on_message = [weak](std::string_view text) {
        if (auto socket = weak.lock()) socket->send("echo: " + std::string(text));
      };
      callbacks.on_close = [this] { ++closed; };
      return callbacks;
    });
    options.host = "127.0.0.1";
    options.port = 0;
    server = ecom::http::make_server(router, options);
    auto st = server->start();
    if (!st.ok()) FAIL("server start failed: " << st.error().message);
  }

  uint16_t port() const { return server->port(); }
  std::shared_ptr<WebSocket> socket(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    return i < sockets.size() ? sockets[i] : nullptr;
  }

  Router router;
  std::mutex mu;
  std::vector<std::shared_ptr<WebSocket>> sockets;
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};
  std::unique_ptr<ecom::http::Server> server;
};

}  // namespace

TEST_CASE("websocket: echo round trip, server push, client close", "[http][websocket]") {
  WsServer s;
  WsClient c(s.port());
  REQUIRE(c.connected());
  CHECK(c.read() == std::optional<std::string>("welcome to lobby"));

  for (int i = 0; i < 20; ++i) {
    REQUIRE_FALSE(c.send("ping " + std::to_string(i)));
    CHECK(c.read() == std::optional<std::string>("echo: ping " + std::to_string(i)));
  }

  // Pushed from a thread that is not a server thread.
  auto socket = s.socket(0);
  REQUIRE(socket);
  std::thread pusher([socket] {
    for (int i = 0; i < 10; ++i) socket->send("push " + std::to_string(i));
  });
  pusher.join();
  for (int i = 0; i < 10; ++i) {
    CHECK(c.read() == std::optional<std::string>("push " + std::to_string(i)));
  }

  CHECK_FALSE(socket->closed());
  CHECK_FALSE(c.close());
  REQUIRE(eventually([&] { return s.closed.load() == 1; }));
  CHECK(socket->closed());
  CHECK_FALSE(socket->send("too late"));
}

TEST_CASE("websocket: the server closes a connection", "[http][websocket]") {
  WsServer s;
  WsClient c(s.port(), "/ws/r1");
  REQUIRE(c.connected());
  CHECK(c.read() == std::optional<std::string>("welcome to r1"));
  auto socket = s.socket(0);
  socket->send("bye");
  socket->close();
  socket->close();  // idempotent
  CHECK(socket->closed());
  CHECK(c.read() == std::optional<std::string>("bye"));
  beast::error_code ec;
  CHECK_FALSE(c.read(&ec));
  CHECK(ec == websocket::error::closed);
  REQUIRE(eventually([&] { return s.closed.load() == 1; }));
}

TEST_CASE("websocket: stop closes connections and runs on_close", "[http][websocket]") {
  WsServer s;
  WsClient a(s.port(), "/ws/a");
  WsClient b(s.port(), "/ws/b");
  REQUIRE(a.connected());
  REQUIRE(b.connected());
  REQUIRE(eventually([&] { return s.opened.load() == 2; }));
  // The client must read to answer the close handshake.
  std::thread reader_a([&] {
    while (a.read()) {
    }
  });
  std::thread reader_b([&] {
    while (b.read()) {
    }
  });
  s.server->stop(30s);
  reader_a.join();
  reader_b.join();
  CHECK(s.closed.load() == 2);
  CHECK(s.socket(0)->closed());
  CHECK_FALSE(s.socket(1)->send("after stop"));
}

TEST_CASE("websocket: a plain GET on a WebSocket route answers 426", "[http][websocket]") {
  WsServer s;
  auto r = ecom::test::http_request(s.port(), "GET", "/ws/lobby");
  CHECK(r.status == 426);
  CHECK(r.header("upgrade") == "websocket");
  CHECK(r.body.find(R"("code":"UPGRADE_REQUIRED")") != std::string::npos);
  CHECK(s.opened.load() == 0);
  // A WebSocket still connects afterwards.
  WsClient c(s.port());
  CHECK(c.connected());
}

TEST_CASE("websocket: a client that stops reading is dropped", "[http][websocket]") {
  ServerOptions options;
  options.stream_buffer_limit = 64 * 1024;
  WsServer s(options);
  WsClient slow(s.port(), "/ws/slow");
  REQUIRE(slow.connected());
  WsClient other(s.port(), "/ws/other");
  REQUIRE(other.connected());
  REQUIRE(eventually([&] { return s.opened.load() == 2; }));
  auto socket = s.socket(0);

  // The kernel buffers absorb some megabytes before the queue can grow: the bound is generous.
  const std::string message(16 * 1024, 'x');
  bool dropped = false;
  for (int i = 0; i < 8000 && !dropped; ++i) dropped = !socket->send(message);
  CHECK(dropped);
  CHECK(socket->closed());
  REQUIRE(eventually([&] { return s.closed.load() == 1; }));

  // The other connection is unaffected.
  CHECK(other.read() == std::optional<std::string>("welcome to other"));
  REQUIRE_FALSE(other.send("still there?"));
  CHECK(other.read() == std::optional<std::string>("echo: still there?"));
}
