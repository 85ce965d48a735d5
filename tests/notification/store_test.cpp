// The store on its own: projection, one notification per order and status, the feed and the
// resume rules of the live streams.

#include "store.hpp"

#include <rapidjson/document.h>

#include <catch2/catch.hpp>

#include "ecom/contract/events.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "harness.hpp"
#include "support/test_support.hpp"

using namespace ecom;
using namespace ecom::notification;
using ecom::test::inventory_updated;
using ecom::test::order_created;
using ecom::test::parse_json;
using ecom::test::status_changed;
using ecom::test::str_of;

namespace {

struct StoreFixture {
  test::TempDir dir;
  std::unique_ptr<db::Database> db;
  std::unique_ptr<Store> store;

  StoreFixture() {
    db = std::move(db::Database::open(dir.file("notification.db"))).value();
    REQUIRE(db::migrate_messaging(*db).ok());
    store = std::make_unique<Store>(*db, default_templates(), "log");
    REQUIRE(store->migrate().ok());
  }

  Applied apply(const Envelope& e) {
    auto r = store->apply(e);
    INFO((r.ok() ? std::string() : r.error().message));
    REQUIRE(r.ok());
    return r.value();
  }

  int64_t count(const std::string& sql) { return ecom::test::int_of(*db, sql); }

  rapidjson::Document notifications(const std::string& query_order) {
    NotificationQuery q;
    q.order_id = query_order;
    auto body = store->list_notifications_json(q);
    REQUIRE(body.ok());
    return parse_json(body.value());
  }

  std::vector<std::string> kinds(const std::vector<FeedRow>& rows) {
    std::vector<std::string> out;
    for (const auto& r : rows) out.push_back(r.kind);
    return out;
  }
};

std::vector<std::string> statuses_of(const rapidjson::Document& snapshot) {
  std::vector<std::string> out;
  for (const auto& h : snapshot["history"].GetArray()) out.push_back(h["status"].GetString());
  return out;
}

}  // namespace

TEST_CASE("wire formats of SSE and WebSocket events", "[notification][store]") {
  CHECK(sse_event(7, "status", R"({"a":1})") == "id: 7\nevent: status\ndata: {\"a\":1}\n\n");
  CHECK(ws_event(7, "status", R"({"a":1})") == R"({"id":7,"event":"status","data":{"a":1}})");
}

TEST_CASE("one notification per order per status under redelivery", "[notification][store]") {
  StoreFixture f;
  auto created = order_created("o-1", "c-42");

  auto first = f.apply(created);
  CHECK_FALSE(first.duplicate);
  CHECK(first.notifications == 1);
  // The same event again (a redelivery): the inbox skips it entirely.
  auto again = f.apply(created);
  CHECK(again.duplicate);
  CHECK(again.notifications == 0);
  CHECK(again.feed_rows == 0);

  // Two different events for the same status.
  auto c1 = f.apply(status_changed("o-1", "CONFIRMED"));
  CHECK(c1.notifications == 1);
  auto c2 = f.apply(status_changed("o-1", "CONFIRMED"));
  CHECK_FALSE(c2.duplicate);
  CHECK(c2.notifications == 0);
  CHECK(c2.feed_rows == 0);
  // A second OrderCreated for the same order (a new event id) does not notify again either.
  CHECK(f.apply(order_created("o-1", "c-42")).notifications == 0);
  // Nor does a status after the terminal one.
  CHECK(f.apply(status_changed("o-1", "CANCELLED", "TIMEOUT")).notifications == 0);

  CHECK(f.count("SELECT COUNT(*) FROM notifications WHERE order_id = 'o-1'") == 2);
  auto list = f.notifications("o-1");
  REQUIRE(list["notifications"].Size() == 2);
  // Newest first.
  CHECK(str_of(list["notifications"][0], "orderStatus") == "CONFIRMED");
  CHECK(str_of(list["notifications"][1], "orderStatus") == "PENDING");
  const auto& n = list["notifications"][1];
  CHECK(str_of(n, "customerId") == "c-42");
  CHECK(str_of(n, "status") == "PENDING");
  CHECK(str_of(n, "channel") == "log");
  CHECK(n["attempts"].GetInt() == 0);
  CHECK(str_of(n, "subject") == "Order o-1 received");
  CHECK(str_of(n, "body").find("o-1") != std::string::npos);
}

