// Business-logic tests: the inventory service against a real SQLite store on a temp file.

#include "inventory_service.hpp"

#include <rapidjson/document.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ecom/core/config.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "support/test_support.hpp"

using namespace ecom;
using namespace ecom::inventory;

namespace {

struct Emitted {
  std::string topic;
  Envelope envelope;
  rapidjson::Document data;
};

class Store {
 public:
  explicit Store(std::vector<Product> seed = default_seed()) {
    auto opened = db::Database::open(dir_.file("inventory.db"));
    REQUIRE(opened.ok());
    db_ = std::move(opened).value();
    REQUIRE(db::migrate_messaging(*db_).ok());
    REQUIRE(db_->migrate("inventory", migrations()).ok());
    auto seeded =
        db_->transaction([&](db::Tx& tx) -> Result<int64_t> { return seed_if_empty(tx, seed); });
    REQUIRE(seeded.ok());
  }

  static std::vector<Product> default_seed() {
    return {product("SKU-A", 10), product("SKU-B", 5), product("SKU-C", 3)};
  }
  static Product product(std::string sku, int64_t available) {
    Product p;
    p.sku = std::move(sku);
    p.name = "Product " + p.sku;
    p.available = available;
    p.unit_amount = 1000;
    return p;
  }

  db::Database& db() { return *db_; }

  Product get(const std::string& sku) {
    auto p = db_->read(
        [&](db::Tx& tx) -> Result<std::optional<Product>> { return find_product(tx, sku); });
    REQUIRE(p.ok());
    REQUIRE(p.value().has_value());
    return *p.value();
  }

  ReserveResult reserve(const std::string& order_id, std::vector<Line> items) {
    return reserve(ReserveCommand{order_id, std::move(items), "USD", {}, {}});
  }
  ReserveResult reserve(const ReserveCommand& cmd) {
    const std::string& order_id = cmd.order_id;
    Envelope cause = make_event("saga", event_types::kReserveStock, order_id, "{}");
    auto r = db_->transaction(
        [&](db::Tx& tx) -> Result<ReserveResult> { return reserve_stock(tx, rules, cmd, cause); });
    REQUIRE(r.ok());
    return r.value();
  }

  std::vector<Line> release(const std::string& order_id) {
    Envelope cause = make_event("saga", event_types::kReleaseStock, order_id, "{}");
    auto r = db_->transaction([&](db::Tx& tx) -> Result<std::vector<Line>> {
      return release_stock(tx, rules, order_id, cause);
    });
    REQUIRE(r.ok());
    return r.value();
  }

  std::vector<Line> commit(const std::string& order_id) {
    Envelope cause = make_event("saga", event_types::kCommitStock, order_id, "{}");
    auto r = db_->transaction([&](db::Tx& tx) -> Result<std::vector<Line>> {
      return commit_stock(tx, rules, order_id, cause);
    });
    REQUIRE(r.ok());
    return r.value();
  }

  /// Takes (and removes) everything queued in the outbox so far.
  std::vector<Emitted> take_events() {
    auto rows = db_->transaction([&](db::Tx& tx) -> Result<std::vector<db::OutboxRow>> {
      auto rows = db::outbox_peek(tx, 100000);
      if (!rows.empty()) db::outbox_remove_through(tx, rows.back().seq);
      return rows;
    });
    REQUIRE(rows.ok());
    std::vector<Emitted> out;
    for (const auto& row : rows.value()) {
      auto env = decode_envelope(row.payload);
      REQUIRE(env.ok());
      CHECK(row.key == env->subject);
      Emitted e{row.topic, env.value(), {}};
      e.data.Parse(e.envelope.data.c_str());
      REQUIRE(e.data.IsObject());
      out.push_back(std::move(e));
    }
    return out;
  }

  Rules rules;

 private:
  test::TempDir dir_;
  std::unique_ptr<db::Database> db_;
};

std::vector<const Emitted*> of_type(const std::vector<Emitted>& events, std::string_view type) {
  std::vector<const Emitted*> out;
  for (const auto& e : events) {
    if (e.envelope.type == type) out.push_back(&e);
  }
  return out;
}

std::vector<std::string> strings(const rapidjson::Value& v) {
  std::vector<std::string> out;
  for (const auto& s : v.GetArray()) out.emplace_back(s.GetString());
  return out;
}

std::vector<Line> lines(const rapidjson::Value& v) {
  std::vector<Line> out;
  for (const auto& l : v.GetArray())
    out.push_back(Line{l["sku"].GetString(), l["quantity"].GetInt64()});
  return out;
}

}  // namespace

