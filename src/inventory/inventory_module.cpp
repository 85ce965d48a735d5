#include "ecom/inventory/inventory_module.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>

#include "ecom/bus/event_bus.hpp"
#include "ecom/bus/handler.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/contract/events.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "ecom/http/router.hpp"
#include "inventory_json.hpp"
#include "inventory_service.hpp"

namespace ecom::inventory {
namespace {

constexpr std::string_view kTag = InventoryModule::kName;

// Compares in time independent of where the inputs differ, so the admin token cannot be guessed
// byte by byte from response timings.
bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() == b.size() ? 0U : 1U;
  for (size_t i = 0; i < n; ++i) {
    const auto x = static_cast<unsigned char>(i < a.size() ? a[i] : 0);
    const auto y = static_cast<unsigned char>(i < b.size() ? b[i] : 0);
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

// Store failures are not the client's fault: busy means try again (503), the rest is a 500.
http::Response store_error(const Error& e) {
  if (e.code == ErrorCode::kValidationFailed || e.code == ErrorCode::kNotFound ||
      e.code == ErrorCode::kConflict)
    return http::error_response(e);
  if (e.code == ErrorCode::kStoreUnavailable) return http::error_response(e);
  if (e.retryable) {
    return http::error_response(
        Error{ErrorCode::kUnavailable, "the inventory store is busy; retry", {}, true});
  }
  log::error(kTag, "store error: {} {}", e.code, e.message);
  return http::error_response(Error{ErrorCode::kInternal, "internal error", {}, false});
}

// A product body: a JSON object of known fields only. `fields` lists the allowed names; the
// first unknown one is the error (a typo must not be ignored).
Result<rapidjson::Document> parse_body(const http::Request& req,
                                       std::initializer_list<std::string_view> fields) {
  rapidjson::Document d;
  d.Parse(req.body.data(), req.body.size());
  if (d.HasParseError()) {
    return Error{ErrorCode::kMalformedJson,
                 std::string("request body is not valid JSON: ") +
                     rapidjson::GetParseError_En(d.GetParseError()) + " at offset " +
                     std::to_string(d.GetErrorOffset()),
                 {},
                 false};
  }
  if (!d.IsObject()) return http::validation_error("", "request body must be a JSON object");
  for (const auto& m : d.GetObject()) {
    const std::string_view k(m.name.GetString(), m.name.GetStringLength());
    if (std::find(fields.begin(), fields.end(), k) == fields.end()) {
      std::string allowed;
      for (auto f : fields) allowed += (allowed.empty() ? "" : ", ") + std::string(f);
      return http::validation_error(
          std::string(k), "unknown field '" + std::string(k) + "' (allowed: " + allowed + ")");
    }
  }
  return d;
}

// The optional members of a product body, type-checked; ranges are the service's to check.
struct Fields {
  std::optional<std::string> sku;
  std::optional<std::string> name;
  std::optional<int64_t> available;
  std::optional<int64_t> unit_amount;
  std::optional<std::string> currency;
};

Result<Fields> read_fields(const rapidjson::Document& d) {
  Fields f;
  auto text = [&](const char* key, std::optional<std::string>& out, const char* what) -> Status {
    auto it = d.FindMember(key);
    if (it == d.MemberEnd()) return {};
    if (!it->value.IsString()) return http::validation_error(key, what);
    out = std::string(it->value.GetString(), it->value.GetStringLength());
    return {};
  };
  auto integer = [&](const char* key, std::optional<int64_t>& out, const char* what) -> Status {
    auto it = d.FindMember(key);
    if (it == d.MemberEnd()) return {};
    if (!it->value.IsInt64() || it->value.GetInt64() < 0) return http::validation_error(key, what);
    out = it->value.GetInt64();
    return {};
  };
  for (const Status& st : {
           text("sku", f.sku, "sku must be a string"),
           text("name", f.name, "name must be a string"),
           integer("available", f.available, "available must be an integer >= 0"),
           integer("unitAmount", f.unit_amount, "unitAmount must be an integer >= 0 (minor units)"),
           text("currency", f.currency, "currency must be an ISO 4217 code, e.g. USD"),
       }) {
    if (!st) return st.error();
  }
  return f;
}

Error required(const char* field) {
  return http::validation_error(field, std::string(field) + " is required");
}

}  // namespace

struct InventoryModule::Impl {
  Rules rules;
  std::string admin_token;
  std::vector<Product> seed;  ///< inserted when the catalogue is empty
  db::Database* db = nullptr;
  bus::OutboxRelay* outbox = nullptr;
  std::unique_ptr<bus::Subscription> subscription;

  void add_routes(http::Router& router);
  bus::Outcome on_message(const bus::Message& m);
  bus::Outcome apply(const bus::Message& m);

