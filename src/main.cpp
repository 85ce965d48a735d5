// ecomd: every service of the shop in one binary; --role picks which run in this process.

#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "ecom/bus/embedded_bus.hpp"
#include "ecom/bus/event_bus.hpp"
#include "ecom/bus/kafka_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/config.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/metrics.hpp"
#include "ecom/core/module.hpp"
#include "ecom/core/registry.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"
#include "ecom/http/router.hpp"
#include "ecom/http/server.hpp"
#include "ecom/inventory/inventory_module.hpp"
#include "ecom/notification/notification_module.hpp"
#include "ecom/order/order_module.hpp"
#include "ecom/payment/payment_module.hpp"
#include "ecom/saga/saga_module.hpp"

namespace {

using namespace ecom;

constexpr std::string_view kTag{"ecomd"};
constexpr int kExitConfig = 2;
constexpr int kExitRuntime = 1;

template <typename M>
void add_module(ModuleRegistry& registry) {
  registry.add(M::kName, [] { return std::make_unique<M>(); });
}

// The explicit list of modules in this binary, in start-up order (consumers of a topic may start
// before its producers: the bus keeps events until they are consumed).
ModuleRegistry make_registry() {
  ModuleRegistry registry;
  add_module<order::OrderModule>(registry);
  add_module<inventory::InventoryModule>(registry);
  add_module<payment::PaymentModule>(registry);
  add_module<notification::NotificationModule>(registry);
  add_module<saga::SagaModule>(registry);
  return registry;
}

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "ecomd: %s\n", message.c_str());
  if (code == kExitConfig) std::fprintf(stderr, "Run 'ecomd --help' for usage.\n");
  return code;
}

// A role's module, created and configured but not started.
struct ConfiguredRole {
  std::string name;
  std::unique_ptr<Module> module;
};

// Creates each role's module and has it read its config section, all before anything opens or
// starts, so a bad key fails start-up (exit 2) with nothing running.
Result<std::vector<ConfiguredRole>> configure_roles(const std::vector<std::string>& roles,
                                                    ModuleRegistry& registry,
                                                    const Settings& settings) {
  std::vector<ConfiguredRole> out;
  for (const auto& role : roles) {
    ConfiguredRole r{role, std::move(registry.create(role)).value()};
    if (auto st = r.module->configure(settings.section(role)); !st) return st.error();
    out.push_back(std::move(r));
  }
  return out;
}

// One hosted role and what it owns. Members are declared in the order they are built, so they
// are destroyed in reverse, each after everything that uses it: the module (its destructor stops
// its subscriptions and timers), then the context, the relay (stopping drains it), the store.
struct Slot {
  std::string role;
  std::string path;
  std::unique_ptr<db::Database> db;
  metrics::Registry::Hook outbox_metrics;  // reads `db` on a scrape, so it goes before it
  std::unique_ptr<bus::OutboxRelay> relay;
  std::unique_ptr<ModuleContext> ctx;
  std::unique_ptr<Module> module;
};

// The roles of this process: started in one place, stopped in one place, in reverse. A start that
// fails tears down what it built of its own slot, and ~Host (or stop()) the started roles, so no
// early return can leave a consumer running on a store or a context that is gone.
class Host {
 public:
  Host(bus::EventBus& bus, http::Router& router, const Settings& settings)
      : bus_(bus), router_(router), settings_(settings) {}
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;
  ~Host() { stop(); }

  // Starts the configured roles in order: opens each one's store, creates its relay and starts
  // the module, then the relay. A failure stops what this role built; stop() or ~Host the others.
  Status start(std::vector<ConfiguredRole> roles) {
    for (auto& role : roles) {
      auto slot = std::make_unique<Slot>();
      slot->role = std::move(role.name);
      slot->module = std::move(role.module);
      if (auto st = start_slot(*slot); !st) return st;
      log::info(kTag, "module {} started ({})", slot->role, slot->path);
      slots_.push_back(std::move(slot));
    }
    return {};
  }

  // No new consumption first (modules in reverse start order), then flush what was committed
  // (every relay drains), then release in reverse. Idempotent.
  void stop() noexcept {
    for (auto it = slots_.rbegin(); it != slots_.rend(); ++it) (*it)->module->stop();
    for (const auto& slot : slots_) slot->relay->stop();
    while (!slots_.empty()) slots_.pop_back();
  }

  const std::vector<std::unique_ptr<Slot>>& slots() const noexcept { return slots_; }