TEST_CASE("reservation is all or nothing", "[inventory]") {
  Store s;
  auto r = s.reserve("o-1", {{"SKU-A", 4}, {"SKU-B", 6}, {"SKU-C", 1}});
  CHECK_FALSE(r.reserved);
  CHECK(r.reason == "OUT_OF_STOCK");
  CHECK(r.skus == std::vector<std::string>{"SKU-B"});

  // The lines that did fit were not taken either.
  CHECK(s.get("SKU-A").available == 10);
  CHECK(s.get("SKU-A").reserved == 0);
  CHECK(s.get("SKU-C").available == 3);
  CHECK(s.get("SKU-C").reserved == 0);

  auto events = s.take_events();
  REQUIRE(events.size() == 1);  // no inventory.updated: nothing changed
  CHECK(events[0].topic == topics::kInventoryEvents);
  CHECK(events[0].envelope.type == event_types::kStockReservationFailed);
  CHECK(events[0].envelope.subject == "o-1");
  CHECK(std::string(events[0].data["orderId"].GetString()) == "o-1");
  CHECK(std::string(events[0].data["reason"].GetString()) == "OUT_OF_STOCK");
  CHECK(strings(events[0].data["skus"]) == std::vector<std::string>{"SKU-B"});

  // A fitting order still succeeds afterwards: nothing was left half-held.
  auto ok = s.reserve("o-2", {{"SKU-A", 10}, {"SKU-B", 5}, {"SKU-C", 3}});
  CHECK(ok.reserved);
}

TEST_CASE("short stock lists every short sku", "[inventory]") {
  Store s;
  auto r = s.reserve("o-1", {{"SKU-A", 11}, {"SKU-B", 5}, {"SKU-C", 4}});
  CHECK_FALSE(r.reserved);
  CHECK(r.reason == "OUT_OF_STOCK");
  CHECK(r.skus == std::vector<std::string>{"SKU-A", "SKU-C"});
  CHECK(s.get("SKU-B").available == 5);
}

TEST_CASE("unknown skus fail the reservation and are listed", "[inventory]") {
  Store s;
  auto r = s.reserve("o-1", {{"SKU-A", 1}, {"NOPE-1", 1}, {"SKU-B", 99}, {"NOPE-2", 2}});
  CHECK_FALSE(r.reserved);
  CHECK(r.reason == "UNKNOWN_SKU");
  CHECK(r.skus == std::vector<std::string>{"NOPE-1", "NOPE-2"});
  CHECK(s.get("SKU-A").available == 10);
  auto events = s.take_events();
  REQUIRE(events.size() == 1);
  CHECK(std::string(events[0].data["reason"].GetString()) == "UNKNOWN_SKU");
  CHECK(strings(events[0].data["skus"]) == std::vector<std::string>{"NOPE-1", "NOPE-2"});
}

TEST_CASE("a successful reservation moves stock and reports every changed sku", "[inventory]") {
  Store s;
  auto r = s.reserve("o-1", {{"SKU-A", 3}, {"SKU-B", 1}});
  REQUIRE(r.reserved);
  CHECK(r.items == std::vector<Line>{{"SKU-A", 3}, {"SKU-B", 1}});
  CHECK(s.get("SKU-A").available == 7);
  CHECK(s.get("SKU-A").reserved == 3);
  CHECK(s.get("SKU-B").available == 4);
  CHECK(s.get("SKU-B").reserved == 1);

  auto events = s.take_events();
  auto reserved = of_type(events, event_types::kStockReserved);
  REQUIRE(reserved.size() == 1);
  CHECK(reserved[0]->topic == topics::kInventoryEvents);
  CHECK(lines(reserved[0]->data["items"]) == std::vector<Line>{{"SKU-A", 3}, {"SKU-B", 1}});

  auto updated = of_type(events, event_types::kInventoryUpdated);
  REQUIRE(updated.size() == 2);
  for (const auto* u : updated) {
    CHECK(u->topic == topics::kInventoryUpdated);
    CHECK(u->envelope.subject == u->data["sku"].GetString());  // keyed by sku
    CHECK(std::string(u->data["orderId"].GetString()) == "o-1");
  }
  CHECK(std::string(updated[0]->data["sku"].GetString()) == "SKU-A");
  CHECK(updated[0]->data["delta"].GetInt64() == -3);
  CHECK(updated[0]->data["available"].GetInt64() == 7);
  CHECK(updated[0]->data["reserved"].GetInt64() == 3);
  CHECK(updated[1]->data["delta"].GetInt64() == -1);
}

TEST_CASE("a batch of orders makes one inventory.updated per sku, with the changes summed",
          "[inventory][batch]") {
  // As the bus runs a fetched run of commands: one batch, each command a unit of it.
  Store s;
  auto st = s.db().batch([&] {
    REQUIRE(s.reserve("o-1", {{"SKU-A", 2}, {"SKU-B", 1}}).reserved);
    REQUIRE(s.reserve("o-2", {{"SKU-A", 3}}).reserved);
    CHECK_FALSE(s.reserve("o-3", {{"SKU-A", 1}, {"SKU-C", 99}}).reserved);  // changes nothing
    s.commit("o-1");  // reserved → sold: available stays, reserved falls
  });
  REQUIRE(st.ok());
  auto events = s.take_events();
  CHECK(of_type(events, event_types::kStockReserved).size() == 2);
  auto updated = of_type(events, event_types::kInventoryUpdated);
  REQUIRE(updated.size() == 2);
  const auto& a = updated[0]->data;
  CHECK(std::string(a["sku"].GetString()) == "SKU-A");
  CHECK(a["delta"].GetInt64() == -5);
  CHECK(a["available"].GetInt64() == 5);
  CHECK(a["reserved"].GetInt64() == 3);  // o-1's 2 were sold
  CHECK_FALSE(a.HasMember("orderId"));   // two orders changed it
  const auto& b = updated[1]->data;
  CHECK(std::string(b["sku"].GetString()) == "SKU-B");
  CHECK(b["delta"].GetInt64() == -1);
  CHECK(b["available"].GetInt64() == 4);
  CHECK(b["reserved"].GetInt64() == 0);
  CHECK(std::string(b["orderId"].GetString()) == "o-1");  // one order: it is named
  CHECK(s.get("SKU-A").available == 5);
}

