// libcurl for both channels: it speaks SMTP with STARTTLS and AUTH, and HTTPS with verification,
// through the system's OpenSSL, so the sinks need no protocol code of their own.
#include "transport.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <mutex>

namespace ecom::notification {
namespace {

// Answers of receivers are not read; a transfer drops them as they come.
size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

// Feeds the message to an SMTP upload.
struct Upload {
  const std::string* text;
  size_t at = 0;
};
size_t read_upload(char* buffer, size_t size, size_t n, void* user) {
  auto* u = static_cast<Upload*>(user);
  size_t len = std::min(size * n, u->text->size() - u->at);
  std::memcpy(buffer, u->text->data() + u->at, len);
  u->at += len;
  return len;
}

// libcurl's global state is set up once, before the first handle (curl_global_init is not
// thread-safe on every build, call_once makes it so).
void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

// A curl_slist owned for the length of one transfer.
struct SList {
  curl_slist* list = nullptr;
  ~SList() { curl_slist_free_all(list); }
  void add(const std::string& s) { list = curl_slist_append(list, s.c_str()); }
};

// The error of a transfer that got no (final) answer.
Error transfer_error(CURLcode rc, const char* detail, long reply) {
  std::string what = detail[0] != '\0' ? detail : curl_easy_strerror(rc);
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      return Error{ErrorCode::kUpstreamTimeout, what, {}, true};
    case CURLE_URL_MALFORMAT:
      return Error{ErrorCode::kBadUrl, what, "url", false};
    case CURLE_UNSUPPORTED_PROTOCOL:
      return Error{ErrorCode::kUnsupportedScheme, what, "url", false};
    default:
      break;
  }
  // An SMTP server that answered with a failure: 5xx is final (unknown mailbox, bad credentials),
  // 4xx a temporary refusal (greylisting, mailbox busy).
  if (reply >= 400)
    return Error{ErrorCode::kUpstreamBadResponse,
                 fmt::format("server answered {}: {}", reply, what),
                 {},
                 reply < 500};
  return Error{ErrorCode::kUpstreamUnavailable, what, {}, true};
}

}  // namespace

Result<UrlParts> parse_url(const std::string& url) {
  global_init();
  CURLU* u = curl_url();
  if (u == nullptr) return Error{ErrorCode::kInternal, "out of memory"};
  UrlParts out;
  Error error;
  bool ok = false;
  if (auto rc = curl_url_set(u, CURLUPART_URL, url.c_str(), 0); rc != CURLUE_OK) {
    error = Error{ErrorCode::kBadUrl, curl_url_strerror(rc), "url", false};
  } else {
    char* scheme = nullptr;
    char* host = nullptr;
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK) {
      out.scheme = scheme;
      out.host = host;
      if (out.host.size() > 2 && out.host.front() == '[')
        out.host = out.host.substr(1, out.host.size() - 2);
      ok = true;
    } else {
      error = Error{ErrorCode::kBadUrl, "a URL needs a scheme and a host", "url", false};
    }
    curl_free(scheme);
    curl_free(host);
  }
  curl_url_cleanup(u);
  if (!ok) return error;
  return out;
}

bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6);
}

struct Transport::Impl {
  CURL* curl = nullptr;
  std::array<char, CURL_ERROR_SIZE> detail{};

  // The options every transfer shares; curl_easy_reset clears the previous transfer's options
  // but keeps its connections, TLS sessions and DNS cache.
  void reset(const std::string& url, std::chrono::milliseconds timeout, const std::string& ca_file,
             const char* protocols) {
    curl_easy_reset(curl);
    detail[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, detail.data());
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, protocols);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // worker thread: no SIGALRM for DNS timeouts
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
    // Verification is never turned off; a receiver with its own CA is trusted through ca_file.
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file.c_str());
  }

  long reply_code() {
    long code = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
    return code;
  }
};

Transport::Transport() : impl_(std::make_unique<Impl>()) {
  global_init();
  impl_->curl = curl_easy_init();
}

Transport::~Transport() {
  if (impl_->curl != nullptr) curl_easy_cleanup(impl_->curl);
}

Result<int> Transport::post(const HttpPost& r) {
  if (impl_->curl == nullptr) return Error{ErrorCode::kInternal, "curl_easy_init failed"};
  CURL* c = impl_->curl;
  impl_->reset(r.url, r.timeout, r.ca_file, "http,https");
  SList headers;
  for (const auto& [k, v] : r.headers) headers.add(k + ": " + v);
  // Without this curl waits up to a second for "100 Continue" before sending a larger body.
  headers.add("Expect:");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.list);
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, r.body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(r.body.size()));
  curl_easy_setopt(c, CURLOPT_USERAGENT, "ecomd/" ECOM_VERSION);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) return transfer_error(rc, impl_->detail.data(), 0);
  return static_cast<int>(impl_->reply_code());
}

Status Transport::mail(const SmtpServer& m, const std::string& from_address, const std::string& to,
                       const std::string& message) {
  if (impl_->curl == nullptr) return Error{ErrorCode::kInternal, "curl_easy_init failed"};
  CURL* c = impl_->curl;
  impl_->reset(m.url, m.timeout, m.ca_file, "smtp,smtps");
  // smtps:// is TLS from the first byte whatever this says; for smtp:// it decides STARTTLS.
  long use_ssl = m.starttls == StartTls::kRequired ? CURLUSESSL_ALL
                 : m.starttls == StartTls::kTry    ? CURLUSESSL_TRY
                                                   : CURLUSESSL_NONE;
  curl_easy_setopt(c, CURLOPT_USE_SSL, use_ssl);
  if (!m.username.empty()) {
    curl_easy_setopt(c, CURLOPT_USERNAME, m.username.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, m.password.c_str());
  }
  const std::string from = "<" + from_address + ">";
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, from.c_str());
  SList rcpt;
  rcpt.add("<" + to + ">");
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt.list);
  Upload upload{&message};
  curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(c, CURLOPT_READFUNCTION, read_upload);
  curl_easy_setopt(c, CURLOPT_READDATA, &upload);
  curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(message.size()));
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) return transfer_error(rc, impl_->detail.data(), impl_->reply_code());
  return {};
}

}  // namespace ecom::notification
