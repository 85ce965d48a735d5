// ecomd-bench: a load generator for the ecomd HTTP API.
//
// One thread, one epoll loop, non-blocking HTTP/1.1 keep-alive connections over raw sockets, so the
// generator costs little CPU next to the server it measures on a small machine. Orders are POSTed
// to /api/orders; their terminal status is observed on the SSE stream /api/events (or by long-poll
// GET /api/orders/{id}?wait=30s). Open-loop latencies are measured from the intended send time, so
// a server that falls behind shows up as latency rather than as a lower send rate (coordinated
// omission). See docs/performance.md.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

constexpr int64_t kNsPerMs = 1'000'000;
constexpr int64_t kNsPerSec = 1'000'000'000;

int64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNsPerSec + ts.tv_nsec;
}

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "ecomd-bench: %s\n", message.c_str());
  std::exit(2);
}

// ---------------------------------------------------------------------------------------------
// Options

enum class Mode { kClosed, kOpen };
enum class E2e { kSse, kPoll, kNone };

struct Url {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  std::string text;
};

struct Options {
  Url url;
  std::vector<Url> more_urls;  // further order replicas: POST connections go round-robin
  std::optional<Url> sse_url;  // defaults to url
  Mode mode = Mode::kClosed;
  int connections = 32;
  double rate = 1000;  // orders/s, open loop
  double duration_s = 10;
  double warmup_s = 2;
  int64_t orders = 0;  // > 0: a fixed number of measured orders instead of a duration
  double mix_decline = 0;
  double mix_oos = 0;
  uint64_t seed = 1;
  E2e e2e = E2e::kSse;
  std::vector<std::string> skus;
  std::string oos_sku = "BENCH-SOLDOUT";
  int64_t max_inflight = 0;  // 0: default per mode
  int poll_connections = 256;
  double timeout_s = 30;      // one HTTP request
  double e2e_timeout_s = 60;  // POST → terminal status
  std::string json_path;
  std::string label;
  bool quiet = false;
};

const char* kUsage = R"(usage: ecomd-bench [options]
  --url URL              order API base, http://HOST:PORT (default http://127.0.0.1:8080);
                         repeated: order replicas, the POST connections spread over them
  --sse-url URL          where GET /api/events is served (default: --url; the notification role)
  --mode closed|open     closed: --connections clients as fast as possible; open: --rate orders/s
  --connections N        HTTP connections for POST (default 32)
  --rate R               open loop target, orders/s (default 1000)
  --duration S           measured seconds (default 10)
  --warmup S             unmeasured seconds before (default 2)
  --orders N             measure N orders instead of a duration
  --mix-decline F        share of orders paid with tok_decline (0..1, default 0)
  --mix-oos F            share of orders for --oos-sku, which has no stock (0..1, default 0)
  --oos-sku SKU          (default BENCH-SOLDOUT; an unknown sku also ends OUT_OF_STOCK)
  --seed N               workload seed (default 1): same seed, same sequence of orders
  --e2e sse|poll|none    how terminal statuses are observed (default sse)
  --skus A,B,...         skus of normal orders (default BENCH-0001..BENCH-0016)
  --max-inflight N       closed loop: accepted-but-unfinished orders allowed (default 4*connections
                         with sse, --poll-connections with poll); open loop: orders sent but not
                         finished beyond which the run stops as OVERLOADED (default: 10 s of --rate)
  --poll-connections N   long-poll connections for --e2e=poll (default 256)
  --timeout S            per HTTP request (default 30)
  --e2e-timeout S        POST to terminal status, after which an order counts as lost (default 60)
  --json PATH            also write the results as JSON
  --label TEXT           a name for the run (in the table and the JSON)
  --quiet                no progress lines on stderr
Exit status: 0 when every measured order succeeded as expected, 1 on any error, 2 on bad usage,
3 when an open-loop run was stopped because the server could not keep up with --rate.
)";

Url parse_url(std::string_view s) {
  Url u;
  u.text = std::string(s);
  if (s.starts_with("http://")) s.remove_prefix(7);
  if (s.starts_with("https://")) die("https is not supported");
  if (auto slash = s.find('/'); slash != std::string_view::npos) s = s.substr(0, slash);
  auto colon = s.rfind(':');
  if (colon == std::string_view::npos) {
    u.host = std::string(s);
    u.port = 80;
  } else {
    u.host = std::string(s.substr(0, colon));
    unsigned port = 0;
    auto p = s.substr(colon + 1);
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), port);
    if (ec != std::errc() || end != p.data() + p.size() || port == 0 || port > 65535)
      die("bad port in URL " + u.text);
    u.port = static_cast<uint16_t>(port);
  }
  if (u.host.empty() || u.host == "localhost") u.host = "127.0.0.1";
  return u;
}

double parse_double(std::string_view name, std::string_view v) {
  char* end = nullptr;
  std::string s(v);
  double d = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(d))
    die("bad number for " + std::string(name) + ": " + s);
  return d;
}

// "60", "60s", "500ms", "2m" → seconds.
double parse_seconds(std::string_view name, std::string_view v) {
  double scale = 1;
  if (v.ends_with("ms")) {
    scale = 0.001;
    v.remove_suffix(2);
  } else if (v.ends_with("s")) {
    v.remove_suffix(1);
  } else if (v.ends_with("m")) {
    scale = 60;
    v.remove_suffix(1);
  }
  return parse_double(name, v) * scale;
}

int64_t parse_int(std::string_view name, std::string_view v) {
  int64_t n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || end != v.data() + v.size())
    die("bad integer for " + std::string(name) + ": " + std::string(v));
  return n;
}