TEST_CASE("the reservation prices every line from the catalogue", "[inventory]") {
  Store s;  // every product at 1000 USD
  auto r = s.reserve("o-1", {{"SKU-A", 3}, {"SKU-B", 1}});
  REQUIRE(r.reserved);
  CHECK(r.total_amount == 4000);
  auto events = s.take_events();
  auto reserved = of_type(events, event_types::kStockReserved);
  REQUIRE(reserved.size() == 1);
  const auto& d = reserved[0]->data;
  CHECK(d["totalAmount"].GetInt64() == 4000);
  CHECK(std::string(d["currency"].GetString()) == "USD");
  REQUIRE(d["items"].Size() == 2);
  CHECK(std::string(d["items"][0]["name"].GetString()) == "Product SKU-A");
  CHECK(d["items"][0]["unitAmount"].GetInt64() == 1000);
  CHECK(d["items"][1]["quantity"].GetInt64() == 1);
  // Each reservation line keeps the price it was sold at.
  auto prices = s.db().read([](db::Tx& tx) -> Result<int64_t> {
    auto q = tx.stmt("SELECT SUM(unit_amount * quantity) FROM reservations WHERE order_id = 'o-1'");
    return q.step() ? q.col_int(0) : -1;
  });
  CHECK(prices.value() == 4000);
  // A replay of the same order answers with the same pricing, even after a price change.
  REQUIRE(s.db()
              .transaction([](db::Tx& tx) -> Status {
                tx.exec("UPDATE products SET unit_amount = 5 WHERE sku = 'SKU-A'");
                return {};
              })
              .ok());
  auto again = s.reserve("o-1", {{"SKU-A", 3}, {"SKU-B", 1}});
  CHECK(again.repeated);
  CHECK(again.total_amount == 4000);
}

TEST_CASE("a quote that differs from the catalogue refuses the order: PRICE_CHANGED",
          "[inventory]") {
  Store s;
  auto cmd = [](std::vector<Quote> quotes, std::optional<int64_t> expected) {
    return ReserveCommand{"o-1", {{"SKU-A", 2}, {"SKU-B", 1}}, "USD", std::move(quotes), expected};
  };
  SECTION("a unit price of 0 (SKU-1004 'for free')") {
    auto r = s.reserve(cmd({{"SKU-A", 1000}, {"SKU-B", 0}}, std::nullopt));
    CHECK_FALSE(r.reserved);
    CHECK(r.reason == "PRICE_CHANGED");
    CHECK(r.skus == std::vector<std::string>{"SKU-B"});
  }
  SECTION("a stale price from the cart") {
    auto r = s.reserve(cmd({{"SKU-A", 999}}, std::nullopt));
    CHECK(r.reason == "PRICE_CHANGED");
    CHECK(r.skus == std::vector<std::string>{"SKU-A"});
  }
  SECTION("an expected total that differs") {
    auto r = s.reserve(cmd({}, 2999));
    CHECK(r.reason == "PRICE_CHANGED");
    CHECK(r.skus == std::vector<std::string>{"SKU-A", "SKU-B"});
  }
  SECTION("quotes and total that match are reserved") {
    auto r = s.reserve(cmd({{"SKU-A", 1000}, {"SKU-B", 1000}}, 3000));
    CHECK(r.reserved);
    CHECK(r.total_amount == 3000);
    return;
  }
  // Refused: nothing taken, the failure recorded and replayed.
  CHECK(s.get("SKU-A").available == 10);
  CHECK(s.get("SKU-B").reserved == 0);
  auto events = s.take_events();
  auto failed = of_type(events, event_types::kStockReservationFailed);
  REQUIRE(failed.size() == 1);
  CHECK(std::string(failed[0]->data["reason"].GetString()) == "PRICE_CHANGED");
  CHECK(of_type(events, event_types::kInventoryUpdated).empty());
}

TEST_CASE("an order in another currency than the product's is refused: CURRENCY_MISMATCH",
          "[inventory]") {
  Store s;
  auto r = s.reserve(ReserveCommand{"o-1", {{"SKU-A", 1}, {"SKU-B", 1}}, "EUR", {}, {}});
  CHECK_FALSE(r.reserved);
  CHECK(r.reason == "CURRENCY_MISMATCH");
  CHECK(r.skus == std::vector<std::string>{"SKU-A", "SKU-B"});
  CHECK(s.get("SKU-A").available == 10);
}

