#include "support/test_support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace ecom::test {
namespace {

int connect_loopback(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool send_all(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    sent += static_cast<size_t>(n);
  }
  return true;
}

// Reads until the peer closes or the deadline passes.
std::string recv_all(int fd, std::chrono::milliseconds timeout) {
  std::string out;
  auto end = std::chrono::steady_clock::now() + timeout;
  char buf[16384];
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r <= 0) break;
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

HttpResponse parse_response(const std::string& raw) {
  HttpResponse r;
  auto head_end = raw.find("\r\n\r\n");
  if (head_end == std::string::npos) return r;
  std::istringstream head(raw.substr(0, head_end));
  std::string line;
  std::getline(head, line);
  if (line.size() >= 12) r.status = std::atoi(line.c_str() + 9);
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    std::transform(name.begin(), name.end(), name.begin(), ::tolower);
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    r.headers[name] = value;
  }
  std::string body = raw.substr(head_end + 4);
  if (r.header("transfer-encoding") == "chunked") {
    std::string decoded;
    size_t pos = 0;
    while (pos < body.size()) {
      auto eol = body.find("\r\n", pos);
      if (eol == std::string::npos) break;
      size_t len = std::strtoul(body.substr(pos, eol - pos).c_str(), nullptr, 16);
      if (len == 0) break;
      decoded += body.substr(eol + 2, len);
      pos = eol + 2 + len + 2;
    }
    body = decoded;
  }
  r.body = body;
  return r;
}

}  // namespace

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "ecomd-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

HttpResponse http_request(uint16_t port, const std::string& method, const std::string& target,
                          const std::string& body,
                          const std::vector<std::pair<std::string, std::string>>& headers,
                          std::chrono::milliseconds timeout) {
  int fd = connect_loopback(port);
  if (fd < 0) return {};
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
  bool has_type = false;
  for (const auto& [k, v] : headers) {
    req += k + ": " + v + "\r\n";
    std::string lower = k;
    std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
    if (lower == "content-type") has_type = true;
  }
  if (!body.empty() && !has_type) req += "Content-Type: application/json\r\n";
  if (!body.empty() || method == "POST" || method == "PUT")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  HttpResponse r;
  if (send_all(fd, req)) r = parse_response(recv_all(fd, timeout));
  ::close(fd);
  return r;
}

std::string http_raw(uint16_t port, const std::string& bytes, std::chrono::milliseconds timeout) {
  int fd = connect_loopback(port);
  if (fd < 0) return {};
  std::string out;
  if (send_all(fd, bytes)) out = recv_all(fd, timeout);
  ::close(fd);
  return out;
}

uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  uint16_t port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

pid_t spawn_logged(std::vector<std::string> args, const std::string& log, bool append) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

Ecomd::Ecomd(std::string data_dir, std::vector<std::string> args, uint16_t port,
             std::chrono::milliseconds wait)
    : data_dir_(std::move(data_dir)), args_(std::move(args)), port_(port ? port : free_port()) {
  log_ = data_dir_ + "/ecomd-" + std::to_string(port_) + ".log";
  std::vector<std::string> argv_s{ECOMD_BINARY};
  argv_s.insert(argv_s.end(), args_.begin(), args_.end());
  argv_s.push_back("--http=127.0.0.1:" + std::to_string(port_));
  argv_s.push_back("--data-dir=" + data_dir_);
  pid_ = spawn_logged(std::move(argv_s), log_, /*append=*/true);
  bool up = eventually(
      [&] {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          return true;
        }
        return http_request(port_, "GET", "/healthz", {}, {}, std::chrono::seconds(2)).status ==
               200;
      },
      wait);
  if (!up || pid_ < 0) {
    std::ifstream in(log_);
    std::stringstream ss;
    ss << in.rdbuf();
    throw std::runtime_error("ecomd did not come up on port " + std::to_string(port_) + ":\n" +
                             ss.str());
  }
}

Ecomd::~Ecomd() {
  if (pid_ > 0) kill9();
}

void Ecomd::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
}

int Ecomd::terminate(std::chrono::milliseconds wait) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  int status = 0;
  auto end = std::chrono::steady_clock::now() + wait;
  while (std::chrono::steady_clock::now() < end) {
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill9();
  return -SIGKILL;
}

HttpResponse Ecomd::post(const std::string& target, const std::string& body,
                         std::vector<std::pair<std::string, std::string>> headers) const {
  return http_request(port_, "POST", target, body, headers);
}

std::pair<int, std::string> run_ecomd(const std::vector<std::string>& args,
                                      const std::vector<std::string>& env) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return {-1, {}};
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(pipefd[1], 1);
    ::dup2(pipefd[1], 2);
    for (const auto& kv : env) ::putenv(const_cast<char*>(kv.c_str()));
    std::vector<std::string> argv_s{ECOMD_BINARY};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    _exit(127);
  }
  ::close(pipefd[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status), out};
}

std::string postgres_url() {
  const char* url = std::getenv("ECOM_PG_URL");
  if (url == nullptr || *url == '\0')
    FAIL(
        "ECOM_PG_URL is not set: start a server with scripts/postgres.sh start and set it to "
        "$(scripts/postgres.sh url) (scripts/test.sh does)");
  return url;
}

std::string unique_schema(const std::string& stem) {
  static std::atomic<int> n{0};
  return "t" + std::to_string(::getpid()) + "_" + std::to_string(n++) + "_" + stem;
}

std::string kafka_config_section() {
  const char* brokers = std::getenv("ECOM_KAFKA_BROKERS");
  if (brokers == nullptr || *brokers == '\0')
    FAIL(
        "ECOM_KAFKA_BROKERS is not set: start a broker with scripts/kafka.sh start "
        "(scripts/test.sh does)");
  static std::atomic<int> n{0};
  std::string prefix = "e2e" + std::to_string(::getpid()) + "-" + std::to_string(n++) + ".";
  return std::string(R"(,"kafka":{"bootstrap_servers":")") + brokers + R"(","topic_prefix":")" +
         prefix + R"(","group_prefix":")" + prefix + R"("})";
}

}  // namespace ecom::test
