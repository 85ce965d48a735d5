#include "ecom/order/order_module.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <climits>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "ecom/bus/event_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/core/json.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "ecom/http/router.hpp"
#include "ecom/order/validation.hpp"
#include "order/order_json.hpp"

namespace ecom::order {
namespace {

using json::write_string;
using json::Writer;

constexpr std::string_view kTag = OrderModule::kName;
constexpr size_t kMaxIdempotencyKey = 255;
constexpr int kDefaultListLimit = 20;
constexpr int kMaxListLimit = 200;

using contract::OrderStatus;

// A stored status (always one of ours: the column is only written from OrderStatus names).
bool is_terminal(std::string_view status) {
  auto s = contract::parse_order_status(status);
  return s && contract::is_terminal(*s);
}

constexpr std::array<std::string_view, 5> kMigrations = {
    R"(CREATE TABLE orders (
         id TEXT PRIMARY KEY,
         customer_id TEXT NOT NULL,
         currency TEXT NOT NULL,
         status TEXT NOT NULL,
         reason TEXT,
         total_amount INTEGER NOT NULL,
         payment_token TEXT,
         items TEXT NOT NULL,
         correlation_id TEXT NOT NULL,
         cancel_requested_at INTEGER,
         created_at INTEGER NOT NULL,
         updated_at INTEGER NOT NULL);
       CREATE INDEX orders_by_customer ON orders(customer_id, created_at DESC);
       CREATE INDEX orders_by_time ON orders(created_at DESC);)",
    R"(CREATE TABLE order_history (
         order_id TEXT NOT NULL,
         seq INTEGER NOT NULL,
         status TEXT NOT NULL,
         reason TEXT,
         at INTEGER NOT NULL,
         PRIMARY KEY (order_id, seq)) WITHOUT ROWID;)",
    R"(CREATE TABLE idempotency_keys (
         key TEXT PRIMARY KEY,
         request TEXT NOT NULL,
         order_id TEXT NOT NULL,
         status_code INTEGER NOT NULL,
         created_at INTEGER NOT NULL);)",
    R"(CREATE INDEX idempotency_by_time ON idempotency_keys(created_at);)",
    // Prices come from the catalogue (the inventory): an order is priced when its stock is
    // reserved. Orders stored before this version were priced by the client: keep their totals.
    R"(ALTER TABLE orders ADD COLUMN priced_at INTEGER;
       UPDATE orders SET priced_at = created_at;)",
};

std::string accepted_body(std::string_view order_id, std::string_view status,
                          std::string_view correlation_id) {
  return json::object([&](Writer& w) {
    write_string(w, "orderId", order_id);
    write_string(w, "status", status);
    write_string(w, "correlationId", correlation_id);
  });
}

// The OrderCreated event. It carries no total: the order is priced when its stock is reserved;
// the client's quotes travel along to be checked.
contract::OrderCreated created_event(std::string order_id, const NewOrder& o) {
  std::optional<std::string> token;
  if (!o.payment_token.empty()) token = o.payment_token;
  return {std::move(order_id), o.customer_id,   o.currency, o.items,
          o.expected_total,    std::move(token)};
}

// Writes the order row of `stmt` (columns as in kOrderColumns) as JSON fields.
constexpr std::string_view kOrderColumns =
    "id, customer_id, currency, status, reason, total_amount, items, correlation_id, created_at, "
    "updated_at, cancel_requested_at, priced_at";

void write_order_fields(Writer& w, db::Statement& s) {
  write_string(w, "orderId", s.col_view(0));
  write_string(w, "customerId", s.col_view(1));
  write_string(w, "currency", s.col_view(2));
  write_string(w, "status", s.col_view(3));
  if (!s.col_null(4)) write_string(w, "reason", s.col_view(4));
  // Absent until the catalogue priced the order (its stock reserved): never a client's number.
  if (!s.col_null(11)) json::write_int64(w, "totalAmount", s.col_int(5));
  json::key(w, "items");
  auto items = s.col_view(6);
  w.RawValue(items.data(), items.size(), rapidjson::kArrayType);
  write_string(w, "correlationId", s.col_view(7));
  write_string(w, "createdAt", format_rfc3339(s.col_int(8)));
  write_string(w, "updatedAt", format_rfc3339(s.col_int(9)));
  json::write_bool(w, "cancellationRequested", !s.col_null(10));
}

