// The batched paths: delivery outcomes recorded a batch at a time (one failing notification must
// not cost the others), the feed rows written by apply(), and the fan-out that encodes each live
// event once for every subscriber.

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <catch2/catch.hpp>
#include <map>
#include <mutex>
#include <set>

#include "delivery.hpp"
#include "ecom/bus/embedded_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/contract/events.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "harness.hpp"
#include "live_hub.hpp"
#include "store.hpp"
#include "support/test_support.hpp"

using namespace ecom;
using namespace ecom::notification;
using ecom::test::order_created;
using ecom::test::parse_json;
using ecom::test::status_changed;
using ecom::test::str_of;

namespace {

// A sink whose answers are scripted per order: fail N times (retryable), or fail for good.
class ScriptedSink final : public Sink {
 public:
  std::string_view channel() const noexcept override { return "webhook"; }
  int max_attempts() const noexcept override { return 5; }
  std::chrono::milliseconds backoff() const noexcept override {
    return std::chrono::milliseconds(0);
  }
  Attempt send(const Delivery& d) override {
    std::lock_guard lock(mu_);
    ++attempts_[d.order_id];
    if (permanent_.count(d.order_id)) return {false, false, "webhook answered HTTP 400"};
    if (auto it = transient_.find(d.order_id); it != transient_.end() && it->second > 0) {
      --it->second;
      return {false, true, "webhook answered HTTP 503"};
    }
    return {true, false, {}};
  }

  void fail_once(const std::string& order_id) {
    std::lock_guard lock(mu_);
    transient_[order_id] = 1;
  }
  void fail_for_good(const std::string& order_id) {
    std::lock_guard lock(mu_);
    permanent_.insert(order_id);
  }
  int attempts(const std::string& order_id) {
    std::lock_guard lock(mu_);
    return attempts_[order_id];
  }

 private:
  std::mutex mu_;
  std::map<std::string, int> transient_;
  std::set<std::string> permanent_;
  std::map<std::string, int> attempts_;
};

struct Fixture {
  test::TempDir dir;
  std::unique_ptr<bus::EventBus> bus;
  std::unique_ptr<db::Database> db;
  std::unique_ptr<Store> store;
  std::unique_ptr<bus::OutboxRelay> relay;  // never started: NotificationSent rows stay visible

  Fixture() {
    bus::EmbeddedBusOptions bo;
    bo.path = dir.file("bus.db");
    bus = std::move(bus::make_embedded_bus(bo)).value();
    db = std::move(db::Database::open(dir.file("notification.db"))).value();
    REQUIRE(db::migrate_messaging(*db).ok());
    store = std::make_unique<Store>(*db, default_templates(), "webhook");
    REQUIRE(store->migrate().ok());
    relay = std::make_unique<bus::OutboxRelay>(*db, *bus);
  }

  void apply(const Envelope& e) {
    auto r = store->apply(e);
    INFO((r.ok() ? std::string() : r.error().message));
    REQUIRE(r.ok());
  }

  int64_t count(const std::string& sql) { return ecom::test::int_of(*db, sql); }

  std::string text(const std::string& sql) {
    return db
        ->read([&](db::Tx& tx) -> Result<std::string> {
          auto s = tx.stmt(sql);
          return s.step() ? s.col_text(0) : std::string();
        })
        .value();
  }

  // notificationId of every NotificationSent queued in the outbox.
  std::multiset<std::string> sent_events() {
    auto rows = db->read([](db::Tx& tx) -> Result<std::vector<db::OutboxRow>> {
                    return db::outbox_peek(tx, 1000);
                  }).value();
    std::multiset<std::string> ids;
    for (const auto& r : rows) {
      REQUIRE(r.topic == topics::kNotificationsSent);
      auto e = decode_envelope(r.payload).value();
      REQUIRE(e.type == contract::NotificationSent::kType);
      ids.insert(str_of(parse_json(e.data), "notificationId"));
    }
    return ids;
  }