TEST_CASE("the order's total is learned from the STOCK_RESERVED status", "[notification][store]") {
  StoreFixture f;
  f.apply(make_event("order", event_types::kOrderCreated, "o-p",
                     R"({"orderId":"o-p","customerId":"c-1","currency":"USD",)"
                     R"("items":[{"sku":"SKU-1","quantity":2}]})"));
  auto snapshot = [&] {
    auto start = f.store->start_order_stream("o-p", std::nullopt);
    REQUIRE(start.ok());
    REQUIRE(start.value());
    return parse_json((*start.value()).snapshot_json);
  };
  CHECK_FALSE(snapshot().HasMember("totalAmount"));  // not priced yet
  f.apply(make_event("saga", event_types::kOrderStatusChanged, "o-p",
                     R"({"orderId":"o-p","status":"STOCK_RESERVED","at":"2026-11-22T02:06:38Z",)"
                     R"("totalAmount":4998,"currency":"USD","items":[{"sku":"SKU-1",)"
                     R"("name":"Mouse","quantity":2,"unitAmount":2499}]})"));
  f.apply(status_changed("o-p", "CONFIRMED"));
  CHECK(snapshot()["totalAmount"].GetInt64() == 4998);
  auto list = f.notifications("o-p");
  REQUIRE(list["notifications"].Size() == 3);
  CHECK(str_of(list["notifications"][0], "body").find("49.98 USD") != std::string::npos);
  CHECK(str_of(list["notifications"][1], "body").find("49.98 USD") != std::string::npos);
}

TEST_CASE("a status that overtakes OrderCreated waits for the customer, then notifies",
          "[notification][store]") {
  StoreFixture f;
  auto early = f.apply(status_changed("o-2", "STOCK_RESERVED", "", 999));
  CHECK(early.notifications == 0);  // no customer known yet
  CHECK(early.feed_rows == 1);
  auto created = f.apply(order_created("o-2", "c-7"));
  CHECK(created.notifications == 2);  // PENDING and the STOCK_RESERVED that waited
  auto start = f.store->start_order_stream("o-2", std::nullopt);
  REQUIRE(start.ok());
  REQUIRE(start.value());
  auto snap = parse_json((*start.value()).snapshot_json);
  CHECK(str_of(snap, "status") == "STOCK_RESERVED");  // the later status is kept
  CHECK(str_of(snap, "customerId") == "c-7");
  CHECK(snap["totalAmount"].GetInt64() == 999);
  CHECK(statuses_of(snap) == std::vector<std::string>{"PENDING", "STOCK_RESERVED"});
  CHECK(snap["notifications"].Size() == 2);
}

TEST_CASE("status changes only move forward", "[notification][store]") {
  StoreFixture f;
  f.apply(order_created("o-3"));
  CHECK(f.apply(status_changed("o-3", "PAYMENT_AUTHORIZED")).feed_rows ==
        2);                                                                // status + notification
  CHECK(f.apply(status_changed("o-3", "STOCK_RESERVED")).feed_rows == 0);  // late, ignored
  CHECK(f.apply(status_changed("o-3", "CANCELLED", "PAYMENT_DECLINED")).feed_rows == 2);
  CHECK(f.apply(status_changed("o-3", "CONFIRMED")).feed_rows == 0);  // terminal never moves
  auto stats = parse_json(f.store->stats_json().value());
  CHECK(stats["orders"]["CANCELLED"].GetInt() == 1);
  CHECK(stats["orders"]["CONFIRMED"].GetInt() == 0);
  CHECK(stats["orders"]["PENDING"].GetInt() == 0);
}

TEST_CASE("invalid payloads are reported as INVALID_PAYLOAD, other types ignored",
          "[notification][store]") {
  StoreFixture f;
  auto bad = make_event("saga", event_types::kOrderStatusChanged, "o-9",
                        R"({"orderId":"o-9","status":"SHIPPED"})");
  auto r = f.store->apply(bad);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == ecom::ErrorCode::kInvalidPayload);
  CHECK_FALSE(r.error().retryable);
  auto no_customer = make_event("order", event_types::kOrderCreated, "o-9",
                                R"({"orderId":"o-9","currency":"USD"})");
  CHECK(f.store->apply(no_customer).error().code == ecom::ErrorCode::kInvalidPayload);
  auto other =
      make_event("payment", event_types::kPaymentAuthorized, "o-9", R"({"orderId":"o-9"})");
  auto ignored = f.store->apply(other);
  REQUIRE(ignored.ok());
  CHECK(ignored->feed_rows == 0);
  CHECK(f.count("SELECT COUNT(*) FROM feed") == 0);
}

