// The smtp and webhook sinks against real servers on loopback, each started by its test case:
// aiosmtpd (smtp_server.py) with STARTTLS and AUTH, and an HTTPS receiver (webhook_receiver.py)
// that verifies the signature the way docs tell receivers to. The certificates are self-signed,
// made per case by `openssl req`; the module is hosted in-process (harness.hpp).

#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "bus/child_process.hpp"
#include "harness.hpp"
#include "message.hpp"

using namespace ecom;
using namespace std::chrono_literals;
using ecom::test::Harness;
using ecom::test::order_created;
using ecom::test::parse_json;
using ecom::test::str_of;

namespace {

const std::string kScripts = std::string(ECOM_SOURCE_DIR) + "/tests/notification/";

// The venv's python (scripts/test-venv.sh makes it on first use, aiosmtpd included).
const std::string& venv_python() {
  static const std::string path = [] {
    std::string cmd = std::string(ECOM_SOURCE_DIR) + "/scripts/test-venv.sh " ECOM_TEST_VENV;
    FILE* p = ::popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    while (p != nullptr && std::fgets(buf, sizeof buf, p) != nullptr) out = buf;  // last line
    if (p == nullptr || ::pclose(p) != 0) return std::string();
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }();
  INFO("scripts/test-venv.sh failed: python3-venv missing, or PyPI not reachable?");
  REQUIRE_FALSE(path.empty());
  return path;
}

struct Cert {
  std::string cert;
  std::string key;
};

// A self-signed certificate for 127.0.0.1 and localhost (EC: made in milliseconds).
Cert make_cert(const test::TempDir& dir, const std::string& name) {
  Cert c{dir.file(name + ".crt"), dir.file(name + ".key")};
  std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
      "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost -keyout " +
      c.key + " -out " + c.cert + " 2>/dev/null";
  REQUIRE(std::system(cmd.c_str()) == 0);
  return c;
}

std::string write_file(const test::TempDir& dir, const std::string& name, const std::string& text) {
  std::ofstream(dir.file(name)) << text;
  return dir.file(name);
}

// One of the Python servers, its stdout read line by line: "READY <port>", then JSON records.
class PyServer {
 public:
  PyServer(const std::string& script, std::vector<std::string> args)
      : argv_(make_argv(script, std::move(args))), ptrs_(pointers(argv_)), child_([this](int fd) {
          ::dup2(fd, STDOUT_FILENO);
          ::execv(ptrs_[0], ptrs_.data());
          return 127;
        }) {
    auto line = child_.next_line(30s);
    INFO(script << " did not start");
    REQUIRE(line);
    REQUIRE(line->rfind("READY ", 0) == 0);
    port_ = static_cast<uint16_t>(std::stoi(line->substr(6)));
  }

  uint16_t port() const { return port_; }

  /// The next record; nullopt when none came within `timeout`.
  std::optional<rapidjson::Document> next(std::chrono::milliseconds timeout = 15s) {
    auto line = child_.next_line(timeout);
    if (!line) return std::nullopt;
    return parse_json(*line);
  }

 private:
  static std::vector<std::string> make_argv(const std::string& script,
                                            std::vector<std::string> args) {
    std::vector<std::string> v{venv_python(), "-u", kScripts + script};
    v.insert(v.end(), args.begin(), args.end());
    return v;
  }
  static std::vector<char*> pointers(std::vector<std::string>& v) {
    std::vector<char*> p;
    for (auto& s : v) p.push_back(s.data());
    p.push_back(nullptr);
    return p;
  }

  std::vector<std::string> argv_;
  std::vector<char*> ptrs_;  // built before the fork: the child only calls dup2 and execv
  test::ChildProcess child_;
  uint16_t port_ = 0;
};

// The single notification of an order once it has left PENDING.
rapidjson::Document settled(Harness& h, const std::string& order_id) {
  auto list = test::settled_notification(h, order_id, 20s);
  rapidjson::Document n;
  n.CopyFrom(list["notifications"][0], n.GetAllocator());
  return n;
}

// The notification section: `smtp` are more keys of notification.smtp, `rest` of notification.
std::string smtp_config(uint16_t port, const std::string& smtp, const std::string& rest = "") {
  return R"({"sink":"smtp","smtp":{"url":"smtp://127.0.0.1:)" + std::to_string(port) +
         R"(","from":"orders@shop.example.test","to_template":"{customerId}@customers.example.test",)"
         R"("timeout_ms":5000,"backoff_ms":50,)" +
         smtp + "}" + rest + "}";
}