// Group commit of POST /api/orders: at most this many orders share one commit, and at most this
// many wait for the writer (beyond that a POST answers 503 with Retry-After, not unbounded memory).
constexpr size_t kMaxBatch = 256;
constexpr size_t kMaxQueued = 10'000;

constexpr int64_t kMaxWaitMs = 60'000;
constexpr size_t kMaxWaiters = 10'000;

// "5s", "500ms" or "5" (seconds) → milliseconds; 0 when absent.
Result<int64_t> parse_wait(const http::Request& req) {
  auto text = req.query_param("wait");
  if (!text) return int64_t{0};
  std::string_view v = *text;
  int64_t scale = 1000;
  if (v.size() > 2 && v.substr(v.size() - 2) == "ms") {
    scale = 1;
    v.remove_suffix(2);
  } else if (!v.empty() && v.back() == 's') {
    v.remove_suffix(1);
  }
  int64_t n = -1;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || n < 0 || n * scale > kMaxWaitMs)
    return http::validation_error("wait", "wait must be a duration up to 60s, e.g. 5s or 500ms");
  return n * scale;
}

Result<int> parse_limit(const http::Request& req) {
  auto text = req.query_param("limit");
  if (!text) return kDefaultListLimit;
  int limit = 0;
  auto [p, ec] = std::from_chars(text->data(), text->data() + text->size(), limit);
  if (ec != std::errc() || p != text->data() + text->size() || limit < 1 || limit > kMaxListLimit)
    return http::validation_error(
        "limit", fmt::format("limit must be an integer from 1 to {}", kMaxListLimit));
  return limit;
}

}  // namespace

struct OrderModule::Impl {
  ModuleContext* ctx = nullptr;
  std::unique_ptr<bus::Subscription> status_sub;

  // Long-poll waiters (GET /api/orders/{id}?wait=…): answered when their order turns terminal or
  // their wait ends. A reaper thread handles expiry, so no HTTP thread is ever blocked.
  struct Waiter {
    std::string order_id;
    int64_t deadline_ms;
    http::Responder respond;
  };
  std::mutex wait_mu;
  std::condition_variable wait_cv;
  std::multimap<std::string, Waiter> waiters;  // by order id
  std::vector<std::string> to_wake;            // orders the bus turned terminal, for the reaper
  std::thread reaper;
  bool stopping = false;

  db::Database& db() { return ctx->db; }

  // --- HTTP ------------------------------------------------------------------------------------

  // An accepted POST waiting for the writer. Everything that needs no store is prepared on the
  // HTTP thread, so the writer (the one serial step) only runs SQL.
  struct CreateJob {
    NewOrder order;
    std::string key;        // Idempotency-Key; empty when absent
    std::string canonical;  // canonical request, only with a key
    std::string items;      // encoded items (the orders.items column)
    Envelope event;         // OrderCreated; its subject is the new order's id
    http::Responder respond;
  };
  struct Created {
    std::string order_id;
    std::string status;
    std::string correlation_id;
    bool replayed = false;
  };

  // Writer state: one thread stores every POST, many per commit (see write_loop).
  std::mutex create_mu;
  std::condition_variable create_cv;
  std::deque<CreateJob> create_queue;
  bool create_stopping = false;
  bool writer_idle = false;  // the writer waits on create_cv: a push must wake it
  std::thread writer;

  static http::Response unavailable(std::string message) {
    return http::error_response(Error{"UNAVAILABLE", std::move(message), {}, true});
  }

  void create(const http::Request& req, http::Responder respond) {
    auto parsed = parse_new_order(req.body);
    if (!parsed) return respond(http::error_response(parsed.error()));

    CreateJob job{std::move(parsed).value()};
    if (auto h = req.header("idempotency-key")) {
      job.key = std::string(*h);
      if (job.key.empty() || job.key.size() > kMaxIdempotencyKey)
        return respond(http::error_response(http::validation_error(
            "Idempotency-Key",
            fmt::format("Idempotency-Key must be 1..{} characters", kMaxIdempotencyKey))));
    }
    job.items = encode_items(job.order);
    if (!job.key.empty()) job.canonical = canonical_request(job.order, job.items);
    // Prepared even if the key turns out to be a replay: cheaper than doing it on the writer.
    std::string id = new_uuid();  // time-ordered: inserts append to the B-trees
    job.event = contract::make(kName, created_event(id, job.order));
    if (auto tp = req.header("traceparent"); tp && tp->size() == 55) job.event.traceparent = *tp;
    job.respond = std::move(respond);

    bool wake = false;
    {
      std::unique_lock lock(create_mu);
      if (create_stopping || create_queue.size() >= kMaxQueued) {
        bool stopping = create_stopping;
        lock.unlock();
        if (stopping) return job.respond(unavailable("the order service is shutting down"));
        return job.respond(unavailable("too many orders waiting to be stored; retry shortly")
                               .with_header("Retry-After", "1"));
      }
      create_queue.push_back(std::move(job));
      wake = writer_idle;
      writer_idle = false;
    }
    if (wake) create_cv.notify_one();
  }

