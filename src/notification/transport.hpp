#pragma once
// The outgoing transfers of the sinks, through libcurl: an HTTPS (or loopback HTTP) POST and an
// SMTP submission. curl.h stays in transport.cpp; nothing here names a libcurl type.

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "ecom/core/result.hpp"

namespace ecom::notification {

/// `notification.smtp.starttls`: whether an smtp:// connection is upgraded to TLS.
enum class StartTls { kNone, kTry, kRequired };

/// The parts of a URL that config checks need, as libcurl parses it.
struct UrlParts {
  std::string scheme;  ///< lower case
  std::string host;    ///< without brackets
};

/// Parses `url` with libcurl's own parser (so config checks see what the transfer will use).
Result<UrlParts> parse_url(const std::string& url);
/// True for 127.0.0.0/8, ::1 and localhost: hosts that never leave the machine.
bool is_loopback_host(const std::string& host);

/// One HTTP POST. TLS peer and host verification are always on.
struct HttpPost {
  std::string url;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string ca_file;  ///< a CA bundle to verify the server with; empty: the system's
  std::chrono::milliseconds timeout{2'000};  ///< the whole transfer, connecting included
};

/// The SMTP server messages are submitted to, and how.
struct SmtpServer {
  std::string url;  ///< smtp://host[:port] or smtps://host[:port]
  StartTls starttls = StartTls::kRequired;
  std::string username;  ///< empty: no AUTH
  std::string password;  ///< ECOMD_SMTP_PASSWORD or password_file, never in the config file
  std::string ca_file;   ///< a CA bundle to verify the server with; empty: the system's
  std::chrono::milliseconds timeout{10'000};  ///< the whole submission
};

/// A libcurl easy handle, reused from one transfer to the next so that a receiver's connection
/// (and its TLS session) is kept alive between notifications. One thread at a time.
class Transport {
 public:
  Transport();
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  /// The HTTP status of the answer; an Error only when no answer came (retryable unless the URL
  /// itself is wrong).
  Result<int> post(const HttpPost& request);
  /// Submits `message` (RFC 5322 text, CRLF lines) from envelope sender `from` to `to` (RFC
  /// 5321). OK once the server accepted it. A 5xx reply fails with retryable = false, a 4xx reply
  /// or a transport error (refused, TLS, timeout) with retryable = true.
  Status mail(const SmtpServer& server, const std::string& from, const std::string& to,
              const std::string& message);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ecom::notification
