#pragma once
// A plain-socket HTTP client for the stream tests: it reads a response head, then a body that may
// be chunked, close-delimited or endless (Server-Sent Events), in steps the test controls.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <string>

namespace ecom::test {

class RawClient {
 public:
  /// Connects to 127.0.0.1:port; `rcvbuf` > 0 shrinks the receive buffer (a slow client).
  explicit RawClient(uint16_t port, int rcvbuf = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return;
    if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) close();
  }
  ~RawClient() { close(); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool send(const std::string& data) {
    size_t sent = 0;
    while (fd_ >= 0 && sent < data.size()) {
      ssize_t n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return fd_ >= 0;
  }

  bool get(const std::string& target) {
    return send("GET " + target +
                " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n");
  }

  /// Reads the response head; false on timeout or close.
  bool read_head(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (true) {
      size_t pos = raw_.find("\r\n\r\n");
      if (pos != std::string::npos) {
        head_ = raw_.substr(0, pos + 4);
        raw_.erase(0, pos + 4);
        std::string lower = head_;
        std::transform(lower.begin(), lower.end(), lower.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        chunked_ = lower.find("transfer-encoding: chunked") != std::string::npos;
        decode();
        return true;
      }
      if (!fill(end)) return false;
    }
  }

  /// The raw head, e.g. "HTTP/1.1 200 OK\r\n...".
  const std::string& head() const { return head_; }
  /// True when the head has this exact "Name: value" line (case-insensitive name).
  bool has_header(const std::string& name, const std::string& value) const {
    std::string lower_head = lower(head_);
    return lower_head.find("\r\n" + lower(name) + ": " + lower(value) + "\r\n") !=
           std::string::npos;
  }

  /// Decoded body received so far.
  std::string& body() { return body_; }
  /// The terminating chunk was received.
  bool ended() const { return ended_; }
  /// The peer closed the connection.
  bool eof() const { return eof_; }

  /// Reads until the decoded body contains `needle`.
  bool wait_for(const std::string& needle,
                std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (body_.find(needle) == std::string::npos) {
      if (!fill(end)) return false;
    }
    return true;
  }

  /// Reads until the peer closes the connection.
  bool wait_eof(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (!eof_) {
      if (!fill(end) && !eof_) return false;
    }
    return true;
  }

  /// Reads a whole response framed by Content-Length (head + body).
  std::string read_response(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    if (!read_head(timeout)) return {};
    size_t length = 0;
    std::string lower_head = lower(head_);
    size_t cl = lower_head.find("content-length:");
    if (cl != std::string::npos) length = std::stoul(head_.substr(cl + 15));
    auto end = std::chrono::steady_clock::now() + timeout;
    while (body_.size() < length) {
      if (!fill(end)) return {};
    }
    std::string out = head_ + body_.substr(0, length);
    // Bytes past this response belong to the next one.
    raw_ = body_.substr(length) + raw_;
    body_.clear();
    head_.clear();
    return out;
  }

 private:
  static std::string lower(std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }

  bool fill(std::chrono::steady_clock::time_point end) {
    if (fd_ < 0 || eof_) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    raw_.append(buf, static_cast<size_t>(n));
    if (!head_.empty()) decode();
    return true;
  }

  void decode() {
    if (!chunked_) {
      body_ += raw_;
      raw_.clear();
      return;
    }
    while (!ended_) {
      size_t line_end = raw_.find("\r\n");
      if (line_end == std::string::npos) return;
      size_t size = std::stoul(raw_.substr(0, line_end), nullptr, 16);
      if (raw_.size() < line_end + 2 + size + 2) return;
      body_.append(raw_, line_end + 2, size);
      raw_.erase(0, line_end + 2 + size + 2);
      if (size == 0) ended_ = true;
    }
  }

  int fd_ = -1;
  std::string raw_;
  std::string head_;
  std::string body_;
  bool chunked_ = false;
  bool ended_ = false;
  bool eof_ = false;
};

}  // namespace ecom::test
