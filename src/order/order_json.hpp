#pragma once
// JSON encoding of order lines, shared by the OrderCreated payload, the stored `items` column and
// the canonical request used for Idempotency-Key comparison.

#include <vector>

#include "ecom/core/json.hpp"
#include "ecom/order/validation.hpp"

namespace ecom::order {

/// Writes `[{"sku":..,"quantity":..,"unitAmount":..}, ...]`.
inline void write_items(json::Writer& w, const std::vector<OrderLine>& items) {
  w.StartArray();
  for (const auto& l : items) {
    w.StartObject();
    json::write_string(w, "sku", l.sku);
    json::write_int64(w, "quantity", l.quantity);
    json::write_int64(w, "unitAmount", l.unit_amount);
    w.EndObject();
  }
  w.EndArray();
}

}  // namespace ecom::order