 private:
  Status start_slot(Slot& slot) {
    auto store = open_store(slot);
    if (!store)
      return Error{ErrorCode::kUnavailable,
                   "cannot open " + slot.path + ": " + store.error().message};
    slot.db = std::move(store).value();
    if (auto st = db::migrate_messaging(*slot.db); !st)
      return Error{ErrorCode::kUnavailable, slot.path + ": " + st.error().message};
    slot.outbox_metrics = outbox_metrics(slot.role, *slot.db);
    slot.relay = std::make_unique<bus::OutboxRelay>(*slot.db, bus_);
    slot.relay->set_role(slot.role);
    slot.ctx = std::unique_ptr<ModuleContext>(
        new ModuleContext{bus_, *slot.relay, router_, *slot.db, settings_});
    if (auto st = slot.module->start(*slot.ctx); !st) {
      // The module may have subscribed before it failed: stop it before its store goes.
      stop_slot(slot);
      return Error{st.error().code, slot.role + ": " + st.error().message};
    }
    slot.relay->start();
    return {};
  }

  // The role's store: its SQLite file in the data dir, or its schema on the PostgreSQL server.
  Result<std::unique_ptr<db::Database>> open_store(Slot& slot) const {
    if (settings_.store != "postgres") {
      slot.path = (std::filesystem::path(settings_.data_dir) / (slot.role + ".db")).string();
      return db::Database::open(slot.path);
    }
    db::Options options;
    options.schema = settings_.store_schema_prefix + slot.role;
    if (auto password = process_env("ECOMD_STORE_PASSWORD")) options.password = *password;
    slot.path = db::redact_url(settings_.store_url) + " schema " + options.schema;
    return db::Database::open(settings_.store_url, std::move(options));
  }

  // The outbox of a role, read on each scrape: a count there is cheaper than keeping one current
  // on every commit.
  static metrics::Registry::Hook outbox_metrics(const std::string& role, db::Database& db) {
    auto& registry = metrics::registry();
    auto rows = registry.gauge("ecomd_outbox_rows", "Outbox rows waiting to be published.",
                               {{"role", role}});
    auto oldest = registry.gauge("ecomd_outbox_oldest_age_seconds",
                                 "Age of the oldest outbox row waiting; 0 when none waits.",
                                 {{"role", role}});
    return registry.on_collect([&db, rows, oldest] {
      auto backlog =
          db.read([](db::Tx& tx) -> Result<db::OutboxBacklog> { return db::outbox_backlog(tx); });
      if (!backlog) return;
      rows.set(static_cast<double>(backlog->rows));
      const int64_t age_ms =
          backlog->rows > 0 ? std::max<int64_t>(now_ms() - backlog->oldest_ms, 0) : 0;
      oldest.set(static_cast<double>(age_ms) / 1000.0);
    });
  }

  static void stop_slot(Slot& slot) noexcept {
    slot.module->stop();
    if (slot.relay) slot.relay->stop();
  }

  bus::EventBus& bus_;
  http::Router& router_;
  const Settings& settings_;
  std::vector<std::unique_ptr<Slot>> slots_;  // started, in start order
};

