// What the delivery channels send, checked byte by byte without a server: the webhook signature
// (against RFC 4231's HMAC-SHA256 vectors), the email text, the recipient, and the config
// checks of the smtp and webhook sinks.

#include "message.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>

#include "ecom/core/config.hpp"
#include "ecom/notification/notification_module.hpp"
#include "support/test_support.hpp"

using namespace ecom;
using namespace ecom::notification;

namespace {

// The notification section `config` through NotificationModule::configure (no start).
Status configure(const std::string& config) {
  auto doc = parse_json_config(R"({"notification":)" + config + "}");
  REQUIRE(doc.ok());
  Settings settings;
  settings.document = doc.value();
  NotificationModule m;
  return m.configure(settings.section("notification"));
}

std::string write_file(const test::TempDir& dir, const std::string& name, const std::string& text) {
  std::ofstream(dir.file(name)) << text;
  return dir.file(name);
}

}  // namespace

TEST_CASE("hmac_sha256_hex matches the RFC 4231 test vectors", "[notification][message]") {
  CHECK(hmac_sha256_hex("Jefe", "what do ya want for nothing?") ==
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  CHECK(hmac_sha256_hex(std::string(20, '\x0b'), "Hi There") ==
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

TEST_CASE("webhook_signature signs the timestamp with the body", "[notification][message]") {
  const std::string body = R"({"id":"n-1"})";
  auto sig = webhook_signature("s3cret", 1'700'000'000, body);
  CHECK(sig == "t=1700000000,v1=" + hmac_sha256_hex("s3cret", "1700000000." + body));
  // Another time, body or secret: another signature.
  CHECK(webhook_signature("s3cret", 1'700'000'001, body) != sig);
  CHECK(webhook_signature("s3cret", 1'700'000'000, body + " ") != sig);
  CHECK(webhook_signature("other", 1'700'000'000, body) != sig);
}

TEST_CASE("recipient_for builds an address from the customer id, or refuses",
          "[notification][message]") {
  CHECK(recipient_for("{customerId}@customers.example.test", "c-42") ==
        "c-42@customers.example.test");
  CHECK(recipient_for("shop+{customerId}@example.test", "A.b_9") == "shop+A.b_9@example.test");
  // Ids that would inject a header or another recipient, or are no local part at all.
  for (std::string id : {"", "a b", "x@evil.test", "a\r\nBcc: x@evil.test", "<a>", "a,b", ".a",
                         "a..b", "\xc3\xa9"}) {
    INFO(id);
    CHECK_FALSE(recipient_for("{customerId}@example.test", id));
  }
  CHECK(is_mailbox("orders@shop.example.test"));
  for (std::string a : {"orders", "@shop.test", "orders@", "a b@x.test", "Shop <o@x.test>",
                        "o@-x.test", "o@x..test"}) {
    INFO(a);
    CHECK_FALSE(is_mailbox(a));
  }
}

TEST_CASE("rfc5322_date formats UTC with day and month names", "[notification][message]") {
  CHECK(rfc5322_date(0) == "Thu, 01 Jan 1970 00:00:00 +0000");
  CHECK(rfc5322_date(1'795'313'198'500) == "Sun, 22 Nov 2026 02:06:38 +0000");
}

TEST_CASE("compose_email writes RFC 5322 headers and a 7bit body for ASCII",
          "[notification][message]") {
  auto text =
      compose_email(Email{"orders@shop.example.test", "c-42@customers.example.test",
                          "Order o-1 received", "Line one\nLine two\n", "n-1", 1'795'313'198'500});
  CHECK(text ==
        "From: orders@shop.example.test\r\n"
        "To: c-42@customers.example.test\r\n"
        "Subject: Order o-1 received\r\n"
        "Date: Sun, 22 Nov 2026 02:06:38 +0000\r\n"
        "Message-ID: <n-1@shop.example.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=UTF-8\r\n"
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        "Line one\r\nLine two\r\n");
}

TEST_CASE("compose_email encodes UTF-8 subjects and bodies, and keeps headers on one line",
          "[notification][message]") {
  // 40 two-byte characters: more than one encoded-word, none split inside a character.
  std::string subject;
  for (int i = 0; i < 40; ++i) subject += "\xc3\xa9";  // é
  auto text = compose_email(Email{"o@shop.test", "c@x.test", subject + "\r\nBcc: x@evil.test",
                                  "Gr\xc3\xbc\xc3\x9f"
                                  "e \xe2\x82\xac",
                                  "n-2", 0});
  CHECK(text.find("Subject: =?UTF-8?B?") != std::string::npos);
  CHECK(text.find("?=\r\n =?UTF-8?B?") != std::string::npos);  // folded between words
  CHECK(text.find("\r\nBcc:") == std::string::npos);           // no header injection
  CHECK(text.find("Content-Transfer-Encoding: base64\r\n") != std::string::npos);
  // "Grüße €" + CRLF in base64.
  CHECK(text.ends_with("\r\n\r\nR3LDvMOfZSDigqwNCg==\r\n"));
  // Every line within the limit of RFC 5322.
  size_t start = 0;
  for (size_t p; (p = text.find("\r\n", start)) != std::string::npos; start = p + 2)
    CHECK(p - start <= 78);
}

TEST_CASE("smtp and webhook config mistakes name the key", "[notification][message][config]") {
  test::TempDir dir;
  const std::string secret = write_file(dir, "secret", "s3cret\n");
  const std::string smtp_ok = R"("url":"smtp://127.0.0.1:2525","from":"orders@shop.example.test",)"
                              R"("to_template":"{customerId}@customers.example.test")";
  const std::string hook_ok = R"("secret_file":")" + secret + "\"";
  struct Case {
    std::string config;
    std::string field;
  };
  for (
      const auto& c : std::vector<Case>{
          {R"({"sink":"smtp"})", "notification.smtp.url"},
          {R"({"sink":"smtp","smtp":{"url":"http://x"}})", "notification.smtp.url"},
          {R"({"sink":"smtp","smtp":{"url":"smtp://x","from":"Shop <o@x.test>"}})",
           "notification.smtp.from"},
          {R"({"sink":"smtp","smtp":{"url":"smtp://x","from":"o@x.test","to_template":"a@x.test"}})",
           "notification.smtp.to_template"},
          {R"({"sink":"smtp","smtp":{)" + smtp_ok + R"(,"starttls":"maybe"}})",
           "notification.smtp.starttls"},
          {R"({"sink":"smtp","smtp":{)" + smtp_ok + R"(,"password":"hunter2"}})",
           "notification.smtp.password"},
          {R"({"sink":"smtp","smtp":{)" + smtp_ok + R"(,"username":"shop"}})",
           "notification.smtp.password_file"},
          {R"({"sink":"smtp","smtp":{)" + smtp_ok + R"(,"username":"shop","password_file":")" +
               dir.file("missing") + "\"}}",
           "notification.smtp.password_file"},
          // Credentials in clear text to another host.
          {R"({"sink":"smtp","smtp":{"url":"smtp://mail.example.test","from":"o@x.test",)"
           R"("to_template":"{customerId}@x.test","starttls":"try","username":"shop",)"
           R"("password_file":")" +
               secret + "\"}}",
           "notification.smtp.starttls"},
          {R"({"sink":"webhook","webhook":{"url":"http://hooks.example.test/x",)" + hook_ok + "}}",
           "notification.webhook.url"},
          {R"({"sink":"webhook","webhook":{"url":"ftp://127.0.0.1/x",)" + hook_ok + "}}",
           "notification.webhook.url"},
          {R"({"sink":"webhook","webhook":{"url":"https://hooks.example.test/x"}})",
           "notification.webhook.secret_file"},
          {R"({"sink":"webhook","webhook":{"url":"https://h.test/x","secret":"s"}})",
           "notification.webhook.secret"},
      }) {
    INFO(c.config);
    auto st = configure(c.config);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == ErrorCode::kConfigInvalid);
    CHECK(st.error().field == c.field);
    INFO(st.error().message);
    // A secret never shows in a message.
    CHECK(st.error().message.find("s3cret") == std::string::npos);
    CHECK(st.error().message.find("hunter2") == std::string::npos);
  }
  // What is fine: loopback http, https with a secret file, smtp without AUTH, smtps with AUTH.
  for (const std::string& ok : {
           R"({"sink":"webhook","webhook":{"url":"http://127.0.0.1:9/x",)" + hook_ok + "}}",
           R"({"sink":"webhook","webhook":{"url":"https://hooks.example.test/x",)" + hook_ok + "}}",
           R"({"sink":"smtp","smtp":{)" + smtp_ok + "}}",
           R"({"sink":"smtp","smtp":{"url":"smtps://mail.example.test","from":"o@x.test",)"
           R"("to_template":"{customerId}@x.test","username":"u","password_file":")" +
               secret + "\"}}",
       }) {
    INFO(ok);
    auto st = configure(ok);
    INFO((st.ok() ? std::string() : st.error().message));
    CHECK(st.ok());
  }
}

TEST_CASE("the webhook secret and the smtp password can come from the environment",
          "[notification][message][config]") {
  // Each test case runs in its own process under ctest, so the environment is this test's.
  const std::string hook = R"({"sink":"webhook","webhook":{"url":"https://h.example.test/x"}})";
  const std::string smtp =
      R"({"sink":"smtp","smtp":{"url":"smtp://mail.example.test","from":"o@x.test",)"
      R"("to_template":"{customerId}@x.test","username":"shop"}})";
  ::unsetenv("ECOMD_WEBHOOK_SECRET");
  ::unsetenv("ECOMD_SMTP_PASSWORD");
  CHECK_FALSE(configure(hook).ok());
  CHECK_FALSE(configure(smtp).ok());
  ::setenv("ECOMD_WEBHOOK_SECRET", "from-env", 1);
  ::setenv("ECOMD_SMTP_PASSWORD", "from-env", 1);
  CHECK(configure(hook).ok());
  CHECK(configure(smtp).ok());
  ::unsetenv("ECOMD_WEBHOOK_SECRET");
  ::unsetenv("ECOMD_SMTP_PASSWORD");
}