TEST_CASE("the feed resumes after a Last-Event-ID and falls back to a snapshot",
          "[notification][store]") {
  StoreFixture f;
  // Feed rows: 1 status(o-1) 2 notification(o-1) 3 status(o-1) 4 notification(o-1) 5 inventory
  //            6 status(o-2) 7 notification(o-2) 8 status(o-1) 9 notification(o-1)
  f.apply(order_created("o-1"));
  f.apply(status_changed("o-1", "STOCK_RESERVED"));
  f.apply(inventory_updated("SKU-1", 8));
  f.apply(order_created("o-2", "c-2"));
  f.apply(status_changed("o-1", "CONFIRMED"));
  REQUIRE(f.store->last_seq().value() == 9);

  SECTION("no id: snapshot of the order at the current position") {
    auto s = f.store->start_order_stream("o-1", std::nullopt).value();
    REQUIRE(s);
    CHECK(s->snapshot);
    CHECK(s->position == 9);
    CHECK(s->rows.empty());
    auto snap = parse_json(s->snapshot_json);
    CHECK(str_of(snap, "orderId") == "o-1");
    CHECK(str_of(snap, "status") == "CONFIRMED");
    CHECK(statuses_of(snap) == std::vector<std::string>{"PENDING", "STOCK_RESERVED", "CONFIRMED"});
    CHECK(snap["notifications"].Size() == 3);
  }
  SECTION("a retained id: only that order's later rows, no snapshot") {
    auto s = f.store->start_order_stream("o-1", 2).value();
    REQUIRE(s);
    CHECK_FALSE(s->snapshot);
    std::vector<int64_t> seqs;
    for (const auto& r : s->rows) seqs.push_back(r.seq);
    CHECK(seqs == std::vector<int64_t>{3, 4, 8, 9});
    CHECK(f.kinds(s->rows) ==
          std::vector<std::string>{"status", "notification", "status", "notification"});
    auto last = parse_json(s->rows[2].payload);
    CHECK(str_of(last, "status") == "CONFIRMED");
    CHECK(str_of(last, "customerId") == "c-42");
    CHECK(last["totalAmount"].GetInt64() == 2500);
    CHECK(s->position == 9);
  }
  SECTION("the newest id: nothing to replay") {
    auto s = f.store->start_order_stream("o-1", 9).value();
    CHECK_FALSE(s->snapshot);
    CHECK(s->rows.empty());
  }
  SECTION("an id from the future (another store): snapshot") {
    auto s = f.store->start_order_stream("o-1", 100).value();
    CHECK(s->snapshot);
  }
  SECTION("an id older than the retained rows: snapshot first") {
    CHECK(f.store->prune_feed(3, 2).value() == 2);  // at most 2 rows per call: 1 and 2
    CHECK(f.count("SELECT MIN(seq) FROM feed") == 3);
    CHECK(f.store->prune_feed(3).value() == 4);  // keeps 7, 8, 9
    CHECK(f.count("SELECT MIN(seq) FROM feed") == 7);
    auto ok = f.store->start_order_stream("o-1", 6).value();  // nothing after 6 was pruned
    CHECK_FALSE(ok->snapshot);
    CHECK(ok->rows.size() == 2);
    auto old = f.store->start_order_stream("o-1", 5).value();
    CHECK(old->snapshot);
    CHECK(old->position == 9);
    CHECK(str_of(parse_json(old->snapshot_json), "status") == "CONFIRMED");
    // New rows continue the sequence after a prune.
    f.apply(status_changed("o-2", "CANCELLED", "OUT_OF_STOCK"));
    CHECK(f.store->last_seq().value() == 11);
    CHECK(f.store->prune_feed(100).value() == 0);
  }
  SECTION("unknown order") {
    auto s = f.store->start_order_stream("nope", std::nullopt);
    REQUIRE(s.ok());
    CHECK_FALSE(s.value());
  }
  SECTION("the all-orders stream replays status, inventory and alerts, not notifications") {
    auto s = f.store->start_all_stream(0, 100).value();
    CHECK_FALSE(s.snapshot);
    CHECK(f.kinds(s.rows) ==
          std::vector<std::string>{"status", "status", "inventory", "status", "status"});
    CHECK(str_of(parse_json(s.rows[2].payload), "sku") == "SKU-1");
    // Too much to replay: a snapshot instead.
    auto big = f.store->start_all_stream(0, 4).value();
    CHECK(big.snapshot);
    CHECK(big.rows.empty());
    auto fresh = f.store->start_all_stream(std::nullopt, 100).value();
    REQUIRE(fresh.snapshot);
    auto snap = parse_json(fresh.snapshot_json);
    CHECK(snap["orders"]["CONFIRMED"].GetInt() == 1);
    CHECK(snap["orders"]["PENDING"].GetInt() == 1);
    REQUIRE(snap["recent"].Size() == 2);
    CHECK(fresh.position == 9);
  }
}

