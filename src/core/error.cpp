#include <array>

#include "ecom/core/result.hpp"

namespace ecom {
namespace {

struct Row {
  ErrorCode code;
  std::string_view name;
  int http_status;
  bool retryable;
};

// The one table of error codes. The order follows the enum; a static_assert keeps them aligned.
constexpr std::array kTable{
    Row{ErrorCode::kValidationFailed, "VALIDATION_FAILED", 400, false},
    Row{ErrorCode::kMalformedJson, "MALFORMED_JSON", 400, false},
    Row{ErrorCode::kBadRequest, "BAD_REQUEST", 400, false},
    Row{ErrorCode::kUnauthorized, "UNAUTHORIZED", 401, false},
    Row{ErrorCode::kForbidden, "FORBIDDEN", 403, false},
    Row{ErrorCode::kNotFound, "NOT_FOUND", 404, false},
    Row{ErrorCode::kMethodNotAllowed, "METHOD_NOT_ALLOWED", 405, false},
    Row{ErrorCode::kConflict, "CONFLICT", 409, false},
    Row{ErrorCode::kIdempotencyConflict, "IDEMPOTENCY_CONFLICT", 409, false},
    Row{ErrorCode::kPayloadTooLarge, "PAYLOAD_TOO_LARGE", 413, false},
    Row{ErrorCode::kHeadersTooLarge, "HEADERS_TOO_LARGE", 431, false},
    Row{ErrorCode::kUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", 415, false},
    Row{ErrorCode::kUpgradeRequired, "UPGRADE_REQUIRED", 426, false},
    Row{ErrorCode::kInternal, "INTERNAL", 500, false},
    Row{ErrorCode::kNotImplemented, "NOT_IMPLEMENTED", 501, false},
    Row{ErrorCode::kDbError, "DB_ERROR", 500, false},
    Row{ErrorCode::kUnavailable, "UNAVAILABLE", 503, true},
    Row{ErrorCode::kDbBusy, "DB_BUSY", 503, true},
    Row{ErrorCode::kStoreUnavailable, "STORE_UNAVAILABLE", 503, true},
    Row{ErrorCode::kInvalidPayload, "INVALID_PAYLOAD", 400, false},
    Row{ErrorCode::kConfigInvalid, "CONFIG_INVALID", 500, false},
    Row{ErrorCode::kUnknownRole, "UNKNOWN_ROLE", 500, false},
    Row{ErrorCode::kUsage, "USAGE", 500, false},
    Row{ErrorCode::kBindFailed, "BIND_FAILED", 500, false},
    Row{ErrorCode::kUpstreamUnavailable, "UPSTREAM_UNAVAILABLE", 502, true},
    Row{ErrorCode::kUpstreamTimeout, "UPSTREAM_TIMEOUT", 504, true},
    Row{ErrorCode::kUpstreamBadResponse, "UPSTREAM_BAD_RESPONSE", 502, false},
    Row{ErrorCode::kUnsupportedScheme, "UNSUPPORTED_SCHEME", 500, false},
    Row{ErrorCode::kBadUrl, "BAD_URL", 500, false},
};

constexpr bool aligned() {
  for (size_t i = 0; i < kTable.size(); ++i)
    if (static_cast<size_t>(kTable[i].code) != i) return false;
  return kTable.back().code == ErrorCode::kBadUrl;  // the enum's last value
}
static_assert(aligned(), "kTable must list every ErrorCode in enum order");

const Row& row(ErrorCode c) noexcept {
  const auto i = static_cast<size_t>(c);
  return i < kTable.size() ? kTable[i] : kTable[static_cast<size_t>(ErrorCode::kInternal)];
}

}  // namespace

std::string_view name(ErrorCode c) noexcept { return row(c).name; }
int http_status(ErrorCode c) noexcept { return row(c).http_status; }
bool default_retryable(ErrorCode c) noexcept { return row(c).retryable; }

}  // namespace ecom
