#pragma once
/// Base64url (RFC 4648 §5) without padding: opaque tokens that travel in URLs (paging cursors;
/// JWT segments use the same alphabet).

#include <optional>
#include <string>
#include <string_view>

namespace ecom {

/// `bytes` as base64url, no '=' padding.
std::string base64url_encode(std::string_view bytes);
/// The bytes of base64url `text` (padding optional); nullopt when it is not base64url, including
/// a final group whose unused bits are not zero, so every value has exactly one encoding.
std::optional<std::string> base64url_decode(std::string_view text);

}  // namespace ecom