TEST_CASE("alerts carry their kind in the feed", "[notification][store]") {
  StoreFixture f;
  f.apply(make_event("inventory", event_types::kStockDepleted, "SKU-9",
                     R"({"sku":"SKU-9","available":0,"threshold":5})"));
  auto rows = f.store->feed_after(0, 10).value();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].kind == "alert");
  CHECK(rows[0].order_id.empty());
  auto p = parse_json(rows[0].payload);
  CHECK(str_of(p, "alert") == "STOCK_DEPLETED");
  CHECK(str_of(p, "sku") == "SKU-9");
  CHECK(p["available"].GetInt() == 0);
}

TEST_CASE("delivery bookkeeping: retry, FAILED, SENT with NotificationSent",
          "[notification][store]") {
  StoreFixture f;
  f.apply(order_created("o-5", "c-5"));
  auto due = f.store->due(now_ms(), 10).value();
  REQUIRE(due.size() == 1);
  auto d = due[0];
  CHECK(d.order_status == "PENDING");
  REQUIRE(f.store->mark_failed(d, "boom", now_ms() + 60'000).ok());
  CHECK(f.store->due(now_ms(), 10).value().empty());  // not due before the retry time
  CHECK(f.store->next_due_at().value().has_value());
  auto later = f.store->due(now_ms() + 61'000, 10).value();
  REQUIRE(later.size() == 1);
  CHECK(later[0].attempts == 1);
  REQUIRE(f.store->mark_sent(later[0], "webhook", now_ms()).ok());
  CHECK_FALSE(f.store->next_due_at().value().has_value());
  auto doc = f.notifications("o-5");
  auto n = doc["notifications"][0].GetObject();
  CHECK(std::string(n["status"].GetString()) == "SENT");
  CHECK(n["attempts"].GetInt() == 2);
  CHECK(std::string(n["channel"].GetString()) == "webhook");
  CHECK(n.HasMember("sentAt"));
  auto out = f.db->read([](db::Tx& tx) -> Result<std::vector<db::OutboxRow>> {
                   return db::outbox_peek(tx, 10);
                 })
                 .value();
  REQUIRE(out.size() == 1);
  CHECK(out[0].topic == topics::kNotificationsSent);
  auto e = decode_envelope(out[0].payload).value();
  CHECK(e.type == contract::NotificationSent::kType);
  CHECK(e.subject == "o-5");
  CHECK(str_of(parse_json(e.data), "notificationId") == d.id);
  // Marking again is a no-op (already settled): no second event.
  REQUIRE(f.store->mark_sent(later[0], "webhook", now_ms()).ok());
  CHECK(f.count("SELECT COUNT(*) FROM outbox") == 1);

  f.apply(status_changed("o-5", "CANCELLED", "TIMEOUT"));
  auto c = f.store->due(now_ms(), 10).value();
  REQUIRE(c.size() == 1);
  REQUIRE(f.store->mark_failed(c[0], "HTTP 500", std::nullopt).ok());
  auto failed_doc = f.notifications("o-5");
  auto failed = failed_doc["notifications"][0].GetObject();
  CHECK(std::string(failed["status"].GetString()) == "FAILED");
  CHECK(std::string(failed["lastError"].GetString()) == "HTTP 500");
  CHECK(f.store->due(now_ms() + 1'000'000, 10).value().empty());
}
