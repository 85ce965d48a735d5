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

}  // namespace ecom::http::detail