std::vector<std::string> split_list(std::string_view v) {
  std::vector<std::string> out;
  while (!v.empty()) {
    auto comma = v.find(',');
    auto item = v.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return out;
}

Options parse_options(int argc, char** argv) {
  Options o;
  bool url_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (!arg.starts_with("--")) die("unexpected argument " + std::string(arg) + " (see --help)");
    std::string_view name = arg;
    std::string_view value;
    bool has_value = false;
    if (auto eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    auto next = [&]() -> std::string_view {
      if (has_value) return value;
      if (i + 1 >= argc) die("missing value for " + std::string(name));
      return argv[++i];
    };
    if (name == "--url") {
      // Repeated: replicas of the order role, each POST connection on one of them in turn.
      if (url_given)
        o.more_urls.push_back(parse_url(next()));
      else
        o.url = parse_url(next());
      url_given = true;
    } else if (name == "--sse-url")
      o.sse_url = parse_url(next());
    else if (name == "--mode") {
      auto v = next();
      if (v == "closed")
        o.mode = Mode::kClosed;
      else if (v == "open")
        o.mode = Mode::kOpen;
      else
        die("--mode must be closed or open");
    } else if (name == "--connections")
      o.connections = static_cast<int>(parse_int(name, next()));
    else if (name == "--rate")
      o.rate = parse_double(name, next());
    else if (name == "--duration")
      o.duration_s = parse_seconds(name, next());
    else if (name == "--warmup")
      o.warmup_s = parse_seconds(name, next());
    else if (name == "--orders")
      o.orders = parse_int(name, next());
    else if (name == "--mix-decline")
      o.mix_decline = parse_double(name, next());
    else if (name == "--mix-oos")
      o.mix_oos = parse_double(name, next());
    else if (name == "--oos-sku")
      o.oos_sku = std::string(next());
    else if (name == "--seed")
      o.seed = static_cast<uint64_t>(parse_int(name, next()));
    else if (name == "--e2e") {
      auto v = next();
      if (v == "sse")
        o.e2e = E2e::kSse;
      else if (v == "poll")
        o.e2e = E2e::kPoll;
      else if (v == "none")
        o.e2e = E2e::kNone;
      else
        die("--e2e must be sse, poll or none");
    } else if (name == "--skus")
      o.skus = split_list(next());
    else if (name == "--max-inflight")
      o.max_inflight = parse_int(name, next());
    else if (name == "--poll-connections")
      o.poll_connections = static_cast<int>(parse_int(name, next()));
    else if (name == "--timeout")
      o.timeout_s = parse_seconds(name, next());
    else if (name == "--e2e-timeout")
      o.e2e_timeout_s = parse_seconds(name, next());
    else if (name == "--json")
      o.json_path = std::string(next());
    else if (name == "--label")
      o.label = std::string(next());
    else if (name == "--quiet")
      o.quiet = true;
    else
      die("unknown option " + std::string(name) + " (see --help)");
  }
  if (o.skus.empty())
    for (int i = 1; i <= 16; ++i) {
      char buf[16];
      std::snprintf(buf, sizeof buf, "BENCH-%04d", i);
      o.skus.emplace_back(buf);
    }
  if (o.connections < 1 || o.connections > 10'000) die("--connections must be 1..10000");
  if (o.rate <= 0) die("--rate must be positive");
  if (o.duration_s <= 0 && o.orders <= 0) die("--duration must be positive");
  if (o.warmup_s < 0) die("--warmup must be >= 0");
  if (o.mix_decline < 0 || o.mix_oos < 0 || o.mix_decline + o.mix_oos > 1)
    die("--mix-decline and --mix-oos must be >= 0 and sum to at most 1");
  if (o.poll_connections < 1) die("--poll-connections must be >= 1");
  if (o.max_inflight <= 0) {
    if (o.mode == Mode::kOpen)
      o.max_inflight = std::max<int64_t>(1000, static_cast<int64_t>(o.rate * 10));
    else if (o.e2e == E2e::kNone)
      o.max_inflight = INT64_MAX;
    else if (o.e2e == E2e::kPoll)
      o.max_inflight = o.poll_connections;
    else
      o.max_inflight = 4LL * o.connections;
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// Histogram: HDR-style log buckets, 128 linear sub-buckets per power of two (< 0.8% error), in ns.

class Histogram {
 public:
  static constexpr int kSubBits = 7;
  static constexpr int64_t kSub = int64_t{1} << kSubBits;

  void record(int64_t v) {
    if (v < 0) v = 0;
    ++counts_[index(v)];
    ++count_;
    sum_ += static_cast<double>(v);
    max_ = std::max(max_, v);
    min_ = std::min(min_, v);
  }
  int64_t count() const { return count_; }
  int64_t max() const { return count_ ? max_ : 0; }
  double mean() const { return count_ ? sum_ / static_cast<double>(count_) : 0; }
  // The value at quantile q (0..1): the upper edge of its bucket, capped by the maximum seen.
  int64_t quantile(double q) const {
    if (count_ == 0) return 0;
    int64_t rank = static_cast<int64_t>(std::ceil(q * static_cast<double>(count_)));
    rank = std::clamp<int64_t>(rank, 1, count_);
    int64_t seen = 0;
    for (size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::clamp(upper(static_cast<int>(i)), min_, max_);
    }
    return max_;
  }

 private:
  static int index(int64_t v) {
    if (v < 2 * kSub) return static_cast<int>(v);
    int e = 63 - __builtin_clzll(static_cast<uint64_t>(v));
    int shift = e - kSubBits;
    return static_cast<int>(((shift + 1) << kSubBits) + ((v >> shift) - kSub));
  }
  static int64_t upper(int idx) {
    if (idx < 2 * kSub) return idx;
    int shift = (idx >> kSubBits) - 1;
    int64_t m = (idx & (kSub - 1)) + kSub;
    return ((m + 1) << shift) - 1;
  }
  std::array<int64_t, (64 - kSubBits + 1) << kSubBits> counts_{};
  int64_t count_ = 0;
  double sum_ = 0;
  int64_t max_ = 0;
  int64_t min_ = INT64_MAX;
};

// ---------------------------------------------------------------------------------------------
// Minimal JSON field extraction (the server's answers are compact JSON from RapidJSON).

// The string value of the first `"key":` in `json`, or empty.
std::string_view json_string(std::string_view json, std::string_view key) {
  size_t pos = 0;
  while (true) {
    pos = json.find(key, pos);
    if (pos == std::string_view::npos) return {};
    if (pos == 0 || json[pos - 1] != '"' || pos + key.size() >= json.size() ||
        json[pos + key.size()] != '"') {
      pos += key.size();
      continue;
    }
    size_t p = pos + key.size() + 1;
    while (p < json.size() && (json[p] == ' ' || json[p] == ':')) ++p;
    if (p >= json.size() || json[p] != '"') return {};
    size_t end = p + 1;
    while (end < json.size() && json[end] != '"') end += json[end] == '\\' ? 2 : 1;
    if (end >= json.size()) return {};
    return json.substr(p + 1, end - p - 1);
  }
}

// ---------------------------------------------------------------------------------------------
// Orders and results

enum class Expect : uint8_t { kConfirmed, kOutOfStock, kDeclined };
enum class OrderState : uint8_t { kQueued, kSent, kAccepted, kDone, kFailed };

struct Order {
  int64_t intended = 0;  // ns: when it should have been sent (open loop) / was sent (closed)
  int64_t accepted = 0;
  Expect expect = Expect::kConfirmed;
  OrderState state = OrderState::kQueued;
  bool measured = false;
};

struct Terminal {
  bool confirmed = false;
  std::string reason;
};

struct Results {
  Histogram accept;
  Histogram e2e;
  Histogram reserved;    // to STOCK_RESERVED seen (SSE only): where along the saga the time goes
  Histogram authorized;  // to PAYMENT_AUTHORIZED seen (SSE only)
  int64_t sent = 0;
  int64_t accepted = 0;             // measured orders answered 202
  int64_t completed = 0;            // measured orders seen terminal
  int64_t accepted_in_window = 0;   // 202s received during the window (any order)
  int64_t completed_in_window = 0;  // terminal statuses seen during the window (any order)
  int64_t confirmed = 0;
  int64_t cancelled = 0;
  std::map<std::string, int64_t> cancel_reasons;
  int64_t unexpected = 0;  // outcome differs from what the workload intended
  int64_t lost = 0;        // accepted but no terminal status within --e2e-timeout
  int64_t abandoned = 0;   // still unfinished when an overloaded run stopped
  std::map<std::string, int64_t> errors;
  int64_t error_total() const {
    int64_t n = 0;
    for (auto& [k, v] : errors) n += v;
    return n;
  }
  int64_t max_backlog = 0;
  int64_t max_inflight_seen = 0;
  int64_t sse_reconnects = 0;
  int64_t poll_rounds = 0;
  double window_s = 0;
  std::vector<int64_t> accepted_per_s;
  std::vector<int64_t> completed_per_s;
};

// ---------------------------------------------------------------------------------------------
// Connections

enum class ConnKind { kPost, kPoll, kSse };

struct Conn {
  ConnKind kind;
  const Url* target = nullptr;  // POST: the order replica of this connection (nullptr: --url)
  int fd = -1;
  bool connected = false;
  bool busy = false;   // a request is outstanding
  int64_t order = -1;  // the order of the outstanding request
  int64_t started = 0;
  std::string out;
  size_t out_off = 0;
  std::string in;
  // SSE only: body decoding state.
  bool headers_done = false;
  bool chunked = false;
  int64_t chunk_left = -1;  // -1: expecting a chunk-size line
  std::string sse;          // decoded stream bytes not yet split into events
};

struct Response {
  int status = 0;
  bool close = false;
  std::string_view body;
  size_t consumed = 0;
};

// Parses one complete HTTP/1.1 response from the front of `buf`; nullopt when incomplete.
// Returns status -1 on a malformed response.
std::optional<Response> parse_response(std::string_view buf, std::string& scratch) {
  auto head_end = buf.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return std::nullopt;
  Response r;
  std::string_view head = buf.substr(0, head_end);
  if (!head.starts_with("HTTP/1.") || head.size() < 12) return Response{-1};
  std::from_chars(head.data() + 9, head.data() + 12, r.status);
  int64_t length = -1;
  bool chunked = false;
  size_t pos = head.find("\r\n");
  while (pos != std::string_view::npos && pos < head.size()) {
    size_t next = head.find("\r\n", pos + 2);
    std::string_view line =
        head.substr(pos + 2, (next == std::string_view::npos ? head.size() : next) - pos - 2);
    auto colon = line.find(':');
    if (colon != std::string_view::npos) {
      std::string_view name = line.substr(0, colon);
      std::string_view value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      auto ieq = [](std::string_view a, std::string_view b) {
        return a.size() == b.size() &&
               std::equal(a.begin(), a.end(), b.begin(),
                          [](char x, char y) { return std::tolower(x) == std::tolower(y); });
      };
      if (ieq(name, "content-length"))
        std::from_chars(value.data(), value.data() + value.size(), length);
      else if (ieq(name, "transfer-encoding"))
        chunked = value.find("chunked") != std::string_view::npos;
      else if (ieq(name, "connection"))
        r.close = ieq(value, "close");
    }
    pos = next;
  }
  size_t body_start = head_end + 4;
  if (chunked) {
    scratch.clear();
    size_t p = body_start;
    while (true) {
      auto eol = buf.find("\r\n", p);
      if (eol == std::string_view::npos) return std::nullopt;
      int64_t size = 0;
      std::from_chars(buf.data() + p, buf.data() + eol, size, 16);
      p = eol + 2;
      if (size == 0) {
        auto end = buf.find("\r\n", p);  // trailers are not used: expect the final CRLF
        if (end == std::string_view::npos) return std::nullopt;
        r.consumed = end + 2;
        r.body = scratch;
        return r;
      }
      if (buf.size() < p + static_cast<size_t>(size) + 2) return std::nullopt;
      scratch.append(buf.substr(p, static_cast<size_t>(size)));
      p += static_cast<size_t>(size) + 2;
    }
  }
  if (length < 0) length = 0;  // our server always sends a length or chunks
  if (buf.size() < body_start + static_cast<size_t>(length)) return std::nullopt;
  r.body = buf.substr(body_start, static_cast<size_t>(length));
  r.consumed = body_start + static_cast<size_t>(length);
  return r;
}

// ---------------------------------------------------------------------------------------------
// The benchmark

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)), rng_(o_.seed) {}

  int run();

 private:
  // Event loop plumbing.
  void connect(Conn& c, const Url& url);
  void close_conn(Conn& c);
  void send(Conn& c, std::string request);
  void flush(Conn& c);
  void on_event(Conn& c, uint32_t events);
  void on_readable(Conn& c);
  void conn_failed(Conn& c, const char* what);
  void arm_timer(int64_t at);

  // Workload.
  int64_t new_order(int64_t intended);
  std::string post_request(int64_t idx);
  std::string poll_request(std::string_view id) const;
  void dispatch();
  bool may_send_more(int64_t now) const;

  // Responses and statuses.
  void on_post_response(Conn& c, const Response& r, int64_t now);
  void on_poll_response(Conn& c, const Response& r, int64_t now);
  void on_sse_bytes(Conn& c);
  void on_sse_event(std::string_view event, std::string_view data, int64_t now);
  void accepted(int64_t idx, std::string id, int64_t now);
  void terminal(int64_t idx, const Terminal& t, int64_t at);
  void failed(int64_t idx, const std::string& error);
  void error(const std::string& what) { ++res_.errors[what]; }
  bool in_window(int64_t t) const { return t >= window_start_ && t < window_end_; }
  void tick_series(std::vector<int64_t>& series, int64_t t);

  void start_sse();
  void check_timeouts(int64_t now);
  void report(int64_t finished_at);
  void write_json() const;

  Options o_;
  std::mt19937_64 rng_;
  int ep_ = -1;
  int timer_fd_ = -1;
  int64_t timer_at_ = -1;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> idle_post_;
  std::vector<Conn*> idle_poll_;
  int poll_conns_ = 0;
  Conn* sse_ = nullptr;
  std::string sse_last_id_;
  std::string scratch_;

  std::vector<Order> orders_;
  std::deque<int64_t> backlog_;                        // orders waiting for a POST connection
  std::deque<int64_t> poll_backlog_;                   // orders waiting for a poll connection
  std::unordered_map<std::string, int64_t> inflight_;  // accepted, not terminal: id → order
  std::vector<std::string> ids_;                       // order → id, once accepted (poll mode)
  // Terminal statuses seen on SSE before the 202 of their order was read.
  struct Early {
    Terminal t;
    int64_t at;
  };
  std::unordered_map<std::string, Early> early_;
  std::deque<std::pair<int64_t, std::string>> early_age_;
  int64_t unfinished_ = 0;
  int64_t connect_failures_ = 0;
  int64_t overloaded_at_ = 0;
  int64_t overload_unfinished_ = 0;
  int64_t total_accepted_ = 0,
          total_completed_ = 0;  // sent (or queued) and not yet terminal/failed

  int64_t start_ = 0, window_start_ = 0, window_end_ = INT64_MAX, send_end_ = INT64_MAX;
  int64_t next_intended_ = 0;
  int64_t interval_ns_ = 0;
  int64_t measured_sent_ = 0;
  int64_t measured_open_ = 0;  // measured orders not yet terminal/failed
  int64_t last_progress_ = 0;
  int64_t progress_accepted_ = 0, progress_completed_ = 0;
  Results res_;
};

void Bench::arm_timer(int64_t at) {
  if (at == timer_at_) return;
  timer_at_ = at;
  itimerspec its{};
  its.it_value.tv_sec = at / kNsPerSec;
  its.it_value.tv_nsec = at % kNsPerSec;
  if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
  timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &its, nullptr);
}