std::string webhook_config(const std::string& url, const std::string& secret_file,
                           const std::string& extra) {
  return R"({"sink":"webhook","webhook":{"url":")" + url + R"(","secret_file":")" + secret_file +
         R"(","timeout_ms":3000,"backoff_ms":50,)" + extra + "}}";
}

// aiosmtpd with STARTTLS on a fresh self-signed certificate, and AUTH as "shop" / `password`.
struct TlsSmtp {
  Cert cert;
  uint16_t port;
  PyServer server;
  TlsSmtp(const test::TempDir& dir, const std::string& password)
      : cert(make_cert(dir, "smtp")),
        port(test::free_port()),
        server("smtp_server.py", {"--port", std::to_string(port), "--cert", cert.cert, "--key",
                                  cert.key, "--user", "shop", "--password", password}) {}
  /// notification.smtp keys that trust its certificate and log in with `password_file`.
  std::string client_keys(const std::string& password_file) const {
    return R"("ca_file":")" + cert.cert + R"(","username":"shop","password_file":")" +
           password_file + "\"";
  }
};

// webhook_receiver.py on a free port, serving `cert`, verifying with `secret`.
struct Receiver {
  PyServer server;
  Receiver(const Cert& cert, const std::string& secret)
      : server("webhook_receiver.py",
               {"--port", "0", "--cert", cert.cert, "--key", cert.key, "--secret", secret}) {}
  std::string url(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(server.port()) + path;
  }
  std::optional<rapidjson::Document> next(std::chrono::milliseconds timeout = 15s) {
    return server.next(timeout);
  }
};

}  // namespace

TEST_CASE("smtp: the notification reaches a real SMTP server over STARTTLS with AUTH",
          "[notification][channels][smtp]") {
  test::TempDir dir;
  TlsSmtp smtp(dir, "s3cret pass");
  const std::string password = write_file(dir, "password", "s3cret pass\n");
  // A UTF-8 template: the subject must come out RFC 2047 encoded, the body base64.
  Harness h(dir.path(), smtp_config(smtp.port,
                                    R"("starttls":"required",)" + smtp.client_keys(password) +
                                        R"(,"max_attempts":2)",
                                    R"(,"templates":{"order.created":{)"
                                    R"("subject":"Bestellung {orderId} erhalten \u2713",)"
                                    R"("body":"Gr\u00fc\u00dfe, {customerId}!\nIhre Bestellung )"
                                    R"({orderId} ist da."}})"));
  h.publish(topics::kOrdersCreated, order_created("o-m1", "c-42"));

  auto mail = smtp.server.next();
  REQUIRE(mail);
  const auto& m = *mail;
  INFO(str_of(m, "raw"));
  CHECK(str_of(m, "mail_from") == "orders@shop.example.test");
  REQUIRE(m["rcpt_tos"].Size() == 1);
  CHECK(std::string(m["rcpt_tos"][0].GetString()) == "c-42@customers.example.test");
  CHECK(m["tls"].GetBool());
  CHECK(str_of(m, "auth") == "shop");
  CHECK(m["defects"].Size() == 0);
  CHECK(m["date_ok"].GetBool());
  const auto& headers = m["headers"];
  CHECK(str_of(headers, "From") == "orders@shop.example.test");
  CHECK(str_of(headers, "To") == "c-42@customers.example.test");
  CHECK(str_of(headers, "Subject") == "Bestellung o-m1 erhalten \xe2\x9c\x93");
  CHECK(str_of(headers, "MIME-Version") == "1.0");
  CHECK(str_of(headers, "Content-Type") == "text/plain; charset=\"UTF-8\"");
  const std::string body = str_of(m, "body");
  CHECK(body.find("Gr\xc3\xbc\xc3\x9f"
                  "e, c-42!") != std::string::npos);
  CHECK(body.find("Ihre Bestellung o-m1 ist da.") != std::string::npos);

  auto n = settled(h, "o-m1");
  CHECK(str_of(n, "status") == "SENT");
  CHECK(str_of(n, "channel") == "smtp");
  CHECK(n["attempts"].GetInt() == 1);
  // The Message-ID is the notification's, so a re-sent copy can be recognised.
  CHECK(str_of(headers, "Message-ID") == "<" + str_of(n, "id") + "@shop.example.test>");
  REQUIRE(test::eventually([&] { return h.sent_count() == 1; }));
  CHECK_FALSE(smtp.server.next(300ms));  // one message, not two
}