Result<std::unique_ptr<bus::EventBus>> make_bus(const Settings& settings) {
  if (settings.bus == "kafka") {
    auto options = bus::kafka_options_from_settings(settings);
    if (!options) return options.error();
    // Each process provisions what is missing, so a fresh cluster works without a manual step.
    if (auto st = bus::ensure_topics(*options, options->topics); !st)
      log::warn(kTag, "topic provisioning: {}", st.error().message);
    return bus::make_kafka_bus(std::move(options).value());
  }
  // Bounds of the durations below: a day for the poll and membership, ten years of retention
  // (-1: kept forever; zero is refused by the bus).
  constexpr int64_t kDayMs = 86'400'000;
  constexpr int64_t kTenYearsMs = 3650 * kDayMs;
  bus::EmbeddedBusOptions options;
  options.path = (std::filesystem::path(settings.data_dir) / "bus.db").string();
  options.instance_id = settings.instance_id;
  if (auto st =
          ConfigSpec{}
              .integer("partitions", options.partitions, 1, 1024)
              .integer("batch_size", options.batch_size, 1, 100'000)
              .millis("poll_interval_ms", options.poll_interval, 1, kDayMs)
              .millis("session_timeout_ms", options.session_timeout, 2, kDayMs)
              .millis("heartbeat_interval_ms", options.heartbeat_interval, 1, kDayMs)
              .millis("retention_ms", options.retention, -1, kTenYearsMs)
              .millis("dlq_retention_ms", options.dlq_retention, -1, kTenYearsMs)
              .millis("retention_check_interval_ms", options.retention_check_interval, 1, kDayMs)
              .read(settings.section("embedded_bus"));
      !st)
    return st.error();
  return bus::make_embedded_bus(std::move(options));
}

Result<http::ServerOptions> server_options(const Settings& settings) {
  http::ServerOptions o;
  o.host = settings.http_host();
  o.port = settings.http_port();
  if (auto st = ConfigSpec{}
                    .integer("threads", o.threads, 1, 64)
                    .integer("body_limit", o.body_limit, 1'024, 1LL << 30)
                    .millis("read_timeout_ms", o.read_timeout, 100, 3'600'000)
                    .boolean("access_log", o.access_log)
                    .read(settings.section("http_server"));
      !st)
    return st.error();
  return o;
}

void add_health_routes(http::Router& router, const Host& host, bus::EventBus& bus) {
  // Prometheus text format 0.0.4, of the whole process (every role it hosts).
  router.add(http::Method::kGet, "/metrics", [](const http::Request&) {
    http::Response r;
    r.content_type = std::string(metrics::kContentType);
    r.body = metrics::registry().text();
    return r;
  });
  router.add(http::Method::kGet, "/healthz",
             [](const http::Request&) { return http::json(200, R"({"status":"ok"})"); });
  router.add(http::Method::kGet, "/readyz", [&host, &bus](const http::Request&) {
    std::string failing;
    for (const auto& h : host.slots())
      if (!h->db->healthy())
        failing += std::string(failing.empty() ? "" : ",") + "\"" + std::string(h->module->name()) +
                   " store\"";
    if (!bus.healthy())
      failing +=
          std::string(failing.empty() ? "" : ",") + "\"" + std::string(bus.kind()) + " bus\"";
    if (failing.empty()) return http::json(200, R"({"status":"ready"})");
    return http::json(503, R"({"status":"not ready","failing":[)" + failing + "]}");
  });
}

int run(int argc, char** argv) {
  ModuleRegistry registry = make_registry();
  auto loaded = load_settings(argc, argv, process_env, registry.names());
  if (!loaded) return fail(kExitConfig, loaded.error().message);
  Settings settings = std::move(loaded).value();
  if (settings.help) {
    std::fputs(usage_text(registry.names()).c_str(), stdout);
    return 0;
  }
  if (settings.version) {
    std::printf("ecomd %s\n", ECOM_VERSION);
    return 0;
  }
  log::Level level = log::Level::kInfo;
  log::parse_level(settings.log_level, level);
  log::set_level(level);
  log::Format format = log::Format::kText;
  log::parse_format(settings.log_format, format);
  log::set_format(format);
  log::set_role(settings.roles);

  if (!settings.positional.empty()) {
    if (settings.positional.front() != "topics" || settings.positional.size() != 2)
      return fail(kExitConfig, "unexpected argument \"" + settings.positional.front() +
                                   "\"; the only sub-command is: topics create|list|describe");
    auto options = bus::kafka_options_from_settings(settings);
    if (!options) return fail(kExitConfig, options.error().message);
    return bus::run_topics_command(settings.positional[1], *options, stdout);
  }

  auto roles = registry.resolve(settings.roles);
  if (!roles) return fail(kExitConfig, roles.error().message);
  for (const auto& role : roles.value()) {
    if (!registry.implemented(role))
      return fail(kExitConfig, "module \"" + role + "\" is not implemented in this build");
  }

  std::error_code ec;
  std::filesystem::create_directories(settings.data_dir, ec);
  if (ec)
    return fail(kExitRuntime,
                "cannot create data dir \"" + settings.data_dir + "\": " + ec.message());

  // Block the stop signals before any thread starts, so that only sigwait below receives them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto configured = configure_roles(roles.value(), registry, settings);
  if (!configured) return fail(kExitConfig, configured.error().message);
  auto server_opts = server_options(settings);
  if (!server_opts) return fail(kExitConfig, server_opts.error().message);
  auto bus = make_bus(settings);
  if (!bus)
    return fail(bus.error().code == ErrorCode::kConfigInvalid ? kExitConfig : kExitRuntime,
                bus.error().message);
  auto& event_bus = *bus.value();

  // Declared in dependency order: the host's modules use the router and the bus, the server
  // (declared below) uses the router and the host's health, so each is destroyed before what it
  // uses, on every return path.
  http::Router router;
  Host hosted(event_bus, router, settings);
  add_health_routes(router, hosted, event_bus);

  if (auto st = hosted.start(std::move(configured).value()); !st)
    return fail(st.error().code == ErrorCode::kConfigInvalid ? kExitConfig : kExitRuntime,
                st.error().message);

  auto server = http::make_server(router, server_opts.value());
  if (auto st = server->start(); !st) return fail(kExitRuntime, st.error().message);
  std::string host = settings.http_host() == "0.0.0.0" ? "localhost" : settings.http_host();
  log::info(kTag, "ecomd {} serving roles [{}] on http://{}:{} (bus: {}, data: {})", ECOM_VERSION,
            fmt::join(roles.value(), ","), host, server->port(), event_bus.kind(),
            settings.data_dir);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  log::info(kTag, "received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");

  // Order matters: no new requests, then no new consumption, then flush what was committed.
  server->stop();
  hosted.stop();
  log::info(kTag, "stopped cleanly");
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