void Bench::connect(Conn& c, const Url& url) {
  c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) die(std::string("socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(url.port);
  if (inet_pton(AF_INET, url.host.c_str(), &addr.sin_addr) != 1) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    addrinfo* res = nullptr;
    if (getaddrinfo(url.host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr)
      die("cannot resolve " + url.host);
    addr.sin_addr = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
    freeaddrinfo(res);
  }
  c.connected = false;
  c.in.clear();
  c.out_off = 0;
  c.headers_done = false;
  c.chunk_left = -1;
  c.sse.clear();
  int rc = ::connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  if (rc != 0 && errno != EINPROGRESS) {
    ::close(c.fd);
    c.fd = -1;
    return;  // reported by the caller's request failing
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  ev.data.ptr = &c;
  epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
}

void Bench::close_conn(Conn& c) {
  if (c.fd >= 0) {
    epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
    ::close(c.fd);
  }
  c.fd = -1;
  c.connected = false;
  c.out.clear();
  c.out_off = 0;
  c.in.clear();
}

void Bench::send(Conn& c, std::string request) {
  const Url& url = c.kind == ConnKind::kSse && o_.sse_url ? *o_.sse_url
                   : c.target != nullptr                  ? *c.target
                                                          : o_.url;
  if (c.fd < 0) connect(c, url);
  if (c.fd < 0) {
    c.out.clear();
    conn_failed(c, "connect");
    return;
  }
  c.out = std::move(request);
  c.out_off = 0;
  c.started = mono_ns();
  if (c.connected) flush(c);
}

void Bench::flush(Conn& c) {
  while (c.out_off < c.out.size()) {
    ssize_t n = ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    conn_failed(c, "send");
    return;
  }
  c.out.clear();
  c.out_off = 0;
}

void Bench::conn_failed(Conn& c, const char* what) {
  bool was_busy = c.busy;
  int64_t order = c.order;
  close_conn(c);
  c.busy = false;
  c.order = -1;
  if (c.kind == ConnKind::kSse) {
    ++res_.sse_reconnects;
    error(std::string("sse_") + what);
    sse_ = nullptr;  // start_sse() makes a new one at the next turn of the loop
    return;
  }
  if (!was_busy) {
    // An idle keep-alive connection closed by the server: not an error, reconnect on next use.
    (c.kind == ConnKind::kPost ? idle_post_ : idle_poll_).push_back(&c);
    return;
  }
  if (std::string_view(what) == "connect" && ++connect_failures_ > 50)
    die("cannot connect to " + o_.url.text + " (50 attempts failed)");
  if (c.kind == ConnKind::kPost) {
    failed(order, std::string("post_") + what);
    idle_post_.push_back(&c);
  } else {
    // The long-poll is repeated on another connection; the order itself is fine.
    error(std::string("poll_") + what);
    poll_backlog_.push_front(order);
    idle_poll_.push_back(&c);
  }
}

void Bench::on_event(Conn& c, uint32_t events) {
  if (!c.connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) return conn_failed(c, "connect");
    c.connected = true;
  }
  if (c.connected && (events & EPOLLOUT) && c.out_off < c.out.size()) flush(c);
  if (c.fd >= 0 && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) on_readable(c);
}

void Bench::on_readable(Conn& c) {
  bool eof = false;
  char buf[65536];
  while (true) {
    ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n > 0) {
      c.in.append(buf, static_cast<size_t>(n));
      continue;
    }
    if (n == 0) {
      eof = true;
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) break;
    eof = true;
    break;
  }
  int64_t now = mono_ns();
  if (c.kind == ConnKind::kSse) {
    on_sse_bytes(c);
    if (eof && sse_ == &c) conn_failed(c, "closed");
    return;
  }
  while (!c.in.empty()) {
    auto r = parse_response(c.in, scratch_);
    if (!r) break;
    if (r->status < 0) return conn_failed(c, "bad_response");
    if (!c.busy) return conn_failed(c, "unexpected_response");
    bool close = r->close;
    // Handlers only record outcomes (requests are sent from dispatch()), so r's views stay valid.
    if (c.kind == ConnKind::kPost)
      on_post_response(c, *r, now);
    else
      on_poll_response(c, *r, now);
    c.in.erase(0, r->consumed);
    if (close) {
      close_conn(c);
      return;
    }
  }
  if (eof) {
    if (c.busy) return conn_failed(c, "closed");
    close_conn(c);
  }
}

