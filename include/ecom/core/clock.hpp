#pragma once
/// Wall-clock helpers and identifiers shared by every module.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ecom {

/// Milliseconds since the Unix epoch (system clock).
int64_t now_ms() noexcept;
/// Formats epoch milliseconds as RFC 3339 UTC with milliseconds, e.g. 2026-11-22T02:06:38.123Z.
std::string format_rfc3339(int64_t epoch_ms);
/// The current time as RFC 3339 UTC.
inline std::string now_rfc3339() { return format_rfc3339(now_ms()); }
/// An RFC 3339 date-time (`Z` or a numeric offset, any fraction digits) as epoch milliseconds;
/// nullopt when `s` is not one.
std::optional<int64_t> parse_rfc3339_ms(std::string_view s) noexcept;
/// True when `s` is an RFC 3339 date-time (with offset or Z).
bool is_rfc3339(std::string_view s) noexcept;
/// A time-ordered random UUID (version 7, RFC 9562) in canonical lower-case form; its 62 random
/// bits come from the kernel CSPRNG, so ids work as unguessable capabilities. Thread-safe.
std::string new_uuid();
/// A W3C traceparent header value with fresh random trace and span ids. Thread-safe.
std::string new_traceparent();

}  // namespace ecom
