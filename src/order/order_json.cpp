#include "order_json.hpp"

#include <fmt/format.h>

#include <charconv>

#include "ecom/core/base64.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/json.hpp"

namespace ecom::order {
namespace {

using json::write_string;
using json::Writer;

void write_order(Writer& w, const store::OrderView& o, bool with_history) {
  w.StartObject();
  write_string(w, "orderId", o.id);
  write_string(w, "customerId", o.customer_id);
  write_string(w, "currency", o.currency);
  write_string(w, "status", o.status);
  if (o.reason) write_string(w, "reason", *o.reason);
  // Absent until the catalogue priced the order (its stock reserved): never a client's number.
  if (o.total_amount) json::write_int64(w, "totalAmount", *o.total_amount);
  json::key(w, "items");
  w.RawValue(o.items_json.data(), o.items_json.size(), rapidjson::kArrayType);
  write_string(w, "correlationId", o.correlation_id);
  write_string(w, "createdAt", format_rfc3339(o.created_at_ms));
  write_string(w, "updatedAt", format_rfc3339(o.updated_at_ms));
  json::write_bool(w, "cancellationRequested", o.cancellation_requested);
  if (with_history) {
    w.Key("history");
    w.StartArray();
    for (const auto& h : o.history) {
      w.StartObject();
      write_string(w, "status", h.status);
      if (h.reason) write_string(w, "reason", *h.reason);
      write_string(w, "at", format_rfc3339(h.at_ms));
      w.EndObject();
    }
    w.EndArray();
  }
  w.EndObject();
}

}  // namespace

std::string encode_items(const NewOrder& o) { return contract::encode_lines(o.items); }

std::string canonical_request(const NewOrder& o, std::string_view items) {
  return json::object([&](Writer& w) {
    write_string(w, "customerId", o.customer_id);
    write_string(w, "currency", o.currency);
    json::key(w, "items");
    w.RawValue(items.data(), items.size(), rapidjson::kArrayType);
    write_string(w, "paymentToken", o.payment_token);
    if (o.expected_total) json::write_int64(w, "expectedTotal", *o.expected_total);
  });
}

std::string accepted_json(const store::Created& c) {
  return json::object([&](Writer& w) {
    write_string(w, "orderId", c.order_id);
    write_string(w, "status", c.status);
    write_string(w, "correlationId", c.correlation_id);
  });
}

std::string order_json(const store::OrderView& o, bool with_history) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  write_order(w, o, with_history);
  return json::to_string(sb);
}

std::string order_list_json(const store::OrderPage& page) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  w.Key("orders");
  w.StartArray();
  for (const auto& o : page.orders) write_order(w, o, false);
  w.EndArray();
  if (page.next) write_string(w, "nextCursor", encode_cursor(*page.next));
  w.EndObject();
  return json::to_string(sb);
}

namespace {
constexpr std::string_view kCursorVersion{"v1"};
}  // namespace

std::string encode_cursor(const store::PageKey& key) {
  return base64url_encode(fmt::format("{}|{}|{}", kCursorVersion, key.created_at_ms, key.id));
}

std::optional<store::PageKey> decode_cursor(std::string_view cursor) {
  auto text = base64url_decode(cursor);
  if (!text) return std::nullopt;
  std::string_view rest(*text);
  const auto version_end = rest.find('|');
  if (version_end == std::string_view::npos || rest.substr(0, version_end) != kCursorVersion)
    return std::nullopt;
  rest.remove_prefix(version_end + 1);
  const auto ms_end = rest.find('|');
  if (ms_end == std::string_view::npos) return std::nullopt;
  store::PageKey key;
  auto [p, ec] = std::from_chars(rest.data(), rest.data() + ms_end, key.created_at_ms);
  if (ec != std::errc() || p != rest.data() + ms_end || key.created_at_ms < 0) return std::nullopt;
  key.id = std::string(rest.substr(ms_end + 1));
  if (!is_valid_id(key.id)) return std::nullopt;
  return key;
}

std::string cancel_json(std::string_view order_id, std::string_view status) {
  return json::object([&](Writer& w) {
    write_string(w, "orderId", order_id);
    write_string(w, "status", status);
    json::write_bool(w, "cancellationRequested", true);
  });
}

}  // namespace ecom::order