// --- workload ---------------------------------------------------------------------------------

int64_t Bench::new_order(int64_t intended) {
  Order o;
  o.intended = intended;
  std::uniform_real_distribution<double> u(0, 1);
  double x = u(rng_);
  o.expect = x < o_.mix_oos                    ? Expect::kOutOfStock
             : x < o_.mix_oos + o_.mix_decline ? Expect::kDeclined
                                               : Expect::kConfirmed;
  o.measured = in_window(intended) && (o_.orders <= 0 || measured_sent_ < o_.orders);
  if (o.measured) {
    ++measured_sent_;
    ++measured_open_;
  }
  orders_.push_back(o);
  ++unfinished_;
  ++res_.sent;
  return static_cast<int64_t>(orders_.size()) - 1;
}

std::string Bench::post_request(int64_t idx) {
  const Order& o = orders_[static_cast<size_t>(idx)];
  // The random draws depend only on the order's sequence number, so a seed gives one workload.
  std::mt19937_64 g(o_.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(idx));
  const std::string& sku =
      o.expect == Expect::kOutOfStock ? o_.oos_sku : o_.skus[g() % o_.skus.size()];
  const char* token = o.expect == Expect::kDeclined ? "tok_decline" : "tok_visa";
  char body[512];
  int len = std::snprintf(body, sizeof body,
                          R"({"customerId":"bench-%03u","currency":"USD","items":[{"sku":"%s",)"
                          R"("quantity":1}],"paymentToken":"%s"})",
                          static_cast<unsigned>(g() % 1000), sku.c_str(), token);
  std::string req;
  req.reserve(256 + static_cast<size_t>(len));
  req += "POST /api/orders HTTP/1.1\r\nHost: ";
  req += o_.url.host;
  req += "\r\nContent-Type: application/json\r\nContent-Length: ";
  req += std::to_string(len);
  req += "\r\n\r\n";
  req.append(body, static_cast<size_t>(len));
  return req;
}

std::string Bench::poll_request(std::string_view id) const {
  std::string req = "GET /api/orders/";
  req += id;
  req += "?wait=30s HTTP/1.1\r\nHost: ";
  req += o_.url.host;
  req += "\r\n\r\n";
  return req;
}

bool Bench::may_send_more(int64_t now) const {
  if (now >= send_end_) return false;
  if (o_.orders > 0 && measured_sent_ >= o_.orders && now >= window_start_) return false;
  return true;
}

