// The sinks that leave the process: the signed webhook and SMTP, both over libcurl (transport).
#include <fmt/format.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "delivery.hpp"
#include "ecom/core/clock.hpp"
#include "message.hpp"

namespace ecom::notification {
namespace {

Attempt failed(const Error& e, std::string_view channel) {
  return {false, e.retryable, fmt::format("{}: {}", channel, e.message)};
}

class WebhookSink final : public Sink {
 public:
  WebhookSink(WebhookOptions o, Clock& clock) : o_(std::move(o)), clock_(clock) {}
  std::string_view channel() const noexcept override { return "webhook"; }
  int max_attempts() const noexcept override { return o_.max_attempts; }
  std::chrono::milliseconds backoff() const noexcept override { return o_.backoff; }

  Attempt send(const Delivery& d) override {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    auto field = [&w](const char* k, const std::string& v) {
      w.Key(k);
      w.String(v);
    };
    w.StartObject();
    field("id", d.id);
    field("customerId", d.customer_id);
    field("orderId", d.order_id);
    field("orderStatus", d.order_status);
    field("channel", std::string(channel()));
    field("subject", d.subject);
    field("body", d.body);
    field("status", "PENDING");
    w.Key("attempt");
    w.Int(d.attempts + 1);
    field("createdAt", format_rfc3339(d.created_at));
    w.EndObject();
    HttpPost post;
    post.url = o_.url;
    post.body.assign(sb.GetString(), sb.GetSize());
    post.ca_file = o_.ca_file;
    post.timeout = o_.timeout;
    // Signed at each attempt: the timestamp is the attempt's, so a retry late in the backoff
    // still falls inside the receiver's tolerance window.
    post.headers = {{"Content-Type", "application/json"},
                    {"Idempotency-Key", d.id},
                    {std::string(kSignatureHeader),
                     webhook_signature(o_.secret, clock_.now_ms() / 1000, post.body)}};
    auto r = transport_.post(post);
    if (!r) return failed(r.error(), channel());
    int s = *r;
    if (s >= 200 && s < 300) return {true, false, {}};
    bool retryable = s >= 500 || s == 408 || s == 429;
    return {false, retryable, fmt::format("webhook answered HTTP {}", s)};
  }

 private:
  WebhookOptions o_;
  Clock& clock_;
  Transport transport_;
};

class SmtpSink final : public Sink {
 public:
  SmtpSink(SmtpOptions o, Clock& clock) : o_(std::move(o)), clock_(clock) {}
  std::string_view channel() const noexcept override { return "smtp"; }
  int max_attempts() const noexcept override { return o_.max_attempts; }
  std::chrono::milliseconds backoff() const noexcept override { return o_.backoff; }

  Attempt send(const Delivery& d) override {
    auto to = recipient_for(o_.to_template, d.customer_id);
    if (!to)
      return {false, false,
              fmt::format("smtp: customer id \"{}\" makes no email address with to_template",
                          d.customer_id)};
    // The Message-ID is the notification's id, the same on every attempt: a mail that was
    // accepted but not recorded as SENT is sent again with it, and clients can fold the copies.
    const std::string message =
        compose_email(Email{o_.from, *to, d.subject, d.body, d.id, clock_.now_ms()});
    if (auto st = transport_.mail(o_.server, o_.from, *to, message); !st)
      return failed(st.error(), channel());
    return {true, false, {}};
  }

 private:
  SmtpOptions o_;
  Clock& clock_;
  Transport transport_;
};

}  // namespace

std::unique_ptr<Sink> make_webhook_sink(WebhookOptions options, Clock& clock) {
  return std::make_unique<WebhookSink>(std::move(options), clock);
}

std::unique_ptr<Sink> make_smtp_sink(SmtpOptions options, Clock& clock) {
  return std::make_unique<SmtpSink>(std::move(options), clock);
}

}  // namespace ecom::notification