TEST_CASE("smtp: credentials the server refuses fail the notification without a retry",
          "[notification][channels][smtp]") {
  test::TempDir dir;
  TlsSmtp smtp(dir, "right");
  const std::string password = write_file(dir, "password", "wrong");
  Harness h(dir.path(),
            smtp_config(smtp.port, smtp.client_keys(password) + R"(,"max_attempts":3)"));
  h.publish(topics::kOrdersCreated, order_created("o-m2"));
  auto n = settled(h, "o-m2");
  CHECK(str_of(n, "status") == "FAILED");
  CHECK(n["attempts"].GetInt() == 1);  // a 535 is final: no second attempt
  CHECK(str_of(n, "lastError").find("535") != std::string::npos);
  CHECK_FALSE(smtp.server.next(300ms));
  CHECK(h.sent_count() == 0);
}

TEST_CASE("smtp: STARTTLS required against a server without it is retried, then FAILED",
          "[notification][channels][smtp]") {
  test::TempDir dir;
  const auto port = test::free_port();
  PyServer smtp("smtp_server.py", {"--port", std::to_string(port)});  // no TLS at all
  {
    // The default is "required": the mail is never sent in clear text.
    Harness h(dir.path(), smtp_config(port, R"("max_attempts":2)"));
    h.publish(topics::kOrdersCreated, order_created("o-m3"));
    auto n = settled(h, "o-m3");
    CHECK(str_of(n, "status") == "FAILED");
    CHECK(n["attempts"].GetInt() == 2);
    CHECK_FALSE(str_of(n, "lastError").empty());
    CHECK_FALSE(smtp.next(300ms));
  }
  // With "none" (a relay on loopback) the same server takes it.
  test::TempDir dir2;
  Harness h(dir2.path(), smtp_config(port, R"("starttls":"none","max_attempts":2)"));
  h.publish(topics::kOrdersCreated, order_created("o-m4", "c-7"));
  auto mail = smtp.next();
  REQUIRE(mail);
  CHECK_FALSE((*mail)["tls"].GetBool());
  CHECK(std::string((*mail)["rcpt_tos"][0].GetString()) == "c-7@customers.example.test");
  CHECK(str_of(settled(h, "o-m4"), "status") == "SENT");
}

TEST_CASE("webhook: a signed POST over HTTPS that the receiver verifies",
          "[notification][channels][webhook]") {
  test::TempDir dir;
  auto cert = make_cert(dir, "hook");
  const std::string secret = "whsec-test-1";
  Receiver hook(cert, secret);
  const std::string url = hook.url("/hook");
  Harness h(dir.path(), webhook_config(url, write_file(dir, "secret", secret + "\n"),
                                       R"("ca_file":")" + cert.cert + R"(","max_attempts":3)"));
  h.publish(topics::kOrdersCreated, order_created("o-h1", "c-9"));

  auto req = hook.next();
  REQUIRE(req);
  const auto& r = *req;
  INFO(str_of(r, "why"));
  CHECK(r["verified"].GetBool());
  CHECK(str_of(r, "path") == "/hook");
  const auto& headers = r["headers"];
  CHECK(str_of(headers, "Content-Type") == "application/json");
  // t=<unix>,v1=<hex>: the same HMAC computed here from the body the receiver got.
  const std::string sig = str_of(headers, "X-Ecomd-Signature");
  REQUIRE(sig.rfind("t=", 0) == 0);
  const int64_t t = std::stoll(sig.substr(2, sig.find(',') - 2));
  CHECK(std::abs(t - now_ms() / 1000) < 60);
  CHECK(sig == notification::webhook_signature(secret, t, str_of(r, "body")));
  auto body = parse_json(str_of(r, "body"));
  CHECK(str_of(body, "orderId") == "o-h1");
  CHECK(str_of(body, "customerId") == "c-9");

  auto n = settled(h, "o-h1");
  CHECK(str_of(n, "status") == "SENT");
  CHECK(str_of(n, "channel") == "webhook");
  CHECK(n["attempts"].GetInt() == 1);
  CHECK(str_of(headers, "Idempotency-Key") == str_of(n, "id"));
  CHECK(str_of(body, "id") == str_of(n, "id"));
  REQUIRE(test::eventually([&] { return h.sent_count() == 1; }));
}