void Bench::dispatch() {
  int64_t now = mono_ns();
  if (o_.mode == Mode::kOpen) {
    while (next_intended_ <= now && may_send_more(next_intended_)) {
      backlog_.push_back(new_order(next_intended_));
      next_intended_ += interval_ns_;
    }
    res_.max_backlog = std::max<int64_t>(res_.max_backlog, static_cast<int64_t>(backlog_.size()));
    // Unfinished orders pile up when the server cannot sustain the rate: stop, and say so,
    // rather than measure an ever-growing queue.
    if (overloaded_at_ == 0 && unfinished_ > o_.max_inflight) {
      overloaded_at_ = now;
      overload_unfinished_ = unfinished_;
      send_end_ = now;
      if (window_end_ > now) window_end_ = std::max(now, window_start_ + 1);
    }
    while (!backlog_.empty() && !idle_post_.empty()) {
      Conn* c = idle_post_.back();
      idle_post_.pop_back();
      int64_t idx = backlog_.front();
      backlog_.pop_front();
      c->busy = true;
      c->order = idx;
      orders_[static_cast<size_t>(idx)].state = OrderState::kSent;
      send(*c, post_request(idx));
    }
  } else {
    while (!idle_post_.empty() && may_send_more(now) &&
           static_cast<int64_t>(inflight_.size()) + o_.connections -
                   static_cast<int64_t>(idle_post_.size()) <
               o_.max_inflight) {
      Conn* c = idle_post_.back();
      idle_post_.pop_back();
      int64_t idx = new_order(now);
      c->busy = true;
      c->order = idx;
      orders_[static_cast<size_t>(idx)].state = OrderState::kSent;
      send(*c, post_request(idx));
      now = mono_ns();
    }
  }
  // Long-polls: grow the pool up to --poll-connections.
  while (!poll_backlog_.empty()) {
    if (idle_poll_.empty()) {
      if (poll_conns_ >= o_.poll_connections) break;
      conns_.push_back(std::make_unique<Conn>(Conn{ConnKind::kPoll}));
      idle_poll_.push_back(conns_.back().get());
      ++poll_conns_;
    }
    Conn* c = idle_poll_.back();
    idle_poll_.pop_back();
    int64_t idx = poll_backlog_.front();
    poll_backlog_.pop_front();
    c->busy = true;
    c->order = idx;
    ++res_.poll_rounds;
    send(*c, poll_request(ids_[static_cast<size_t>(idx)]));
  }
  res_.max_inflight_seen =
      std::max<int64_t>(res_.max_inflight_seen, static_cast<int64_t>(inflight_.size()));
}

// --- outcomes ---------------------------------------------------------------------------------

void Bench::tick_series(std::vector<int64_t>& series, int64_t t) {
  if (!in_window(t)) return;
  auto sec = static_cast<size_t>((t - window_start_) / kNsPerSec);
  if (series.size() <= sec) series.resize(sec + 1, 0);
  ++series[sec];
}

void Bench::failed(int64_t idx, const std::string& what) {
  if (idx < 0) return;
  Order& o = orders_[static_cast<size_t>(idx)];
  if (o.state == OrderState::kDone || o.state == OrderState::kFailed) return;
  o.state = OrderState::kFailed;
  --unfinished_;
  if (o.measured) {
    --measured_open_;
    error(what);
  } else {
    error(what);  // warm-up failures are errors too: the run must be clean
  }
}

void Bench::on_post_response(Conn& c, const Response& r, int64_t now) {
  int64_t idx = c.order;
  c.busy = false;
  c.order = -1;
  idle_post_.push_back(&c);
  if (r.status != 202) {
    failed(idx, "http_" + std::to_string(r.status));
    if (!o_.quiet && res_.errors.size() < 4)
      std::fprintf(stderr, "ecomd-bench: POST /api/orders answered %d: %.*s\n", r.status,
                   static_cast<int>(std::min<size_t>(r.body.size(), 300)), r.body.data());
    return;
  }
  auto id = json_string(r.body, "orderId");
  if (id.empty()) return failed(idx, "no_order_id");
  accepted(idx, std::string(id), now);
}

void Bench::accepted(int64_t idx, std::string id, int64_t now) {
  Order& o = orders_[static_cast<size_t>(idx)];
  o.state = OrderState::kAccepted;
  o.accepted = now;
  ++total_accepted_;
  if (in_window(now)) ++res_.accepted_in_window;
  tick_series(res_.accepted_per_s, now);
  if (o.measured) {
    ++res_.accepted;
    res_.accept.record(now - o.intended);
  }
  switch (o_.e2e) {
    case E2e::kNone:
      o.state = OrderState::kDone;
      --unfinished_;
      if (o.measured) --measured_open_;
      return;
    case E2e::kSse: {
      if (auto it = early_.find(id); it != early_.end()) {
        Early e = std::move(it->second);
        early_.erase(it);
        terminal(idx, e.t, e.at);
        return;
      }
      inflight_.emplace(std::move(id), idx);
      return;
    }
    case E2e::kPoll:
      if (ids_.size() <= static_cast<size_t>(idx)) ids_.resize(static_cast<size_t>(idx) + 1);
      ids_[static_cast<size_t>(idx)] = id;
      inflight_.emplace(std::move(id), idx);
      poll_backlog_.push_back(idx);
      return;
  }
}

void Bench::terminal(int64_t idx, const Terminal& t, int64_t at) {
  Order& o = orders_[static_cast<size_t>(idx)];
  if (o.state == OrderState::kDone || o.state == OrderState::kFailed) return;
  o.state = OrderState::kDone;
  --unfinished_;
  ++total_completed_;
  if (in_window(at)) ++res_.completed_in_window;
  tick_series(res_.completed_per_s, at);
  if (!o.measured) return;
  --measured_open_;
  ++res_.completed;
  res_.e2e.record(std::max(at, o.accepted) - o.intended);
  bool as_expected;
  if (t.confirmed) {
    ++res_.confirmed;
    as_expected = o.expect == Expect::kConfirmed;
  } else {
    ++res_.cancelled;
    ++res_.cancel_reasons[t.reason.empty() ? "(none)" : t.reason];
    as_expected = (o.expect == Expect::kOutOfStock && t.reason == "OUT_OF_STOCK") ||
                  (o.expect == Expect::kDeclined && t.reason == "PAYMENT_DECLINED");
  }
  if (!as_expected) ++res_.unexpected;
}

void Bench::on_poll_response(Conn& c, const Response& r, int64_t now) {
  int64_t idx = c.order;
  c.busy = false;
  c.order = -1;
  idle_poll_.push_back(&c);
  Order& o = orders_[static_cast<size_t>(idx)];
  if (o.state == OrderState::kDone || o.state == OrderState::kFailed)
    return;  // timed out meanwhile
  if (r.status != 200) {
    // 503 (too many waiters) and similar: try again; the order itself is not at fault.
    error("poll_http_" + std::to_string(r.status));
    poll_backlog_.push_back(idx);
    return;
  }
  auto status = json_string(r.body, "status");
  if (status == "CONFIRMED" || status == "CANCELLED") {
    inflight_.erase(ids_[static_cast<size_t>(idx)]);
    ids_[static_cast<size_t>(idx)].clear();
    ids_[static_cast<size_t>(idx)].shrink_to_fit();
    terminal(idx, Terminal{status == "CONFIRMED", std::string(json_string(r.body, "reason"))}, now);
  } else {
    poll_backlog_.push_back(idx);  // the wait ran out first
  }
}

