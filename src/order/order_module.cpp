#include "ecom/order/order_module.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <memory>
#include <optional>
#include <string>

#include "ecom/bus/event_bus.hpp"
#include "ecom/contract/events.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/http/router.hpp"
#include "order_json.hpp"
#include "order_service.hpp"
#include "validation.hpp"

namespace ecom::order {
namespace {

constexpr size_t kMaxIdempotencyKey = 255;
constexpr int kDefaultListLimit = 20;
constexpr int kMaxListLimit = 200;

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
  // n is bounded before it is scaled: n * scale must not overflow.
  if (ec != std::errc() || p != v.data() + v.size() || n < 0 ||
      n > OrderService::kMaxWaitMs / scale)
    return http::validation_error("wait", "wait must be a duration up to 60s, e.g. 5s or 500ms");
  return n * scale;
}

// `status=PENDING` or `status=PENDING,CONFIRMED`: any of the contract's status names.
Result<std::vector<contract::OrderStatus>> parse_statuses(std::string_view text) {
  std::vector<contract::OrderStatus> out;
  while (true) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    auto st = contract::parse_order_status(item);
    if (!st) {
      std::string names;
      for (auto s : contract::kAllStatuses)
        names += (names.empty() ? "" : ", ") + std::string(contract::name(s));
      return http::validation_error(
          "status", fmt::format("status must be one or a comma-separated list of: {} (got '{}')",
                                names, item));
    }
    if (std::find(out.begin(), out.end(), *st) == out.end()) out.push_back(*st);
    if (comma == std::string_view::npos) return out;
    text.remove_prefix(comma + 1);
  }
}

// An RFC 3339 time of the created-at range. A '+' of an offset that was not percent-encoded
// arrives as a space (form encoding): it can only have meant '+', so it is read as one.
Result<std::optional<int64_t>> parse_time(const http::Request& req, std::string_view name) {
  auto text = req.query_param(name);
  if (!text) return std::optional<int64_t>();
  std::replace(text->begin(), text->end(), ' ', '+');
  auto ms = parse_rfc3339_ms(*text);
  if (!ms)
    return http::validation_error(
        std::string(name),
        fmt::format("{} must be an RFC 3339 date-time, e.g. 2026-11-22T02:52:54Z", name));
  return std::optional<int64_t>(*ms);
}

// GET /api/orders: the filters and the page; every error names the query parameter at fault.
Result<store::ListQuery> parse_list_query(const http::Request& req) {
  store::ListQuery q;
  auto limit = http::int_query_param(req, "limit", kDefaultListLimit, 1, kMaxListLimit);
  if (!limit) return limit.error();
  q.limit = static_cast<int>(*limit);
  q.customer_id = req.query_param("customerId");
  if (q.customer_id && !is_valid_id(*q.customer_id))
    return http::validation_error("customerId", "customerId is not a valid id");
  if (auto status = req.query_param("status")) {
    auto statuses = parse_statuses(*status);
    if (!statuses) return statuses.error();
    q.statuses = std::move(statuses).value();
  }
  auto from = parse_time(req, "from");
  if (!from) return from.error();
  q.from_ms = *from;
  auto to = parse_time(req, "to");
  if (!to) return to.error();
  q.to_ms = *to;
  if (q.from_ms && q.to_ms && *q.from_ms > *q.to_ms)
    return http::validation_error("to", "to must not be before from");
  if (auto cursor = req.query_param("cursor")) {
    q.after = decode_cursor(*cursor);
    if (!q.after)
      return http::validation_error(
          "cursor", "cursor is not one this server issued: pass a nextCursor back unchanged");
  }
  return q;
}

// The OrderCreated event. It carries no total: the order is priced when its stock is reserved;
// the client's quotes travel along to be checked.
contract::OrderCreated created_event(std::string order_id, const NewOrder& o) {
  std::optional<std::string> token;
  if (!o.payment_token.empty()) token = o.payment_token;
  return {std::move(order_id), o.customer_id,   o.currency, o.items,
          o.expected_total,    std::move(token)};
}

http::Response accepted(const store::Created& c) {
  auto resp = http::json(202, accepted_json(c));
  resp.with_header("Location", "/api/orders/" + c.order_id);
  if (c.replayed) resp.with_header("Idempotent-Replayed", "true");
  return resp;
}

http::Response unavailable(std::string message) {
  return http::error_response(Error{ErrorCode::kUnavailable, std::move(message), {}, true});
}

}  // namespace

struct OrderModule::Impl {
  std::unique_ptr<OrderService> service;
  std::unique_ptr<bus::Subscription> status_sub;