  // Stores one order (or finds its Idempotency-Key): the unit of work of one POST.
  Result<Created> store_order(db::Tx& tx, const CreateJob& job, int64_t now) {
    if (!job.key.empty()) {
      auto s = tx.stmt(
          "SELECT k.request, k.order_id, o.status, o.correlation_id FROM idempotency_keys k "
          "JOIN orders o ON o.id = k.order_id WHERE k.key = ?");
      s.bind(1, job.key);
      if (s.step()) {
        if (s.col_view(0) != job.canonical)
          return Error{"IDEMPOTENCY_CONFLICT",
                       "Idempotency-Key was already used with a different request body",
                       "Idempotency-Key", false};
        return Created{s.col_text(1), s.col_text(2), s.col_text(3), true};
      }
    }
    const NewOrder& order = job.order;
    const std::string& id = job.event.subject;
    tx.stmt(
          "INSERT INTO orders (id, customer_id, currency, status, total_amount, payment_token, "
          "items, correlation_id, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)")
        .bind_all(id, order.customer_id, order.currency, "PENDING", int64_t{0}, order.payment_token,
                  job.items, job.event.correlation_id, now, now)
        .exec();
    tx.stmt("INSERT INTO order_history (order_id, seq, status, at) VALUES (?, 1, 'PENDING', ?)")
        .bind_all(id, now)
        .exec();
    if (!job.key.empty()) {
      tx.stmt(
            "INSERT INTO idempotency_keys (key, request, order_id, status_code, created_at) "
            "VALUES (?,?,?,202,?)")
          .bind_all(job.key, job.canonical, id, now)
          .exec();
    }
    db::outbox_add(tx, topics::kOrdersCreated, job.event);
    return Created{id, "PENDING", job.event.correlation_id, false};
  }

  static http::Response accepted(const Created& c) {
    auto resp = http::json(202, accepted_body(c.order_id, c.status, c.correlation_id));
    resp.with_header("Location", "/api/orders/" + c.order_id);
    if (c.replayed) resp.with_header("Idempotent-Replayed", "true");
    return resp;
  }

  // Group commit: whatever queued while the previous commit ran is stored in one batch (each
  // order a savepoint, so one failing order does not undo the others, and a repeated
  // Idempotency-Key sees the earlier order of the same batch), then every POST is answered.
  void write_loop() {
    std::vector<CreateJob> jobs;
    jobs.reserve(kMaxBatch);
    while (true) {
      {
        std::unique_lock lock(create_mu);
        while (!create_stopping && create_queue.empty()) {
          writer_idle = true;
          create_cv.wait(lock);
        }
        writer_idle = false;
        if (create_stopping) break;
        while (!create_queue.empty() && jobs.size() < kMaxBatch) {
          jobs.push_back(std::move(create_queue.front()));
          create_queue.pop_front();
        }
      }
      store_batch(jobs);
      jobs.clear();
    }
    // Shutting down: what is still queued was never started; the client may retry it.
    std::deque<CreateJob> left;
    {
      std::lock_guard lock(create_mu);
      left.swap(create_queue);
    }
    for (auto& j : left) j.respond(unavailable("the order service is shutting down"));
  }