void Bench::on_sse_bytes(Conn& c) {
  if (!c.headers_done) {
    auto end = c.in.find("\r\n\r\n");
    if (end == std::string::npos) return;
    std::string_view head(c.in.data(), end);
    int status = 0;
    if (head.size() >= 12) std::from_chars(head.data() + 9, head.data() + 12, status);
    if (status != 200) {
      std::fprintf(stderr,
                   "ecomd-bench: GET /api/events answered %d; is the notification role running?\n"
                   "  (use --sse-url, or --e2e=poll)\n",
                   status);
      std::exit(1);
    }
    std::string lower(head);
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char ch) { return std::tolower(ch); });
    c.chunked = lower.find("transfer-encoding: chunked") != std::string::npos;
    c.headers_done = true;
    c.in.erase(0, end + 4);
  }
  // De-chunk into c.sse.
  if (!c.chunked) {
    c.sse += c.in;
    c.in.clear();
  } else {
    size_t p = 0;
    while (p < c.in.size()) {
      if (c.chunk_left < 0) {
        auto eol = c.in.find("\r\n", p);
        if (eol == std::string::npos) break;
        int64_t size = 0;
        std::from_chars(c.in.data() + p, c.in.data() + eol, size, 16);
        p = eol + 2;
        if (size == 0) {  // the server ended the stream
          c.in.erase(0, p);
          return;
        }
        c.chunk_left = size + 2;  // data plus CRLF
      }
      size_t take = std::min(static_cast<size_t>(c.chunk_left), c.in.size() - p);
      int64_t data_left = std::max<int64_t>(0, c.chunk_left - 2);
      c.sse.append(c.in, p, std::min<size_t>(take, static_cast<size_t>(data_left)));
      c.chunk_left -= static_cast<int64_t>(take);
      p += take;
      if (c.chunk_left == 0) c.chunk_left = -1;
    }
    c.in.erase(0, p);
  }
  // Split events at blank lines.
  int64_t now = mono_ns();
  size_t start = 0;
  while (true) {
    size_t end = c.sse.find("\n\n", start);
    if (end == std::string::npos) break;
    std::string_view block(c.sse.data() + start, end - start);
    std::string_view event = "message", data, id;
    while (!block.empty()) {
      auto nl = block.find('\n');
      std::string_view line = block.substr(0, nl);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      block = nl == std::string_view::npos ? std::string_view() : block.substr(nl + 1);
      auto field = [&line](std::string_view name) -> std::optional<std::string_view> {
        if (!line.starts_with(name) || line.size() <= name.size() || line[name.size()] != ':')
          return std::nullopt;
        auto v = line.substr(name.size() + 1);
        if (!v.empty() && v.front() == ' ') v.remove_prefix(1);
        return v;
      };
      if (auto v = field("event"))
        event = *v;
      else if (auto v2 = field("data"))
        data = *v2;
      else if (auto v3 = field("id"))
        id = *v3;
    }
    if (!id.empty()) sse_last_id_ = std::string(id);
    on_sse_event(event, data, now);
    start = end + 2;
  }
  c.sse.erase(0, start);
}

void Bench::on_sse_event(std::string_view event, std::string_view data, int64_t now) {
  if (event != "status") return;
  auto status = json_string(data, "status");
  if (status != "CONFIRMED" && status != "CANCELLED") {
    bool reserved = status == "STOCK_RESERVED";
    if (!reserved && status != "PAYMENT_AUTHORIZED") return;
    auto it = inflight_.find(std::string(json_string(data, "orderId")));
    if (it == inflight_.end()) return;
    const Order& o = orders_[static_cast<size_t>(it->second)];
    if (o.measured) (reserved ? res_.reserved : res_.authorized).record(now - o.intended);
    return;
  }
  auto id = json_string(data, "orderId");
  Terminal t{status == "CONFIRMED", std::string(json_string(data, "reason"))};
  std::string key(id);
  if (auto it = inflight_.find(key); it != inflight_.end()) {
    int64_t idx = it->second;
    inflight_.erase(it);
    terminal(idx, t, now);
    return;
  }
  // Not ours yet (its 202 is still in a socket buffer), or from before this run.
  early_age_.emplace_back(now, key);
  early_.insert_or_assign(std::move(key), Early{std::move(t), now});
}

void Bench::start_sse() {
  conns_.push_back(std::make_unique<Conn>(Conn{ConnKind::kSse}));
  sse_ = conns_.back().get();
  std::string req = "GET /api/events HTTP/1.1\r\nHost: ";
  req += (o_.sse_url ? *o_.sse_url : o_.url).host;
  req += "\r\nAccept: text/event-stream\r\n";
  if (!sse_last_id_.empty()) req += "Last-Event-ID: " + sse_last_id_ + "\r\n";
  req += "\r\n";
  sse_->busy = true;
  send(*sse_, std::move(req));
}

void Bench::check_timeouts(int64_t now) {
  const int64_t request_timeout = static_cast<int64_t>(o_.timeout_s * kNsPerSec);
  for (auto& c : conns_) {
    if (c->kind == ConnKind::kSse || !c->busy) continue;
    // Long-polls wait up to 30 s by design.
    int64_t limit = request_timeout + (c->kind == ConnKind::kPoll ? 30 * kNsPerSec : 0);
    if (now - c->started > limit) conn_failed(*c, "timeout");
  }
  const int64_t e2e_timeout = static_cast<int64_t>(o_.e2e_timeout_s * kNsPerSec);
  // Accepted orders that never finished. Scans only accepted, unfinished orders.
  for (auto it = inflight_.begin(); it != inflight_.end();) {
    Order& o = orders_[static_cast<size_t>(it->second)];
    if (now - o.accepted > e2e_timeout) {
      if (o.measured) ++res_.lost;
      failed(it->second, "e2e_timeout");
      it = inflight_.erase(it);
    } else {
      ++it;
    }
  }
  while (!early_age_.empty() && now - early_age_.front().first > 120 * kNsPerSec) {
    auto it = early_.find(early_age_.front().second);
    if (it != early_.end() && it->second.at == early_age_.front().first) early_.erase(it);
    early_age_.pop_front();
  }
}

