#pragma once
/// Result types: run-time failures are returned, not thrown, and say whether a retry can help.

#include <fmt/core.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ecom {

/// Every failure ecomd reports, in one table (src/core/error.cpp): its wire name (the `code` of
/// an error body), its HTTP status and whether a retry may help by default.
enum class ErrorCode : uint8_t {
  // The request is wrong (4xx): retrying the same request cannot help.
  kValidationFailed,      ///< 400: a field, header or query parameter is invalid
  kMalformedJson,         ///< 400: the body is not JSON
  kBadRequest,            ///< 400: the HTTP request itself is malformed
  kUnauthorized,          ///< 401
  kForbidden,             ///< 403
  kNotFound,              ///< 404
  kMethodNotAllowed,      ///< 405
  kConflict,              ///< 409: the resource's state forbids it
  kIdempotencyConflict,   ///< 409: an Idempotency-Key reused with another body
  kPayloadTooLarge,       ///< 413
  kHeadersTooLarge,       ///< 431: the request's header block exceeds the limit
  kUnsupportedMediaType,  ///< 415
  kUpgradeRequired,       ///< 426
  // A fault of ours or outside our control.
  kInternal,          ///< 500: a bug; the log has the details
  kNotImplemented,    ///< 501: the build lacks the feature
  kDbError,           ///< 500: the store failed
  kUnavailable,       ///< 503, retryable: shutting down, overloaded, a dependency is down
  kDbBusy,            ///< 503, retryable: another writer holds the store
  kStoreUnavailable,  ///< 503, retryable: the store cannot write (disk full, read-only, I/O error)
  // Events and commands.
  kInvalidPayload,  ///< an envelope or event data that can never be processed (dead letter)
  // Start-up.
  kConfigInvalid,  ///< a config value or flag is invalid (exit 2)
  kUnknownRole,    ///< --role names no module (exit 2)
  kUsage,          ///< the command line is wrong (exit 2)
  kBindFailed,     ///< the HTTP address cannot be listened on
  // Calls to other services (webhooks, SMTP).
  kUpstreamUnavailable,  ///< 502, retryable: connection refused, reset
  kUpstreamTimeout,      ///< 504, retryable
  kUpstreamBadResponse,  ///< 502: an answer that says no (an SMTP 4xx/5xx reply)
  kUnsupportedScheme,    ///< a URL with a scheme the call does not speak
  kBadUrl,               ///< a URL that does not parse
};

/// The wire name, e.g. "VALIDATION_FAILED".
std::string_view name(ErrorCode c) noexcept;
/// The HTTP status an error with this code answers.
int http_status(ErrorCode c) noexcept;
/// Whether a retry may help, unless an Error says otherwise.
bool default_retryable(ErrorCode c) noexcept;

/// A failure with a stable machine-readable code, a human message and, for input errors, the field.
struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;     ///< human-readable, safe to show to API clients
  std::string field;       ///< the offending input field, empty when not about input
  bool retryable = false;  ///< true when the same call may succeed later (busy, unavailable)

  Error() = default;
  /// `retryable` from the table.
  Error(ErrorCode c, std::string m = {}, std::string f = {})
      : code(c), message(std::move(m)), field(std::move(f)), retryable(default_retryable(c)) {}
  /// `retryable` given, where the same code can be either (a refused vs. an unreachable broker).
  Error(ErrorCode c, std::string m, std::string f, bool r)
      : code(c), message(std::move(m)), field(std::move(f)), retryable(r) {}
};

/// Holds either a value or an Error.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  /// True when a value is held.
  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  /// The value; only valid when ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  /// The error; only valid when !ok().
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

/// Success or an Error, for operations without a value.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace ecom

/// Formats an ErrorCode as its wire name.
template <>
struct fmt::formatter<ecom::ErrorCode> : fmt::formatter<std::string_view> {
  template <typename Ctx>
  auto format(ecom::ErrorCode c, Ctx& ctx) const {
    return fmt::formatter<std::string_view>::format(ecom::name(c), ctx);
  }
};