  void store_batch(std::vector<CreateJob>& jobs) {
    std::vector<Result<Created>> results;
    results.reserve(jobs.size());
    Status committed;
    try {
      committed = db().batch([&] {
        int64_t now = now_ms();
        for (const auto& j : jobs)
          results.push_back(db().transaction([&](db::Tx& tx) { return store_order(tx, j, now); }));
      });
    } catch (const std::exception& e) {
      log::error(kTag, "storing {} orders failed: {}", jobs.size(), e.what());
      committed = Error{"INTERNAL", "internal error", {}, false};
    } catch (...) {
      log::error(kTag, "storing {} orders failed: a non-standard exception", jobs.size());
      committed = Error{"INTERNAL", "internal error", {}, false};
    }
    bool created = false;
    if (committed) {
      for (const auto& r : results) created = created || (r && !r->replayed);
    }
    if (created) ctx->outbox.notify();
    for (size_t i = 0; i < jobs.size(); ++i) {
      if (!committed)
        jobs[i].respond(http::error_response(committed.error()));
      else if (!results[i])
        jobs[i].respond(http::error_response(results[i].error()));
      else
        jobs[i].respond(accepted(*results[i]));
    }
  }

  // The order as JSON; `terminal` tells whether its status is final (read from the same row).
  Result<std::string> render_order(db::Tx& tx, std::string_view id, bool& terminal) {
    auto s = tx.stmt(fmt::format("SELECT {} FROM orders WHERE id = ?", kOrderColumns));
    s.bind(1, id);
    if (!s.step())
      return Error{"NOT_FOUND", fmt::format("order \"{}\" does not exist", id), "id", false};
    terminal = is_terminal(s.col_view(3));
    rapidjson::StringBuffer sb;
    Writer w(sb);
    w.StartObject();
    write_order_fields(w, s);
    w.Key("history");
    w.StartArray();
    auto h =
        tx.stmt("SELECT status, reason, at FROM order_history WHERE order_id = ? ORDER BY seq");
    h.bind(1, id);
    while (h.step()) {
      w.StartObject();
      write_string(w, "status", h.col_view(0));
      if (!h.col_null(1)) write_string(w, "reason", h.col_view(1));
      write_string(w, "at", format_rfc3339(h.col_int(2)));
      w.EndObject();
    }
    w.EndArray();
    w.EndObject();
    return std::string(sb.GetString(), sb.GetSize());
  }

  // The order as a response, and whether it is terminal.
  std::pair<http::Response, bool> load(const std::string& id) {
    bool done = false;
    auto body = db().read([&](db::Tx& tx) { return render_order(tx, id, done); });
    if (!body) return {http::error_response(body.error()), true};
    return {http::json(200, std::move(body).value()), done};
  }

  void get(const http::Request& req, http::Responder respond) {
    auto wait = parse_wait(req);
    if (!wait) return respond(http::error_response(wait.error()));
    std::string id(req.param("id"));
    auto [resp, done] = load(id);
    if (done || *wait == 0) return respond(std::move(resp));
    {
      std::lock_guard lock(wait_mu);
      if (stopping) return respond(std::move(resp));
      if (waiters.size() >= kMaxWaiters)
        return respond(http::error_response(
            Error{"UNAVAILABLE", "too many waiting requests; retry without wait", "wait", true}));
      waiters.emplace(id, Waiter{id, now_ms() + *wait, std::move(respond)});
    }
    wait_cv.notify_all();
    // The order may have turned terminal between load() and registration: check once more.
    wake_if_terminal(id);
  }

  // Answers every waiter of the order when its committed status is terminal. Reads the order
  // only when someone waits for it, and once.
  void wake_if_terminal(const std::string& id) {
    {
      std::lock_guard lock(wait_mu);
      if (waiters.find(id) == waiters.end()) return;
    }
    auto [resp, done] = load(id);
    if (!done) return;
    std::vector<Waiter> ready;
    {
      std::lock_guard lock(wait_mu);
      auto [b, e] = waiters.equal_range(id);
      for (auto it = b; it != e; ++it) ready.push_back(std::move(it->second));
      waiters.erase(b, e);
    }
    for (auto& w : ready) w.respond(resp);
  }

  void reap() {
    std::unique_lock lock(wait_mu);
    while (true) {
      int64_t now = now_ms();
      int64_t next = INT64_MAX;
      std::vector<Waiter> expired;
      for (auto it = waiters.begin(); it != waiters.end();) {
        if (stopping || it->second.deadline_ms <= now) {
          expired.push_back(std::move(it->second));
          it = waiters.erase(it);
        } else {
          next = std::min(next, it->second.deadline_ms);
          ++it;
        }
      }
      if (!expired.empty()) {
        lock.unlock();
        for (auto& w : expired) w.respond(load(w.order_id).first);
        lock.lock();
        continue;
      }
      if (!to_wake.empty()) {
        std::vector<std::string> ids;
        ids.swap(to_wake);
        lock.unlock();
        // Read after the bus batch released the store: a rolled-back status is not terminal.
        for (const auto& id : ids) wake_if_terminal(id);
        lock.lock();
        continue;
      }
      if (stopping) return;
      if (next == INT64_MAX)
        wait_cv.wait(lock);
      else
        wait_cv.wait_for(lock, std::chrono::milliseconds(next - now));
    }
  }

