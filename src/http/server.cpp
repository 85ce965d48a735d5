// The only translation unit that includes Beast: it compiles slowly, so keep it to one.
#include <utility>  // must precede Asio with Boost 1.74 + C++20 coroutines

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
#include <condition_variable>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>
#include <vector>

#include "ecom/core/log.hpp"
#include "http/url.hpp"

namespace ecom::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
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

// One accepted connection. Everything here is touched only on the connection's strand.
struct Connection {
  explicit Connection(tcp::socket socket) : stream(std::move(socket)) {}

  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::optional<RequestParser> parser;
  Request request;  // reused across keep-alive requests to keep string capacity
  bool reading = false;

  // Waiting for the first byte of the next request: nothing would be lost by closing now.
  bool idle() const {
    return reading && buffer.size() == 0 && (!parser || !parser->got_some());
  }
};

bool is_parse_error(const beast::error_code& ec) {
  if (ec.category() != bhttp::make_error_code(bhttp::error::bad_method).category()) return false;
  return ec != bhttp::error::end_of_stream && ec != bhttp::error::partial_message &&
         ec != bhttp::error::need_more && ec != bhttp::error::need_buffer;
}

void fill_request(Connection& c) {
  auto& msg = c.parser->get();
  Request& r = c.request;
  r.method = parse_method(sv(msg.method_string()));
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
        ioc_(std::max(1, options_.threads)),
        acceptor_(asio::make_strand(ioc_)) {}

  ~BeastServer() override { stop(std::chrono::milliseconds(5'000)); }

  Status start() override {
    std::lock_guard<std::mutex> lock(lifecycle_mu_);
    if (started_) return Error{"BIND_FAILED", "server already started", {}, false};
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
        return Error{"BIND_FAILED", "cannot resolve " + where + ": " + ec.message(), {}, false};
      }
      endpoint = results.begin()->endpoint();
    }
    auto fail = [&](std::string_view what) -> Status {
      std::string message = "cannot " + std::string(what) + " " + where + ": " + ec.message();
      beast::error_code ignored;
      acceptor_.close(ignored);
      return Error{"BIND_FAILED", std::move(message), {}, false};
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
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { ioc_.run(); });
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
      asio::post(c->stream.get_executor(), [c] {
        if (c->idle()) c->stream.cancel();
      });
    }

    {
      std::unique_lock<std::mutex> conns_lock(conns_mu_);
      conns_cv_.wait_until(conns_lock, deadline,
                           [this] { return accept_done_ && conns_.empty(); });
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
    for (auto& c : snapshot()) c->stream.socket().close(ignored);
    ioc_.restart();
    ioc_.run_for(std::chrono::milliseconds(500));
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
      tcp::socket socket = co_await acceptor_.async_accept(
          conn_executor, asio::redirect_error(use_awaitable, ec));
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
      co_await serve(*c);
    } catch (const std::exception& e) {
      log::error(kTag, "connection failed: {}", e.what());
    } catch (...) {
      log::error(kTag, "connection failed with a non-standard exception");
    }
    beast::error_code ignored;
    c->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    c->stream.close();
  }

  asio::awaitable<void> serve(Connection& c) {
    beast::error_code ec;
    auto& stream = c.stream;
    const auto write_timeout = std::max(options_.read_timeout, kMinWriteTimeout);
    while (!stopping_.load()) {
      c.parser.emplace();
      c.parser->body_limit(options_.body_limit);
      c.reading = true;
      // One deadline for header and body; it also closes idle keep-alive connections.
      stream.expires_after(options_.read_timeout);
      co_await bhttp::async_read_header(stream, c.buffer, *c.parser,
                                        asio::redirect_error(use_awaitable, ec));
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
        Error rejection;
        if (ec == bhttp::error::body_limit) {
          rejection.code = "PAYLOAD_TOO_LARGE";
          rejection.message =
              "request body exceeds " + std::to_string(options_.body_limit) + " bytes";
        } else if (is_parse_error(ec)) {
          rejection = Error{"BAD_REQUEST", "malformed HTTP request: " + ec.message(), {}, false};
        }
        if (!rejection.code.empty()) co_await reject(c, rejection);
        co_return;  // timeouts, resets, EOF and cancellation just close
      }

      auto& msg = c.parser->get();
      const unsigned version = msg.version();
      const bool keep_alive = msg.keep_alive();
      fill_request(c);
      const bool head = c.request.method == Method::kHead;
      Response response = router_.dispatch(c.request);

      // Once stopping, finish this response but tell the client not to reuse the connection.
      const bool keep = keep_alive && !stopping_.load();
      BeastResponse res = to_beast(std::move(response), version, keep, head);
      stream.expires_after(write_timeout);
      co_await bhttp::async_write(stream, res, asio::redirect_error(use_awaitable, ec));
      if (ec || !keep) co_return;
    }
  }

  // Sends an error for a request that cannot be parsed, then closes gracefully.
  asio::awaitable<void> reject(Connection& c, const Error& error) {
    beast::error_code ec;
    BeastResponse res = to_beast(error_response(error), 11, false, false);
    c.stream.expires_after(std::max(options_.read_timeout, kMinWriteTimeout));
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
  const ServerOptions options_;
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
