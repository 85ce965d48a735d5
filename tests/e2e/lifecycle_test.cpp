// The order lifecycle through HTTP on the real binary (--role=all, embedded bus): every path of the
// saga, a crash in the middle of in-flight orders, and the stock invariant under concurrency.

#include <rapidjson/document.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "support/json_fields.hpp"
#include "support/test_support.hpp"

using ecom::test::Ecomd;
using ecom::test::HttpResponse;
using ecom::test::parse;
using ecom::test::str;
using ecom::test::TempDir;

namespace {

struct Stock {
  int64_t available = -1, reserved = -1, sold = -1;
};

// The bus a test runs on: "embedded", or "kafka" against the real broker in ECOM_KAFKA_BROKERS
// (scripts/test.sh starts one), with topics and groups prefixed per test so runs never mix.
thread_local std::string g_bus = "embedded";
// Empty: SQLite stores in the data dir; else the schema prefix of this test's PostgreSQL stores.
thread_local std::string g_pg_prefix;

std::vector<std::string> args(const std::string& config) {
  std::vector<std::string> a{"--role=all", "--config=" + config};
  if (g_bus == "kafka") a.push_back("--bus=kafka");
  if (!g_pg_prefix.empty()) {
    a.push_back("--store=postgres");
    a.push_back("--store-url=" + ecom::test::postgres_url());
    a.push_back("--store-schema-prefix=" + g_pg_prefix);
  }
  return a;
}

// Writes a config with a small catalogue and the given extra module settings.
std::string write_config(const TempDir& dir,
                         const std::string& saga = R"({"step_timeout_ms": 30000})",
                         const std::string& payment = "{}", const std::string& seed = R"([
      {"sku":"SKU-A","name":"Plenty","available":100,"unitAmount":1000},
      {"sku":"SKU-B","name":"Also plenty","available":100,"unitAmount":500},
      {"sku":"SKU-SCARCE","name":"Scarce","available":2,"unitAmount":700}])") {
  std::string path = dir.file("ecomd.json");
  std::ofstream(path) << R"({"inventory":{"admin_token":"t","seed":)" << seed << R"(},"saga":)"
                      << saga << R"(,"payment":)" << payment
                      << (g_bus == "kafka" ? ecom::test::kafka_config_section() : "") << "}";
  return path;
}

// Lines without prices: the server prices them from the catalogue.
std::string order_body(const std::string& token,
                       const std::vector<std::pair<std::string, int>>& lines,
                       const std::string& customer = "c-1") {
  std::string items;
  for (const auto& [sku, q] : lines)
    items += std::string(items.empty() ? "" : ",") + R"({"sku":")" + sku + R"(","quantity":)" +
             std::to_string(q) + "}";
  return R"({"customerId":")" + customer + R"(","currency":"USD","items":[)" + items +
         R"(],"paymentToken":")" + token + R"("})";
}

std::string place(const Ecomd& e, const std::string& body) {
  auto r = e.post("/api/orders", body);
  REQUIRE(r.status == 202);
  return str(parse(r.body), "orderId");
}

std::string status_of(const Ecomd& e, const std::string& id) {
  return str(parse(e.get("/api/orders/" + id).body), "status");
}

bool terminal(const std::string& s) { return s == "CONFIRMED" || s == "CANCELLED"; }

rapidjson::Document wait_terminal(const Ecomd& e, const std::string& id,
                                  std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  std::string body;
  bool done = ecom::test::eventually(
      [&] {
        body = e.get("/api/orders/" + id).body;
        return terminal(str(parse(body), "status"));
      },
      timeout);
  INFO("order " << id << ": " << body);
  REQUIRE(done);
  return parse(body);
}

bool wait_status(const Ecomd& e, const std::string& id, const std::string& status) {
  return ecom::test::eventually([&] { return status_of(e, id) == status; },
                                std::chrono::seconds(30));
}

Stock stock(const Ecomd& e, const std::string& sku) {
  auto d = parse(e.get("/api/inventory/" + sku).body);
  Stock s;
  if (d.IsObject() && d.HasMember("available")) {
    s.available = d["available"].GetInt64();
    s.reserved = d["reserved"].GetInt64();
    s.sold = d["sold"].GetInt64();
  }
  return s;
}