  http::Response list(const http::Request& req) {
    auto limit = parse_limit(req);
    if (!limit) return http::error_response(limit.error());
    auto customer = req.query_param("customerId");
    if (customer && !is_valid_id(*customer))
      return http::error_response(
          http::validation_error("customerId", "customerId is not a valid id"));
    auto body = db().read([&](db::Tx& tx) -> Result<std::string> {
      auto s = customer ? tx.stmt(fmt::format("SELECT {} FROM orders WHERE customer_id = ? "
                                              "ORDER BY created_at DESC, rowid DESC LIMIT ?",
                                              kOrderColumns))
                        : tx.stmt(fmt::format(
                              "SELECT {} FROM orders ORDER BY created_at DESC, rowid DESC LIMIT ?",
                              kOrderColumns));
      int idx = 1;
      if (customer) s.bind(idx++, *customer);
      s.bind(idx, *limit);
      rapidjson::StringBuffer sb;
      Writer w(sb);
      w.StartObject();
      w.Key("orders");
      w.StartArray();
      while (s.step()) {
        w.StartObject();
        write_order_fields(w, s);
        w.EndObject();
      }
      w.EndArray();
      w.EndObject();
      return std::string(sb.GetString(), sb.GetSize());
    });
    if (!body) return http::error_response(body.error());
    return http::json(200, std::move(body).value());
  }

  http::Response cancel(const http::Request& req) {
    std::string id(req.param("id"));
    struct Outcome {
      std::string status;
      bool emitted;
    };
    auto result = db().transaction([&](db::Tx& tx) -> Result<Outcome> {
      auto s = tx.stmt(
          "SELECT status, customer_id, cancel_requested_at, correlation_id FROM orders WHERE id = "
          "?");
      s.bind(1, id);
      if (!s.step())
        return Error{"NOT_FOUND", fmt::format("order \"{}\" does not exist", id), "id", false};
      std::string status = s.col_text(0);
      if (is_terminal(status))
        return Error{"CONFLICT", fmt::format("order is {} and can no longer be cancelled", status),
                     "status", false};
      if (!s.col_null(2))
        return Outcome{status, false};  // already requested: same answer, no new event
      std::string customer = s.col_text(1);
      std::string correlation = s.col_text(3);
      auto event = contract::make(kName, contract::OrderCancellationRequested{id, customer});
      event.correlation_id = correlation;  // the cancellation belongs to the order's flow
      int64_t now = now_ms();
      tx.stmt("UPDATE orders SET cancel_requested_at = ?, updated_at = ? WHERE id = ?")
          .bind_all(now, now, id)
          .exec();
      db::outbox_add(tx, topics::kOrdersCancellations, event);
      return Outcome{status, true};
    });
    if (!result) return http::error_response(result.error());
    if (result->emitted) ctx->outbox.notify();
    auto body = json::object([&](Writer& w) {
      write_string(w, "orderId", id);
      write_string(w, "status", result->status);
      json::write_bool(w, "cancellationRequested", true);
    });
    return http::json(202, std::move(body)).with_header("Location", "/api/orders/" + id);
  }

  // --- Bus -------------------------------------------------------------------------------------

