#pragma once
/// Test helpers: temp dirs, a tiny blocking HTTP client (plain sockets, so tests do not compile
/// Beast), and a handle on a real `ecomd` child process.

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace ecom::test {

/// A fresh directory under /tmp, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/// A parsed HTTP response. Header names are lower-cased.
struct HttpResponse {
  int status = 0;  ///< 0 when the connection failed
  std::map<std::string, std::string> headers;
  std::string body;
  std::string header(const std::string& lower) const {
    auto it = headers.find(lower);
    return it == headers.end() ? std::string() : it->second;
  }
};

/// Sends one request on a new connection (Connection: close) to 127.0.0.1:port.
HttpResponse http_request(uint16_t port, const std::string& method, const std::string& target,
                          const std::string& body = {},
                          const std::vector<std::pair<std::string, std::string>>& headers = {},
                          std::chrono::milliseconds timeout = std::chrono::seconds(10));
/// Sends raw bytes and returns the raw reply (for malformed-request tests).
std::string http_raw(uint16_t port, const std::string& bytes,
                     std::chrono::milliseconds timeout = std::chrono::seconds(5));

/// A free TCP port on loopback (bound and released; good enough for tests).
uint16_t free_port();

/// Forks and execs `args` (args[0] is the binary's path) at once, with stdout and stderr going
/// to `log` (appended to, or truncated first). Exec right after fork: the parent may run
/// librdkafka or server threads the child must not rely on. Returns the child's pid.
pid_t spawn_logged(std::vector<std::string> args, const std::string& log, bool append);

/// A running `ecomd` child. Killed with SIGKILL on destruction if still running.
class Ecomd {
 public:
  /// Starts ECOMD_BINARY with `args` plus --http=127.0.0.1:<port> and --data-dir=<data_dir>, and
  /// waits until /healthz answers (fails the test after `wait`).
  Ecomd(std::string data_dir, std::vector<std::string> args = {"--role=all"}, uint16_t port = 0,
        std::chrono::milliseconds wait = std::chrono::seconds(20));
  ~Ecomd();
  Ecomd(const Ecomd&) = delete;
  Ecomd& operator=(const Ecomd&) = delete;

  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  /// Sends SIGKILL and reaps.
  void kill9();
  /// Sends SIGTERM and returns the exit code (or -signal), waiting up to `wait`.
  int terminate(std::chrono::milliseconds wait = std::chrono::seconds(15));
  /// Path of the child's combined stdout/stderr log.
  const std::string& log_path() const { return log_; }
  HttpResponse get(const std::string& target) const { return http_request(port_, "GET", target); }
  HttpResponse post(const std::string& target, const std::string& body,
                    std::vector<std::pair<std::string, std::string>> headers = {}) const;

 private:
  std::string data_dir_;
  std::vector<std::string> args_;
  uint16_t port_;
  pid_t pid_ = -1;
  std::string log_;
};

/// Runs ECOMD_BINARY with args to completion; returns {exit code, combined output}.
std::pair<int, std::string> run_ecomd(const std::vector<std::string>& args,
                                      const std::vector<std::string>& env = {});

/// The `,"kafka":{...}` member of an ecomd config for the broker in ECOM_KAFKA_BROKERS, with a
/// topic and group prefix of its own per call, so runs never mix. Fails the test when the
/// variable is not set (scripts/test.sh starts a broker and sets it).
std::string kafka_config_section();

/// The PostgreSQL server of the suite (ECOM_PG_URL, set by scripts/test.sh after
/// scripts/postgres.sh start). Fails the test when the variable is not set.
std::string postgres_url();
/// A schema name no other test or run uses ("t<pid>_<n>_<stem>"): a test's own store there.
std::string unique_schema(const std::string& stem);

/// Polls `pred` every 20 ms until true or `timeout`; returns the last result.
template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() > end) return false;
    struct timespec ts {
      0, 20'000'000
    };
    nanosleep(&ts, nullptr);
  }
}

}  // namespace ecom::test
