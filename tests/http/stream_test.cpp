// Deferred (async) answers and Server-Sent Events against a real server on a loopback port.
#include <sys/resource.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ecom/http/server.hpp"
#include "http/raw_client.hpp"
#include "support/test_support.hpp"

using namespace std::chrono_literals;
using ecom::Error;
using ecom::http::json;
using ecom::http::Method;
using ecom::http::Request;
using ecom::http::Responder;
using ecom::http::Response;
using ecom::http::Router;
using ecom::http::ServerOptions;
using ecom::http::Stream;
using ecom::test::eventually;
using ecom::test::http_request;
using ecom::test::RawClient;

namespace {

// A server with deferred and streaming routes; the test drives the other side.
struct StreamServer {
  explicit StreamServer(ServerOptions options = {}) {
    router.add(Method::kGet, "/hello", [](const Request&) { return json(200, R"({"hi":1})"); });
    // Keeps the responder; the test answers it later (from any thread).
    router.add_async(Method::kGet, "/wait/{id}", [this](const Request& r, Responder respond) {
      std::lock_guard<std::mutex> lock(mu);
      responders[std::string(r.param("id"))] = std::move(respond);
    });
    router.add_async(Method::kPost, "/now", [](const Request& r, Responder respond) {
      respond(json(201, r.body));
      respond(json(500, "{}"));  // later answers are ignored
    });
    // A deferred write: kept like /wait, answered by the test.
    router.add_async(Method::kPost, "/write/{id}", [this](const Request& r, Responder respond) {
      std::lock_guard<std::mutex> lock(mu);
      responders[std::string(r.param("id"))] = std::move(respond);
    });
    router.add_async(Method::kGet, "/throws",
                     [](const Request&, Responder) { throw std::runtime_error("boom"); });
    router.add_stream(
        "/events/{topic}",
        [this](const Request& r, std::shared_ptr<Stream> s) -> std::optional<Response> {
          if (r.param("topic") == "missing") {
            s->on_close([this] { ++discarded_closed; });
            return ecom::http::error_response(
                Error{ecom::ErrorCode::kNotFound, "no such topic", {}, false});
          }
          s->on_close([this] { ++closed; });
          // Queued before the head is sent: must arrive first.
          s->write(": welcome " + std::string(r.param("topic")) + "\n\n");
          std::lock_guard<std::mutex> lock(mu);
          streams.push_back(s);
          ++opened;
          return std::nullopt;
        });
    options.host = "127.0.0.1";
    options.port = 0;
    server = ecom::http::make_server(router, options);
    auto st = server->start();
    if (!st.ok()) FAIL("server start failed: " << st.error().message);
  }

  uint16_t port() const { return server->port(); }

  std::optional<Responder> responder(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = responders.find(id);
    if (it == responders.end()) return std::nullopt;
    return it->second;
  }
  bool has_responder(const std::string& id) { return responder(id).has_value(); }

  std::vector<std::shared_ptr<Stream>> all_streams() {
    std::lock_guard<std::mutex> lock(mu);
    return streams;
  }
  std::shared_ptr<Stream> stream(size_t i) {
    std::lock_guard<std::mutex> lock(mu);
    return i < streams.size() ? streams[i] : nullptr;
  }

  Router router;  // declared first: must outlive the server
  std::mutex mu;
  std::map<std::string, Responder> responders;
  std::vector<std::shared_ptr<Stream>> streams;
  std::atomic<int> opened{0};
  std::atomic<int> closed{0};
  std::atomic<int> discarded_closed{0};
  std::unique_ptr<ecom::http::Server> server;
};

std::string sse_event(int i) { return "data: " + std::to_string(i) + "\n\n"; }

}  // namespace

