#include "sse_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace ecom::test {

SseClient::SseClient(uint16_t port, const std::string& target,
                     const std::vector<std::pair<std::string, std::string>>& headers) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    fd_ = -1;
    return;
  }
  std::string req = "GET " + target +
                    " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                    "Connection: close\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  req += "\r\n";
  size_t off = 0;
  while (off < req.size()) {
    ssize_t n = ::send(fd_, req.data() + off, req.size() - off, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd_);
      fd_ = -1;
      return;
    }
    off += static_cast<size_t>(n);
  }
}

SseClient::~SseClient() { close(); }

void SseClient::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool SseClient::read_some(int timeout_ms) {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  int r = ::poll(&p, 1, timeout_ms);
  if (r <= 0) return false;
  return pump();
}

bool SseClient::pump() {
  if (fd_ < 0) return false;
  char buf[16384];
  ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
  if (n > 0) {
    feed(buf, static_cast<size_t>(n));
    return true;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
  eof_ = true;
  close();
  return false;
}

void SseClient::feed(const char* p, size_t n) {
  raw_.append(p, n);
  if (!head_done_) {
    size_t end = raw_.find("\r\n\r\n");
    if (end == std::string::npos) return;
    std::string head = raw_.substr(0, end);
    raw_.erase(0, end + 4);
    head_done_ = true;
    if (head.size() > 12) status_ = std::atoi(head.c_str() + 9);
    std::string lower = head;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    chunked_ = lower.find("transfer-encoding: chunked") != std::string::npos;
  }
  parse_body();
}

void SseClient::parse_body() {
  if (!chunked_) {
    body_ += raw_;
    raw_.clear();
  } else {
    while (true) {
      size_t line = raw_.find("\r\n");
      if (line == std::string::npos) break;
      size_t size = std::strtoul(raw_.substr(0, line).c_str(), nullptr, 16);
      if (size == 0) {  // last chunk: the stream ended
        raw_.clear();
        eof_ = true;
        break;
      }
      if (raw_.size() < line + 2 + size + 2) break;
      body_.append(raw_, line + 2, size);
      raw_.erase(0, line + 2 + size + 2);
    }
  }
  if (status_ == 200) parse_events();
}

void SseClient::parse_events() {
  while (true) {
    size_t nl = body_.find('\n');
    if (nl == std::string::npos) return;
    std::string line = body_.substr(0, nl);
    body_.erase(0, nl + 1);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) {
      if (!current_.data.empty() || !current_.event.empty() || !current_.id.empty()) {
        if (current_.event.empty()) current_.event = "message";
        events_.push_back(std::move(current_));
      }
      current_ = {};
      continue;
    }
    if (line[0] == ':') {
      std::string c = line.substr(1);
      if (!c.empty() && c[0] == ' ') c.erase(0, 1);
      comments_.push_back(c);
      continue;
    }
    size_t colon = line.find(':');
    std::string field = line.substr(0, colon);
    std::string value = colon == std::string::npos ? "" : line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.erase(0, 1);
    if (field == "id")
      current_.id = value;
    else if (field == "event")
      current_.event = value;
    else if (field == "data")
      current_.data += (current_.data.empty() ? "" : "\n") + value;
  }
}

bool SseClient::wait_head(std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!head_done_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0 || fd_ < 0) return false;
    read_some(static_cast<int>(left.count()));
  }
  return true;
}

std::optional<SseEvent> SseClient::next(std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (events_.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0 || fd_ < 0) return std::nullopt;
    read_some(static_cast<int>(std::min<int64_t>(left.count(), 200)));
  }
  SseEvent e = std::move(events_.front());
  events_.erase(events_.begin());
  return e;
}

bool SseClient::wait_eof(std::chrono::milliseconds timeout) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (!eof_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    if (fd_ < 0) return eof_;
    read_some(static_cast<int>(std::min<int64_t>(left.count(), 200)));
  }
  return true;
}

}  // namespace ecom::test