bool stock_is(const Ecomd& e, const std::string& sku, int64_t available, int64_t reserved,
              int64_t sold) {
  return ecom::test::eventually(
      [&] {
        auto s = stock(e, sku);
        return s.available == available && s.reserved == reserved && s.sold == sold;
      },
      std::chrono::seconds(15));
}

std::vector<std::string> history(const rapidjson::Document& order) {
  std::vector<std::string> out;
  for (const auto& h : order["history"].GetArray()) out.push_back(h["status"].GetString());
  return out;
}

}  // namespace

// Each scenario runs on both buses, and on Kafka with PostgreSQL stores (the scale-out
// set-up), as separate test cases.
#define LIFECYCLE_TEST(fn, name, tags)                                       \
  static void fn();                                                          \
  TEST_CASE(name " (embedded bus)", tags) {                                  \
    g_bus = "embedded";                                                      \
    g_pg_prefix.clear();                                                     \
    fn();                                                                    \
  }                                                                          \
  TEST_CASE(name " (kafka bus)", tags "[kafka]") {                           \
    g_bus = "kafka";                                                         \
    g_pg_prefix.clear();                                                     \
    fn();                                                                    \
  }                                                                          \
  TEST_CASE(name " (kafka bus, postgres store)", tags "[kafka][postgres]") { \
    g_bus = "kafka";                                                         \
    g_pg_prefix = ecom::test::unique_schema("e2e") + "_";                    \
    fn();                                                                    \
  }                                                                          \
  static void fn()

LIFECYCLE_TEST(scenario_1,
               "happy path: reserved, confirmed with the payment authorized, stock sold",
               "[e2e][lifecycle]") {
  TempDir dir;
  Ecomd e(dir.path(), args(write_config(dir)));
  auto id = place(e, order_body("tok_visa", {{"SKU-A", 2}, {"SKU-B", 1}}));
  auto order = wait_terminal(e, id);
  CHECK(str(order, "status") == "CONFIRMED");
  CHECK(history(order) == std::vector<std::string>{"PENDING", "STOCK_RESERVED", "CONFIRMED"});
  CHECK(stock_is(e, "SKU-A", 98, 0, 2));
  CHECK(stock_is(e, "SKU-B", 99, 0, 1));
  CHECK(str(parse(e.get("/api/payments/" + id).body), "status") == "AUTHORIZED");
}