TEST_CASE("webhook: over HTTPS 503 is retried, 400 and a refused signature are not",
          "[notification][channels][webhook]") {
  test::TempDir dir;
  auto cert = make_cert(dir, "hook");
  Receiver hook(cert, "right");
  const std::string base = hook.url("");
  const std::string ca = R"("ca_file":")" + cert.cert + R"(","max_attempts":3)";
  const std::string right = write_file(dir, "right", "right");
  struct Case {
    std::string path;
    std::string secret_file;
    int attempts;
    std::string error;
  };
  for (const auto& c : std::vector<Case>{
           {"/status/503", right, 3, "webhook answered HTTP 503"},
           {"/status/400", right, 1, "webhook answered HTTP 400"},
           {"/hook", write_file(dir, "wrong", "wrong"), 1, "webhook answered HTTP 401"}}) {
    INFO(c.path);
    test::TempDir data;
    Harness h(data.path(), webhook_config(base + c.path, c.secret_file, ca));
    h.publish(topics::kOrdersCreated, order_created("o-h2"));
    auto n = settled(h, "o-h2");
    CHECK(str_of(n, "status") == "FAILED");
    CHECK(n["attempts"].GetInt() == c.attempts);
    CHECK(str_of(n, "lastError") == c.error);
    for (int i = 0; i < c.attempts; ++i) {
      auto req = hook.next();
      REQUIRE(req);
      // The receiver saw every attempt, each signed anew; the wrong secret is caught.
      CHECK((*req)["verified"].GetBool() == (c.secret_file == right));
    }
    CHECK(h.sent_count() == 0);
  }
}

TEST_CASE("webhook: a receiver whose certificate is not trusted is retried, then FAILED",
          "[notification][channels][webhook]") {
  test::TempDir dir;
  auto cert = make_cert(dir, "hook");
  auto other = make_cert(dir, "other");  // trusted, but not the receiver's
  Receiver hook(cert, "s");
  const std::string url = hook.url("/hook");
  for (const std::string& ca : {std::string(), R"("ca_file":")" + other.cert + R"(",)"}) {
    INFO(ca);
    test::TempDir data;
    Harness h(data.path(),
              webhook_config(url, write_file(dir, "secret", "s"), ca + R"("max_attempts":3)"));
    h.publish(topics::kOrdersCreated, order_created("o-h3"));
    auto n = settled(h, "o-h3");
    CHECK(str_of(n, "status") == "FAILED");
    CHECK(n["attempts"].GetInt() == 3);  // a TLS failure is retryable: all attempts made
    CHECK(str_of(n, "lastError").find("certificate") != std::string::npos);
    CHECK_FALSE(hook.next(300ms));  // nothing got past the handshake
  }
}

TEST_CASE("webhook: a receiver too slow to answer times out instead of holding delivery",
          "[notification][channels][webhook]") {
  test::TempDir dir;
  auto cert = make_cert(dir, "hook");
  Receiver hook(cert, "s");
  const std::string url = hook.url("/slow");
  Harness h(dir.path(), R"({"sink":"webhook","webhook":{"url":")" + url + R"(","secret_file":")" +
                            write_file(dir, "secret", "s") + R"(","ca_file":")" + cert.cert +
                            R"(","timeout_ms":300,"max_attempts":2,"backoff_ms":50}})");
  const auto start = std::chrono::steady_clock::now();
  h.publish(topics::kOrdersCreated, order_created("o-h4"));
  auto n = settled(h, "o-h4");
  // The receiver sleeps 5 s per request; two attempts of 300 ms end long before one answer.
  CHECK(std::chrono::steady_clock::now() - start < 4s);
  CHECK(str_of(n, "status") == "FAILED");
  CHECK(n["attempts"].GetInt() == 2);
  CHECK(str_of(n, "lastError").find("timed out") != std::string::npos);
}