  std::multiset<std::string> ids_with_status(const std::string& status) {
    return db
        ->read([&](db::Tx& tx) -> Result<std::multiset<std::string>> {
          auto s = tx.stmt("SELECT id FROM notifications WHERE status = ?");
          s.bind(1, status);
          std::multiset<std::string> out;
          while (s.step()) out.insert(s.col_text(0));
          return out;
        })
        .value();
  }
};

std::string compact(const rapidjson::Value& v) {
  rapidjson::StringBuffer sb;
  rapidjson::Writer<rapidjson::StringBuffer> w(sb);
  v.Accept(w);
  return std::string(sb.GetString(), sb.GetSize());
}

class FakeStream final : public http::Stream {
 public:
  bool write(std::string data) override {
    std::lock_guard lock(mu);
    out.push_back(std::move(data));
    return true;
  }
  void close() override { closed_ = true; }
  bool closed() const override { return closed_; }
  void on_close(std::function<void()>) override {}
  std::vector<std::string> written() {
    std::lock_guard lock(mu);
    return out;
  }

 private:
  std::mutex mu;
  std::vector<std::string> out;
  bool closed_ = false;
};

class FakeSocket final : public http::WebSocket {
 public:
  bool send(std::string text) override {
    std::lock_guard lock(mu);
    out.push_back(std::move(text));
    return true;
  }
  void close() override { closed_ = true; }
  bool closed() const override { return closed_; }
  std::vector<std::string> written() {
    std::lock_guard lock(mu);
    return out;
  }

 private:
  std::mutex mu;
  std::vector<std::string> out;
  bool closed_ = false;
};

}  // namespace

TEST_CASE("mark_sent_batch records each notification once, with its own time",
          "[notification][batch]") {
  Fixture f;
  for (const char* id : {"o-1", "o-2", "o-3"}) f.apply(order_created(id));
  auto due = f.store->due(now_ms(), 10).value();
  REQUIRE(due.size() == 3);
  // One of them was settled meanwhile (e.g. by an earlier attempt): the batch skips it and still
  // records the others, and queues no NotificationSent for it.
  REQUIRE(f.store->mark_failed(due[1], "gone", std::nullopt).ok());
  std::vector<SentAttempt> sent{{&due[0], 1'000'000}, {&due[1], 2'000'000}, {&due[2], 3'000'000}};
  REQUIRE(f.store->mark_sent_batch(sent, "webhook").ok());

  CHECK(f.ids_with_status("SENT") == std::multiset<std::string>{due[0].id, due[2].id});
  CHECK(f.ids_with_status("FAILED") == std::multiset<std::string>{due[1].id});
  CHECK(f.sent_events() == std::multiset<std::string>{due[0].id, due[2].id});
  CHECK(f.count("SELECT sent_at FROM notifications WHERE id = '" + due[0].id + "'") == 1'000'000);
  CHECK(f.count("SELECT sent_at FROM notifications WHERE id = '" + due[2].id + "'") == 3'000'000);
  CHECK(f.count("SELECT attempts FROM notifications WHERE id = '" + due[2].id + "'") == 1);
  // Again: nothing is PENDING any more, so nothing changes and no event is added.
  REQUIRE(f.store->mark_sent_batch(sent, "webhook").ok());
  CHECK(f.sent_events().size() == 2);
  CHECK(f.store->mark_sent_batch({}, "webhook").ok());
}

TEST_CASE("mark_failed_batch records retries and failures together", "[notification][batch]") {
  Fixture f;
  for (const char* id : {"o-1", "o-2"}) f.apply(order_created(id));
  auto due = f.store->due(now_ms(), 10).value();
  REQUIRE(due.size() == 2);
  int64_t retry_at = now_ms() + 60'000;
  std::vector<FailedAttempt> failed{{&due[0], "HTTP 503", retry_at}, {&due[1], "HTTP 400", {}}};
  REQUIRE(f.store->mark_failed_batch(failed).ok());
  CHECK(f.ids_with_status("PENDING") == std::multiset<std::string>{due[0].id});
  CHECK(f.ids_with_status("FAILED") == std::multiset<std::string>{due[1].id});
  CHECK(f.text("SELECT last_error FROM notifications WHERE id = '" + due[1].id + "'") ==
        "HTTP 400");
  CHECK(f.store->next_due_at().value() == std::optional<int64_t>(retry_at));
  auto later = f.store->due(retry_at, 10).value();
  REQUIRE(later.size() == 1);
  CHECK(later[0].attempts == 1);
  CHECK(f.sent_events().empty());
}

