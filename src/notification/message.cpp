#include "message.hpp"

#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <ctime>

namespace ecom::notification {
namespace {

// RFC 5321 and 5322 line limits: 998 characters before CRLF; 76 is the base64 line of RFC 2045.
constexpr size_t kMaxLine = 998;
constexpr size_t kBase64Line = 76;
// Raw bytes per RFC 2047 encoded-word: 42 bytes are 56 base64 characters, "=?UTF-8?B?" + 56 +
// "?=" is 68 (an encoded-word may have 75), and "Subject: " + 68 stays within 78 a line.
constexpr size_t kWordBytes = 42;
// A plain ASCII subject longer than this is encoded (and so folded) instead.
constexpr size_t kMaxPlainSubject = 900;

std::string base64(std::string_view raw) {
  std::string out(4 * ((raw.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(raw.data()),
                          static_cast<int>(raw.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

bool is_atext(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-/=?^_`{|}~").find(c) != std::string_view::npos;
}

bool is_dot_atom(std::string_view s, bool (*allowed)(char)) {
  if (s.empty() || s.front() == '.' || s.back() == '.') return false;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '.') {
      if (s[i + 1] == '.') return false;  // never the last character (checked above)
    } else if (!allowed(s[i])) {
      return false;
    }
  }
  return true;
}

bool is_domain_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

// Characters of a customer id that stand unquoted in a local part and mean nothing special.
bool is_id_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '+';
}

bool is_plain_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

// Header text on one line: the template may hold line breaks, a header must not.
std::string one_line(std::string_view s) {
  std::string out(s);
  std::replace_if(
      out.begin(), out.end(), [](char c) { return c == '\r' || c == '\n' || c == '\t'; }, ' ');
  return out;
}

std::string encode_subject(std::string_view subject) {
  std::string s = one_line(subject);
  if (is_plain_ascii(s) && s.size() <= kMaxPlainSubject) return s;
  std::string out;
  size_t at = 0;
  while (at < s.size()) {
    size_t end = std::min(s.size(), at + kWordBytes);
    // Never split a UTF-8 sequence: back up over continuation bytes (10xxxxxx).
    while (end < s.size() && end > at + 1 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80)
      --end;
    if (!out.empty()) out += "\r\n ";  // folding: each word on its own line
    out += "=?UTF-8?B?" + base64(std::string_view(s).substr(at, end - at)) + "?=";
    at = end;
  }
  return out;
}

// The body with CRLF line ends, and its Content-Transfer-Encoding.
std::pair<std::string, std::string_view> encode_body(std::string_view body) {
  std::string crlf;
  bool seven_bit = true;
  size_t line = 0;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < body.size() && body[i + 1] == '\n') ++i;
      crlf += "\r\n";
      line = 0;
      continue;
    }
    crlf += c;
    if (++line > kMaxLine || static_cast<unsigned char>(c) >= 0x80 || c == '\0') seven_bit = false;
  }
  if (!crlf.ends_with("\r\n")) crlf += "\r\n";  // the last line ends like the others
  if (seven_bit) return {crlf, "7bit"};
  std::string b64 = base64(crlf);
  std::string out;
  for (size_t at = 0; at < b64.size(); at += kBase64Line) {
    out += b64.substr(at, kBase64Line);
    out += "\r\n";
  }
  return {out, "base64"};
}

}  // namespace

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> mac{};
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac.data(), &n);
  std::string hex;
  hex.reserve(2 * n);
  for (unsigned int i = 0; i < n; ++i) fmt::format_to(std::back_inserter(hex), "{:02x}", mac[i]);
  return hex;
}

std::string webhook_signature(std::string_view secret, int64_t unix_seconds,
                              std::string_view body) {
  std::string signed_text = fmt::format("{}.", unix_seconds);
  signed_text += body;
  return fmt::format("t={},v1={}", unix_seconds, hmac_sha256_hex(secret, signed_text));
}

bool is_mailbox(std::string_view a) {
  size_t at = a.rfind('@');
  if (at == std::string_view::npos || a.size() > 254) return false;
  std::string_view local = a.substr(0, at);
  std::string_view domain = a.substr(at + 1);
  if (local.size() > 64 || !is_dot_atom(local, is_atext)) return false;
  if (!is_dot_atom(domain, is_domain_char)) return false;
  // No label may start or end with a hyphen.
  return domain.front() != '-' && domain.back() != '-' &&
         domain.find("-.") == std::string_view::npos && domain.find(".-") == std::string_view::npos;
}

std::optional<std::string> recipient_for(std::string_view to_template,
                                         std::string_view customer_id) {
  if (customer_id.empty() || !std::all_of(customer_id.begin(), customer_id.end(), is_id_char))
    return std::nullopt;
  constexpr std::string_view kPlaceholder{"{customerId}"};
  std::string out;
  size_t from = 0;
  for (size_t p; (p = to_template.find(kPlaceholder, from)) != std::string_view::npos;
       from = p + kPlaceholder.size()) {
    out += to_template.substr(from, p - from);
    out += customer_id;
  }
  out += to_template.substr(from);
  if (!is_mailbox(out)) return std::nullopt;
  return out;
}

std::string rfc5322_date(int64_t epoch_ms) {
  static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed",
                                                       "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  std::time_t t = static_cast<std::time_t>(epoch_ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  return fmt::format("{}, {:02} {} {} {:02}:{:02}:{:02} +0000", kDays[tm.tm_wday], tm.tm_mday,
                     kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

std::string compose_email(const Email& e) {
  std::string id_left;
  for (char c : e.message_id) id_left += is_atext(c) || c == '.' ? c : '-';
  if (id_left.empty()) id_left = "notification";
  const std::string domain = e.from.substr(e.from.rfind('@') + 1);
  auto [body, encoding] = encode_body(e.body);
  return fmt::format(
      "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{}@{}>\r\n"
      "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n"
      "Content-Transfer-Encoding: {}\r\n\r\n{}",
      e.from, e.to, encode_subject(e.subject), rfc5322_date(e.date_ms), id_left, domain, encoding,
      body);
}

}  // namespace ecom::notification
