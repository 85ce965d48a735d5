#pragma once
/// URL helpers shared by the router and the server (private to src/http).

#include <string>
#include <string_view>

namespace ecom::http::detail {

/// Decodes %XX escapes, and '+' as a space when `plus_as_space` (query strings only). Malformed
/// escapes are kept verbatim rather than rejected, so odd clients still reach a handler.
std::string percent_decode(std::string_view s, bool plus_as_space);

/// Decodes into `out` (reusing its capacity).
void percent_decode_into(std::string_view s, bool plus_as_space, std::string& out);

/// Calls `f(key, value, has_value)` with the raw (still encoded) parts of each `key[=value]`
/// pair of a query string, skipping empty ones ("a=1&&b=2", a trailing '&'); stops early when
/// `f` returns false.
template <typename F>
void for_each_query_pair(std::string_view query, F&& f) {
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    const bool has_value = eq != std::string_view::npos;
    if (!f(pair.substr(0, eq), has_value ? pair.substr(eq + 1) : std::string_view(), has_value))
      return;
  }
}

}  // namespace ecom::http::detail
