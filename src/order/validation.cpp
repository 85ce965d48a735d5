#include "validation.hpp"

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "ecom/core/currency.hpp"
#include "order_json.hpp"

namespace ecom::order {
namespace {

Error invalid(std::string field, std::string message) {
  return Error{ErrorCode::kValidationFailed, std::move(message), std::move(field), false};
}

}  // namespace

bool is_valid_id(std::string_view s) noexcept {
  if (s.empty() || s.size() > kMaxIdLength) return false;
  for (char c : s)
    if (c <= ' ' || c > '~') return false;
  return true;
}

Result<NewOrder> parse_new_order(std::string_view body) {
  rapidjson::Document doc;
  doc.Parse(body.data(), body.size());
  if (doc.HasParseError()) {
    return Error{ErrorCode::kMalformedJson,
                 fmt::format("request body is not valid JSON (offset {}: {})", doc.GetErrorOffset(),
                             rapidjson::GetParseError_En(doc.GetParseError())),
                 "", false};
  }
  if (!doc.IsObject()) return invalid("", "request body must be a JSON object");

  for (const auto& m : doc.GetObject()) {
    std::string_view key(m.name.GetString(), m.name.GetStringLength());
    if (key != "customerId" && key != "currency" && key != "items" && key != "paymentToken" &&
        key != "expectedTotal")
      return invalid(std::string(key),
                     fmt::format("unknown field \"{}\"; valid fields: customerId, currency, items, "
                                 "paymentToken, expectedTotal",
                                 key));
  }

  NewOrder order;
  auto customer = doc.FindMember("customerId");
  if (customer == doc.MemberEnd()) return invalid("customerId", "customerId is required");
  if (!customer->value.IsString()) return invalid("customerId", "customerId must be a string");
  order.customer_id.assign(customer->value.GetString(), customer->value.GetStringLength());
  if (!is_valid_id(order.customer_id))
    return invalid(
        "customerId",
        fmt::format("customerId must be 1..{} printable characters without spaces", kMaxIdLength));

  auto currency = doc.FindMember("currency");
  if (currency == doc.MemberEnd()) return invalid("currency", "currency is required");
  if (!currency->value.IsString() ||
      !is_iso4217({currency->value.GetString(), currency->value.GetStringLength()}))
    return invalid("currency", "currency must be an ISO 4217 code in upper case, e.g. \"USD\"");
  order.currency = currency->value.GetString();

  auto items = doc.FindMember("items");
  if (items == doc.MemberEnd()) return invalid("items", "items is required");
  if (!items->value.IsArray()) return invalid("items", "items must be an array");
  const auto& lines = items->value.GetArray();
  if (lines.Empty()) return invalid("items", "items must not be empty");
  if (lines.Size() > kMaxLines)
    return invalid("items", fmt::format("items must have at most {} lines", kMaxLines));

  int64_t quoted_total = 0;  // only to bound the quotes: the server prices the order
  for (rapidjson::SizeType i = 0; i < lines.Size(); ++i) {
    const auto& line = lines[i];
    std::string at = fmt::format("items[{}]", i);
    if (!line.IsObject()) return invalid(at, at + " must be an object");
    for (const auto& m : line.GetObject()) {
      std::string_view key(m.name.GetString(), m.name.GetStringLength());
      if (key != "sku" && key != "quantity" && key != "unitAmount")
        return invalid(
            at + "." + std::string(key),
            fmt::format("unknown field \"{}\"; valid fields: sku, quantity, unitAmount", key));
    }
    OrderLine ol;
    auto sku = line.FindMember("sku");
    if (sku == line.MemberEnd()) return invalid(at + ".sku", at + ".sku is required");
    if (!sku->value.IsString()) return invalid(at + ".sku", at + ".sku must be a string");
    ol.sku.assign(sku->value.GetString(), sku->value.GetStringLength());
    if (!is_valid_id(ol.sku))
      return invalid(at + ".sku",
                     fmt::format("{}.sku must be 1..{} printable characters without spaces", at,
                                 kMaxIdLength));

    auto quantity = line.FindMember("quantity");
    if (quantity == line.MemberEnd())
      return invalid(at + ".quantity", at + ".quantity is required");
    if (!quantity->value.IsInt64() || quantity->value.GetInt64() <= 0)
      return invalid(at + ".quantity", at + ".quantity must be a positive integer");
    ol.quantity = quantity->value.GetInt64();
    if (ol.quantity > kMaxQuantity)
      return invalid(at + ".quantity",
                     fmt::format("{}.quantity must be at most {}", at, kMaxQuantity));

    auto amount = line.FindMember("unitAmount");
    if (amount != line.MemberEnd() && !amount->value.IsNull()) {
      if (!amount->value.IsInt64() || amount->value.GetInt64() < 0)
        return invalid(at + ".unitAmount",
                       at + ".unitAmount must be a non-negative integer (minor units, e.g. cents)");
      ol.unit_amount = amount->value.GetInt64();
      if (*ol.unit_amount > kMaxUnitAmount)
        return invalid(at + ".unitAmount",
                       fmt::format("{}.unitAmount must be at most {}", at, kMaxUnitAmount));
      // Bounds above keep quantity * unit_amount below 10^18; the sum is checked for overflow.
      if (__builtin_add_overflow(quoted_total, ol.quantity * *ol.unit_amount, &quoted_total))
        return invalid("items", "order total is too large");
    }
    order.items.push_back(std::move(ol));
  }

  auto expected = doc.FindMember("expectedTotal");
  if (expected != doc.MemberEnd() && !expected->value.IsNull()) {
    if (!expected->value.IsInt64() || expected->value.GetInt64() < 0 ||
        expected->value.GetInt64() > kMaxExpectedTotal)
      return invalid("expectedTotal",
                     fmt::format("expectedTotal must be an integer from 0 to {} (minor units)",
                                 kMaxExpectedTotal));
    order.expected_total = expected->value.GetInt64();
  }

  auto token = doc.FindMember("paymentToken");
  if (token != doc.MemberEnd() && !token->value.IsNull()) {
    if (!token->value.IsString()) return invalid("paymentToken", "paymentToken must be a string");
    order.payment_token.assign(token->value.GetString(), token->value.GetStringLength());
    if (order.payment_token.empty() || order.payment_token.size() > 128)
      return invalid("paymentToken", "paymentToken must be 1..128 characters");
  }
  return order;
}

std::string canonical_json(const NewOrder& order) {
  return canonical_request(order, encode_items(order));
}

}  // namespace ecom::order
