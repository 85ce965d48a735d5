// The server's only translation unit (Beast compiles slowly): HTTP, deferred answers, Server-Sent
// Events and WebSocket all live here.
#include "ecom/http/server.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <charconv>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
#include <utility>  // must precede Asio with Boost 1.74 + C++20 coroutines
#include <vector>

#include "ecom/core/envelope.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/periodic_task.hpp"
#include "http_metrics.hpp"
#include "url.hpp"

namespace ecom::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
using tcp = asio::ip::tcp;
using asio::use_awaitable;

constexpr std::string_view kTag{"http"};
// Writes are bounded separately from reads: a short read timeout must not cut off a client that
// downloads a response slowly.
constexpr std::chrono::milliseconds kMinWriteTimeout{30'000};
// After an error response the rest of the request is drained for at most this long, so closing
// does not reset the connection before the client has read the error.
constexpr std::chrono::milliseconds kLingerTimeout{2'000};
// Back-off after accept() fails (e.g. EMFILE) to avoid spinning.
constexpr std::chrono::milliseconds kAcceptBackoff{50};

using RequestParser = bhttp::request_parser<bhttp::string_body>;
using BeastResponse = bhttp::response<bhttp::string_body>;

std::string_view sv(beast::string_view s) noexcept { return {s.data(), s.size()}; }

class Link;
class AsyncSlot;
class StreamImpl;
class WebSocketImpl;

// What a connection is doing; decides how a wake-up from another thread is handled.
enum class Mode { kHttp, kAsync, kStream, kWebSocket };

// One accepted connection. Everything here is touched only on the connection's strand.
struct Connection {
  explicit Connection(tcp::socket socket)
      : executor(socket.get_executor()), stream(std::move(socket)), wake(executor) {
    wake.expires_at(asio::steady_timer::time_point::max());
  }

  asio::any_io_executor executor;  // the connection's strand
  beast::tcp_stream stream;        // moved into `ws` by a WebSocket upgrade; then use lowest()
  std::optional<websocket::stream<beast::tcp_stream>> ws;
  beast::flat_buffer buffer;
  std::optional<RequestParser> parser;
  Request request;  // reused across keep-alive requests to keep string capacity
  bool reading = false;

  Mode mode = Mode::kHttp;
  // Never expires; cancelled to wake a stream or WebSocket writer when data is queued.
  asio::steady_timer wake;
  std::shared_ptr<AsyncSlot> async;    // kAsync: the pending answer
  bool async_waiting = false;          // kAsync: a read is pending that a wake-up cancels
  std::shared_ptr<StreamImpl> sse;     // kStream
  std::shared_ptr<WebSocketImpl> wsi;  // kWebSocket

  beast::tcp_stream& lowest() { return ws ? beast::get_lowest_layer(*ws) : stream; }

  // Waiting for the first byte of the next request: nothing would be lost by closing now.
  bool idle() const { return reading && buffer.size() == 0 && (!parser || !parser->got_some()); }
};

// Lets user threads (responders, streams, sockets) reach connection strands. Those objects may
// outlive the server, so they post only while the gate is open; stop() closes it before the
// io_context goes away.
struct Gate {
  std::mutex mu;
  bool open = true;
};

void on_wake(Connection& c, const Link* who);

// Base of the objects handed to user code: wakes the owning connection from any thread.
class Link {
 public:
  Link(std::shared_ptr<Gate> gate, std::weak_ptr<Connection> conn)
      : gate_(std::move(gate)), conn_(std::move(conn)) {}
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

 protected:
  ~Link() = default;

  // Posts on_wake to the connection's strand (never runs it inline: callers may hold locks or be
  // inside a user callback).
  void poke() const {
    std::lock_guard<std::mutex> lock(gate_->mu);
    if (!gate_->open) return;
    std::shared_ptr<Connection> c = conn_.lock();
    if (!c) return;
    asio::any_io_executor executor = c->executor;
    const Link* who = this;
    asio::post(executor, [c = std::move(c), who] { on_wake(*c, who); });
  }

 private:
  std::shared_ptr<Gate> gate_;
  std::weak_ptr<Connection> conn_;
};

// The answer of one deferred (async) request. The first answer wins.
class AsyncSlot final : public Link {
 public:
  using Link::Link;

  void complete(Response response) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (done_) return;
      done_ = true;
      response_ = std::move(response);
    }
    poke();
  }
  // The client left: later answers are dropped.
  void abandon() {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    response_.reset();
  }
  bool done() const {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }
  std::optional<Response> take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(response_, std::nullopt);
  }

 private:
  mutable std::mutex mu_;
  bool done_ = false;
  std::optional<Response> response_;
};