LIFECYCLE_TEST(scenario_prices,
               "the catalogue prices every order: a wrong, stale or foreign-currency quote is "
               "never charged",
               "[e2e][lifecycle][prices]") {
  TempDir dir;
  Ecomd e(dir.path(), args(write_config(dir, R"({"step_timeout_ms": 30000})", "{}", R"([
      {"sku":"SKU-A","name":"Plenty","available":100,"unitAmount":1000},
      {"sku":"SKU-B","name":"Also plenty","available":100,"unitAmount":500},
      {"sku":"SKU-1004","name":"Monitor","available":10,"unitAmount":32999,"currency":"EUR"}])")));
  auto body = [](const std::string& currency, const std::string& items,
                 const std::string& extra = "") {
    return R"({"customerId":"c-p","currency":")" + currency + R"(","items":)" + items + extra +
           R"(,"paymentToken":"tok_visa"})";
  };
  auto payment_amount = [&](const std::string& id) -> int64_t {
    auto r = e.get("/api/payments/" + id);
    if (r.status != 200) return -r.status;
    return parse(r.body)["amount"].GetInt64();
  };

  // Without quotes: priced and charged at exactly the catalogue total, lines kept as sold.
  auto id = place(e, body("USD", R"([{"sku":"SKU-A","quantity":2},{"sku":"SKU-B","quantity":1}])"));
  auto order = wait_terminal(e, id);
  REQUIRE(str(order, "status") == "CONFIRMED");
  CHECK(order["totalAmount"].GetInt64() == 2500);
  CHECK(str(order["items"][0], "name") == "Plenty");
  CHECK(order["items"][0]["unitAmount"].GetInt64() == 1000);
  CHECK(order["items"][1]["unitAmount"].GetInt64() == 500);
  CHECK(payment_amount(id) == 2500);

  // The issue's case: SKU-1004 "for 0" in EUR is refused, nothing authorized, no stock taken.
  auto free = wait_terminal(
      e, place(e, body("EUR", R"([{"sku":"SKU-1004","quantity":1,"unitAmount":0}])")));
  CHECK(str(free, "status") == "CANCELLED");
  CHECK(str(free, "reason") == "PRICE_CHANGED");
  CHECK_FALSE(free.HasMember("totalAmount"));
  CHECK(payment_amount(str(free, "orderId")) == -404);

  // A currency other than the product's.
  auto foreign = wait_terminal(e, place(e, body("USD", R"([{"sku":"SKU-1004","quantity":1}])")));
  CHECK(str(foreign, "reason") == "CURRENCY_MISMATCH");
  CHECK(payment_amount(str(foreign, "orderId")) == -404);

  // An unknown currency never gets that far.
  auto xyz = e.post("/api/orders", body("XYZ", R"([{"sku":"SKU-A","quantity":1}])"));
  CHECK(xyz.status == 400);
  CHECK(str(parse(xyz.body)["error"], "field") == "currency");

  // A wrong expected total.
  auto total = wait_terminal(
      e, place(e, body("USD", R"([{"sku":"SKU-A","quantity":1}])", R"(,"expectedTotal":999)")));
  CHECK(str(total, "reason") == "PRICE_CHANGED");

  // A price change between cart and order: the cart saw 500, the admin raised it to 650.
  CHECK(parse(e.get("/api/inventory/SKU-B").body)["unitAmount"].GetInt64() == 500);
  auto put = ecom::test::http_request(e.port(), "PUT", "/api/inventory/SKU-B",
                                      R"({"available":100,"unitAmount":650})",
                                      {{"Authorization", "Bearer t"}});
  REQUIRE(put.status == 200);
  const std::string cart = R"([{"sku":"SKU-B","quantity":2,"unitAmount":500}])";
  auto stale = wait_terminal(e, place(e, body("USD", cart, R"(,"expectedTotal":1000)")));
  CHECK(str(stale, "reason") == "PRICE_CHANGED");
  CHECK(payment_amount(str(stale, "orderId")) == -404);
  // Ordered again at the new price: confirmed and charged the new total.
  auto fresh =
      wait_terminal(e, place(e, body("USD", R"([{"sku":"SKU-B","quantity":2,"unitAmount":650}])",
                                     R"(,"expectedTotal":1300)")));
  CHECK(str(fresh, "status") == "CONFIRMED");
  CHECK(payment_amount(str(fresh, "orderId")) == 1300);

  // Stock moved only for the two confirmed orders.
  CHECK(stock_is(e, "SKU-1004", 10, 0, 0));
  CHECK(stock_is(e, "SKU-A", 98, 0, 2));
  CHECK(stock_is(e, "SKU-B", 98, 0, 3));  // the PUT set 100 after the first order
}

LIFECYCLE_TEST(scenario_2, "unknown sku and short stock cancel with OUT_OF_STOCK, nothing reserved",
               "[e2e][lifecycle]") {
  TempDir dir;
  Ecomd e(dir.path(), args(write_config(dir)));
  auto unknown =
      wait_terminal(e, place(e, order_body("tok_visa", {{"SKU-A", 1}, {"NO-SUCH-SKU", 1}})));
  CHECK(str(unknown, "status") == "CANCELLED");
  CHECK(str(unknown, "reason") == "OUT_OF_STOCK");
  auto short_stock =
      wait_terminal(e, place(e, order_body("tok_visa", {{"SKU-A", 1}, {"SKU-SCARCE", 3}})));
  CHECK(str(short_stock, "status") == "CANCELLED");
  CHECK(str(short_stock, "reason") == "OUT_OF_STOCK");
  CHECK(stock_is(e, "SKU-A", 100, 0, 0));
  CHECK(stock_is(e, "SKU-SCARCE", 2, 0, 0));
}

LIFECYCLE_TEST(scenario_3, "tok_decline cancels with PAYMENT_DECLINED and releases the stock",
               "[e2e][lifecycle]") {
  TempDir dir;
  Ecomd e(dir.path(), args(write_config(dir)));
  auto order = wait_terminal(e, place(e, order_body("tok_decline", {{"SKU-A", 5}})));
  CHECK(str(order, "status") == "CANCELLED");
  CHECK(str(order, "reason") == "PAYMENT_DECLINED");
  CHECK(stock_is(e, "SKU-A", 100, 0, 0));
}

LIFECYCLE_TEST(scenario_4, "tok_timeout cancels with TIMEOUT and releases the stock",
               "[e2e][lifecycle]") {
  TempDir dir;
  Ecomd e(dir.path(), args(write_config(dir, R"({"step_timeout_ms": 1000})")));
  auto id = place(e, order_body("tok_timeout", {{"SKU-A", 3}}));
  auto order = wait_terminal(e, id);
  CHECK(str(order, "status") == "CANCELLED");
  CHECK(str(order, "reason") == "TIMEOUT");
  CHECK(stock_is(e, "SKU-A", 100, 0, 0));
}

LIFECYCLE_TEST(scenario_5, "customer cancel while payment is pending releases stock",
               "[e2e][lifecycle]") {
  TempDir dir;
  Ecomd e(dir.path(), args(write_config(dir)));
  auto id = place(e, order_body("tok_timeout", {{"SKU-A", 4}}));
  REQUIRE(wait_status(e, id, "STOCK_RESERVED"));
  CHECK(stock_is(e, "SKU-A", 96, 4, 0));
  CHECK(e.post("/api/orders/" + id + "/cancel", "").status == 202);
  auto order = wait_terminal(e, id);
  CHECK(str(order, "status") == "CANCELLED");
  CHECK(str(order, "reason") == "CUSTOMER_CANCELLED");
  CHECK(stock_is(e, "SKU-A", 100, 0, 0));
}

LIFECYCLE_TEST(scenario_6, "customer cancel after the payment was authorized refunds it",
               "[e2e][lifecycle]") {
  TempDir dir;
  Ecomd e(dir.path(),
          args(write_config(dir, R"({"step_timeout_ms": 30000})", R"({"latency_ms": 1500})")));
  auto id = place(e, order_body("tok_visa", {{"SKU-A", 1}}));
  REQUIRE(wait_status(e, id, "STOCK_RESERVED"));
  CHECK(e.post("/api/orders/" + id + "/cancel", "").status == 202);
  auto order = wait_terminal(e, id);
  CHECK(str(order, "status") == "CANCELLED");
  CHECK(str(order, "reason") == "CUSTOMER_CANCELLED");
  CHECK(stock_is(e, "SKU-A", 100, 0, 0));
  CHECK(ecom::test::eventually(
      [&] { return str(parse(e.get("/api/payments/" + id).body), "status") == "REFUNDED"; }));
}

LIFECYCLE_TEST(scenario_7, "cancel after CONFIRMED answers 409", "[e2e][lifecycle]") {
  TempDir dir;
  Ecomd e(dir.path(), args(write_config(dir)));
  auto id = place(e, order_body("tok_visa", {{"SKU-B", 1}}));
  REQUIRE(str(wait_terminal(e, id), "status") == "CONFIRMED");
  auto r = e.post("/api/orders/" + id + "/cancel", "");
  CHECK(r.status == 409);
  CHECK_THAT(r.body, Catch::Contains("CONFLICT"));
}

LIFECYCLE_TEST(scenario_8,
               "kill -9 amid 200 in-flight orders: all end terminal, none confirmed twice",
               "[e2e][lifecycle][crash]") {
  TempDir dir;
  auto config = write_config(dir);
  std::vector<std::string> ids;
  {
    Ecomd e(dir.path(), args(config));
    for (int i = 0; i < 200; ++i)
      ids.push_back(place(e, order_body(i % 5 == 0 ? "tok_decline" : "tok_visa",
                                        {{i % 2 ? "SKU-A" : "SKU-B", 1}})));
    e.kill9();
  }
  Ecomd e(dir.path(), args(config));
  int64_t confirmed_a = 0, confirmed_b = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto order = wait_terminal(e, ids[i], std::chrono::seconds(60));
    auto h = history(order);
    CHECK(std::count(h.begin(), h.end(), "CONFIRMED") <= 1);
    CHECK(std::count(h.begin(), h.end(), "CANCELLED") <= 1);
    if (str(order, "status") == "CONFIRMED") (i % 2 ? confirmed_a : confirmed_b) += 1;
    if (i % 5 == 0) CHECK(str(order, "status") == "CANCELLED");
  }
  CHECK(confirmed_a + confirmed_b == 160);
  CHECK(stock_is(e, "SKU-A", 100 - confirmed_a, 0, confirmed_a));
  CHECK(stock_is(e, "SKU-B", 100 - confirmed_b, 0, confirmed_b));
}