  http::Response list(const http::Request& req);
  http::Response get(const http::Request& req);
  http::Response create(const http::Request& req);
  http::Response put(const http::Request& req);
  http::Response remove(const http::Request& req);
  /// The admin check of every route that changes the catalogue: nullopt when allowed, else the
  /// 401 to send. The one place to replace when tokens become JWTs.
  std::optional<http::Response> authorize(const http::Request& req) const;
};

InventoryModule::InventoryModule() : impl_(std::make_unique<Impl>()) {}
InventoryModule::~InventoryModule() { stop(); }

Status InventoryModule::configure(const ConfigSection& config) {
  Impl& s = *impl_;
  return ConfigSpec{}
      .string("admin_token", s.admin_token)
      .integer("low_stock_threshold", s.rules.low_stock_threshold, 0, INT64_MAX)
      .custom("seed",
              [&s](const rapidjson::Value& v, const std::string& path) -> Status {
                auto seed = parse_seed(v, path);
                if (!seed) return seed.error();
                s.seed = std::move(seed).value();
                return {};
              })
      .read(config);
}

Status InventoryModule::start(ModuleContext& ctx) {
  Impl& s = *impl_;
  s.db = &ctx.db;
  s.outbox = &ctx.outbox;

  if (auto st = ctx.db.migrate(kName, migrations()); !st) return st;
  auto seeded =
      ctx.db.transaction([&](db::Tx& tx) -> Result<int64_t> { return seed_if_empty(tx, s.seed); });
  if (!seeded) return seeded.error();
  if (seeded.value() > 0) log::info(kTag, "seeded {} products from config", seeded.value());
  if (s.admin_token.empty()) {
    log::warn(kTag,
              "inventory.admin_token is not set: product changes (POST, PUT, DELETE "
              "/api/inventory) are disabled");
  }

  s.add_routes(ctx.router);
  bus::SubscriptionOptions options{.group = "ecomd-inventory",
                                   .topics = {std::string(topics::kInventoryCommands)},
                                   .store = &ctx.db};
  // Replicas sharing a PostgreSQL store: a batch holds the row locks of every product it
  // touched until it commits, so batches of two replicas serialise on popular products, and
  // deadlock when they took them in different orders. One order per transaction holds them for
  // one commit, in sku order (reserve_stock).
  if (ctx.db.postgres()) options.max_batch = 1;
  auto sub = ctx.bus.subscribe(std::move(options),
                               [&s](const bus::Message& m) { return s.on_message(m); });
  if (!sub) return sub.error();
  s.subscription = std::move(sub).value();
  return {};
}

void InventoryModule::stop() noexcept {
  if (impl_ && impl_->subscription) {
    impl_->subscription->close();
    impl_->subscription.reset();
  }
}

bus::Outcome InventoryModule::Impl::on_message(const bus::Message& m) {
  return bus::guarded(kTag, m, [&] { return apply(m); });
}

bus::Outcome InventoryModule::Impl::apply(const bus::Message& m) {
  const Envelope& env = m.envelope;

  // Parse before opening the transaction: bad data can never succeed, so it is not retried.
  Result<bool> applied = false;
  if (env.type == event_types::kReserveStock) {
    auto cmd = parse_reserve_stock(env.data);
    if (!cmd) return bus::reject(kTag, m, cmd.error());
    applied = db->transaction([&](db::Tx& tx) -> Result<bool> {
      if (!db::inbox_claim(tx, kTag, env.id, m.once)) return false;
      auto r = reserve_stock(tx, rules, cmd.value(), env);
      log::debug(kTag, "order {}: {}{}", cmd->order_id, r.reserved ? "reserved" : r.reason,
                 r.repeated ? " (replayed)" : "");
      return true;
    });
  } else if (env.type == event_types::kReleaseStock || env.type == event_types::kCommitStock) {
    auto order_id = parse_order_ref(env.data);
    if (!order_id) return bus::reject(kTag, m, order_id.error());
    const bool commit = env.type == event_types::kCommitStock;
    applied = db->transaction([&](db::Tx& tx) -> Result<bool> {
      if (!db::inbox_claim(tx, kTag, env.id, m.once)) return false;
      auto lines = commit ? commit_stock(tx, rules, order_id.value(), env)
                          : release_stock(tx, rules, order_id.value(), env);
      log::debug(kTag, "order {}: {} {} lines", order_id.value(), commit ? "committed" : "released",
                 lines.size());
      return true;
    });
  } else {
    return bus::reject(
        kTag, m,
        Error{ErrorCode::kInvalidPayload, "unknown command type on inventory.commands", "type"});
  }

  if (!applied) return bus::store_failure(kTag, m, applied.error());
  if (applied.value()) outbox->notify();
  return bus::Outcome::ack();
}

void InventoryModule::Impl::add_routes(http::Router& router) {
  router.add(http::Method::kGet, "/api/inventory",
             [this](const http::Request& r) { return list(r); });
  router.add(http::Method::kGet, "/api/inventory/{sku}",
             [this](const http::Request& r) { return get(r); });
  router.add(http::Method::kPost, "/api/inventory",
             [this](const http::Request& r) { return create(r); });
  router.add(http::Method::kPut, "/api/inventory/{sku}",
             [this](const http::Request& r) { return put(r); });
  router.add(http::Method::kDelete, "/api/inventory/{sku}",
             [this](const http::Request& r) { return remove(r); });
}

http::Response InventoryModule::Impl::list(const http::Request&) {
  auto products =
      db->read([](db::Tx& tx) -> Result<std::vector<Product>> { return list_products(tx); });
  if (!products) return store_error(products.error());
  return http::json(200, json::object([&](json::Writer& w) {
                      json::key(w, "items");
                      w.StartArray();
                      for (const auto& p : products.value()) json::write_product(w, p);
                      w.EndArray();
                    }));
}

http::Response InventoryModule::Impl::get(const http::Request& req) {
  const std::string sku(req.param("sku"));
  auto product =
      db->read([&](db::Tx& tx) -> Result<std::optional<Product>> { return find_product(tx, sku); });
  if (!product) return store_error(product.error());
  if (!product.value()) {
    return http::error_response(Error{ErrorCode::kNotFound, "no product with sku " + sku, "sku"});
  }
  return http::json(200, json::product_json(*product.value()));
}

std::optional<http::Response> InventoryModule::Impl::authorize(const http::Request& req) const {
  auto deny = [](std::string message) {
    auto r = http::error_response(Error{ErrorCode::kUnauthorized, std::move(message), {}, false});
    r.with_header("WWW-Authenticate", "Bearer realm=\"ecomd-inventory\"");
    return r;
  };
  if (admin_token.empty()) {
    return deny(
        "no admin token is configured (inventory.admin_token); inventory changes are "
        "disabled");
  }
  auto header = req.header("authorization");
  constexpr std::string_view kScheme{"bearer "};
  if (!header || header->size() <= kScheme.size() ||
      !std::equal(kScheme.begin(), kScheme.end(), header->begin(), [](char a, char b) {
        return a == std::tolower(static_cast<unsigned char>(b));
      })) {
    return deny("missing bearer token: send Authorization: Bearer <admin token>");
  }
  std::string_view token = header->substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (!constant_time_equal(token, admin_token)) return deny("invalid admin token");
  return std::nullopt;
}

http::Response InventoryModule::Impl::create(const http::Request& req) {
  if (auto denied = authorize(req)) return *denied;
  auto d = parse_body(req, {"sku", "name", "unitAmount", "currency", "available"});
  if (!d) return http::error_response(d.error());
  auto f = read_fields(*d);
  if (!f) return http::error_response(f.error());
  // The price and currency are what orders are charged: no defaults for them.
  if (!f->sku) return http::error_response(required("sku"));
  if (!f->name) return http::error_response(required("name"));
  if (!f->unit_amount) return http::error_response(required("unitAmount"));
  if (!f->currency) return http::error_response(required("currency"));
  NewProduct n{*f->sku, *f->name, *f->unit_amount, *f->currency, f->available.value_or(0)};

  auto product =
      db->transaction([&](db::Tx& tx) -> Result<Product> { return create_product(tx, n); });
  if (!product) return store_error(product.error());
  outbox->notify();
  log::info(kTag, "admin created {} available={}", product->sku, product->available);
  return http::json(201, json::product_json(product.value()))
      .with_header("Location", "/api/inventory/" + product->sku);
}

http::Response InventoryModule::Impl::put(const http::Request& req) {
  if (auto denied = authorize(req)) return *denied;
  auto d = parse_body(req, {"available", "name", "unitAmount", "currency"});
  if (!d) return http::error_response(d.error());
  auto f = read_fields(*d);
  if (!f) return http::error_response(f.error());
  if (!f->available && !f->name && !f->unit_amount && !f->currency) {
    return http::error_response(http::validation_error(
        "", "the body must set at least one of available, name, unitAmount, currency"));
  }
  ProductUpdate u{std::string(req.param("sku")), f->available, f->name, f->unit_amount,
                  f->currency};

  auto product =
      db->transaction([&](db::Tx& tx) -> Result<Product> { return update_product(tx, rules, u); });
  if (!product) return store_error(product.error());
  outbox->notify();
  log::info(kTag, "admin updated {} available={}", product->sku, product->available);
  return http::json(200, json::product_json(product.value()));
}

http::Response InventoryModule::Impl::remove(const http::Request& req) {
  if (auto denied = authorize(req)) return *denied;
  const std::string sku(req.param("sku"));
  auto product =
      db->transaction([&](db::Tx& tx) -> Result<Product> { return delete_product(tx, sku); });
  if (!product) return store_error(product.error());
  outbox->notify();
  log::info(kTag, "admin deleted {} (reserved={} stay held until their orders settle)", sku,
            product->reserved);
  http::Response r;
  r.status = 204;
  return r;
}

}  // namespace ecom::inventory
