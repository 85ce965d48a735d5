#pragma once
/// ISO 4217 currency codes. Prices and orders must name a currency that exists: a typo like "USX"
/// or a made-up "XYZ" is refused at the edge, not discovered when a payment gateway rejects it.

#include <string_view>

namespace ecom {

/// True when `code` is an active ISO 4217 alphabetic code (three upper-case letters), such as
/// "USD", "EUR" or "JPY". Funds and precious-metal codes (XAU, XDR, ...) are not currencies a shop
/// sells in and are refused, as is the testing code XTS.
bool is_iso4217(std::string_view code) noexcept;

}  // namespace ecom