  bus::Outcome on_status(const bus::Message& m) {
    if (m.envelope.type != contract::OrderStatusChanged::kType) return bus::Outcome::ack();
    auto ev = contract::OrderStatusChanged::decode(m.envelope.data);
    if (!ev) return bus::Outcome::dead_letter(ev.error().message + ": " + m.envelope.data);
    const std::string& order_id = ev->order_id;
    const OrderStatus status = ev->status;
    const std::string& reason = ev->reason;
    // STOCK_RESERVED carries the catalogue's pricing: the total and the lines as sold.
    std::optional<std::string> items;
    if (ev->pricing) items = contract::encode_lines(ev->pricing->items);
    int64_t at = now_ms();
    auto r = db().transaction([&](db::Tx& tx) -> Result<bool> {
      if (!db::inbox_claim(tx, kName, m.envelope.id)) return false;
      auto s = tx.stmt("SELECT status FROM orders WHERE id = ?");
      s.bind(1, order_id);
      if (!s.step()) {
        log::warn(kTag, "status {} for unknown order {} ignored", contract::name(status), order_id);
        return false;
      }
      auto current = contract::parse_order_status(s.col_view(0));
      // Never move a terminal order, never go backwards (redeliveries, reordering).
      if (!current || contract::rank(status) <= contract::rank(*current)) return false;
      auto upd = tx.stmt("UPDATE orders SET status = ?, reason = ?, updated_at = ? WHERE id = ?");
      upd.bind(1, contract::name(status)).bind(3, at).bind(4, order_id);
      if (reason.empty())
        upd.bind_null(2);
      else
        upd.bind(2, reason);
      upd.exec();
      if (ev->pricing) {
        tx.stmt("UPDATE orders SET total_amount = ?, items = ?, priced_at = ? WHERE id = ?")
            .bind_all(ev->pricing->total_amount, *items, at, order_id)
            .exec();
      }
      auto ins = tx.stmt(
          "INSERT INTO order_history (order_id, seq, status, reason, at) "
          "SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ? FROM order_history WHERE order_id = ?");
      ins.bind(1, order_id).bind(2, contract::name(status)).bind(4, at).bind(5, order_id);
      if (reason.empty())
        ins.bind_null(3);
      else
        ins.bind(3, reason);
      ins.exec();
      return true;
    });
    // Any store failure is worth retrying: the event itself was valid.
    if (!r) return bus::Outcome::retry(r.error().message);
    // Inside the bus's batch the status is not committed yet (the batch may still roll back): the
    // reaper answers the waiters, reading after the batch released the store.
    if (r.value() && contract::is_terminal(status)) {
      {
        std::lock_guard lock(wait_mu);
        to_wake.push_back(order_id);
      }
      wait_cv.notify_all();
    }
    return bus::Outcome::ack();
  }
};

OrderModule::OrderModule() : impl_(std::make_unique<Impl>()) {}
OrderModule::~OrderModule() { stop(); }

Status OrderModule::start(ModuleContext& ctx) {
  if (auto st = ctx.config.check_keys({}); !st) return st;
  impl_->ctx = &ctx;
  if (auto st = ctx.db.migrate(kName, kMigrations); !st) return st;

  auto* impl = impl_.get();
  ctx.router.add_async(http::Method::kPost, "/api/orders",
                       [impl](const http::Request& r, http::Responder respond) {
                         impl->create(r, std::move(respond));
                       });
  ctx.router.add(http::Method::kGet, "/api/orders",
                 [impl](const http::Request& r) { return impl->list(r); });
  ctx.router.add_async(http::Method::kGet, "/api/orders/{id}",
                       [impl](const http::Request& r, http::Responder respond) {
                         impl->get(r, std::move(respond));
                       });
  ctx.router.add(http::Method::kPost, "/api/orders/{id}/cancel",
                 [impl](const http::Request& r) { return impl->cancel(r); });

  bus::SubscriptionOptions options;
  options.group = "ecomd-order";
  options.topics = {std::string(topics::kOrdersStatus)};
  options.store = &ctx.db;
  auto sub =
      ctx.bus.subscribe(options, [impl](const bus::Message& m) { return impl->on_status(m); });
  if (!sub) return sub.error();
  impl_->status_sub = std::move(sub).value();
  impl_->reaper = std::thread([impl] { impl->reap(); });
  impl_->writer = std::thread([impl] { impl->write_loop(); });
  return {};
}

void OrderModule::stop() noexcept {
  if (!impl_) return;
  {
    // First, so POSTs arriving from now on are refused at once.
    std::lock_guard lock(impl_->create_mu);
    impl_->create_stopping = true;
  }
  impl_->create_cv.notify_all();
  if (impl_->status_sub) {
    impl_->status_sub->close();
    impl_->status_sub.reset();
  }
  {
    std::lock_guard lock(impl_->wait_mu);
    impl_->stopping = true;
  }
  impl_->wait_cv.notify_all();
  if (impl_->reaper.joinable()) impl_->reaper.join();  // answers the remaining waiters first
  // The batch being stored is finished and answered; queued POSTs are answered 503.
  if (impl_->writer.joinable()) impl_->writer.join();
}

}  // namespace ecom::order