void run_callback(const std::function<void()>& fn, std::string_view what) noexcept {
  if (!fn) return;
  try {
    fn();
  } catch (const std::exception& e) {
    log::error(kTag, "{} callback threw: {}", what, e.what());
  } catch (...) {
    log::error(kTag, "{} callback threw a non-standard exception", what);
  }
}

// A Server-Sent Events stream. User threads queue bytes; the connection's strand writes them.
class StreamImpl final : public Stream, public Link {
 public:
  StreamImpl(std::shared_ptr<Gate> gate, std::weak_ptr<Connection> conn, size_t limit)
      : Link(std::move(gate), std::move(conn)), limit_(limit) {}

  bool write(std::string data) override {
    bool wake = false;
    bool ok = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return false;
      if (pending_.size() + in_flight_ + data.size() > limit_) {
        // A client this far behind is dropped instead of growing memory without bound.
        closed_ = true;
        dropped_ = true;
        pending_.clear();
        wake = true;
        ok = false;
      } else {
        if (data.empty()) return true;
        if (pending_.empty()) {
          pending_ = std::move(data);
        } else {
          pending_ += data;
        }
        wake = !wake_pending_;
        wake_pending_ = true;
      }
    }
    if (wake) poke();
    if (!ok) log::warn(kTag, "stream client fell {} bytes behind; dropping it", limit_);
    return ok;
  }

  void close() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      closed_ = true;
    }
    poke();
  }

  bool closed() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }

  void on_close(std::function<void()> fn) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!finished_) {
        on_close_.push_back(std::move(fn));
        return;
      }
    }
    run_callback(fn, "stream on_close");
  }

  // Strand side.
  struct Batch {
    std::string data;
    bool closing = false;  // close() was called: end after `data`
    bool abort = false;    // dropped or the client left: end now
  };
  Batch take() {
    std::lock_guard<std::mutex> lock(mu_);
    Batch b;
    b.abort = dropped_ || gone_;
    b.closing = closed_;
    wake_pending_ = false;
    if (!b.abort) {
      b.data.swap(pending_);
      in_flight_ += b.data.size();
    }
    return b;
  }
  void sent(size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_ -= n;
  }
  void peer_gone() {
    std::lock_guard<std::mutex> lock(mu_);
    gone_ = true;
    closed_ = true;
    pending_.clear();
  }
  bool dropped() const {
    std::lock_guard<std::mutex> lock(mu_);
    return dropped_;
  }
  // The stream ended (or was never started): runs the on_close callbacks once.
  void finish() noexcept {
    std::vector<std::function<void()>> callbacks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      finished_ = true;
      closed_ = true;
      pending_.clear();
      callbacks.swap(on_close_);
    }
    for (const auto& fn : callbacks) run_callback(fn, "stream on_close");
  }

 private:
  const size_t limit_;
  mutable std::mutex mu_;
  std::string pending_;
  size_t in_flight_ = 0;  // taken by the writer, not yet written
  bool wake_pending_ = false;
  bool closed_ = false;
  bool dropped_ = false;
  bool gone_ = false;
  bool finished_ = false;
  std::vector<std::function<void()>> on_close_;
};

// One WebSocket connection. User threads queue messages; the connection's strand writes them.
class WebSocketImpl final : public WebSocket, public Link {
 public:
  WebSocketImpl(std::shared_ptr<Gate> gate, std::weak_ptr<Connection> conn, size_t limit)
      : Link(std::move(gate), std::move(conn)), limit_(limit) {}

  bool send(std::string text) override {
    bool wake = false;
    bool ok = true;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return false;
      if (queued_bytes_ + text.size() > limit_) {
        closed_ = true;
        dropped_ = true;
        queue_.clear();
        wake = true;
        ok = false;
      } else {
        queued_bytes_ += text.size();
        queue_.push_back(std::move(text));
        wake = !wake_pending_;
        wake_pending_ = true;
      }
    }
    if (wake) poke();
    if (!ok) log::warn(kTag, "WebSocket client fell {} bytes behind; dropping it", limit_);
    return ok;
  }

  void close() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (closed_) return;
      closed_ = true;
    }
    poke();
  }

  bool closed() const override {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }

  // Strand side.
  struct Batch {
    std::deque<std::string> messages;
    bool closing = false;
    bool abort = false;
  };
  Batch take() {
    std::lock_guard<std::mutex> lock(mu_);
    Batch b;
    b.abort = dropped_ || gone_;
    b.closing = closed_;
    wake_pending_ = false;
    if (!b.abort) b.messages.swap(queue_);
    return b;
  }
  void sent(size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    queued_bytes_ -= n;
  }
  void peer_gone() {
    std::lock_guard<std::mutex> lock(mu_);
    gone_ = true;
    closed_ = true;
    queue_.clear();
  }
  bool dropped() const {
    std::lock_guard<std::mutex> lock(mu_);
    return dropped_;
  }

 private:
  const size_t limit_;
  mutable std::mutex mu_;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;  // queued plus being written
  bool wake_pending_ = false;
  bool closed_ = false;
  bool dropped_ = false;
  bool gone_ = false;
};