TEST_CASE("a total beyond 64 bits is refused, not wrapped", "[inventory]") {
  Product huge = Store::product("SKU-H", 1'000'000'000);
  huge.unit_amount = 1'000'000'000'000;
  Store s({huge});
  auto r = s.reserve("o-1", {{"SKU-H", 999'999'999}});
  CHECK_FALSE(r.reserved);
  CHECK(r.reason == "AMOUNT_LIMIT_EXCEEDED");
  CHECK(s.get("SKU-H").available == 1'000'000'000);
}

TEST_CASE("duplicate sku lines in one order are summed", "[inventory]") {
  auto cmd = parse_reserve_stock(
      R"({"orderId":"o-1","currency":"USD","items":[{"sku":"SKU-A","quantity":2},)"
      R"({"sku":"SKU-B","quantity":1},)"
      R"({"sku":"SKU-A","quantity":9}]})");
  REQUIRE(cmd.ok());
  CHECK(cmd->items == std::vector<Line>{{"SKU-A", 11}, {"SKU-B", 1}});

  Store s;
  auto r = s.reserve(cmd->order_id, cmd->items);
  CHECK_FALSE(r.reserved);  // 11 of SKU-A do not fit in 10, although each line alone would
  CHECK(r.skus == std::vector<std::string>{"SKU-A"});
}

TEST_CASE("malformed ReserveStock payloads are rejected with the field", "[inventory]") {
  struct Case {
    const char* json;
    const char* field;
  };
  const Case cases[] = {
      {R"([1,2])", "data"},
      {R"({"items":[{"sku":"A","quantity":1}]})", "orderId"},
      {R"({"orderId":"","items":[{"sku":"A","quantity":1}]})", "orderId"},
      {R"({"orderId":7,"items":[{"sku":"A","quantity":1}]})", "orderId"},
      {R"({"orderId":"o","currency":"USD"})", "items"},
      {R"({"orderId":"o","currency":"USD","items":[]})", "items"},
      {R"({"orderId":"o","currency":"USD","items":{"sku":"A"}})", "items"},
      {R"({"orderId":"o","currency":"USD","items":[5]})", "items[0]"},
      {R"({"orderId":"o","currency":"USD","items":[{"quantity":1}]})", "items[0].sku"},
      {R"({"orderId":"o","currency":"USD","items":[{"sku":"A","quantity":1},{"sku":"B","quantity":0}]})",
       "items[1].quantity"},
      {R"({"orderId":"o","currency":"USD","items":[{"sku":"A","quantity":"2"}]})",
       "items[0].quantity"},
      {R"({"orderId":"o","currency":"USD","items":[{"sku":"A","quantity":1.5}]})",
       "items[0].quantity"},
      {R"({"orderId":"o","currency":"USD","items":[{"sku":"A","quantity":-1}]})",
       "items[0].quantity"},
      {R"({"orderId":"o","items":[{"sku":"A","quantity":1}]})", "currency"},
      {R"({"orderId":"o","currency":"USD","items":[{"sku":"A","quantity":1,"unitAmount":-5}]})",
       "items[0].unitAmount"},
      {R"({"orderId":"o","currency":"USD","expectedTotal":1.5,"items":[{"sku":"A","quantity":1}]})",
       "expectedTotal"},
  };
  for (const auto& c : cases) {
    INFO(c.json);
    auto r = parse_reserve_stock(c.json);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ecom::ErrorCode::kInvalidPayload);
    CHECK(r.error().field == c.field);
  }
  CHECK_FALSE(parse_order_ref(R"({"order":"x"})").ok());
  CHECK(parse_order_ref(R"({"orderId":"o-9"})").value() == "o-9");
}

TEST_CASE("ReserveStock is idempotent per order", "[inventory]") {
  Store s;
  SECTION("a repeated success replays StockReserved without taking more") {
    auto first = s.reserve("o-1", {{"SKU-A", 4}});
    REQUIRE(first.reserved);
    s.take_events();
    // A different event id for the same order (e.g. the saga resending after a restart).
    auto again = s.reserve("o-1", {{"SKU-A", 4}});
    CHECK(again.reserved);
    CHECK(again.repeated);
    CHECK(again.items == first.items);
    CHECK(s.get("SKU-A").available == 6);
    CHECK(s.get("SKU-A").reserved == 4);
    auto events = s.take_events();
    REQUIRE(events.size() == 1);  // the reply again, no inventory.updated
    CHECK(events[0].envelope.type == event_types::kStockReserved);
    CHECK(lines(events[0].data["items"]) == std::vector<Line>{{"SKU-A", 4}});
  }
  SECTION("a repeated failure replays the failure even when stock has appeared since") {
    auto first = s.reserve("o-1", {{"SKU-C", 4}});
    REQUIRE_FALSE(first.reserved);
    auto update = s.db().transaction([&](db::Tx& tx) -> Result<Product> {
      return update_product(tx, s.rules, ProductUpdate{"SKU-C", 50, {}, {}, {}});
    });
    REQUIRE(update.ok());
    s.take_events();
    auto again = s.reserve("o-1", {{"SKU-C", 4}});
    CHECK_FALSE(again.reserved);
    CHECK(again.repeated);
    CHECK(again.reason == "OUT_OF_STOCK");
    CHECK(again.skus == std::vector<std::string>{"SKU-C"});
    CHECK(s.get("SKU-C").available == 50);
    auto events = s.take_events();
    REQUIRE(events.size() == 1);
    CHECK(events[0].envelope.type == event_types::kStockReservationFailed);
  }
  SECTION("a reserve after a release does not reserve again") {
    REQUIRE(s.reserve("o-1", {{"SKU-A", 4}}).reserved);
    CHECK(s.release("o-1").size() == 1);
    auto again = s.reserve("o-1", {{"SKU-A", 4}});
    CHECK(again.repeated);
    CHECK(s.get("SKU-A").available == 10);
    CHECK(s.get("SKU-A").reserved == 0);
  }
}

TEST_CASE("release returns exactly what the order holds, once", "[inventory]") {
  Store s;
  REQUIRE(s.reserve("o-1", {{"SKU-B", 2}, {"SKU-A", 3}}).reserved);
  REQUIRE(s.reserve("o-2", {{"SKU-A", 1}}).reserved);
  s.take_events();

  auto released = s.release("o-1");
  CHECK(released == std::vector<Line>{{"SKU-A", 3}, {"SKU-B", 2}});
  CHECK(s.get("SKU-A").available == 9);  // o-2 still holds one
  CHECK(s.get("SKU-A").reserved == 1);
  CHECK(s.get("SKU-B").available == 5);
  CHECK(s.get("SKU-B").reserved == 0);

  auto events = s.take_events();
  auto reply = of_type(events, event_types::kStockReleased);
  REQUIRE(reply.size() == 1);
  CHECK(reply[0]->topic == topics::kInventoryEvents);
  CHECK(lines(reply[0]->data["items"]) == released);
  auto updated = of_type(events, event_types::kInventoryUpdated);
  REQUIRE(updated.size() == 2);
  CHECK(updated[0]->data["delta"].GetInt64() == 3);
  CHECK(updated[1]->data["delta"].GetInt64() == 2);

  SECTION("a repeat releases nothing") {
    CHECK(s.release("o-1").empty());
    CHECK(s.get("SKU-A").available == 9);
    auto again = s.take_events();
    REQUIRE(again.size() == 1);
    CHECK(again[0].envelope.type == event_types::kStockReleased);
    CHECK(again[0].data["items"].GetArray().Empty());
  }
  SECTION("an order that never reserved releases nothing") {
    CHECK(s.release("o-unknown").empty());
    CHECK(s.get("SKU-A").available == 9);
  }
}

TEST_CASE("commit turns a reservation into a sale, once", "[inventory]") {
  Store s;
  REQUIRE(s.reserve("o-1", {{"SKU-A", 3}}).reserved);
  s.take_events();
  auto committed = s.commit("o-1");
  CHECK(committed == std::vector<Line>{{"SKU-A", 3}});
  auto a = s.get("SKU-A");
  CHECK(a.available == 7);
  CHECK(a.reserved == 0);
  CHECK(a.sold == 3);
  auto events = s.take_events();
  CHECK(of_type(events, event_types::kStockCommitted).empty());  // no reply: the saga is done

  CHECK(s.commit("o-1").empty());   // repeat
  CHECK(s.release("o-1").empty());  // release after commit is a no-op
  a = s.get("SKU-A");
  CHECK(a.available == 7);
  CHECK(a.reserved == 0);
  CHECK(a.sold == 3);
  CHECK(s.commit("o-never").empty());
}

TEST_CASE("stock level alerts fire when the threshold is crossed", "[inventory]") {
  Store s({Store::product("SKU-T", 8)});
  s.rules.low_stock_threshold = 5;
  auto alerts = [&] {
    std::vector<std::string> out;
    for (const auto& e : s.take_events()) {
      if (e.topic != topics::kInventoryAlerts) continue;
      CHECK(e.envelope.subject == "SKU-T");
      CHECK(e.data["threshold"].GetInt64() == 5);
      out.push_back(e.envelope.type + "@" + std::to_string(e.data["available"].GetInt64()));
    }
    return out;
  };
  const std::string low(event_types::kStockLevelLow);
  const std::string depleted(event_types::kStockDepleted);
  const std::string normal(event_types::kStockLevelNormalized);

  REQUIRE(s.reserve("o-1", {{"SKU-T", 2}}).reserved);  // 8 -> 6: still above
  CHECK(alerts().empty());
  REQUIRE(s.reserve("o-2", {{"SKU-T", 1}}).reserved);  // 6 -> 5: low
  CHECK(alerts() == std::vector<std::string>{low + "@5"});
  REQUIRE(s.reserve("o-3", {{"SKU-T", 1}}).reserved);  // 5 -> 4: already low
  CHECK(alerts().empty());
  REQUIRE(s.reserve("o-4", {{"SKU-T", 4}}).reserved);  // 4 -> 0: depleted
  CHECK(alerts() == std::vector<std::string>{depleted + "@0"});
  REQUIRE_FALSE(s.reserve("o-5", {{"SKU-T", 1}}).reserved);
  CHECK(alerts().empty());
  CHECK(s.release("o-3").size() == 1);  // 0 -> 1: still at or below the threshold
  CHECK(alerts().empty());
  CHECK(s.release("o-4").size() == 1);  // 1 -> 5
  CHECK(alerts().empty());
  CHECK(s.release("o-1").size() == 1);  // 5 -> 7: back to normal
  CHECK(alerts() == std::vector<std::string>{normal + "@7"});

  SECTION("a drop from above the threshold straight to zero is depleted only") {
    REQUIRE(s.reserve("o-6", {{"SKU-T", 7}}).reserved);
    CHECK(alerts() == std::vector<std::string>{depleted + "@0"});
  }
  SECTION("an admin change crosses the threshold too") {
    auto put = [&](int64_t available) {
      auto r = s.db().transaction([&](db::Tx& tx) -> Result<Product> {
        return update_product(tx, s.rules, ProductUpdate{"SKU-T", available, {}, {}, {}});
      });
      REQUIRE(r.ok());
    };
    put(3);
    CHECK(alerts() == std::vector<std::string>{low + "@3"});
    put(0);
    CHECK(alerts() == std::vector<std::string>{depleted + "@0"});
    put(20);
    CHECK(alerts() == std::vector<std::string>{normal + "@20"});
  }
}

TEST_CASE("update_product changes only the fields it carries and validates", "[inventory]") {
  Store s;
  auto put = [&](ProductUpdate u) {
    return s.db().transaction(
        [&](db::Tx& tx) -> Result<Product> { return update_product(tx, s.rules, u); });
  };
  REQUIRE(s.reserve("o-1", {{"SKU-A", 2}}).reserved);
  s.take_events();

  auto updated = put(ProductUpdate{"SKU-A", 20, std::string("Renamed"), 1500, std::string("EUR")});
  REQUIRE(updated.ok());
  CHECK(updated->available == 20);
  CHECK(updated->reserved == 2);  // reservations are untouched
  CHECK(updated->name == "Renamed");
  CHECK(updated->unit_amount == 1500);
  CHECK(updated->currency == "EUR");
  auto events = s.take_events();
  auto u = of_type(events, event_types::kInventoryUpdated);
  REQUIRE(u.size() == 1);
  CHECK(u[0]->data["delta"].GetInt64() == 12);
  CHECK(u[0]->data["available"].GetInt64() == 20);
  CHECK_FALSE(u[0]->data.HasMember("orderId"));
  // The catalogue fields travel with an admin change, so live views follow a rename.
  CHECK(std::string(u[0]->data["name"].GetString()) == "Renamed");
  CHECK(u[0]->data["unitAmount"].GetInt64() == 1500);
  CHECK(std::string(u[0]->data["currency"].GetString()) == "EUR");
  CHECK_FALSE(u[0]->data.HasMember("deleted"));

  // A price alone: the stock and the name stay.
  auto priced = put(ProductUpdate{"SKU-A", {}, {}, 1700, {}});
  REQUIRE(priced.ok());
  CHECK(priced->available == 20);
  CHECK(priced->name == "Renamed");
  CHECK(s.get("SKU-A").unit_amount == 1700);
  events = s.take_events();
  REQUIRE(of_type(events, event_types::kInventoryUpdated).size() == 1);
  CHECK(of_type(events, event_types::kInventoryUpdated)[0]->data["delta"].GetInt64() == 0);

  auto unknown = put(ProductUpdate{"SKU-NEW", 4, std::string("New thing"), {}, {}});
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().code == ecom::ErrorCode::kNotFound);  // POST creates, PUT does not

  CHECK(put(ProductUpdate{"SKU-A", -1, {}, {}, {}}).error().field == "available");
  CHECK(put(ProductUpdate{"SKU-A", 1, {}, {}, std::string("usd")}).error().field == "currency");
  CHECK(put(ProductUpdate{"SKU-A", 1, {}, -5, {}}).error().field == "unitAmount");
  CHECK(put(ProductUpdate{"SKU-A", 1, std::string(""), {}, {}}).error().field == "name");
  CHECK(put(ProductUpdate{"bad sku!", 1, std::string("x"), {}, {}}).error().field == "sku");
  CHECK(s.get("SKU-A").available == 20);
}

