#pragma once
/// Validation of order requests: pure functions, no I/O.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/core/result.hpp"

namespace ecom::order {

inline constexpr size_t kMaxLines = 100;
inline constexpr size_t kMaxIdLength = 64;
inline constexpr int64_t kMaxQuantity = 1'000'000;
inline constexpr int64_t kMaxUnitAmount = 1'000'000'000'000;  ///< 10^12 minor units

/// One order line; money in minor units.
struct OrderLine {
  std::string sku;
  int64_t quantity = 0;
  int64_t unit_amount = 0;
};

/// A validated order request.
struct NewOrder {
  std::string customer_id;
  std::string currency;
  std::vector<OrderLine> items;
  std::string payment_token;  ///< empty when absent
  int64_t total_amount = 0;
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