int Bench::run() {
  signal(SIGPIPE, SIG_IGN);
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (ep_ < 0 || timer_fd_ < 0) die("epoll/timerfd unavailable");
  epoll_event tev{};
  tev.events = EPOLLIN;
  tev.data.ptr = nullptr;
  epoll_ctl(ep_, EPOLL_CTL_ADD, timer_fd_, &tev);

  std::array<epoll_event, 256> events{};
  // The SSE subscription must be live before the first order, or early statuses are missed.
  if (o_.e2e == E2e::kSse) {
    start_sse();
    int64_t deadline = mono_ns() + 10 * kNsPerSec;
    while (sse_ != nullptr && !sse_->headers_done) {
      if (mono_ns() > deadline) die("no answer from GET /api/events within 10 s");
      int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 100);
      for (int i = 0; i < n; ++i)
        if (events[static_cast<size_t>(i)].data.ptr != nullptr)
          on_event(*static_cast<Conn*>(events[static_cast<size_t>(i)].data.ptr),
                   events[static_cast<size_t>(i)].events);
    }
    if (sse_ == nullptr)
      die("cannot open GET /api/events at " + (o_.sse_url ? *o_.sse_url : o_.url).text);
  }

  for (int i = 0; i < o_.connections; ++i) {
    conns_.push_back(std::make_unique<Conn>(Conn{ConnKind::kPost}));
    const size_t k = static_cast<size_t>(i) % (o_.more_urls.size() + 1);
    if (k > 0) conns_.back()->target = &o_.more_urls[k - 1];
    idle_post_.push_back(conns_.back().get());
  }

  start_ = mono_ns();
  window_start_ = start_ + static_cast<int64_t>(o_.warmup_s * kNsPerSec);
  if (o_.orders <= 0) {
    window_end_ = window_start_ + static_cast<int64_t>(o_.duration_s * kNsPerSec);
    send_end_ = window_end_;
  }
  interval_ns_ = std::max<int64_t>(1, static_cast<int64_t>(kNsPerSec / o_.rate));
  next_intended_ = start_;
  last_progress_ = start_;
  int64_t last_housekeeping = start_;
  int64_t drain_deadline = INT64_MAX;

  while (true) {
    int64_t now = mono_ns();
    if (o_.e2e == E2e::kSse && sse_ == nullptr) start_sse();
    dispatch();
    now = mono_ns();

    // Count mode: the window closes when every measured order was sent and has finished.
    if (o_.orders > 0 && window_end_ == INT64_MAX && measured_sent_ >= o_.orders &&
        measured_open_ == 0) {
      window_end_ = now;
      send_end_ = now;
    }
    if (overloaded_at_ != 0) break;  // what is still in flight would only measure the queue
    bool sending = may_send_more(now);
    if (!sending && drain_deadline == INT64_MAX)
      drain_deadline = now + static_cast<int64_t>((o_.e2e_timeout_s + o_.timeout_s) * kNsPerSec);
    if (!sending && backlog_.empty()) {
      bool idle = o_.orders > 0 ? measured_open_ == 0 : unfinished_ == 0;
      if (idle || measured_open_ == 0 || now > drain_deadline) break;
    }

    if (now - last_housekeeping > 200 * kNsPerMs) {
      check_timeouts(now);
      last_housekeeping = now;
    }
    if (!o_.quiet && now - last_progress_ >= kNsPerSec) {
      double dt = static_cast<double>(now - last_progress_) / kNsPerSec;
      int64_t acc = total_accepted_, comp = total_completed_;
      const char* phase = now < window_start_ ? "warmup" : sending ? "measure" : "drain";
      std::fprintf(stderr,
                   "[%5.1fs %-7s] accepted %7.0f/s  completed %7.0f/s  in flight %6zu  backlog "
                   "%6zu  errors %" PRId64 "\n",
                   static_cast<double>(now - start_) / kNsPerSec, phase,
                   static_cast<double>(acc - progress_accepted_) / dt,
                   static_cast<double>(comp - progress_completed_) / dt, inflight_.size(),
                   backlog_.size() + poll_backlog_.size(), res_.error_total());
      progress_accepted_ = acc;
      progress_completed_ = comp;
      last_progress_ = now;
    }

    int64_t wake = now + 100 * kNsPerMs;
    if (o_.mode == Mode::kOpen && sending) wake = std::min(wake, next_intended_);
    if (now < window_start_) wake = std::min(wake, window_start_);
    if (window_end_ != INT64_MAX && now < window_end_) wake = std::min(wake, window_end_);
    arm_timer(std::max(wake, now + 1000));
    int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 1000);
    for (int i = 0; i < n; ++i) {
      auto& ev = events[static_cast<size_t>(i)];
      if (ev.data.ptr == nullptr) {
        uint64_t expirations;
        (void)!::read(timer_fd_, &expirations, sizeof expirations);
        timer_at_ = -1;
        continue;
      }
      on_event(*static_cast<Conn*>(ev.data.ptr), ev.events);
    }
  }
  int64_t finished = mono_ns();
  // Whatever is still open was lost, unless the run was stopped for overload.
  for (size_t i = 0; i < orders_.size(); ++i) {
    Order& o = orders_[i];
    if (!o.measured || o.state == OrderState::kDone || o.state == OrderState::kFailed) continue;
    if (overloaded_at_ != 0) {
      ++res_.abandoned;
      continue;
    }
    if (o.state == OrderState::kAccepted) ++res_.lost;
    failed(static_cast<int64_t>(i), o.state == OrderState::kAccepted ? "e2e_timeout" : "no_answer");
  }
  report(finished);
  for (auto& c : conns_) close_conn(*c);
  bool ok = res_.error_total() == 0 && res_.unexpected == 0 && res_.lost == 0 && res_.accepted > 0;
  if (!ok) return 1;
  return overloaded_at_ != 0 ? 3 : 0;
}

// --- output -----------------------------------------------------------------------------------

std::string ms(int64_t ns) {
  char buf[32];
  double v = static_cast<double>(ns) / kNsPerMs;
  std::snprintf(buf, sizeof buf, v < 10 ? "%.3f" : v < 1000 ? "%.2f" : "%.0f", v);
  return buf;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

const char* mode_name(Mode m) { return m == Mode::kOpen ? "open" : "closed"; }
const char* e2e_name(E2e e) { return e == E2e::kSse ? "sse" : e == E2e::kPoll ? "poll" : "none"; }

void Bench::report(int64_t finished_at) {
  if (o_.orders > 0 && window_end_ == INT64_MAX) window_end_ = finished_at;
  res_.window_s = static_cast<double>(window_end_ - window_start_) / kNsPerSec;
  const double w = res_.window_s > 0 ? res_.window_s : 1;
  std::printf("\necomd-bench%s%s: %s loop, ", o_.label.empty() ? "" : " ", o_.label.c_str(),
              mode_name(o_.mode));
  if (o_.mode == Mode::kOpen) std::printf("target %.0f orders/s, ", o_.rate);
  std::printf(
      "%d connections, e2e=%s, window %.1f s (+%.1f s warm-up), mix decline=%.2f oos=%.2f, seed "
      "%" PRIu64 "\n",
      o_.connections, e2e_name(o_.e2e), res_.window_s, o_.warmup_s, o_.mix_decline, o_.mix_oos,
      o_.seed);
  std::printf("  %-26s %12s %12s\n", "", "count", "per second");
  std::printf("  %-26s %12" PRId64 " %12.0f\n", "accepted (202)", res_.accepted_in_window,
              res_.accepted_in_window / w);
  if (o_.e2e != E2e::kNone)
    std::printf("  %-26s %12" PRId64 " %12.0f\n", "completed (terminal)", res_.completed_in_window,
                res_.completed_in_window / w);
  std::printf("  %-26s %12" PRId64 "\n", "measured orders sent", measured_sent_);
  if (o_.e2e != E2e::kNone) {
    std::printf("  %-26s %12" PRId64 "\n", "  CONFIRMED", res_.confirmed);
    std::printf("  %-26s %12" PRId64, "  CANCELLED", res_.cancelled);
    const char* sep = "  (";
    for (auto& [reason, n] : res_.cancel_reasons) {
      std::printf("%s%s %" PRId64, sep, reason.c_str(), n);
      sep = ", ";
    }
    std::printf("%s\n", res_.cancel_reasons.empty() ? "" : ")");
    std::printf("  %-26s %12" PRId64 "\n", "  unexpected outcome", res_.unexpected);
    std::printf("  %-26s %12" PRId64 "\n", "  lost (no terminal status)", res_.lost);
  }
  std::printf("  %-26s %12" PRId64, "errors", res_.error_total());
  const char* sep = "  (";
  for (auto& [what, n] : res_.errors) {
    std::printf("%s%s %" PRId64, sep, what.c_str(), n);
    sep = ", ";
  }
  std::printf("%s\n", res_.errors.empty() ? "" : ")");
  std::printf("  latency ms    %9s %9s %9s %9s %9s %9s %9s\n", "p50", "p90", "p99", "p99.9", "max",
              "mean", "n");
  auto row = [](const char* name, const Histogram& h) {
    std::printf("  %-12s  %9s %9s %9s %9s %9s %9s %9" PRId64 "\n", name,
                ms(h.quantile(0.5)).c_str(), ms(h.quantile(0.9)).c_str(),
                ms(h.quantile(0.99)).c_str(), ms(h.quantile(0.999)).c_str(), ms(h.max()).c_str(),
                ms(static_cast<int64_t>(h.mean())).c_str(), h.count());
  };
  row("accept", res_.accept);
  if (res_.reserved.count() > 0) row("  reserved", res_.reserved);
  if (res_.authorized.count() > 0) row("  authorized", res_.authorized);
  if (o_.e2e != E2e::kNone) row("end-to-end", res_.e2e);
  if (overloaded_at_ != 0)
    std::printf("  OVERLOADED: stopped after %.1f s with %" PRId64
                " orders unfinished: the server did not sustain\n"
                "  %.0f orders/s. Latencies above are of the orders that finished before the stop, "
                "so they\n"
                "  understate the queueing (%" PRId64 " measured orders abandoned).\n",
                static_cast<double>(overloaded_at_ - start_) / kNsPerSec, overload_unfinished_,
                o_.rate, res_.abandoned);
  if (o_.mode == Mode::kOpen && res_.max_backlog > 0)
    std::printf("  (open loop: up to %" PRId64 " orders waited for a free connection)\n",
                res_.max_backlog);
  if (res_.sse_reconnects > 0)
    std::printf("  (SSE stream reconnected %" PRId64 " times)\n", res_.sse_reconnects);
  std::printf("  load generator CPU: %.1f s (%.0f us per order sent)\n", cpu_seconds(),
              res_.sent > 0 ? cpu_seconds() * 1e6 / static_cast<double>(res_.sent) : 0.0);
  std::fflush(stdout);
  if (!o_.json_path.empty()) write_json();
}

void json_hist(std::FILE* f, const char* name, const Histogram& h) {
  auto v = [](int64_t ns) { return static_cast<double>(ns) / kNsPerMs; };
  std::fprintf(f,
               "  \"%s\": {\"count\": %" PRId64
               ", \"p50\": %.4f, \"p90\": %.4f, \"p99\": %.4f, \"p999\": %.4f, "
               "\"max\": %.4f, \"mean\": %.4f}",
               name, h.count(), v(h.quantile(0.5)), v(h.quantile(0.9)), v(h.quantile(0.99)),
               v(h.quantile(0.999)), v(h.max()), v(static_cast<int64_t>(h.mean())));
}

void json_series(std::FILE* f, const char* name, const std::vector<int64_t>& s) {
  std::fprintf(f, "  \"%s\": [", name);
  for (size_t i = 0; i < s.size(); ++i) std::fprintf(f, "%s%" PRId64, i ? ", " : "", s[i]);
  std::fprintf(f, "]");
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
  }
  return out;
}

