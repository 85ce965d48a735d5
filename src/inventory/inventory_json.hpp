#pragma once
// JSON encoding shared by the inventory service (event payloads) and the module (HTTP bodies).

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <span>
#include <string>
#include <string_view>

#include "ecom/inventory/inventory_service.hpp"

namespace ecom::inventory::json {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

inline void key(Writer& w, std::string_view k) {
  w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
}
inline void str(Writer& w, std::string_view v) {
  w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}

inline void write_product(Writer& w, const Product& p) {
  w.StartObject();
  key(w, "sku");
  str(w, p.sku);
  key(w, "name");
  str(w, p.name);
  key(w, "available");
  w.Int64(p.available);
  key(w, "reserved");
  w.Int64(p.reserved);
  key(w, "sold");
  w.Int64(p.sold);
  key(w, "unitAmount");
  w.Int64(p.unit_amount);
  key(w, "currency");
  str(w, p.currency);
  w.EndObject();
}

inline void write_lines(Writer& w, std::span<const Line> lines) {
  w.StartArray();
  for (const auto& l : lines) {
    w.StartObject();
    key(w, "sku");
    str(w, l.sku);
    key(w, "quantity");
    w.Int64(l.quantity);
    w.EndObject();
  }
  w.EndArray();
}

inline std::string product_json(const Product& p) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  write_product(w, p);
  return {sb.GetString(), sb.GetSize()};
}

}  // namespace ecom::inventory::json