  // POST /api/orders: validated and prepared on the HTTP thread (id, OrderCreated, encoded
  // JSON), so the writer, the one serial step, only runs SQL.
  void create(const http::Request& req, http::Responder respond) {
    auto parsed = parse_new_order(req.body);
    if (!parsed) return respond(http::error_response(parsed.error()));
    store::NewOrderRow row{std::move(parsed).value()};
    if (auto h = req.header("idempotency-key")) {
      row.key = std::string(*h);
      if (row.key.empty() || row.key.size() > kMaxIdempotencyKey)
        return respond(http::error_response(http::validation_error(
            "Idempotency-Key",
            fmt::format("Idempotency-Key must be 1..{} characters", kMaxIdempotencyKey))));
    }
    row.items = encode_items(row.order);
    if (!row.key.empty()) row.canonical = canonical_request(row.order, row.items);
    // Prepared even if the key turns out to be a replay: cheaper than doing it on the writer.
    std::string id = new_uuid();  // time-ordered: inserts append to the B-trees
    row.event = contract::make(kName, created_event(id, row.order));
    if (auto tp = req.header("traceparent"); tp && tp->size() == 55) row.event.traceparent = *tp;

    auto shared = std::make_shared<http::Responder>(std::move(respond));
    auto admitted = service->create(std::move(row), [shared](Result<store::Created> r) {
      (*shared)(r ? accepted(*r) : http::error_response(r.error()));
    });
    switch (admitted) {
      case OrderService::Admission::kQueued:
        return;
      case OrderService::Admission::kStopping:
        return (*shared)(unavailable("the order service is shutting down"));
      case OrderService::Admission::kFull:
        return (*shared)(unavailable("too many orders waiting to be stored; retry shortly"));
    }
  }

  void get(const http::Request& req, http::Responder respond) {
    auto wait = parse_wait(req);
    if (!wait) return respond(http::error_response(wait.error()));
    service->get(
        std::string(req.param("id")), *wait,
        [respond = std::move(respond)](Result<store::OrderView> o) {
          respond(o ? http::json(200, order_json(*o, true)) : http::error_response(o.error()));
        });
  }

  http::Response list(const http::Request& req) {
    auto query = parse_list_query(req);
    if (!query) return http::error_response(query.error());
    auto page = service->list(*query);
    if (!page) return http::error_response(page.error());
    return http::json(200, order_list_json(*page));
  }

  http::Response cancel(const http::Request& req) {
    std::string id(req.param("id"));
    auto r = service->cancel(id);
    if (!r) return http::error_response(r.error());
    return http::json(202, cancel_json(id, r->status)).with_header("Location", "/api/orders/" + id);
  }
};

OrderModule::OrderModule() : impl_(std::make_unique<Impl>()) {}
OrderModule::~OrderModule() { stop(); }

// The order module has no options yet: any key is a typo.
Status OrderModule::configure(const ConfigSection& config) { return ConfigSpec{}.read(config); }

Status OrderModule::start(ModuleContext& ctx) {
  if (auto st = store::migrate(ctx.db); !st) return st;
  impl_->service = std::make_unique<OrderService>(ctx.db, ctx.outbox, ctx.clock);

  auto* impl = impl_.get();
  ctx.router.add_async(http::Method::kPost, "/api/orders",
                       [impl](const http::Request& r, http::Responder respond) {
                         impl->create(r, std::move(respond));
                       });
  ctx.router.add(http::Method::kGet, "/api/orders",
                 [impl](const http::Request& r) { return impl->list(r); },
                 {.query = {"status", "customerId", "from", "to", "limit", "cursor"}});
  ctx.router.add_async(
      http::Method::kGet, "/api/orders/{id}",
      [impl](const http::Request& r, http::Responder respond) { impl->get(r, std::move(respond)); },
      {.query = {"wait"}});
  ctx.router.add(http::Method::kPost, "/api/orders/{id}/cancel",
                 [impl](const http::Request& r) { return impl->cancel(r); });

  bus::SubscriptionOptions options;
  options.group = "ecomd-order";
  options.topics = {std::string(contract::OrderStatusChanged::kTopic)};
  options.store = &ctx.db;
  auto* service = impl_->service.get();
  auto sub = ctx.bus.subscribe(options,
                               [service](const bus::Message& m) { return service->on_status(m); });
  if (!sub) return sub.error();
  impl_->status_sub = std::move(sub).value();
  service->start();
  return {};
}

void OrderModule::stop() noexcept {
  if (!impl_ || !impl_->service) return;
  // First, so POSTs arriving from now on are refused at once; the batch being stored finishes
  // and the long polls are answered.
  impl_->service->stop();
  if (impl_->status_sub) {
    impl_->status_sub->close();
    impl_->status_sub.reset();
  }
}

}  // namespace ecom::order