TEST_CASE("async: a responder called from another thread answers the request", "[http][async]") {
  StreamServer s;
  RawClient c(s.port());
  REQUIRE(c.connected());
  REQUIRE(c.send("GET /wait/a HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(eventually([&] { return s.has_responder("a"); }));

  auto responder = *s.responder("a");
  std::thread answer([responder] {
    std::this_thread::sleep_for(200ms);
    responder(json(200, R"({"answer":42})"));
  });
  std::string reply = c.read_response(30s);
  answer.join();
  CHECK(reply.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(reply.find(R"({"answer":42})") != std::string::npos);
  CHECK(reply.find("Connection: close") == std::string::npos);

  // Calling it again is ignored, and the connection is still usable (keep-alive).
  responder(json(500, "{}"));
  REQUIRE(c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  reply = c.read_response();
  CHECK(reply.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(reply.find(R"({"hi":1})") != std::string::npos);
}

TEST_CASE("async: a request pipelined behind a pending one is served after it", "[http][async]") {
  StreamServer s;
  RawClient c(s.port());
  REQUIRE(c.connected());
  REQUIRE(c.send("GET /wait/p HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(eventually([&] { return s.has_responder("p"); }));
  (*s.responder("p"))(json(200, R"({"first":true})"));
  std::string first = c.read_response(30s);
  CHECK(first.find(R"({"first":true})") != std::string::npos);
  std::string second = c.read_response(30s);
  CHECK(second.find(R"({"hi":1})") != std::string::npos);
}

TEST_CASE("async: answering inside the handler, and a throwing handler", "[http][async]") {
  StreamServer s;
  auto r = http_request(s.port(), "POST", "/now", R"({"x":1})");
  CHECK(r.status == 201);
  CHECK(r.body == R"({"x":1})");

  r = http_request(s.port(), "GET", "/throws");
  CHECK(r.status == 500);
  CHECK(r.body == R"({"error":{"code":"INTERNAL","message":"internal error"}})");

  r = http_request(s.port(), "POST", "/now", "x=1", {{"Content-Type", "text/plain"}});
  CHECK(r.status == 415);
}

TEST_CASE("async: a client leaving before the answer is harmless", "[http][async]") {
  StreamServer s;
  {
    RawClient c(s.port());
    REQUIRE(c.connected());
    REQUIRE(c.send("GET /wait/gone HTTP/1.1\r\nHost: x\r\n\r\n"));
    REQUIRE(eventually([&] { return s.has_responder("gone"); }));
  }  // disconnects
  // Give the server a moment to notice; the responder must then be a no-op.
  std::this_thread::sleep_for(200ms);
  auto responder = *s.responder("gone");
  responder(json(200, "{}"));
  responder(json(200, "{}"));
  CHECK(http_request(s.port(), "GET", "/hello").status == 200);
}

TEST_CASE("async: stop answers pending requests 503 and later responders are no-ops",
          "[http][async]") {
  std::optional<Responder> kept;
  {
    StreamServer s;
    RawClient c(s.port());
    REQUIRE(c.connected());
    REQUIRE(c.send("GET /wait/s HTTP/1.1\r\nHost: x\r\n\r\n"));
    REQUIRE(eventually([&] { return s.has_responder("s"); }));
    kept = s.responder("s");

    auto started = std::chrono::steady_clock::now();
    s.server->stop(60s);
    auto took = std::chrono::steady_clock::now() - started;
    CHECK(took < 30s);  // generous: the point is that stop() did not sit out the 60 s grace

    std::string reply = c.read_response();
    CHECK(reply.rfind("HTTP/1.1 503 Service Unavailable\r\n", 0) == 0);
    CHECK(reply.find(R"("code":"UNAVAILABLE")") != std::string::npos);
    CHECK(reply.find("Connection: close") != std::string::npos);
    CHECK(c.wait_eof(5s));
  }
  // The server is gone; the module may still hold the responder.
  REQUIRE(kept);
  (*kept)(json(200, "{}"));
}

TEST_CASE("async: stop lets a pending write finish within the grace period", "[http][async]") {
  StreamServer s;
  RawClient c(s.port());
  REQUIRE(c.connected());
  REQUIRE(
      c.send("POST /write/w HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
             "Content-Length: 2\r\n\r\n{}"));
  REQUIRE(eventually([&] { return s.has_responder("w"); }));
  auto responder = *s.responder("w");
  // The write commits while the server is stopping: its client must hear the real answer.
  std::thread committer([responder] {
    std::this_thread::sleep_for(300ms);
    responder(json(202, R"({"stored":true})"));
  });
  s.server->stop(30s);
  committer.join();
  std::string reply = c.read_response();
  CHECK(reply.rfind("HTTP/1.1 202 Accepted\r\n", 0) == 0);
  CHECK(reply.find(R"({"stored":true})") != std::string::npos);
}

TEST_CASE("sse: head, queued and later events arrive in order", "[http][sse]") {
  StreamServer s;
  RawClient c(s.port());
  REQUIRE(c.connected());
  REQUIRE(c.get("/events/orders"));
  REQUIRE(c.read_head());
  CHECK(c.head().rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(c.has_header("Content-Type", "text/event-stream"));
  CHECK(c.has_header("Cache-Control", "no-cache"));
  CHECK(c.has_header("X-Accel-Buffering", "no"));
  CHECK(c.has_header("Transfer-Encoding", "chunked"));
  CHECK(c.head().find("Content-Length") == std::string::npos);

  REQUIRE(eventually([&] { return s.opened.load() == 1; }));
  auto stream = s.stream(0);
  REQUIRE(stream);
  CHECK_FALSE(stream->closed());
  std::string expected = ": welcome orders\n\n";
  for (int i = 0; i < 200; ++i) {
    CHECK(stream->write(sse_event(i)));
    expected += sse_event(i);
    if (i % 50 == 0) std::this_thread::sleep_for(10ms);  // mix batched and single writes
  }
  REQUIRE(c.wait_for(sse_event(199)));
  CHECK(c.body() == expected);

  // Written from several threads: each writer's events stay in order.
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([stream, t] {
      for (int i = 0; i < 50; ++i) stream->write("id: " + std::to_string(t * 1000 + i) + "\n\n");
    });
  }
  for (auto& w : writers) w.join();
  for (int t = 0; t < 4; ++t) REQUIRE(c.wait_for("id: " + std::to_string(t * 1000 + 49) + "\n\n"));
  for (int t = 0; t < 4; ++t) {
    size_t last = 0;
    for (int i = 0; i < 50; ++i) {
      size_t pos = c.body().find("id: " + std::to_string(t * 1000 + i) + "\n\n");
      REQUIRE(pos != std::string::npos);
      CHECK(pos >= last);
      last = pos;
    }
  }
  CHECK(s.closed.load() == 0);
}

TEST_CASE("sse: the server closes a stream after its queued events", "[http][sse]") {
  StreamServer s;
  RawClient c(s.port());
  REQUIRE(c.get("/events/a"));
  REQUIRE(c.read_head());
  REQUIRE(eventually([&] { return s.opened.load() == 1; }));
  auto stream = s.stream(0);
  CHECK(stream->write(sse_event(1)));
  CHECK(stream->write(sse_event(2)));
  stream->close();
  stream->close();  // idempotent
  CHECK(stream->closed());
  CHECK_FALSE(stream->write(sse_event(3)));
  REQUIRE(c.wait_eof());
  CHECK(c.ended());
  CHECK(c.body() == ": welcome a\n\n" + sse_event(1) + sse_event(2));
  REQUIRE(eventually([&] { return s.closed.load() == 1; }));

  // A callback registered after the end runs at once.
  bool late = false;
  stream->on_close([&] { late = true; });
  CHECK(late);
}

TEST_CASE("sse: a client disconnect closes the stream and runs on_close once", "[http][sse]") {
  StreamServer s;
  auto c = std::make_unique<RawClient>(s.port());
  REQUIRE(c->get("/events/a"));
  REQUIRE(c->read_head());
  REQUIRE(eventually([&] { return s.opened.load() == 1; }));
  auto stream = s.stream(0);
  c.reset();
  REQUIRE(eventually([&] { return s.closed.load() == 1; }));
  CHECK(stream->closed());
  CHECK_FALSE(stream->write(sse_event(1)));
  stream->close();
  std::this_thread::sleep_for(50ms);
  CHECK(s.closed.load() == 1);
}

TEST_CASE("sse: a handler may answer normally instead of streaming", "[http][sse]") {
  StreamServer s;
  auto r = http_request(s.port(), "GET", "/events/missing");
  CHECK(r.status == 404);
  CHECK(r.body.find("NOT_FOUND") != std::string::npos);
  CHECK(s.discarded_closed.load() == 1);
  CHECK(s.opened.load() == 0);
  r = http_request(s.port(), "POST", "/events/x", "{}");
  CHECK(r.status == 405);
  CHECK(r.header("allow") == "GET");
}

TEST_CASE("sse: a client that stops reading is dropped, others keep receiving", "[http][sse]") {
  ServerOptions options;
  options.stream_buffer_limit = 64 * 1024;
  StreamServer s(options);

  RawClient slow(s.port(), /*rcvbuf=*/4096);
  REQUIRE(slow.get("/events/slow"));
  REQUIRE(slow.read_head());
  REQUIRE(eventually([&] { return s.opened.load() == 1; }));
  RawClient fast(s.port());
  REQUIRE(fast.get("/events/fast"));
  REQUIRE(fast.read_head());
  REQUIRE(eventually([&] { return s.opened.load() == 2; }));
  auto slow_stream = s.stream(0);
  auto fast_stream = s.stream(1);

  // 16 KiB events until the slow client is dropped; the kernel buffers absorb some megabytes
  // first, so the bound is generous.
  const std::string padding(16 * 1024, 'x');
  bool dropped = false;
  int i = 0;
  for (; i < 4000 && !dropped; ++i) {
    std::string event = "id: " + std::to_string(i) + "\ndata: " + padding + "\n\n";
    REQUIRE(fast_stream->write(event));
    if (!slow_stream->write(event)) dropped = true;
    REQUIRE(fast.wait_for("id: " + std::to_string(i) + "\n", 30s));
    fast.body().clear();  // keep memory flat
  }
  CHECK(dropped);
  CHECK(slow_stream->closed());
  REQUIRE(eventually([&] { return s.closed.load() == 1; }));
  CHECK_FALSE(slow_stream->write("data: more\n\n"));

  // The fast client is unaffected.
  CHECK_FALSE(fast_stream->closed());
  CHECK(fast_stream->write("data: still here\n\n"));
  CHECK(fast.wait_for("data: still here\n\n"));
}

TEST_CASE("sse: 500 concurrent clients each receive an event", "[http][sse]") {
  constexpr int kClients = 500;
  rlimit limit{};
  ::getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < 4 * kClients) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 4 * kClients);
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }

  StreamServer s;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < kClients; ++i) {
    auto c = std::make_unique<RawClient>(s.port());
    REQUIRE(c->connected());
    REQUIRE(c->get("/events/t" + std::to_string(i)));
    clients.push_back(std::move(c));
  }
  REQUIRE(eventually([&] { return s.opened.load() == kClients; }, 60s));

  for (const auto& stream : s.all_streams()) CHECK(stream->write("data: hello\n\n"));
  int received = 0;
  for (auto& c : clients) {
    if (c->read_head(30s) && c->wait_for("data: hello\n\n", 30s)) ++received;
  }
  CHECK(received == kClients);
  // Each client got its own stream.
  CHECK(clients[7]->body() == ": welcome t7\n\ndata: hello\n\n");

  clients.clear();
  CHECK(eventually([&] { return s.closed.load() == kClients; }, 60s));
}

TEST_CASE("sse: stop ends streams after their queued events and runs on_close", "[http][sse]") {
  StreamServer s;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 3; ++i) {
    clients.push_back(std::make_unique<RawClient>(s.port()));
    REQUIRE(clients.back()->get("/events/s" + std::to_string(i)));
    REQUIRE(clients.back()->read_head());
  }
  REQUIRE(eventually([&] { return s.opened.load() == 3; }));
  auto streams = s.all_streams();
  for (auto& st : streams) CHECK(st->write("data: last\n\n"));

  s.server->stop(30s);
  CHECK(s.closed.load() == 3);
  for (auto& c : clients) {
    CHECK(c->wait_eof());
    CHECK(c->ended());
    CHECK(c->body().find("data: last\n\n") != std::string::npos);
  }
  for (auto& st : streams) {
    CHECK(st->closed());
    CHECK_FALSE(st->write("data: after\n\n"));
  }
}

TEST_CASE("sse and async: long-lived requests outlive the read timeout", "[http][sse][async]") {
  ServerOptions options;
  options.read_timeout = 200ms;
  StreamServer s(options);

  RawClient sse(s.port());
  REQUIRE(sse.get("/events/quiet"));
  REQUIRE(sse.read_head());
  RawClient poll(s.port());
  REQUIRE(poll.send("GET /wait/slow HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(eventually([&] { return s.opened.load() == 1 && s.has_responder("slow"); }));

  // Several read timeouts pass with nothing sent either way.
  std::this_thread::sleep_for(1200ms);
  auto stream = s.stream(0);
  CHECK_FALSE(stream->closed());
  CHECK(stream->write("data: late\n\n"));
  CHECK(sse.wait_for("data: late\n\n"));
  (*s.responder("slow"))(json(200, R"({"late":true})"));
  CHECK(poll.read_response().find(R"({"late":true})") != std::string::npos);
  CHECK(s.closed.load() == 0);
}

TEST_CASE("async: HEAD on an async GET route gets the head without the body", "[http][async]") {
  StreamServer s;
  RawClient c(s.port());
  REQUIRE(c.send("HEAD /wait/h HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(eventually([&] { return s.has_responder("h"); }));
  (*s.responder("h"))(json(200, R"({"n":12345})"));
  REQUIRE(c.read_head());
  CHECK(c.head().rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(c.has_header("Content-Length", "11"));
  // No body follows: the next response on the connection starts right after the head (the raw
  // client treats everything after the first head as body).
  REQUIRE(c.send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"));
  REQUIRE(c.wait_for(R"({"hi":1})"));
  CHECK(c.body().rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
}