LIFECYCLE_TEST(scenario_9, "2000 orders from 8 clients on scarce stock keep the stock invariant",
               "[e2e][lifecycle][concurrency]") {
  TempDir dir;
  const std::map<std::string, int64_t> initial = {{"S1", 150}, {"S2", 100}, {"S3", 60}};
  auto config = write_config(dir, R"({"step_timeout_ms": 30000})", "{}", R"([
      {"sku":"S1","name":"one","available":150,"unitAmount":100},
      {"sku":"S2","name":"two","available":100,"unitAmount":100},
      {"sku":"S3","name":"three","available":60,"unitAmount":100}])");
  Ecomd e(dir.path(), args(config));

  struct Placed {
    std::string id;
    std::map<std::string, int64_t> lines;
  };
  std::vector<std::vector<Placed>> per_client(8);
  std::vector<std::thread> clients;
  std::atomic<int> failures{0};
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 rng(1000 + c);
      for (int i = 0; i < 250; ++i) {
        std::map<std::string, int64_t> lines;
        int n = 1 + static_cast<int>(rng() % 2);
        for (int k = 0; k < n; ++k) lines["S" + std::to_string(1 + rng() % 3)] += 1 + rng() % 3;
        std::vector<std::pair<std::string, int>> v(lines.begin(), lines.end());
        auto r = e.post("/api/orders", order_body(rng() % 10 == 0 ? "tok_decline" : "tok_visa", v,
                                                  "c-" + std::to_string(c)));
        if (r.status != 202) {
          ++failures;
          continue;
        }
        per_client[c].push_back({str(parse(r.body), "orderId"), lines});
      }
    });
  }
  for (auto& t : clients) t.join();
  REQUIRE(failures == 0);

  std::map<std::string, int64_t> sold_by_orders;
  int confirmed = 0, cancelled = 0;
  for (const auto& placed : per_client) {
    for (const auto& p : placed) {
      auto order = wait_terminal(e, p.id, std::chrono::seconds(120));
      if (str(order, "status") == "CONFIRMED") {
        ++confirmed;
        for (const auto& [sku, q] : p.lines) sold_by_orders[sku] += q;
      } else {
        ++cancelled;
      }
    }
  }
  CHECK(confirmed + cancelled == 2000);
  CHECK(confirmed > 0);
  CHECK(cancelled > 0);
  for (const auto& [sku, init] : initial) {
    INFO("sku " << sku);
    REQUIRE(ecom::test::eventually([&] { return stock(e, sku).reserved == 0; },
                                   std::chrono::seconds(30)));
    auto s = stock(e, sku);
    CHECK(s.available >= 0);
    CHECK(init == s.available + s.reserved + s.sold);
    CHECK(s.sold == sold_by_orders[sku]);
  }
}

