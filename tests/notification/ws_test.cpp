// WebSocket /ws with a real client (Boost.Beast's; the only test TU that includes Beast): against
// the hosted module and against the real binary.

// clang-format off
#include <utility>  // before any Asio header (Boost 1.74 + C++20)
// clang-format on

#include <sys/socket.h>
#include <sys/time.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <catch2/catch.hpp>
#include <fstream>

#include "harness.hpp"
#include "support/test_support.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using namespace ecom;
using namespace std::chrono_literals;
using ecom::test::parse_json;
using ecom::test::str_of;

namespace {

// A blocking WebSocket client; reads give up after the socket's receive timeout.
class WsClient {
 public:
  explicit WsClient(uint16_t port, std::chrono::seconds timeout = 20s) {
    asio::ip::tcp::resolver resolver(ioc_);
    asio::connect(ws_.next_layer(), resolver.resolve("127.0.0.1", std::to_string(port)));
    timeval tv{static_cast<time_t>(timeout.count()), 0};
    ::setsockopt(ws_.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ws_.handshake("127.0.0.1:" + std::to_string(port), "/ws");
    ws_.text(true);
  }
  ~WsClient() {
    beast::error_code ec;
    ws_.close(websocket::close_code::normal, ec);
  }
  void send(const std::string& text) { ws_.write(asio::buffer(text)); }
  /// The next message; empty on timeout or close.
  std::string recv() {
    beast::flat_buffer buf;
    beast::error_code ec;
    ws_.read(buf, ec);
    if (ec) return {};
    return beast::buffers_to_string(buf.data());
  }
  /// The next message whose "event" is `event` (skipping others); a Null document on timeout.
  rapidjson::Document next(const std::string& event) {
    while (true) {
      auto m = recv();
      rapidjson::Document d;
      if (m.empty()) return d;
      d.Parse(m.c_str());
      if (!d.HasParseError() && d.IsObject() && str_of(d, "event") == event) return d;
    }
  }

 private:
  asio::io_context ioc_;
  websocket::stream<asio::ip::tcp::socket> ws_{ioc_};
};

std::string error_code_of(const std::string& message) {
  auto d = parse_json(message);
  REQUIRE(d.HasMember("error"));
  return str_of(d["error"], "code");
}

}  // namespace

TEST_CASE("WebSocket /ws: subscribe to an order, to everything, errors as messages",
          "[notification][module][ws]") {
  test::TempDir dir;
  test::Harness h(dir.path());
  h.publish(topics::kOrdersCreated, test::order_created("o-1"));
  REQUIRE(test::eventually([&] { return h.notifications_of("o-1")["notifications"].Size() == 1; }));

  WsClient ws(h.port());
  ws.send("not json");
  CHECK(error_code_of(ws.recv()) == "MALFORMED_JSON");
  ws.send(R"({"subscribe":"nothing"})");
  auto bad = parse_json(ws.recv());
  CHECK(str_of(bad["error"], "code") == "VALIDATION_FAILED");
  CHECK(str_of(bad["error"], "field") == "subscribe");
  ws.send(R"({"subscribe":"order"})");
  CHECK(str_of(parse_json(ws.recv())["error"], "field") == "orderId");
  ws.send(R"({"subscribe":"order","orderId":"nope"})");
  CHECK(error_code_of(ws.recv()) == "NOT_FOUND");

  ws.send(R"({"subscribe":"order","orderId":"o-1"})");
  auto snap = parse_json(ws.recv());
  CHECK(str_of(snap, "event") == "snapshot");
  CHECK(snap["id"].IsInt64());
  CHECK(str_of(snap["data"], "status") == "PENDING");
  CHECK(snap["data"]["history"].Size() == 1);

  h.publish(topics::kOrdersStatus, test::status_changed("o-1", "STOCK_RESERVED"));
  auto status = ws.next("status");
  REQUIRE(status.IsObject());
  CHECK(str_of(status["data"], "status") == "STOCK_RESERVED");
  CHECK(status["id"].GetInt64() > snap["id"].GetInt64());
  auto note = ws.next("notification");
  REQUIRE(note.IsObject());
  CHECK(str_of(note["data"], "orderStatus") == "STOCK_RESERVED");

  // Re-subscribing replaces the subscription.
  ws.send(R"({"subscribe":"all"})");
  auto summary = ws.next("snapshot");
  REQUIRE(summary.IsObject());
  CHECK(summary["data"]["orders"]["STOCK_RESERVED"].GetInt() == 1);
  h.publish(topics::kInventoryUpdated, test::inventory_updated("SKU-1", 5));
  auto inv = ws.next("inventory");
  REQUIRE(inv.IsObject());
  CHECK(str_of(inv["data"], "sku") == "SKU-1");

  // Resume by id: what came after it, no snapshot.
  WsClient again(h.port());
  again.send(R"({"subscribe":"order","orderId":"o-1","lastEventId":)" +
             std::to_string(snap["id"].GetInt64()) + "}");
  auto replayed = parse_json(again.recv());
  CHECK(str_of(replayed, "event") == "status");
  CHECK(str_of(replayed["data"], "status") == "STOCK_RESERVED");
}

TEST_CASE("binary: a WebSocket client subscribed to an order sees its status changes",
          "[notification][binary][ws]") {
  test::TempDir dir;
  std::string config = dir.file("ecomd.json");
  std::ofstream(config) << R"({"inventory":{"admin_token":"t","seed":[
      {"sku":"SKU-A","name":"Plenty","available":100,"unitAmount":1000}]},"payment":{"latency_ms":1500}})";
  test::Ecomd e(dir.path(), {"--role=all", "--config=" + config});
  auto r = e.post(
      "/api/orders",
      R"({"customerId":"c-ws","currency":"USD","items":[{"sku":"SKU-A","quantity":2,"unitAmount":1000}],"paymentToken":"tok_visa"})");
  REQUIRE(r.status == 202);
  std::string id = str_of(parse_json(r.body), "orderId");

  WsClient ws(e.port());
  rapidjson::Document snap;
  // The notification module may not know the order for a moment: NOT_FOUND, then try again.
  REQUIRE(test::eventually(
      [&] {
        ws.send(R"({"subscribe":"order","orderId":")" + id + "\"}");
        snap = parse_json(ws.recv());
        return str_of(snap, "event") == "snapshot";
      },
      30s));
  std::vector<std::string> statuses;
  for (const auto& h : snap["data"]["history"].GetArray())
    statuses.push_back(h["status"].GetString());
  int live = 0;
  while (statuses.back() != "CONFIRMED") {
    auto m = ws.next("status");
    REQUIRE(m.IsObject());
    statuses.push_back(str_of(m["data"], "status"));
    ++live;
  }
  CHECK(statuses == std::vector<std::string>{"PENDING", "STOCK_RESERVED", "CONFIRMED"});
  CHECK(live >= 1);
}