TEST_CASE("create_product adds to the catalogue, never over a taken sku", "[inventory]") {
  Store s;
  auto create = [&](NewProduct n) {
    return s.db().transaction([&](db::Tx& tx) -> Result<Product> { return create_product(tx, n); });
  };
  auto created = create(NewProduct{"SKU-NEW", "New thing", 250, "GBP", 4});
  REQUIRE(created.ok());
  CHECK(s.get("SKU-NEW").available == 4);
  CHECK(s.get("SKU-NEW").currency == "GBP");
  auto events = s.take_events();
  REQUIRE(events.size() == 1);  // no alert for a new product
  CHECK(events[0].envelope.type == event_types::kInventoryUpdated);
  CHECK(events[0].data["delta"].GetInt64() == 4);
  CHECK(std::string(events[0].data["name"].GetString()) == "New thing");
  CHECK(events[0].data["unitAmount"].GetInt64() == 250);

  auto again = create(NewProduct{"SKU-A", "Other", 1, "USD", 0});
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == ecom::ErrorCode::kConflict);
  CHECK(s.get("SKU-A").name == "Product SKU-A");

  CHECK(create(NewProduct{"bad sku!", "x", 1, "USD", 0}).error().field == "sku");
  CHECK(create(NewProduct{"SKU-X", "", 1, "USD", 0}).error().field == "name");
  CHECK(create(NewProduct{"SKU-X", "x", 1, "XYZ", 0}).error().field == "currency");
  CHECK(create(NewProduct{"SKU-X", "x", -1, "USD", 0}).error().field == "unitAmount");
  CHECK(create(NewProduct{"SKU-X", "x", 1, "USD", -1}).error().field == "available");
}