void Bench::write_json() const {
  std::FILE* f = std::fopen(o_.json_path.c_str(), "w");
  if (f == nullptr) {
    std::fprintf(stderr, "ecomd-bench: cannot write %s: %s\n", o_.json_path.c_str(),
                 std::strerror(errno));
    return;
  }
  const double w = res_.window_s > 0 ? res_.window_s : 1;
  std::fprintf(f, "{\n  \"label\": \"%s\",\n", json_escape(o_.label).c_str());
  std::fprintf(
      f,
      "  \"config\": {\"url\": \"%s\", \"sse_url\": \"%s\", \"mode\": \"%s\", \"connections\": %d, "
      "\"rate\": %.1f, \"duration_s\": %.3f, \"warmup_s\": %.3f, \"orders\": %" PRId64
      ", "
      "\"mix_decline\": %.4f, \"mix_oos\": %.4f, \"seed\": %" PRIu64
      ", \"e2e\": \"%s\", "
      "\"max_inflight\": %" PRId64 ", \"skus\": %zu},\n",
      json_escape(o_.url.text).c_str(),
      json_escape(o_.sse_url ? o_.sse_url->text : o_.url.text).c_str(), mode_name(o_.mode),
      o_.connections, o_.mode == Mode::kOpen ? o_.rate : 0.0, o_.duration_s, o_.warmup_s, o_.orders,
      o_.mix_decline, o_.mix_oos, o_.seed, e2e_name(o_.e2e),
      o_.max_inflight == INT64_MAX ? -1 : o_.max_inflight, o_.skus.size());
  std::fprintf(f, "  \"window_s\": %.3f,\n  \"overloaded\": %s,\n", res_.window_s,
               overloaded_at_ ? "true" : "false");
  std::fprintf(f, "  \"accepted\": %" PRId64 ",\n  \"accepted_per_s\": %.1f,\n",
               res_.accepted_in_window, res_.accepted_in_window / w);
  std::fprintf(f, "  \"completed\": %" PRId64 ",\n  \"completed_per_s\": %.1f,\n",
               res_.completed_in_window, res_.completed_in_window / w);
  std::fprintf(f,
               "  \"measured\": {\"sent\": %" PRId64 ", \"accepted\": %" PRId64
               ", \"completed\": %" PRId64 ", \"confirmed\": %" PRId64 ", \"cancelled\": %" PRId64
               ", \"unexpected\": %" PRId64 ", \"lost\": %" PRId64 ", \"abandoned\": %" PRId64
               "},\n",
               measured_sent_, res_.accepted, res_.completed, res_.confirmed, res_.cancelled,
               res_.unexpected, res_.lost, res_.abandoned);
  std::fprintf(f,
               "  \"total\": {\"sent\": %" PRId64 ", \"accepted\": %" PRId64
               ", \"completed\": %" PRId64 "},\n",
               res_.sent, total_accepted_, total_completed_);
  std::fprintf(f, "  \"cancel_reasons\": {");
  const char* sep = "";
  for (auto& [k, v] : res_.cancel_reasons) {
    std::fprintf(f, "%s\"%s\": %" PRId64, sep, json_escape(k).c_str(), v);
    sep = ", ";
  }
  std::fprintf(f, "},\n  \"errors\": {");
  sep = "";
  for (auto& [k, v] : res_.errors) {
    std::fprintf(f, "%s\"%s\": %" PRId64, sep, json_escape(k).c_str(), v);
    sep = ", ";
  }
  std::fprintf(f, "},\n  \"error_total\": %" PRId64 ",\n", res_.error_total());
  std::fprintf(f, "  \"latency_ms\": {\n  ");
  json_hist(f, "accept", res_.accept);
  std::fprintf(f, ",\n  ");
  json_hist(f, "end_to_end", res_.e2e);
  std::fprintf(f, ",\n  ");
  json_hist(f, "to_stock_reserved", res_.reserved);
  std::fprintf(f, ",\n  ");
  json_hist(f, "to_payment_authorized", res_.authorized);
  std::fprintf(f, "\n  },\n");
  std::fprintf(f, "  \"bench_cpu_s\": %.2f,\n", cpu_seconds());
  std::fprintf(f,
               "  \"max_backlog\": %" PRId64 ",\n  \"sse_reconnects\": %" PRId64
               ",\n  \"poll_rounds\": %" PRId64 ",\n",
               res_.max_backlog, res_.sse_reconnects, res_.poll_rounds);
  json_series(f, "accepted_each_second", res_.accepted_per_s);
  std::fprintf(f, ",\n");
  json_series(f, "completed_each_second", res_.completed_per_s);
  std::fprintf(f, "\n}\n");
  std::fclose(f);
}

}  // namespace

int main(int argc, char** argv) {
  Bench bench(parse_options(argc, argv));
  return bench.run();
}
