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
  if (e.code == ErrorCode::kValidationFailed || e.code == ErrorCode::kNotFound)
    return http::error_response(e);
  if (e.retryable) {
    return http::error_response(
        Error{ErrorCode::kUnavailable, "the inventory store is busy; retry", {}, true});
  }
  log::error(kTag, "store error: {} {}", e.code, e.message);
  return http::error_response(Error{ErrorCode::kInternal, "internal error", {}, false});
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
  http::Response put(const http::Request& req);
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
    log::warn(kTag, "inventory.admin_token is not set: PUT /api/inventory/{{sku}} is disabled");
  }

  s.add_routes(ctx.router);
  auto sub = ctx.bus.subscribe(
      bus::SubscriptionOptions{.group = "ecomd-inventory",
                               .topics = {std::string(topics::kInventoryCommands)},
                               .store = &ctx.db},
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
      if (!db::inbox_claim(tx, kTag, env.id)) return false;
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
      if (!db::inbox_claim(tx, kTag, env.id)) return false;
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
  router.add(http::Method::kPut, "/api/inventory/{sku}",
             [this](const http::Request& r) { return put(r); });
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

http::Response InventoryModule::Impl::put(const http::Request& req) {
  if (auto denied = authorize(req)) return *denied;

  rapidjson::Document d;
  d.Parse(req.body.data(), req.body.size());
  if (d.HasParseError()) {
    return http::error_response(Error{ErrorCode::kMalformedJson,
                                      std::string("request body is not valid JSON: ") +
                                          rapidjson::GetParseError_En(d.GetParseError()) +
                                          " at offset " + std::to_string(d.GetErrorOffset()),
                                      {},
                                      false});
  }
  if (!d.IsObject()) {
    return http::error_response(http::validation_error("", "request body must be a JSON object"));
  }
  for (const auto& m : d.GetObject()) {
    const std::string_view k(m.name.GetString(), m.name.GetStringLength());
    if (k != "available" && k != "name" && k != "unitAmount" && k != "currency") {
      return http::error_response(http::validation_error(
          std::string(k), "unknown field '" + std::string(k) +
                              "' (allowed: available, name, unitAmount, currency)"));
    }
  }

  StockUpdate u;
  u.sku = std::string(req.param("sku"));
  auto available = d.FindMember("available");
  if (available == d.MemberEnd() || !available->value.IsInt64() ||
      available->value.GetInt64() < 0) {
    return http::error_response(
        http::validation_error("available", "available must be an integer >= 0"));
  }
  u.available = available->value.GetInt64();
  if (auto it = d.FindMember("name"); it != d.MemberEnd()) {
    if (!it->value.IsString()) {
      return http::error_response(http::validation_error("name", "name must be a string"));
    }
    u.name = std::string(it->value.GetString(), it->value.GetStringLength());
  }
  if (auto it = d.FindMember("unitAmount"); it != d.MemberEnd()) {
    if (!it->value.IsInt64()) {
      return http::error_response(
          http::validation_error("unitAmount", "unitAmount must be an integer >= 0 (minor units)"));
    }
    u.unit_amount = it->value.GetInt64();
  }
  if (auto it = d.FindMember("currency"); it != d.MemberEnd()) {
    if (!it->value.IsString()) {
      return http::error_response(
          http::validation_error("currency", "currency must be an ISO 4217 code, e.g. USD"));
    }
    u.currency = std::string(it->value.GetString(), it->value.GetStringLength());
  }

  auto product =
      db->transaction([&](db::Tx& tx) -> Result<Product> { return set_stock(tx, rules, u); });
  if (!product) return store_error(product.error());
  outbox->notify();
  log::info(kTag, "admin set {} available={}", product->sku, product->available);
  return http::json(200, json::product_json(product.value()));
}

}  // namespace ecom::inventory
