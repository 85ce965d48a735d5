#pragma once
// A minimal Server-Sent Events client on plain sockets for tests: sends one GET, parses the
// response head, de-chunks the body and splits it into events. Blocking reads with a deadline,
// or non-blocking pumping (for hundreds of clients on one thread with poll()).

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ecom::test {

struct SseEvent {
  std::string id;
  std::string event;  // "message" when the server sent no event: line
  std::string data;
};

class SseClient {
 public:
  /// Connects to 127.0.0.1:port and sends `GET target`. Check connected().
  SseClient(uint16_t port, const std::string& target,
            const std::vector<std::pair<std::string, std::string>>& headers = {});
  ~SseClient();
  SseClient(const SseClient&) = delete;
  SseClient& operator=(const SseClient&) = delete;

  bool connected() const { return fd_ >= 0 || eof_; }
  int fd() const { return fd_; }
  /// Status of the response (0 until the head arrived).
  int status() const { return status_; }
  /// Reads until the response head arrived; false on timeout or EOF.
  bool wait_head(std::chrono::milliseconds timeout);
  /// The body of a non-stream answer (e.g. a 404), complete once eof().
  const std::string& body() const { return body_; }
  /// The next complete event, waiting up to `timeout`; nullopt on timeout or end of stream.
  std::optional<SseEvent> next(std::chrono::milliseconds timeout);
  /// Reads what is available without blocking (socket must be readable); false at EOF/error.
  bool pump();
  /// Events parsed so far and not yet taken by next().
  std::vector<SseEvent>& events() { return events_; }
  /// Comment lines seen (": keep-alive" -> "keep-alive").
  const std::vector<std::string>& comments() const { return comments_; }
  /// True once the server ended the stream (or the connection).
  bool eof() const { return eof_; }
  /// Waits until the server ends the stream; false on timeout.
  bool wait_eof(std::chrono::milliseconds timeout);
  /// Closes the connection (a client going away).
  void close();

 private:
  bool read_some(int timeout_ms);  // false at EOF/error/timeout
  void feed(const char* p, size_t n);
  void parse_body();
  void parse_events();

  int fd_ = -1;
  int status_ = 0;
  bool head_done_ = false;
  bool chunked_ = false;
  bool eof_ = false;
  std::string raw_;      // bytes before the head is parsed / undecoded chunk bytes
  std::string body_;     // decoded body bytes not yet split into events
  std::string pending_;  // lines of the event being parsed
  std::vector<SseEvent> events_;
  std::vector<std::string> comments_;
  SseEvent current_;
};

}  // namespace ecom::test
