#pragma once
// JSON encoding of order lines, shared by the OrderCreated payload, the stored `items` column and
// the canonical request used for Idempotency-Key comparison.

#include <string>
#include <string_view>
#include <vector>

#include "ecom/core/json.hpp"
#include "ecom/order/validation.hpp"

namespace ecom::order {

/// The items array of `o` as JSON text (`unitAmount` only where the client quoted one).
inline std::string encode_items(const NewOrder& o) { return contract::encode_lines(o.items); }

/// The canonical request (what canonical_json(o) returns, and stored Idempotency-Keys compare
/// against), reusing `items` = encode_items(o) so a POST encodes its items once.
inline std::string canonical_request(const NewOrder& o, std::string_view items) {
  return json::object([&](json::Writer& w) {
    json::write_string(w, "customerId", o.customer_id);
    json::write_string(w, "currency", o.currency);
    json::key(w, "items");
    w.RawValue(items.data(), items.size(), rapidjson::kArrayType);
    json::write_string(w, "paymentToken", o.payment_token);
    if (o.expected_total) json::write_int64(w, "expectedTotal", *o.expected_total);
  });
}

}  // namespace ecom::order
