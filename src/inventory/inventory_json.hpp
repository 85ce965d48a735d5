#pragma once
// JSON encoding shared by the inventory service (event payloads) and the module (HTTP bodies).

#include <span>
#include <string>

#include "ecom/core/json.hpp"
#include "inventory_service.hpp"

namespace ecom::inventory::json {

using ecom::json::key;
using ecom::json::object;
using ecom::json::str;
using ecom::json::to_string;
using ecom::json::write_int64;
using ecom::json::write_string;
using ecom::json::Writer;

inline void write_product(Writer& w, const Product& p) {
  w.StartObject();
  write_string(w, "sku", p.sku);
  write_string(w, "name", p.name);
  write_int64(w, "available", p.available);
  write_int64(w, "reserved", p.reserved);
  write_int64(w, "sold", p.sold);
  write_int64(w, "unitAmount", p.unit_amount);
  write_string(w, "currency", p.currency);
  w.EndObject();
}

inline void write_lines(Writer& w, std::span<const Line> lines) {
  w.StartArray();
  for (const auto& l : lines) {
    w.StartObject();
    write_string(w, "sku", l.sku);
    write_int64(w, "quantity", l.quantity);
    w.EndObject();
  }
  w.EndArray();
}

inline std::string product_json(const Product& p) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  write_product(w, p);
  return to_string(sb);
}

}  // namespace ecom::inventory::json