TEST_CASE("a deleted product leaves the catalogue but its orders settle and keep it",
          "[inventory]") {
  Store s;
  auto remove = [&](const std::string& sku) {
    return s.db().transaction(
        [&](db::Tx& tx) -> Result<Product> { return delete_product(tx, sku); });
  };
  auto catalogue = [&] {
    auto all =
        s.db().read([](db::Tx& tx) -> Result<std::vector<Product>> { return list_products(tx); });
    REQUIRE(all.ok());
    std::vector<std::string> skus;
    for (const auto& p : all.value()) skus.push_back(p.sku);
    return skus;
  };
  REQUIRE(s.reserve("o-held", {{"SKU-A", 2}}).reserved);
  REQUIRE(s.reserve("o-sold", {{"SKU-A", 1}}).reserved);
  s.take_events();

  auto deleted = remove("SKU-A");
  REQUIRE(deleted.ok());
  CHECK(deleted->reserved == 3);
  auto events = s.take_events();
  REQUIRE(events.size() == 1);
  CHECK(events[0].envelope.type == event_types::kInventoryUpdated);
  CHECK(events[0].data["deleted"].GetBool());
  CHECK(events[0].data["delta"].GetInt64() == 0);

  CHECK(catalogue() == std::vector<std::string>{"SKU-B", "SKU-C"});
  auto gone = s.db().read(
      [](db::Tx& tx) -> Result<std::optional<Product>> { return find_product(tx, "SKU-A"); });
  REQUIRE(gone.ok());
  CHECK_FALSE(gone.value().has_value());

  // New orders fail like for an unknown sku, with nothing taken from the other lines.
  auto refused = s.reserve("o-new", {{"SKU-B", 1}, {"SKU-A", 1}});
  CHECK_FALSE(refused.reserved);
  CHECK(refused.reason == "UNKNOWN_SKU");
  CHECK(refused.skus == std::vector<std::string>{"SKU-A"});
  CHECK(s.get("SKU-B").available == 5);

  // What orders already hold still settles against the row, which stays.
  CHECK(s.release("o-held") == std::vector<Line>{{"SKU-A", 2}});
  CHECK(s.commit("o-sold") == std::vector<Line>{{"SKU-A", 1}});
  auto row = s.db().read([](db::Tx& tx) -> Result<std::vector<int64_t>> {
    auto st = tx.stmt(
        "SELECT available, reserved, sold, deleted_at IS NOT NULL FROM products WHERE sku = "
        "'SKU-A'");
    if (!st.step()) return std::vector<int64_t>{};
    return std::vector<int64_t>{st.col_int(0), st.col_int(1), st.col_int(2), st.col_int(3)};
  });
  REQUIRE(row.ok());
  CHECK(row.value() == std::vector<int64_t>{9, 0, 1, 1});

  // Gone for every admin operation too; the sku is not reused.
  CHECK(remove("SKU-A").error().code == ecom::ErrorCode::kNotFound);
  auto update = s.db().transaction([&](db::Tx& tx) -> Result<Product> {
    return update_product(tx, s.rules, ProductUpdate{"SKU-A", 5, {}, {}, {}});
  });
  CHECK(update.error().code == ecom::ErrorCode::kNotFound);
  auto reuse = s.db().transaction([&](db::Tx& tx) -> Result<Product> {
    return create_product(tx, NewProduct{"SKU-A", "Reborn", 1, "USD", 1});
  });
  CHECK(reuse.error().code == ecom::ErrorCode::kConflict);
  CHECK(remove("SKU-404").error().code == ecom::ErrorCode::kNotFound);
}

