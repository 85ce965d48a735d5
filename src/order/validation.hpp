#pragma once
/// Validation of order requests: pure functions, no I/O.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/contract/events.hpp"
#include "ecom/core/result.hpp"

namespace ecom::order {

inline constexpr size_t kMaxLines = 100;
inline constexpr size_t kMaxIdLength = 64;
inline constexpr int64_t kMaxQuantity = 1'000'000;
inline constexpr int64_t kMaxUnitAmount = 1'000'000'000'000;             ///< 10^12 minor units
inline constexpr int64_t kMaxExpectedTotal = 1'000'000'000'000'000'000;  ///< 10^18

/// One order line; money in minor units. `unit_amount` is the price the client saw (its cart),
/// when it sent one. Never charged: the inventory prices every line from the catalogue and
/// refuses the order (PRICE_CHANGED) if it differs.
using OrderLine = contract::Line;

/// A validated order request.
struct NewOrder {
  std::string customer_id;
  std::string currency;  ///< ISO 4217; must equal every product's currency
  std::vector<OrderLine> items;
  std::string payment_token;  ///< empty when absent
  /// The total the client expects to pay, when it sent one: a quote, checked like unit_amount.
  std::optional<int64_t> expected_total;
};

/// Parses and validates a POST /api/orders body. Errors: MALFORMED_JSON, or VALIDATION_FAILED
/// with the path of the field at fault (e.g. "items[0].quantity").
Result<NewOrder> parse_new_order(std::string_view body);

/// The order as canonical JSON (fixed field order), used for the Idempotency-Key comparison so
/// that whitespace or field order do not make the same request look different.
std::string canonical_json(const NewOrder& order);

/// True for an identifier: 1..kMaxIdLength printable ASCII characters without spaces.
bool is_valid_id(std::string_view s) noexcept;

}  // namespace ecom::order