TEST_CASE("the worker records a whole batch, and a failing send costs only itself",
          "[notification][batch]") {
  Fixture f;
  ScriptedSink sink;
  sink.fail_once("o-2");      // retried (backoff 0), then sent
  sink.fail_for_good("o-4");  // FAILED at once
  for (const char* id : {"o-1", "o-2", "o-3", "o-4", "o-5"}) f.apply(order_created(id));
  DeliveryWorker worker(*f.store, sink, *f.relay);
  worker.start();
  REQUIRE(test::eventually([&] {
    return f.ids_with_status("SENT").size() == 4 && f.ids_with_status("FAILED").size() == 1;
  }));
  worker.stop();

  CHECK(f.ids_with_status("PENDING").empty());
  CHECK(f.sent_events() == f.ids_with_status("SENT"));  // exactly one event per sent one
  CHECK(f.text("SELECT order_id FROM notifications WHERE status = 'FAILED'") == "o-4");
  CHECK(f.text("SELECT last_error FROM notifications WHERE order_id = 'o-4'") ==
        "webhook answered HTTP 400");
  CHECK(f.count("SELECT attempts FROM notifications WHERE order_id = 'o-2'") == 2);
  CHECK(f.count("SELECT attempts FROM notifications WHERE order_id = 'o-1'") == 1);
  CHECK(sink.attempts("o-1") == 1);
  CHECK(sink.attempts("o-2") == 2);
  CHECK(sink.attempts("o-3") == 1);
  CHECK(sink.attempts("o-4") == 1);
  CHECK(sink.attempts("o-5") == 1);
}

TEST_CASE("a notification whose SENT cannot be recorded does not lose the rest of its batch",
          "[notification][batch]") {
  Fixture f;
  ScriptedSink sink;
  for (const char* id : {"o-1", "o-2", "o-3", "o-4"}) f.apply(order_created(id));
  // Recording o-3 as SENT fails (as a store error would), which fails the batch's transaction.
  REQUIRE(f.db->transaction([](db::Tx& tx) -> Status {
                tx.exec(
                    "CREATE TRIGGER poison BEFORE UPDATE OF status ON notifications "
                    "WHEN NEW.status = 'SENT' AND NEW.order_id = 'o-3' "
                    "BEGIN SELECT RAISE(ABORT, 'poisoned'); END");
                return {};
              })
              .ok());
  DeliveryWorker worker(*f.store, sink, *f.relay);
  worker.start();
  REQUIRE(test::eventually([&] { return f.ids_with_status("SENT").size() == 3; }));
  CHECK(f.text("SELECT status FROM notifications WHERE order_id = 'o-3'") == "PENDING");
  CHECK(f.sent_events() == f.ids_with_status("SENT"));

  // Once the store takes it again, the notification left PENDING is sent again and recorded
  // (at-least-once: the receiver deduplicates on the notification id).
  REQUIRE(f.db->transaction([](db::Tx& tx) -> Status {
                tx.exec("DROP TRIGGER poison");
                return {};
              })
              .ok());
  worker.notify();
  REQUIRE(test::eventually([&] { return f.ids_with_status("SENT").size() == 4; }));
  worker.stop();
  CHECK(f.sent_events() == f.ids_with_status("SENT"));
  CHECK(sink.attempts("o-3") >= 2);
  CHECK(sink.attempts("o-1") == 1);
}