// Closes the socket at once (a dropped slow client): pending reads and writes fail.
void abort_connection(Connection& c) {
  beast::error_code ignored;
  c.lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
  c.lowest().socket().close(ignored);
}

void on_wake(Connection& c, const Link* who) {
  beast::error_code ignored;
  switch (c.mode) {
    case Mode::kHttp:
      break;
    case Mode::kAsync:
      // The answer is ready: cancel the read that watches for a disconnect.
      if (c.async_waiting && c.async.get() == who) c.stream.socket().cancel(ignored);
      break;
    case Mode::kStream:
      if (c.sse.get() != who) break;
      if (c.sse->dropped()) abort_connection(c);
      c.wake.cancel();
      break;
    case Mode::kWebSocket:
      if (c.wsi.get() != who) break;
      if (c.wsi->dropped()) abort_connection(c);
      c.wake.cancel();
      break;
  }
}

bool is_parse_error(const beast::error_code& ec) {
  if (ec.category() != bhttp::make_error_code(bhttp::error::bad_method).category()) return false;
  return ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message &&
         ec != bhttp::error::need_more && ec != bhttp::error::need_buffer;
}

void fill_request(Connection& c) {
  auto& msg = c.parser->get();
  Request& r = c.request;
  r.method = parse_method(sv(msg.method_string()));
  // Beast admits only token characters in a method, so the name is safe to echo.
  if (r.method == Method::kOther)
    r.method_token.assign(msg.method_string().data(), msg.method_string().size());
  else
    r.method_token.clear();
  r.target.assign(msg.target().data(), msg.target().size());
  std::string_view target(r.target);
  size_t q = target.find('?');
  detail::percent_decode_into(target.substr(0, q), false, r.path);
  if (q == std::string_view::npos) {
    r.query.clear();
  } else {
    r.query.assign(target.substr(q + 1));
  }
  // Assign into existing strings so keep-alive connections reuse their capacity.
  size_t n = 0;
  for (const auto& field : msg) {
    if (n == r.headers.size()) r.headers.emplace_back();
    auto& [name, value] = r.headers[n++];
    auto fname = field.name_string();
    name.assign(fname.data(), fname.size());
    for (char& ch : name) {
      if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch + ('a' - 'A'));
    }
    value.assign(field.value().data(), field.value().size());
  }
  r.headers.resize(n);
  r.body = std::move(msg.body());
  r.params.clear();
}

BeastResponse to_beast(Response&& in, unsigned version, bool keep_alive, bool head) {
  BeastResponse res{static_cast<bhttp::status>(in.status), version};
  res.set(bhttp::field::server, "ecomd");
  bool no_body = (in.status >= 100 && in.status < 200) || in.status == 204 || in.status == 304;
  if (!no_body && !in.content_type.empty()) res.set(bhttp::field::content_type, in.content_type);
  for (auto& [name, value] : in.headers) res.insert(name, value);
  res.keep_alive(keep_alive);
  if (no_body) return res;
  // HEAD gets the GET handler's Content-Length without the body.
  res.content_length(in.body.size());
  if (!head) res.body() = std::move(in.body);
  return res;
}

class BeastServer final : public Server {
 public:
  BeastServer(const Router& router, ServerOptions options)
      : router_(router),
        options_(std::move(options)),
        write_timeout_(std::max(options_.read_timeout, kMinWriteTimeout)),
        ioc_(std::max(1, options_.threads)),
        acceptor_(asio::make_strand(ioc_)) {}