TEST_CASE("seeding happens only into an empty catalogue", "[inventory]") {
  Store s;
  auto again = s.db().transaction([&](db::Tx& tx) -> Result<int64_t> {
    std::vector<Product> other{Store::product("SKU-Z", 1)};
    return seed_if_empty(tx, other);
  });
  REQUIRE(again.ok());
  CHECK(again.value() == 0);
  auto all =
      s.db().read([](db::Tx& tx) -> Result<std::vector<Product>> { return list_products(tx); });
  REQUIRE(all.ok());
  REQUIRE(all->size() == 3);
  CHECK(all.value()[0].sku == "SKU-A");
  CHECK(all.value()[2].sku == "SKU-C");
}

TEST_CASE("the seed config is validated with index and field", "[inventory]") {
  // The seed as InventoryModule::configure hands it over: the value and its dotted path.
  auto parse = [](const char* json) {
    auto doc = parse_json_config(json);
    REQUIRE(doc.ok());
    Settings settings;
    settings.document = doc.value();
    const ConfigSection section = settings.section("inventory");
    const rapidjson::Value* seed = section.raw("seed");
    REQUIRE(seed != nullptr);
    return parse_seed(*seed, section.path_of("seed"));
  };
  auto ok =
      parse(R"({"inventory":{"seed":[{"sku":"SKU-1","name":"One","available":3,"unitAmount":100},)"
            R"({"sku":"SKU-2","name":"Two","available":0,"unitAmount":5,"currency":"EUR"}]}})");
  REQUIRE(ok.ok());
  REQUIRE(ok->size() == 2);
  CHECK(ok.value()[0].currency == "USD");
  CHECK(ok.value()[1].currency == "EUR");

  struct Case {
    const char* json;
    const char* field;
  };
  const Case cases[] = {
      {R"({"inventory":{"seed":{}}})", "inventory.seed"},
      {R"({"inventory":{"seed":[7]}})", "inventory.seed[0]"},
      {R"({"inventory":{"seed":[{"sku":"S","name":"n","available":1,"unitAmount":1},)"
       R"({"sku":"T","name":"n","available":-1,"unitAmount":1}]}})",
       "inventory.seed[1].available"},
      {R"({"inventory":{"seed":[{"name":"n","available":1,"unitAmount":1}]}})",
       "inventory.seed[0].sku"},
      {R"({"inventory":{"seed":[{"sku":"S","available":1,"unitAmount":1}]}})",
       "inventory.seed[0].name"},
      {R"({"inventory":{"seed":[{"sku":"S","name":"n","available":1}]}})",
       "inventory.seed[0].unitAmount"},
      {R"({"inventory":{"seed":[{"sku":"S","name":"n","available":1,"unitAmount":1,"currency":"x"}]}})",
       "inventory.seed[0].currency"},
      {R"({"inventory":{"seed":[{"sku":"S","name":"n","available":1,"unitAmount":1,"price":2}]}})",
       "inventory.seed[0].price"},
      {R"({"inventory":{"seed":[{"sku":"S","name":"n","available":1,"unitAmount":1},)"
       R"({"sku":"S","name":"m","available":1,"unitAmount":1}]}})",
       "inventory.seed[1].sku"},
  };
  for (const auto& c : cases) {
    INFO(c.json);
    auto r = parse(c.json);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == ecom::ErrorCode::kConfigInvalid);
    CHECK(r.error().field == c.field);
    CHECK(r.error().message.find(c.field) != std::string::npos);
  }
}

