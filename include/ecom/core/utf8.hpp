#pragma once
/// Valid UTF-8 (RFC 3629), the one text encoding ecomd takes and gives: request paths, query
/// parameters, headers and bodies are checked at the HTTP edge, envelopes where they are decoded,
/// so nothing stored, published or served holds bytes a strict client cannot read.

#include <cstddef>
#include <optional>
#include <string_view>

namespace ecom {

/// The offset of the first byte that does not belong to a well-formed UTF-8 sequence (a stray
/// continuation byte, a truncated sequence, an overlong form, a surrogate, a code point above
/// U+10FFFF, the bytes 0xC0, 0xC1 and 0xF5..0xFF); nullopt when all of `s` is valid.
std::optional<size_t> invalid_utf8_at(std::string_view s) noexcept;

inline bool valid_utf8(std::string_view s) noexcept { return !invalid_utf8_at(s); }

}  // namespace ecom