  ~BeastServer() override { stop(std::chrono::milliseconds(5'000)); }

  Status start() override {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (started_) return Error{ErrorCode::kBindFailed, "server already started", {}, false};
    std::string where = options_.host + ":" + std::to_string(options_.port);
    beast::error_code ec;
    tcp::endpoint endpoint;
    auto address = asio::ip::make_address(options_.host, ec);
    if (!ec) {
      endpoint = tcp::endpoint(address, options_.port);
    } else {
      tcp::resolver resolver(ioc_);
      auto results = resolver.resolve(options_.host, std::to_string(options_.port),
                                      tcp::resolver::passive, ec);
      if (ec || results.empty()) {
        return Error{
            ErrorCode::kBindFailed, "cannot resolve " + where + ": " + ec.message(), {}, false};
      }
      endpoint = results.begin()->endpoint();
    }
    auto fail = [&](std::string_view what) -> Status {
      std::string message = "cannot " + std::string(what) + " " + where + ": " + ec.message();
      beast::error_code ignored;
      acceptor_.close(ignored);
      return Error{ErrorCode::kBindFailed, std::move(message), {}, false};
    };
    if (acceptor_.open(endpoint.protocol(), ec); ec) return fail("open");
    if (acceptor_.set_option(asio::socket_base::reuse_address(true), ec); ec) {
      return fail("configure");
    }
    if (acceptor_.bind(endpoint, ec); ec) return fail("bind");
    if (acceptor_.listen(asio::socket_base::max_listen_connections, ec); ec) return fail("listen");
    port_ = acceptor_.local_endpoint(ec).port();

    started_ = true;
    asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached);
    int n = std::max(1, options_.threads);
    threads_.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i)
      threads_.emplace_back([this] {
        name_this_thread("http");
        ioc_.run();
      });
    log::info(kTag, "listening on {}:{} ({} threads)", options_.host, port_, n);
    return {};
  }

  uint16_t port() const noexcept override { return port_; }

  void stop(std::chrono::milliseconds grace) override {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (!started_ || stopped_) return;
    stopped_ = true;
    auto deadline = std::chrono::steady_clock::now() + grace;

    // Order matters: connections registering after the snapshot below see stopping_ and leave.
    stopping_.store(true);
    asio::post(acceptor_.get_executor(), [this] {
      beast::error_code ignored;
      acceptor_.close(ignored);
    });
    for (auto& c : snapshot()) {
      asio::post(c->executor, [c] { stop_connection(*c); });
    }

    {
      std::unique_lock<std::mutex> conns_lock(conns_mu_);
      conns_cv_.wait_until(conns_lock, deadline, [this] { return accept_done_ && conns_.empty(); });
    }

    // Past the grace period (or drained): stop the loop and tear down whatever is left. A handler
    // still running keeps its thread until it returns; join waits for that.
    ioc_.stop();
    for (auto& t : threads_) t.join();
    threads_.clear();

    // No io thread runs now, so sockets can be closed directly; a short single-threaded run lets
    // the aborted coroutines unwind and release their frames and sockets.
    beast::error_code ignored;
    acceptor_.close(ignored);
    for (auto& c : snapshot()) c->lowest().socket().close(ignored);
    ioc_.restart();
    ioc_.run_for(std::chrono::milliseconds(500));
    {
      std::lock_guard<std::mutex> gate_lock(gate_->mu);
      gate_->open = false;
    }
    log::info(kTag, "stopped");
  }

 private:
  std::vector<std::shared_ptr<Connection>> snapshot() {
    std::lock_guard<std::mutex> lock(conns_mu_);
    return {conns_.begin(), conns_.end()};
  }

  asio::awaitable<void> accept_loop() {
    for (;;) {
      beast::error_code ec;
      asio::any_io_executor conn_executor = asio::make_strand(ioc_);
      tcp::socket socket =
          co_await acceptor_.async_accept(conn_executor, asio::redirect_error(use_awaitable, ec));
      if (stopping_.load() || ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
      if (ec) {
        log::warn(kTag, "accept failed: {}", ec.message());
        asio::steady_timer timer(acceptor_.get_executor(), kAcceptBackoff);
        co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
        continue;
      }
      socket.set_option(tcp::no_delay(true), ec);
      auto conn = std::make_shared<Connection>(std::move(socket));
      auto executor = conn->stream.get_executor();  // before conn is moved from
      asio::co_spawn(executor, session(std::move(conn)), asio::detached);
    }
    std::lock_guard<std::mutex> lock(conns_mu_);
    accept_done_ = true;
    conns_cv_.notify_all();
  }

  // Registers the connection for the lifetime of its session, so stop() can find idle ones.
  class Registration {
   public:
    Registration(BeastServer& s, std::shared_ptr<Connection> c) : s_(s), c_(std::move(c)) {
      std::lock_guard<std::mutex> lock(s_.conns_mu_);
      s_.conns_.insert(c_);
    }
    ~Registration() {
      std::lock_guard<std::mutex> lock(s_.conns_mu_);
      s_.conns_.erase(c_);
      s_.conns_cv_.notify_all();
    }
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

   private:
    BeastServer& s_;
    std::shared_ptr<Connection> c_;
  };

  asio::awaitable<void> session(std::shared_ptr<Connection> c) {
    Registration registration(*this, c);
    try {
      co_await serve(c);
    } catch (const std::exception& e) {
      log::error(kTag, "connection failed: {}", e.what());
    } catch (...) {
      log::error(kTag, "connection failed with a non-standard exception");
    }
    beast::error_code ignored;
    c->lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
    c->lowest().close();
  }

  // Runs on the connection's strand when stop() begins: idle connections close, deferred
  // requests get 503, streams and WebSockets end after what is queued.
  static void stop_connection(Connection& c) {
    if (c.idle()) {
      c.stream.cancel();
      return;
    }
    switch (c.mode) {
      case Mode::kHttp:
        break;
      case Mode::kAsync:
        // A deferred read (a long poll) ends now. A deferred write may be committing: answering
        // 503 could tell the client it failed when it did not, so it finishes within the grace.
        if (c.async && !is_write(c.request.method)) c.async->complete(unavailable());
        break;
      case Mode::kStream:
        if (c.sse) c.sse->close();
        break;
      case Mode::kWebSocket:
        if (c.wsi) c.wsi->close();
        break;
    }
  }

  static bool is_write(Method m) { return m != Method::kGet && m != Method::kHead; }

  static Response unavailable() {
    return error_response(Error{ErrorCode::kUnavailable, "the server is shutting down", {}, true});
  }
  static Response internal_error() {
    return error_response(Error{ErrorCode::kInternal, "internal error", {}, false});
  }

  // Metrics for every answer, and with access_log one line: method, route template, status,
  // duration and the trace id of the request's traceparent. The route template (not the path)
  // keeps ids and tokens out of the log.
  void answered(const Request& r, std::string_view route, int status,
                std::chrono::steady_clock::time_point read_at) {
    const auto took = std::chrono::steady_clock::now() - read_at;
    metrics_.answered(route, status, took);
    if (!options_.access_log) return;
    const std::string_view trace = trace_ids(r.header("traceparent").value_or("")).trace_id;
    // The route names the method too ("POST /api/orders"); unmatched requests add theirs.
    log::info("access", "{}{}{} {} {:.1f} ms{}{}",
              route.find(' ') == std::string_view::npos ? method_name(r) : "",
              route.find(' ') == std::string_view::npos ? " " : "", route, status,
              std::chrono::duration<double, std::milli>(took).count(),
              trace.empty() ? "" : " trace ", trace);
  }

  static void log_handler_failure(const Request& r, std::string_view what) {
    log::error(kTag, "{} {} handler threw: {}", method_name(r), r.path, what);
  }

  asio::awaitable<void> serve(const std::shared_ptr<Connection>& conn) {
    Connection& c = *conn;
    beast::error_code ec;
    auto& stream = c.stream;
    while (!stopping_.load()) {
      c.parser.emplace();
      c.parser->body_limit(options_.body_limit);
      c.parser->header_limit(kHeaderLimit);
      c.reading = true;
      // One deadline for header and body; it also closes idle keep-alive connections.
      stream.expires_after(options_.read_timeout);
      co_await bhttp::async_read_header(stream, c.buffer, *c.parser,
                                        asio::redirect_error(use_awaitable, ec));
      if (!ec) {
        // Checked before the body is read: a refused header closes the connection.
        std::optional<Error> refused = refuse_header(c.parser->get());
        if (refused) {
          c.reading = false;
          co_await reject(c, *refused);
          co_return;
        }
      }
      if (!ec && !c.parser->is_done()) {
        auto& header = c.parser->get();
        if (header.version() >= 11 &&
            beast::iequals(header[bhttp::field::expect], "100-continue")) {
          bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, header.version()};
          co_await bhttp::async_write(stream, cont, asio::redirect_error(use_awaitable, ec));
        }
        if (!ec) {
          co_await bhttp::async_read(stream, c.buffer, *c.parser,
                                     asio::redirect_error(use_awaitable, ec));
        }
      }
      c.reading = false;

      if (ec) {
        // Built outside the co_await expression: GCC 12 mishandles non-trivial temporaries there.
        std::optional<Error> rejection;
        if (ec == bhttp::error::body_limit) {
          rejection =
              Error{ErrorCode::kPayloadTooLarge,
                    "request body exceeds " + std::to_string(options_.body_limit) + " bytes"};
        } else if (ec == bhttp::error::header_limit) {
          rejection =
              Error{ErrorCode::kHeadersTooLarge, "the request's header block exceeds " +
                                                     std::to_string(kHeaderLimit) + " bytes"};
        } else if (is_parse_error(ec)) {
          rejection = Error{ErrorCode::kBadRequest, "malformed HTTP request: " + ec.message()};
        }
        if (rejection) co_await reject(c, *rejection);
        co_return;  // timeouts, resets, EOF and cancellation just close
      }

      auto& msg = c.parser->get();
      const unsigned version = msg.version();
      const bool keep_alive = msg.keep_alive();
      fill_request(c);
      const auto read_at = std::chrono::steady_clock::now();
      std::optional<HttpMetrics::InFlight> in_flight;
      in_flight.emplace(metrics_.in_flight());
      const bool head = c.request.method == Method::kHead;
      Match match = router_.match(c.request);
      Response response;
      switch (match.kind) {
        case Match::Kind::kResponse:
          response = std::move(match.response);
          break;
        case Match::Kind::kAsync: {
          const bool answered = co_await await_async(conn, *match.async, response);
          if (!answered) co_return;  // the client left
          break;
        }
        case Match::Kind::kStream: {
          auto sse = std::make_shared<StreamImpl>(gate_, std::weak_ptr<Connection>(conn),
                                                  options_.stream_buffer_limit);
          std::optional<Response> instead;
          try {
            instead = (*match.stream)(c.request, sse);
          } catch (const std::exception& e) {
            log_handler_failure(c.request, e.what());
            instead = internal_error();
          } catch (...) {
            log_handler_failure(c.request, "a non-standard exception");
            instead = internal_error();
          }
          if (instead) {
            sse->finish();  // answered normally: the stream is discarded
            response = std::move(*instead);
            break;
          }
          // A stream is counted when it opens, then only as open, not as in flight.
          in_flight.reset();
          answered(c.request, match.route, 200, read_at);
          auto open = metrics_.open_stream(match.route);
          co_await serve_stream(conn, sse, version);
          co_return;
        }
        case Match::Kind::kWebSocket: {
          auto wsi = std::make_shared<WebSocketImpl>(gate_, std::weak_ptr<Connection>(conn),
                                                     options_.stream_buffer_limit);
          std::optional<WebSocketCallbacks> callbacks;
          try {
            callbacks = (*match.websocket)(c.request, wsi);
          } catch (const std::exception& e) {
            log_handler_failure(c.request, e.what());
          } catch (...) {
            log_handler_failure(c.request, "a non-standard exception");
          }
          if (!callbacks) {
            wsi->peer_gone();
            response = internal_error();
            break;
          }
          in_flight.reset();
          answered(c.request, match.route, 101, read_at);
          auto open = metrics_.open_stream(match.route);
          co_await serve_websocket(conn, wsi, *callbacks);
          co_return;
        }
      }

      // Once stopping, finish this response but tell the client not to reuse the connection.
      const bool keep = keep_alive && !stopping_.load();
      const int status = response.status;
      BeastResponse res = to_beast(std::move(response), version, keep, head);
      stream.expires_after(write_timeout_);
      co_await bhttp::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
      answered(c.request, match.route, status, read_at);
      if (ec || !keep) co_return;
    }
  }

  // Runs an async handler and waits, without blocking a thread, for its answer. Meanwhile a read
  // watches the socket: EOF or an error means the client left (returns false and the responder
  // becomes a no-op); bytes of a pipelined next request are kept in the connection's buffer.
  asio::awaitable<bool> await_async(const std::shared_ptr<Connection>& conn,
                                    const AsyncHandler& handler, Response& out) {
    Connection& c = *conn;
    auto slot = std::make_shared<AsyncSlot>(gate_, std::weak_ptr<Connection>(conn));
    Responder responder = [slot](Response r) { slot->complete(std::move(r)); };
    try {
      handler(c.request, std::move(responder));
    } catch (const std::exception& e) {
      log_handler_failure(c.request, e.what());
      slot->complete(internal_error());
    } catch (...) {
      log_handler_failure(c.request, "a non-standard exception");
      slot->complete(internal_error());
    }
    c.mode = Mode::kAsync;
    c.async = slot;
    c.async_waiting = true;
    // stop() may have looked at this connection before it was waiting.
    if (stopping_.load() && !is_write(c.request.method)) slot->complete(unavailable());

    // A client pipelining this much while waiting is not worth keeping.
    const size_t pipeline_limit = options_.body_limit + 64 * 1024;
    beast::error_code ec;
    bool gone = false;
    while (!slot->done()) {
      if (c.buffer.size() > pipeline_limit) {
        gone = true;
        break;
      }
      // The raw socket has no deadline: a long poll may take as long as its handler wants.
      size_t n = co_await c.stream.socket().async_read_some(
          c.buffer.prepare(4096), asio::redirect_error(use_awaitable, ec));
      c.buffer.commit(n);
      if (ec == asio::error::operation_aborted) continue;  // woken by the responder
      if (ec) {
        gone = true;
        break;
      }
    }
    c.async_waiting = false;
    c.async.reset();
    c.mode = Mode::kHttp;
    if (gone) {
      slot->abandon();
      co_return false;
    }
    std::optional<Response> answer = slot->take();
    if (!answer) co_return false;
    out = std::move(*answer);
    co_return true;
  }

  // Serves a Server-Sent Events stream until it is closed, the client leaves or falls too far
  // behind. The connection is not reused afterwards.
  asio::awaitable<void> serve_stream(const std::shared_ptr<Connection>& conn,
                                     const std::shared_ptr<StreamImpl>& sse, unsigned version) {
    Connection& c = *conn;
    // on_close runs however this ends, even if the frame is destroyed by a forced stop.
    struct Finish {
      StreamImpl& s;
      ~Finish() { s.finish(); }
    } finish{*sse};
    c.mode = Mode::kStream;
    c.sse = sse;
    if (stopping_.load()) sse->close();

    // HTTP/1.0 has no chunking: its stream ends when the connection closes.
    const bool chunked = version >= 11;
    bhttp::response<bhttp::empty_body> head{bhttp::status::ok, version};
    head.set(bhttp::field::server, "ecomd");
    head.set(bhttp::field::content_type, "text/event-stream");
    head.set(bhttp::field::cache_control, "no-cache");
    head.set("X-Accel-Buffering", "no");  // tells nginx-style proxies not to buffer the stream
    head.keep_alive(false);
    if (chunked) head.chunked(true);
    bhttp::response_serializer<bhttp::empty_body> serializer{head};
    beast::error_code ec;
    c.stream.expires_after(write_timeout_);
    co_await bhttp::async_write_header(c.stream, serializer,
                                       asio::redirect_error(use_awaitable, ec));
    if (ec) co_return;

    // Streams are exempt from the read timeout; a read on the raw socket only notices the client
    // leaving. Writes keep their own deadline.
    asio::co_spawn(c.executor, watch_stream_peer(conn), asio::detached);

    std::array<char, 24> chunk_head{};
    static constexpr char kCrlf[] = "\r\n";
    static constexpr char kLastChunk[] = "0\r\n\r\n";
    for (;;) {
      StreamImpl::Batch batch = sse->take();
      if (batch.abort) break;
      if (!batch.data.empty()) {
        std::array<asio::const_buffer, 3> buffers{};
        if (chunked) {
          auto [end, err] =
              std::to_chars(chunk_head.data(), chunk_head.data() + 16, batch.data.size(), 16);
          (void)err;
          *end++ = '\r';
          *end++ = '\n';
          buffers[0] =
              asio::buffer(chunk_head.data(), static_cast<size_t>(end - chunk_head.data()));
          buffers[2] = asio::buffer(kCrlf, 2);
        }
        buffers[1] = asio::buffer(batch.data);
        c.stream.expires_after(write_timeout_);
        co_await asio::async_write(c.stream, buffers, asio::redirect_error(use_awaitable, ec));
        sse->sent(batch.data.size());
        if (ec) break;
        continue;
      }
      if (batch.closing) {
        if (chunked) {
          c.stream.expires_after(write_timeout_);
          co_await asio::async_write(c.stream, asio::buffer(kLastChunk, 5),
                                     asio::redirect_error(use_awaitable, ec));
        }
        break;
      }
      co_await c.wake.async_wait(asio::redirect_error(use_awaitable, ec));
    }
  }

  static asio::awaitable<void> watch_stream_peer(std::shared_ptr<Connection> conn) {
    Connection& c = *conn;
    std::array<char, 1024> sink;
    beast::error_code ec;
    // Anything a client sends on a stream is ignored; only EOF or an error matters.
    while (!ec) {
      co_await c.stream.socket().async_read_some(asio::buffer(sink),
                                                 asio::redirect_error(use_awaitable, ec));
    }
    if (c.sse) c.sse->peer_gone();
    c.wake.cancel();
  }

  // Upgrades to WebSocket and serves it: this coroutine reads, a second one writes the queue.
  asio::awaitable<void> serve_websocket(const std::shared_ptr<Connection>& conn,
                                        const std::shared_ptr<WebSocketImpl>& wsi,
                                        WebSocketCallbacks& callbacks) {
    Connection& c = *conn;
    struct Finish {
      Connection& c;
      WebSocketImpl& w;
      const std::function<void()>& on_close;
      ~Finish() {
        w.peer_gone();
        c.wake.cancel();  // lets the writer leave
        run_callback(on_close, "WebSocket on_close");
      }
    } finish{c, *wsi, callbacks.on_close};
    c.mode = Mode::kWebSocket;
    c.wsi = wsi;

    c.stream.expires_never();  // the WebSocket stream keeps its own timeouts
    c.ws.emplace(std::move(c.stream));
    auto& ws = *c.ws;
    ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(bhttp::field::server, "ecomd"); }));
    ws.read_message_max(options_.body_limit);
    ws.text(true);
    beast::error_code ec;
    co_await ws.async_accept(c.parser->get(), asio::redirect_error(use_awaitable, ec));
    if (ec) co_return;
    if (stopping_.load()) wsi->close();
    asio::co_spawn(c.executor, write_websocket(conn), asio::detached);

    beast::flat_buffer in;
    for (;;) {
      co_await ws.async_read(in, asio::redirect_error(use_awaitable, ec));
      if (ec) break;
      if (callbacks.on_message) {
        auto data = in.cdata();
        std::string_view text(static_cast<const char*>(data.data()), data.size());
        try {
          callbacks.on_message(text);
        } catch (const std::exception& e) {
          log::error(kTag, "WebSocket on_message threw: {}", e.what());
        } catch (...) {
          log::error(kTag, "WebSocket on_message threw a non-standard exception");
        }
      }
      in.consume(in.size());
    }
  }

  static asio::awaitable<void> write_websocket(std::shared_ptr<Connection> conn) {
    Connection& c = *conn;
    auto& ws = *c.ws;
    std::shared_ptr<WebSocketImpl> wsi = c.wsi;
    beast::error_code ec;
    for (;;) {
      WebSocketImpl::Batch batch = wsi->take();
      if (batch.abort) break;
      if (!batch.messages.empty()) {
        for (const std::string& m : batch.messages) {
          co_await ws.async_write(asio::buffer(m), asio::redirect_error(use_awaitable, ec));
          wsi->sent(m.size());
          if (ec) break;
        }
        if (ec) {
          abort_connection(c);  // ends the read loop as well
          break;
        }
        continue;
      }
      if (batch.closing) {
        // The read loop sees the peer's close reply and ends the connection.
        websocket::close_reason reason(websocket::close_code::normal);
        co_await ws.async_close(reason, asio::redirect_error(use_awaitable, ec));
        break;
      }
      co_await c.wake.async_wait(asio::redirect_error(use_awaitable, ec));
    }
  }

  // Sends an error for a request that cannot be parsed, then closes gracefully.
  // Beast's default header limit (request line and fields).
  static constexpr size_t kHeaderLimit = 8 * 1024;

  // What RFC 9112 makes the server refuse before the body: an HTTP/1.1 request without Host
  // (400), and a transfer coding other than chunked alone (501: "gzip, chunked" would hand the
  // handler compressed bytes as if they were the body).
  static std::optional<Error> refuse_header(const bhttp::request_header<>& h) {
    if (h.version() >= 11 && h.find(bhttp::field::host) == h.end())
      return Error{ErrorCode::kBadRequest, "an HTTP/1.1 request needs a Host header", "Host"};
    auto te = h.find(bhttp::field::transfer_encoding);
    if (te != h.end()) {
      std::string_view v(te->value().data(), te->value().size());
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      if (!beast::iequals(beast::string_view(v.data(), v.size()), "chunked"))
        return Error{ErrorCode::kNotImplemented,
                     "transfer coding \"" + std::string(v) + "\" is not supported (only chunked)",
                     "Transfer-Encoding"};
    }
    return std::nullopt;
  }

  asio::awaitable<void> reject(Connection& c, const Error& error) {
    beast::error_code ec;
    BeastResponse res = to_beast(error_response(error), 11, false, false);
    c.stream.expires_after(write_timeout_);
    co_await bhttp::async_write(c.stream, res, asio::redirect_error(use_awaitable, ec));
    if (ec) co_return;
    // Half-close and drain what the client is still sending: closing with unread data would
    // reset the connection and could destroy the error response before the client reads it.
    c.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    c.stream.expires_after(std::min(options_.read_timeout, kLingerTimeout));
    std::array<char, 4096> sink;
    while (!ec) {
      co_await c.stream.async_read_some(asio::buffer(sink),
                                        asio::redirect_error(use_awaitable, ec));
    }
  }

  const Router& router_;
  HttpMetrics metrics_;
  const ServerOptions options_;
  // Writes are bounded separately from reads (see kMinWriteTimeout).
  const std::chrono::milliseconds write_timeout_;
  std::shared_ptr<Gate> gate_ = std::make_shared<Gate>();
  std::atomic<bool> stopping_{false};
  uint16_t port_ = 0;

  std::mutex lifecycle_mu_;  // serializes start/stop
  bool started_ = false;
  bool stopped_ = false;

  std::mutex conns_mu_;
  std::condition_variable conns_cv_;
  std::unordered_set<std::shared_ptr<Connection>> conns_;
  bool accept_done_ = false;

  // Declared after the connection registry: abandoned coroutine frames (after a forced stop)
  // unregister themselves from conns_ while the io_context is destroyed.
  asio::io_context ioc_;
  tcp::acceptor acceptor_;
  std::vector<std::thread> threads_;
};

}  // namespace

std::unique_ptr<Server> make_server(const Router& router, ServerOptions options) {
  return std::make_unique<BeastServer>(router, std::move(options));
}

}  // namespace ecom::http