LIFECYCLE_TEST(scenario_10, "GET ?wait= long-polls until the order is terminal or the wait ends",
               "[e2e][lifecycle]") {
  TempDir dir;
  Ecomd e(dir.path(), args(write_config(dir)));
  auto id = place(e, order_body("tok_visa", {{"SKU-A", 1}}));
  auto r = e.get("/api/orders/" + id + "?wait=10s");
  REQUIRE(r.status == 200);
  CHECK(str(parse(r.body), "status") == "CONFIRMED");

  // A payment that never answers: the wait ends with the current, non-terminal status.
  auto stuck = place(e, order_body("tok_timeout", {{"SKU-A", 1}}));
  auto started = std::chrono::steady_clock::now();
  auto waited = e.get("/api/orders/" + stuck + "?wait=700ms");
  auto elapsed = std::chrono::steady_clock::now() - started;
  REQUIRE(waited.status == 200);
  CHECK_FALSE(terminal(str(parse(waited.body), "status")));
  CHECK(elapsed >= std::chrono::milliseconds(600));
  CHECK(e.get("/api/orders/" + id + "?wait=forever").status == 400);
  CHECK(e.get("/api/orders/nope?wait=1s").status == 404);
}

LIFECYCLE_TEST(scenario_catalogue,
               "an admin adds and deletes a product: it sells, then cannot be ordered, and the "
               "sold order keeps it",
               "[e2e][lifecycle]") {
  TempDir dir;
  Ecomd e(dir.path(), args(write_config(dir)));
  auto admin = [&](const std::string& method, const std::string& target, const std::string& body,
                   const std::string& token = "t") {
    return ecom::test::http_request(e.port(), method, target, body,
                                    {{"Authorization", "Bearer " + token}});
  };
  const std::string gadget =
      R"({"sku":"SKU-NEW","name":"Gadget","unitAmount":1234,"currency":"USD","available":10})";
  CHECK(admin("POST", "/api/inventory", gadget, "wrong").status == 401);
  REQUIRE(admin("POST", "/api/inventory", gadget).status == 201);
  CHECK(admin("POST", "/api/inventory", gadget).status == 409);

  auto sold = wait_terminal(e, place(e, order_body("tok_visa", {{"SKU-NEW", 2}})));
  REQUIRE(str(sold, "status") == "CONFIRMED");
  CHECK(stock_is(e, "SKU-NEW", 8, 0, 2));

  CHECK(admin("DELETE", "/api/inventory/SKU-NEW", "", "wrong").status == 401);
  REQUIRE(admin("DELETE", "/api/inventory/SKU-NEW", "").status == 204);
  CHECK(e.get("/api/inventory/SKU-NEW").status == 404);
  auto catalogue = parse(e.get("/api/inventory").body);
  for (const auto& p : catalogue["items"].GetArray()) CHECK(str(p, "sku") != "SKU-NEW");

  // Off sale: refused as an unknown sku would be, nothing reserved from the other line.
  auto refused = wait_terminal(e, place(e, order_body("tok_visa", {{"SKU-A", 1}, {"SKU-NEW", 1}})));
  CHECK(str(refused, "status") == "CANCELLED");
  CHECK(str(refused, "reason") == "OUT_OF_STOCK");
  CHECK(stock_is(e, "SKU-A", 100, 0, 0));

  // The sold order still shows the product as sold, and the listing finds both by status.
  auto again = parse(e.get("/api/orders/" + str(sold, "orderId")).body);
  REQUIRE(again["items"].Size() == 1);
  CHECK(str(again["items"][0], "name") == "Gadget");
  CHECK(again["items"][0]["unitAmount"].GetInt64() == 1234);
  CHECK(again["totalAmount"].GetInt64() == 2468);
  auto confirmed = parse(e.get("/api/orders?status=CONFIRMED&customerId=c-1").body);
  REQUIRE(confirmed["orders"].Size() == 1);
  CHECK(str(confirmed["orders"][0], "orderId") == str(sold, "orderId"));
  auto first = parse(e.get("/api/orders?status=CONFIRMED,CANCELLED&limit=1").body);
  REQUIRE(first["orders"].Size() == 1);
  CHECK(str(first["orders"][0], "orderId") == str(refused, "orderId"));  // newest first
  auto second = parse(
      e.get("/api/orders?status=CONFIRMED,CANCELLED&limit=1&cursor=" + str(first, "nextCursor"))
          .body);
  REQUIRE(second["orders"].Size() == 1);
  CHECK(str(second["orders"][0], "orderId") == str(sold, "orderId"));
  CHECK_FALSE(second.HasMember("nextCursor"));
  CHECK(e.get("/api/orders?offset=1").status == 400);
}
