#include "ecom/notification/notification_module.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <fstream>
#include <iterator>
#include <limits>
#include <mutex>
#include <utility>

#include "delivery.hpp"
#include "ecom/bus/event_bus.hpp"
#include "ecom/bus/outbox_relay.hpp"
#include "ecom/contract/events.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/http/router.hpp"
#include "live_hub.hpp"
#include "message.hpp"
#include "store.hpp"
#include "templates.hpp"

#ifdef ECOM_HAVE_WEB_ASSETS
#include "ecom/web/assets.hpp"
#endif

namespace ecom::notification {
namespace {

constexpr std::string_view kTag = NotificationModule::kName;
constexpr int kDefaultListLimit = 50;
constexpr int kMaxListLimit = 200;
constexpr size_t kMaxIdLength = 200;
// A resume that would replay more rows than this on /api/events gets a snapshot instead.
constexpr int kMaxReplay = 10'000;
constexpr int kPumpBatch = 1'000;
constexpr std::chrono::seconds kPruneInterval{30};
constexpr std::chrono::milliseconds kPumpPoll{1'000};
// Replicas sharing a PostgreSQL store: the others' feed rows wake nothing here, so the pump
// looks this often; and since a row's seq is taken before its transaction commits, rows become
// visible out of seq order. The pump releases rows in seq order only, waiting at a gap up to
// kGapWait for the row to commit; a gap still there is a rolled-back transaction's.
constexpr std::chrono::milliseconds kSharedPumpPoll{100};
constexpr int64_t kGapWaitMs = 5'000;
// Feed rows pruned per pump turn, and the pause between turns while an excess remains.
constexpr int64_t kPruneRowsPerTurn = 2'048;
constexpr std::chrono::milliseconds kPrunePause{5};

// The statuses a customer is told about unless `notification.notify` says otherwise: that the
// order was received, and how it ended. The steps between follow within milliseconds; each
// notification is a row, a delivery and a notifications.sent event.
const std::vector<std::string> kDefaultNotify = {"order.created", "order.confirmed",
                                                 "order.cancelled"};

struct Options {
  std::string sink = "log";
  std::vector<std::string> notify = kDefaultNotify;
  WebhookOptions webhook;
  SmtpOptions smtp;
  Templates templates;
  int64_t feed_retention = 100'000;
  std::chrono::milliseconds keepalive{15'000};
};

// Where secrets come from: never the config file (it lands in ConfigMaps and repositories), but
// a file (a mounted Secret) or the environment (a Secret's env var).
constexpr const char* kWebhookSecretEnv = "ECOMD_WEBHOOK_SECRET";
constexpr const char* kSmtpPasswordEnv = "ECOMD_SMTP_PASSWORD";

// The secret in `file` (one trailing line break dropped, as `echo` and editors leave one), else
// the environment variable `env`; empty when neither has one.
Result<std::string> read_secret(const std::string& file, const std::string& file_path,
                                const char* env) {
  if (file.empty()) return process_env(env).value_or("");
  std::ifstream in(file, std::ios::binary);
  std::string secret;
  if (in.is_open()) secret.assign(std::istreambuf_iterator<char>(in), {});
  if (!in.is_open() || in.bad())
    return config_invalid(fmt::format("{}: cannot read \"{}\"", file_path, file), file_path);
  if (secret.ends_with('\n')) secret.pop_back();
  if (secret.ends_with('\r')) secret.pop_back();
  return secret;
}

// A key that must not be in the config file, with the way to give it instead.
ConfigSpec::Reader not_in_file(std::string how) {
  return [how = std::move(how)](const rapidjson::Value&, const std::string& path) -> Status {
    return config_invalid(fmt::format("{} is not read from the config file: {}", path, how), path);
  };
}

// The keys of every sink that leaves the process: how long an attempt may take, how many there
// are, and the first wait between them.
void attempt_keys(ConfigSpec& spec, std::chrono::milliseconds& timeout, int& max_attempts,
                  std::chrono::milliseconds& backoff) {
  spec.millis("timeout_ms", timeout, 1, 600'000)
      .integer("max_attempts", max_attempts, 1, 100)
      .millis("backoff_ms", backoff, 0, 3'600'000);
}

Status check_webhook(const ConfigSection& c, WebhookOptions& o, const std::string& secret_file) {
  const std::string url_path = c.path_of("url");
  auto url = parse_url(o.url);
  if (!url)
    return config_invalid(
        fmt::format("{} must be an https:// URL: {}", url_path, url.error().message), url_path);
  // Plain http only where nobody can read or change the request on the way: loopback.
  if (url->scheme != "https" && !(url->scheme == "http" && is_loopback_host(url->host)))
    return config_invalid(
        fmt::format("{} must be an https:// URL (http:// only to a loopback host)", url_path),
        url_path);
  auto secret = read_secret(secret_file, c.path_of("secret_file"), kWebhookSecretEnv);
  if (!secret) return secret.error();
  if (secret->empty())
    return config_invalid(fmt::format("the webhook needs a signing secret: set {} or {}",
                                      kWebhookSecretEnv, c.path_of("secret_file")),
                          c.path_of("secret_file"));
  o.secret = std::move(secret).value();
  return {};
}

Status check_smtp(const ConfigSection& c, SmtpOptions& o, const std::string& password_file) {
  const std::string url_path = c.path_of("url");
  auto url = parse_url(o.server.url);
  if (!url || (url->scheme != "smtp" && url->scheme != "smtps"))
    return config_invalid(fmt::format("{} must be an smtp:// or smtps:// URL", url_path), url_path);
  if (!is_mailbox(o.from))
    return config_invalid(
        fmt::format("{} must be a plain address like orders@shop.example", c.path_of("from")),
        c.path_of("from"));
  if (o.to_template.find("{customerId}") == std::string::npos ||
      !recipient_for(o.to_template, "c-42"))
    return config_invalid(fmt::format("{} must be an address with {{customerId}} in it, like "
                                      "\"{{customerId}}@customers.shop.example\"",
                                      c.path_of("to_template")),
                          c.path_of("to_template"));
  if (o.server.username.empty()) return {};
  auto password = read_secret(password_file, c.path_of("password_file"), kSmtpPasswordEnv);
  if (!password) return password.error();
  if (password->empty())
    return config_invalid(fmt::format("{} needs a password: set {} or {}", c.path_of("username"),
                                      kSmtpPasswordEnv, c.path_of("password_file")),
                          c.path_of("password_file"));
  o.server.password = std::move(password).value();
  // Credentials never cross the network in clear text: off loopback, AUTH needs TLS for sure
  // (STARTTLS "try" would fall back to plain text when a man in the middle strips the offer).
  if (url->scheme == "smtp" && o.server.starttls != StartTls::kRequired &&
      !is_loopback_host(url->host))
    return config_invalid(fmt::format("{} must be \"required\" (or the URL smtps://) when a "
                                      "username is set and the server is not on loopback",
                                      c.path_of("starttls")),
                          c.path_of("starttls"));
  return {};
}

Result<Options> parse_options(const ConfigSection& c) {
  Options o;
  o.templates = default_templates();
  const auto templates = [&o](const rapidjson::Value& v, const std::string& path) -> Status {
    if (!v.IsObject())
      return config_invalid(path + " must be an object of templates by event name", path);
    auto t = templates_from_config(ConfigSection(&v, path));
    if (!t) return t.error();
    o.templates = std::move(t).value();
    return {};
  };
  const auto notify = [&o](const rapidjson::Value& v, const std::string& path) -> Status {
    const std::string want = fmt::format("{} must be an array of template keys ({})", path,
                                         fmt::join(template_keys(), ", "));
    if (!v.IsArray()) return config_invalid(want, path);
    o.notify.clear();
    for (const auto& item : v.GetArray()) {
      if (!item.IsString()) return config_invalid(want, path);
      const std::string_view key(item.GetString(), item.GetStringLength());
      const auto& keys = template_keys();
      if (std::find(keys.begin(), keys.end(), key) == keys.end())
        return config_invalid(fmt::format("{}: unknown template key \"{}\"; {}", path, key, want),
                              path);
      o.notify.emplace_back(key);
    }
    return {};
  };
  std::string secret_file;
  std::string password_file;
  std::string starttls = "required";
  auto webhook =
      ConfigSpec{}
          .string("url", o.webhook.url)
          .string("secret_file", secret_file)
          .custom("secret", not_in_file(fmt::format("set {} or secret_file", kWebhookSecretEnv)))
          .string("ca_file", o.webhook.ca_file);
  attempt_keys(webhook, o.webhook.timeout, o.webhook.max_attempts, o.webhook.backoff);
  auto smtp =
      ConfigSpec{}
          .string("url", o.smtp.server.url)
          .string("from", o.smtp.from)
          .string("to_template", o.smtp.to_template)
          .choice("starttls", starttls, {"none", "try", "required"})
          .string("username", o.smtp.server.username)
          .string("password_file", password_file)
          .custom("password", not_in_file(fmt::format("set {} or password_file", kSmtpPasswordEnv)))
          .string("ca_file", o.smtp.server.ca_file);
  attempt_keys(smtp, o.smtp.server.timeout, o.smtp.max_attempts, o.smtp.backoff);
  if (auto st = ConfigSpec{}
                    .choice("sink", o.sink, {"log", "webhook", "smtp"})
                    .custom("notify", notify)
                    .object("webhook", std::move(webhook))
                    .object("smtp", std::move(smtp))
                    .custom("templates", templates)
                    .integer("feed_retention", o.feed_retention, 1, 1'000'000'000)
                    .millis("keepalive_ms", o.keepalive, 100, 3'600'000)
                    .read(c);
      !st)
    return st.error();
  o.smtp.server.starttls = starttls == "none"  ? StartTls::kNone
                           : starttls == "try" ? StartTls::kTry
                                               : StartTls::kRequired;
  // Only the sink in use is checked: its secrets are read, the other's are not needed.
  if (o.sink == "webhook") {
    if (auto st = check_webhook(c.section("webhook"), o.webhook, secret_file); !st)
      return st.error();
  } else if (o.sink == "smtp") {
    if (auto st = check_smtp(c.section("smtp"), o.smtp, password_file); !st) return st.error();
  }
  // A status without a template sends nothing: keep only the templates to notify.
  std::erase_if(o.templates, [&](const auto& t) {
    return std::find(o.notify.begin(), o.notify.end(), t.first) == o.notify.end();
  });
  return o;
}

Result<int> parse_limit(const http::Request& req) {
  auto limit = http::int_query_param(req, "limit", kDefaultListLimit, 1, kMaxListLimit);
  if (!limit) return limit.error();
  return static_cast<int>(*limit);
}

std::optional<int64_t> parse_seq(std::string_view s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v < 0) return std::nullopt;
  return v;
}

// Last-Event-ID (sent by EventSource on reconnect) or ?lastEventId= (first connect of a page that
// remembers where it was). The header wins when both are sent (a page that reconnects keeps its
// query), but each is checked: a bad one, also an empty one (EventSource never sends that), is
// refused, naming it, never silently ignored.
Result<std::optional<int64_t>> last_event_id(const http::Request& req) {
  std::optional<int64_t> from_header;
  if (auto h = req.header("last-event-id")) {
    from_header = parse_seq(*h);
    if (!from_header)
      return http::validation_error("Last-Event-ID",
                                    "Last-Event-ID must be a non-negative integer");
  }
  std::optional<int64_t> from_query;
  if (auto q = req.query_param("lastEventId")) {
    from_query = parse_seq(*q);
    if (!from_query)
      return http::validation_error("lastEventId", "lastEventId must be a non-negative integer");
  }
  return from_header ? from_header : from_query;
}

Error not_found_order(std::string_view id) {
  return Error{ErrorCode::kNotFound, fmt::format("order \"{}\" is not known", id), "orderId",
               false};
}

// Wakes the pump; shared with stream callbacks, which may outlive a stopped module: the pump
// task is detached from it (under `mu`) before the task is destroyed.
struct Signal {
  std::mutex mu;
  PeriodicTask* pump = nullptr;
  bool sweep = false;
  void notify(bool sweep_too = false) {
    std::lock_guard lock(mu);
    sweep = sweep || sweep_too;
    if (pump) pump->wake();
  }
  bool take_sweep() {
    std::lock_guard lock(mu);
    return std::exchange(sweep, false);
  }
};

// One WebSocket connection and its current subscription.
struct WsConn {
  std::shared_ptr<http::WebSocket> socket;
  std::mutex mu;
  std::shared_ptr<Subscriber> sub;
};

}  // namespace

struct NotificationModule::Impl {
  ModuleContext* ctx = nullptr;
  Options options;
  std::unique_ptr<Store> store;
  std::unique_ptr<Sink> sink;
  std::unique_ptr<DeliveryWorker> worker;
  LiveHub hub;
  std::shared_ptr<Signal> signal = std::make_shared<Signal>();
  std::unique_ptr<PeriodicTask> pump;
  // The pump's state, touched by its step only; `position` (the last row released to live
  // streams) is read by the streams' starts too.
  std::atomic<int64_t> position{0};
  int64_t gap_since_ms = 0;   // a gap after `position` is waited for since (0: none)
  bool shared_store = false;  // PostgreSQL: replicas write the feed too (set at start)
  int64_t next_keepalive_ms = 0;
  int64_t next_prune_ms = 0;
  bool prune_more = false;  // the last prune stopped at its limit: more rows are due
  std::unique_ptr<bus::Subscription> sub;
  std::atomic<bool> stopping{false};

  // --- bus -------------------------------------------------------------------------------------

  bus::Outcome on_message(const bus::Message& m) {
    auto r = store->apply(m.envelope, m.once);
    if (!r) {
      if (r.error().code == ErrorCode::kInvalidPayload)
        return bus::Outcome::dead_letter(fmt::format("{}: {}", r.error().message, m.envelope.data));
      return bus::Outcome::retry(r.error().message);
    }
    if (r->feed_rows > 0) signal->notify();
    if (r->notifications > 0) worker->notify();
    return bus::Outcome::ack();
  }

  // --- live push: the pump fans committed feed rows out, in seq order ----------------------------

  // One pump turn: fans the rows committed since `position` out, sends keep-alives, prunes;
  // returns when to turn again (sooner when the bus or a stream wakes it).
  std::optional<std::chrono::milliseconds> pump_step(int64_t now) {
    bool sweep = signal->take_sweep();
    while (true) {
      // Nobody listening: skip the rows instead of reading them. The last seq is read BEFORE
      // looking at the hub, so a subscriber added after the look reads its start later and that
      // start covers every row up to it.
      if (hub.size() == 0 && !shared_store) {
        auto last = store->last_seq();
        if (!last) {
          log::warn(kTag, "cannot read the feed: {}", last.error().message);
          break;
        }
        if (hub.size() == 0) {
          position = std::max(position.load(), *last);
          break;
        }
      }
      auto rows = store->feed_after(position, kPumpBatch);
      if (!rows) {
        log::warn(kTag, "cannot read the feed: {}", rows.error().message);
        break;
      }
      if (rows->empty()) break;
      const size_t fetched = rows->size();
      if (shared_store) rows->resize(in_order(*rows, now));
      if (rows->empty()) break;
      position = rows->back().seq;
      hub.publish(*rows);
      if (rows->size() < fetched || fetched < static_cast<size_t>(kPumpBatch)) break;
    }
    if (now >= next_keepalive_ms) {
      hub.keepalive();
      next_keepalive_ms = now + options.keepalive.count();
      sweep = true;
    }
    if (now >= next_prune_ms || prune_more) {
      // A few chunks per turn: this task also feeds the live streams, and pruning a large
      // excess at once (tens of thousands of rows at 1,000 orders/s) held them for a second.
      auto pruned = store->prune_feed(options.feed_retention, kPruneRowsPerTurn);
      if (!pruned) log::warn(kTag, "cannot prune the feed: {}", pruned.error().message);
      prune_more = pruned && *pruned == kPruneRowsPerTurn;
      if (now >= next_prune_ms)
        next_prune_ms = now + std::chrono::milliseconds(kPruneInterval).count();
    }
    if (sweep) hub.sweep();
    const auto poll = prune_more ? kPrunePause : shared_store ? kSharedPumpPoll : kPumpPoll;
    return std::min(poll, std::chrono::milliseconds(std::max<int64_t>(next_keepalive_ms - now, 0)));
  }

  // The last row live streams may start after (see Store::start_order_stream).
  int64_t horizon() const {
    return shared_store ? position.load() : std::numeric_limits<int64_t>::max();
  }

  // How many of `rows` (after `position`, in seq order) can go out: those before the first gap
  // that is younger than kGapWait.
  size_t in_order(const std::vector<FeedRow>& rows, int64_t now) {
    int64_t last = position.load();
    size_t n = 0;
    for (; n < rows.size(); ++n) {
      if (rows[n].seq != last + 1) {
        if (gap_since_ms == 0) gap_since_ms = now;
        if (now - gap_since_ms < kGapWaitMs) break;
        log::warn(kTag, "live feed: no row {} after {} ms; going on without it", last + 1,
                  kGapWaitMs);
      }
      gap_since_ms = 0;
      last = rows[n].seq;
    }
    return n;
  }

  std::shared_ptr<Subscriber> watch(const std::shared_ptr<http::Stream>& stream,
                                    std::string order_id) {
    auto sub = std::make_shared<Subscriber>(std::move(order_id), stream);
    stream->on_close([w = std::weak_ptr<Subscriber>(sub), signal = signal] {
      if (auto s = w.lock()) s->retire();
      signal->notify(true);
    });
    return sub;
  }

  std::optional<http::Response> order_stream(const http::Request& req,
                                             std::shared_ptr<http::Stream> stream) {
    if (stopping)
      return http::error_response(Error{ErrorCode::kUnavailable, "shutting down", {}, true});
    std::string id(req.param("id"));
    if (id.size() > kMaxIdLength) return http::error_response(not_found_order(id));
    auto last = last_event_id(req);
    if (!last) return http::error_response(last.error());
    auto sub = watch(stream, id);
    hub.add(sub);  // before reading the start: nothing committed in between is missed
    auto start = store->start_order_stream(id, *last, horizon());
    if (!start || !start.value()) {
      sub->retire();
      return http::error_response(start ? not_found_order(id) : start.error());
    }
    sub->begin(**start);
    return std::nullopt;
  }

  std::optional<http::Response> all_stream(const http::Request& req,
                                           std::shared_ptr<http::Stream> stream) {
    if (stopping)
      return http::error_response(Error{ErrorCode::kUnavailable, "shutting down", {}, true});
    auto last = last_event_id(req);
    if (!last) return http::error_response(last.error());
    auto sub = watch(stream, {});
    hub.add(sub);
    auto start = store->start_all_stream(*last, kMaxReplay, horizon());
    if (!start) {
      sub->retire();
      return http::error_response(start.error());
    }
    sub->begin(*start);
    return std::nullopt;
  }

  http::WebSocketCallbacks open_ws(const http::Request&, std::shared_ptr<http::WebSocket> socket) {
    auto conn = std::make_shared<WsConn>();
    conn->socket = std::move(socket);
    http::WebSocketCallbacks cb;
    cb.on_message = [this, conn](std::string_view text) { on_ws_message(*conn, text); };
    cb.on_close = [conn, signal = signal] {
      std::lock_guard lock(conn->mu);
      if (conn->sub) conn->sub->retire();
      conn->sub.reset();
      signal->notify(true);
    };
    if (stopping) conn->socket->close();
    return cb;
  }

  void ws_error(WsConn& conn, const Error& e) { conn.socket->send(http::error_response(e).body); }

  void on_ws_message(WsConn& conn, std::string_view text) {
    if (stopping) return;
    rapidjson::Document d;
    d.Parse<rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
    if (d.HasParseError() || !d.IsObject())
      return ws_error(
          conn, Error{ErrorCode::kMalformedJson, "a message must be a JSON object", {}, false});
    auto kind = d.FindMember("subscribe");
    if (kind == d.MemberEnd() || !kind->value.IsString())
      return ws_error(conn,
                      http::validation_error("subscribe", R"(subscribe must be "order" or "all")"));
    std::string_view scope(kind->value.GetString(), kind->value.GetStringLength());
    std::string order_id;
    if (scope == "order") {
      auto id = d.FindMember("orderId");
      if (id == d.MemberEnd() || !id->value.IsString() || id->value.GetStringLength() == 0 ||
          id->value.GetStringLength() > kMaxIdLength)
        return ws_error(conn,
                        http::validation_error("orderId", "orderId must be a non-empty string"));
      order_id.assign(id->value.GetString(), id->value.GetStringLength());
    } else if (scope != "all") {
      return ws_error(conn,
                      http::validation_error("subscribe", R"(subscribe must be "order" or "all")"));
    }
    std::optional<int64_t> last;
    if (auto l = d.FindMember("lastEventId"); l != d.MemberEnd() && !l->value.IsNull()) {
      if (l->value.IsInt64() && l->value.GetInt64() >= 0)
        last = l->value.GetInt64();
      else if (l->value.IsString())
        last = parse_seq(l->value.GetString());
      if (!last)
        return ws_error(conn, http::validation_error("lastEventId",
                                                     "lastEventId must be a non-negative integer"));
    }

    std::lock_guard lock(conn.mu);
    if (conn.sub) conn.sub->retire();  // a new subscription replaces the previous one
    conn.sub.reset();
    auto sub = std::make_shared<Subscriber>(order_id, conn.socket);
    hub.add(sub);
    std::optional<StreamStart> start;
    if (order_id.empty()) {
      auto s = store->start_all_stream(last, kMaxReplay, horizon());
      if (!s) {
        sub->retire();
        return ws_error(conn, s.error());
      }
      start = std::move(s).value();
    } else {
      auto s = store->start_order_stream(order_id, last, horizon());
      if (!s || !s.value()) {
        sub->retire();
        return ws_error(conn, s ? not_found_order(order_id) : s.error());
      }
      start = std::move(*s.value());
    }
    sub->begin(*start);
    conn.sub = std::move(sub);
  }

  // --- REST --------------------------------------------------------------------------------------

  http::Response list(const http::Request& req) {
    NotificationQuery q;
    if (auto c = req.query_param("customerId"); c && !c->empty()) q.customer_id = *c;
    if (auto o = req.query_param("orderId"); o && !o->empty()) q.order_id = *o;
    if (!q.customer_id && !q.order_id)
      return http::error_response(
          http::validation_error("customerId", "customerId or orderId is required"));
    if (q.customer_id && q.customer_id->size() > kMaxIdLength)
      return http::error_response(http::validation_error("customerId", "customerId is too long"));
    if (q.order_id && q.order_id->size() > kMaxIdLength)
      return http::error_response(http::validation_error("orderId", "orderId is too long"));
    auto limit = parse_limit(req);
    if (!limit) return http::error_response(limit.error());
    q.limit = *limit;
    auto body = store->list_notifications_json(q);
    if (!body) return http::error_response(body.error());
    return http::json(200, std::move(body).value());
  }

  http::Response stats(const http::Request&) {
    auto body = store->stats_json();
    if (!body) return http::error_response(body.error());
    return http::json(200, std::move(body).value());
  }

  void add_routes(http::Router& router) {
    router.add(http::Method::kGet, "/api/notifications",
               [this](const http::Request& r) { return list(r); },
               {.query = {"customerId", "orderId", "limit"}});
    router.add(http::Method::kGet, "/api/stats",
               [this](const http::Request& r) { return stats(r); });
    router.add_stream("/api/orders/{id}/events",
                      [this](const http::Request& r, std::shared_ptr<http::Stream> s) {
                        return order_stream(r, std::move(s));
                      },
                      {.query = {"lastEventId"}});
    router.add_stream("/api/events",
                      [this](const http::Request& r, std::shared_ptr<http::Stream> s) {
                        return all_stream(r, std::move(s));
                      },
                      {.query = {"lastEventId"}});
    router.add_websocket("/ws", [this](const http::Request& r, std::shared_ptr<http::WebSocket> s) {
      return open_ws(r, std::move(s));
    });
#ifdef ECOM_HAVE_WEB_ASSETS
    // The UI, embedded at build time: index.html revalidates, assets may be cached briefly.
    auto serve = [](const std::string& path, std::string_view cache) {
      const web::Asset* a = web::find_asset(path);
      if (a == nullptr)
        return http::error_response(
            Error{ErrorCode::kNotFound, fmt::format("no asset {}", path), {}, false});
      http::Response r;
      r.content_type = std::string(a->content_type);
      r.body = std::string(a->data);
      r.with_header("Cache-Control", std::string(cache));
      return r;
    };
    router.add(http::Method::kGet, "/",
               [serve](const http::Request&) { return serve("/index.html", "no-cache"); });
    router.add(http::Method::kGet, "/assets/{file}", [serve](const http::Request& r) {
      return serve("/assets/" + std::string(r.param("file")), "public, max-age=300");
    });
    router.add(http::Method::kGet, "/api/openapi.yaml",
               [serve](const http::Request&) { return serve("/api/openapi.yaml", "no-cache"); });
#endif
  }

  void stop() noexcept {
    stopping = true;
    if (sub) {
      sub->close();
      sub.reset();
    }
    if (worker) worker->stop();
    {
      std::lock_guard lock(signal->mu);
      signal->pump = nullptr;  // streams that outlive the module wake nothing
    }
    pump.reset();  // stops and joins
    hub.close_all();
  }
};

NotificationModule::NotificationModule() : impl_(std::make_unique<Impl>()) {}
NotificationModule::~NotificationModule() { stop(); }

Status NotificationModule::configure(const ConfigSection& config) {
  auto options = parse_options(config);
  if (!options) return options.error();
  impl_->options = std::move(options).value();
  return {};
}

Status NotificationModule::start(ModuleContext& ctx) {
  auto* impl = impl_.get();
  impl->ctx = &ctx;
  if (impl->options.sink == "webhook")
    impl->sink = make_webhook_sink(impl->options.webhook, ctx.clock);
  else if (impl->options.sink == "smtp")
    impl->sink = make_smtp_sink(impl->options.smtp, ctx.clock);
  else
    impl->sink = make_log_sink();
  impl->store =
      std::make_unique<Store>(ctx.db, impl->options.templates, std::string(impl->sink->channel()));
  if (auto st = impl->store->migrate(); !st) return st;
  auto position = impl->store->last_seq();
  if (!position) return position.error();

  impl->add_routes(ctx.router);

  impl->worker = std::make_unique<DeliveryWorker>(*impl->store, *impl->sink, ctx.outbox, ctx.clock);
  impl->worker->start();  // picks up notifications left PENDING by a previous run
  impl->position = *position;
  impl->shared_store = ctx.db.postgres();
  impl->next_keepalive_ms = ctx.clock.now_ms() + impl->options.keepalive.count();
  impl->next_prune_ms = ctx.clock.now_ms();
  impl->pump = std::make_unique<PeriodicTask>("notification.pump", ctx.clock, kPumpPoll,
                                              [impl](int64_t now) { return impl->pump_step(now); });
  {
    std::lock_guard lock(impl->signal->mu);
    impl->signal->pump = impl->pump.get();
  }
  // A first turn at once prunes what a previous run left over.
  impl->pump->start();

  bus::SubscriptionOptions so;
  so.group = "ecomd-notification";
  so.store = &ctx.db;  // group commit: one store transaction per fetched batch
  so.topics = {std::string(topics::kOrdersCreated), std::string(topics::kOrdersStatus),
               std::string(topics::kInventoryUpdated), std::string(topics::kInventoryAlerts)};
  auto sub = ctx.bus.subscribe(so, [impl](const bus::Message& m) { return impl->on_message(m); });
  if (!sub) {
    impl->stop();
    return sub.error();
  }
  impl->sub = std::move(sub).value();
  log::info(kTag, "notifications via {}; live feed keeps {} rows", impl->sink->channel(),
            impl->options.feed_retention);
  return {};
}

void NotificationModule::stop() noexcept {
  if (impl_) impl_->stop();
}

}  // namespace ecom::notification