TEST_CASE("available never goes negative under concurrent reservations",
          "[inventory][concurrency]") {
  // Scarce stock, many more requests than units: 8 threads race reservations, releases and
  // commits, each in its own transaction on the shared Database.
  const std::vector<Product> seed{Store::product("SKU-A", 40), Store::product("SKU-B", 15),
                                  Store::product("SKU-C", 3)};
  Store s(seed);
  constexpr int kThreads = 8;
  constexpr int kOrdersPerThread = 60;
  std::atomic<int> reserved_orders{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t) * 7919U + 1U);
      Envelope cause = make_event("saga", event_types::kReserveStock, "x", "{}");
      for (int i = 0; i < kOrdersPerThread; ++i) {
        const std::string order_id = "o-" + std::to_string(t) + "-" + std::to_string(i);
        ReserveCommand cmd{order_id, {}, "USD", {}, {}};
        for (const char* sku : {"SKU-A", "SKU-B", "SKU-C"}) {
          if (rng() % 2) cmd.items.push_back(Line{sku, static_cast<int64_t>(1 + rng() % 3)});
        }
        if (cmd.items.empty()) cmd.items.push_back(Line{"SKU-C", 1});
        auto r = s.db().transaction([&](db::Tx& tx) -> Result<ReserveResult> {
          return reserve_stock(tx, s.rules, cmd, cause);
        });
        if (!r.ok()) {
          ++failures;
          continue;
        }
        if (!r->reserved) continue;
        ++reserved_orders;
        const unsigned fate = rng() % 3;  // keep holding, release or commit
        if (fate == 0) continue;
        auto settled = s.db().transaction([&](db::Tx& tx) -> Result<std::vector<Line>> {
          return fate == 1 ? release_stock(tx, s.rules, order_id, cause)
                           : commit_stock(tx, s.rules, order_id, cause);
        });
        if (!settled.ok()) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
  CHECK(reserved_orders.load() > 0);

  // What orders still hold must equal the reserved counters.
  std::map<std::string, int64_t> held;
  auto rows = s.db().read([](db::Tx& tx) -> Result<std::vector<std::pair<std::string, int64_t>>> {
    std::vector<std::pair<std::string, int64_t>> out;
    auto st =
        tx.stmt("SELECT sku, SUM(quantity) FROM reservations WHERE state='RESERVED' GROUP BY sku");
    while (st.step()) out.emplace_back(st.col_text(0), st.col_int(1));
    return out;
  });
  REQUIRE(rows.ok());
  for (const auto& [sku, q] : rows.value()) held[sku] = q;

  for (const auto& initial : seed) {
    auto p = s.get(initial.sku);
    INFO(p.sku << " available=" << p.available << " reserved=" << p.reserved << " sold=" << p.sold);
    CHECK(p.available >= 0);
    CHECK(p.reserved >= 0);
    CHECK(initial.available == p.available + p.reserved + p.sold);
    CHECK(p.reserved == held[p.sku]);
  }
}