TEST_CASE("feed rows written by apply carry exactly what the API shows", "[notification][batch]") {
  Fixture f;
  f.apply(order_created("o-1", "c-1"));
  f.apply(status_changed("o-1", "STOCK_RESERVED", "", 1999));
  auto rows = f.store->feed_after(0, 100).value();
  REQUIRE(rows.size() == 4);
  CHECK(rows[0].kind == "status");
  CHECK(rows[1].kind == "notification");
  CHECK(rows[2].kind == "status");
  CHECK(rows[3].kind == "notification");
  for (size_t i = 0; i < rows.size(); ++i) CHECK(rows[i].seq == static_cast<int64_t>(i + 1));

  // A notification row is byte for byte the notification as listed right after its creation.
  NotificationQuery q;
  q.order_id = "o-1";
  auto list = parse_json(f.store->list_notifications_json(q).value());
  REQUIRE(list["notifications"].Size() == 2);
  CHECK(rows[3].payload == compact(list["notifications"][0]));  // newest first
  CHECK(rows[1].payload == compact(list["notifications"][1]));

  auto created = parse_json(rows[0].payload);
  CHECK(str_of(created, "status") == "PENDING");
  CHECK(str_of(created, "customerId") == "c-1");
  CHECK_FALSE(created.HasMember("totalAmount"));  // priced at STOCK_RESERVED
  CHECK_FALSE(created.HasMember("reason"));
  auto reserved = parse_json(rows[2].payload);
  CHECK(str_of(reserved, "status") == "STOCK_RESERVED");
  CHECK(str_of(reserved, "currency") == "USD");
  CHECK(reserved["totalAmount"].GetInt64() == 1999);

  // A status before its OrderCreated: the row has no customer fields; OrderCreated then writes
  // the two notifications (the one that waited for the customer included), no status row.
  f.apply(status_changed("o-2", "CANCELLED", "OUT_OF_STOCK"));
  auto early = f.store->feed_after(4, 100).value();
  REQUIRE(early.size() == 1);
  auto p = parse_json(early[0].payload);
  CHECK(str_of(p, "status") == "CANCELLED");
  CHECK(str_of(p, "reason") == "OUT_OF_STOCK");
  CHECK_FALSE(p.HasMember("customerId"));
  f.apply(order_created("o-2", "c-2"));
  auto late = f.store->feed_after(5, 100).value();
  REQUIRE(late.size() == 2);  // the two notifications (PENDING, CANCELLED); no second status row
  CHECK(late[0].kind == "notification");
  CHECK(str_of(parse_json(late[0].payload), "orderStatus") == "PENDING");
  CHECK(str_of(parse_json(late[1].payload), "orderStatus") == "CANCELLED");
  CHECK(str_of(parse_json(late[1].payload), "body").find("some items are out of stock") !=
        std::string::npos);
  // The terminal status is kept; a late earlier status changes nothing.
  CHECK(f.store->apply(status_changed("o-2", "STOCK_RESERVED")).value().feed_rows == 0);
  auto snap = f.store->start_order_stream("o-2", std::nullopt).value();
  REQUIRE(snap);
  CHECK(str_of(parse_json(snap->snapshot_json), "status") == "CANCELLED");
}

TEST_CASE("the hub encodes each event once and only in the forms subscribers take",
          "[notification][batch]") {
  LiveHub hub;
  auto all_stream = std::make_shared<FakeStream>();
  auto order_socket = std::make_shared<FakeSocket>();
  auto late_stream = std::make_shared<FakeStream>();
  auto all = std::make_shared<Subscriber>("", all_stream);
  auto order = std::make_shared<Subscriber>("o-1", order_socket);
  auto late = std::make_shared<Subscriber>("o-1", late_stream);  // its start is not sent yet
  hub.add(all);
  hub.add(order);
  hub.add(late);
  all->begin(StreamStart{false, {}, {}, 0});
  order->begin(StreamStart{false, {}, {}, 0});

  std::vector<FeedRow> rows{{1, "o-1", "status", R"({"s":1})", 0},
                            {2, "o-1", "notification", R"({"n":2})", 0},
                            {3, "", "inventory", R"({"i":3})", 0},
                            {4, "o-2", "notification", R"({"n":4})", 0}};
  hub.publish(rows);
  CHECK(all_stream->written() == std::vector<std::string>{sse_event(1, "status", R"({"s":1})"),
                                                          sse_event(3, "inventory", R"({"i":3})")});
  CHECK(order_socket->written() ==
        std::vector<std::string>{ws_event(1, "status", R"({"s":1})"),
                                 ws_event(2, "notification", R"({"n":2})")});
  CHECK(late_stream->written().empty());
  // The queued events are sent after the start; what the start covered is not sent twice.
  late->begin(StreamStart{true, R"({"snap":1})", {}, 1});
  CHECK(late_stream->written() ==
        std::vector<std::string>{sse_event(1, "snapshot", R"({"snap":1})"),
                                 sse_event(2, "notification", R"({"n":2})")});
  // Later rows reach everyone that takes them, once.
  hub.publish({{5, "o-1", "status", R"({"s":5})", 0}});
  CHECK(all_stream->written().size() == 3);
  CHECK(order_socket->written().back() == ws_event(5, "status", R"({"s":5})"));
  CHECK(late_stream->written().back() == sse_event(5, "status", R"({"s":5})"));
  CHECK(late_stream->written().size() == 3);
}
