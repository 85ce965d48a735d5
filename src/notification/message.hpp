#pragma once
// What the sinks send, as pure functions: the signature of a webhook body and the RFC 5322 text
// of an email. No I/O, so the tests check them byte by byte.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ecom::notification {

/// The header a webhook request is signed in.
inline constexpr std::string_view kSignatureHeader{"X-Ecomd-Signature"};

/// HMAC-SHA256 of `message` under `key`, as 64 lower-case hex digits.
std::string hmac_sha256_hex(std::string_view key, std::string_view message);

/// The X-Ecomd-Signature value of `body` sent at `unix_seconds`: `t=<unix_seconds>,v1=<hex>`,
/// where hex = HMAC-SHA256(secret, "<unix_seconds>." + body). The timestamp is signed with the
/// body, so a receiver that rejects old timestamps rejects replays of captured requests.
std::string webhook_signature(std::string_view secret, int64_t unix_seconds, std::string_view body);

/// True for a plain addr-spec `local@domain` (dot-atom local part, ASCII, no display name).
bool is_mailbox(std::string_view address);

/// The recipient of a customer's mail: `to_template` with every `{customerId}` replaced; nullopt
/// when the customer id has characters an address cannot carry unquoted, or the result is not a
/// mailbox.
std::optional<std::string> recipient_for(std::string_view to_template,
                                         std::string_view customer_id);

/// RFC 5322 date-time in UTC, e.g. "Sun, 22 Nov 2026 02:06:38 +0000".
std::string rfc5322_date(int64_t epoch_ms);

/// One notification as an email.
struct Email {
  std::string from;        ///< mailbox
  std::string to;          ///< mailbox
  std::string subject;     ///< UTF-8
  std::string body;        ///< UTF-8 plain text, any line endings
  std::string message_id;  ///< the id-left part; `@` and the From domain are appended
  int64_t date_ms = 0;
};

/// The message text: From, To, Subject (RFC 2047 encoded when not plain ASCII), Date,
/// Message-ID, MIME-Version and a text/plain UTF-8 body (7bit when it is ASCII with short lines,
/// base64 otherwise), with CRLF line ends.
std::string compose_email(const Email& e);

}  // namespace ecom::notification
