#include "templates.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>

#include "ecom/contract/order_status.hpp"

namespace ecom::notification {
namespace {

using contract::OrderStatus;

struct StatusKey {
  OrderStatus status;
  std::string_view key;
};

constexpr std::array<StatusKey, 5> kStatusKeys = {{
    {OrderStatus::kPending, "order.created"},
    {OrderStatus::kStockReserved, "order.stock_reserved"},
    {OrderStatus::kPaymentAuthorized, "order.payment_authorized"},
    {OrderStatus::kConfirmed, "order.confirmed"},
    {OrderStatus::kCancelled, "order.cancelled"},
}};

std::string join_keys() {
  std::string out;
  for (const auto& k : template_keys()) out += (out.empty() ? "" : ", ") + std::string(k);
  return out;
}

}  // namespace

const std::vector<std::string_view>& template_keys() {
  static const std::vector<std::string_view> keys = [] {
    std::vector<std::string_view> k;
    for (const auto& s : kStatusKeys) k.push_back(s.key);
    return k;
  }();
  return keys;
}

std::optional<std::string_view> template_key_for_status(std::string_view status) {
  auto parsed = contract::parse_order_status(status);
  if (!parsed) return std::nullopt;
  for (const auto& s : kStatusKeys)
    if (s.status == *parsed) return s.key;
  return std::nullopt;
}

std::string reason_text(std::string_view code) {
  namespace r = contract::reason;
  // The reasons of contract/order_status.hpp in the words a customer reads (the web shop says
  // the same in web/assets/util.js).
  if (code == r::kOutOfStock) return "some items are out of stock, so nothing was charged.";
  if (code == r::kPriceChanged)
    return "a price changed since the item was added to the cart, so nothing was charged.";
  if (code == r::kCurrencyMismatch)
    return "the order's currency is not the one the items are sold in, so nothing was charged.";
  if (code == r::kPaymentDeclined) return "the payment was declined.";
  if (code == r::kCustomerCancelled) return "you asked us to cancel it.";
  if (code == r::kTimeout) return "a step did not finish in time.";
  if (code.empty()) return "";
  // A code this build does not know: its words ("SOME_NEW_CODE" -> "some new code.").
  std::string words;
  for (char c : code)
    words +=
        c == '_' || c == '-' ? ' ' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return words + ".";
}

Templates default_templates() {
  return {
      {"order.created",
       {"Order {orderId} received",
        "Hi {customerId}, we received your order {orderId}. We will keep you posted."}},
      {"order.stock_reserved",
       {"Order {orderId}: items reserved",
        "Good news, {customerId}: the items of order {orderId} are reserved for you, "
        "{totalAmount} {currency} in all. We are now processing your payment."}},
      {"order.payment_authorized",
       {"Order {orderId}: payment authorized",
        "Your payment of {totalAmount} {currency} for order {orderId} was authorized."}},
      {"order.confirmed",
       {"Order {orderId} confirmed",
        "Your order {orderId} ({totalAmount} {currency}) is confirmed. Thank you for your order!"}},
      {"order.cancelled",
       {"Order {orderId} cancelled",
        "Sorry, {customerId}: your order {orderId} was cancelled: {reasonText} "
        "Any payment will be refunded."}},
  };
}

std::string format_money(int64_t minor_units) {
  // Via unsigned so that INT64_MIN has a magnitude too.
  uint64_t magnitude =
      minor_units < 0 ? 0 - static_cast<uint64_t>(minor_units) : static_cast<uint64_t>(minor_units);
  return fmt::format("{}{}.{:02}", minor_units < 0 ? "-" : "", magnitude / 100, magnitude % 100);
}

std::string render(std::string_view text, const TemplateVars& vars) {
  std::string out;
  out.reserve(text.size() + 64);
  size_t i = 0;
  while (i < text.size()) {
    size_t open = text.find('{', i);
    if (open == std::string_view::npos) {
      out.append(text.substr(i));
      break;
    }
    out.append(text.substr(i, open - i));
    size_t close = text.find('}', open + 1);
    if (close == std::string_view::npos) {
      out.append(text.substr(open));
      break;
    }
    std::string_view name = text.substr(open + 1, close - open - 1);
    if (name == "orderId") {
      out += vars.order_id;
    } else if (name == "customerId") {
      out += vars.customer_id;
    } else if (name == "status") {
      out += vars.status;
    } else if (name == "reason") {
      out += vars.reason;
    } else if (name == "reasonText") {
      out += reason_text(vars.reason);
    } else if (name == "totalAmount") {
      out += format_money(vars.total_amount);
    } else if (name == "currency") {
      out += vars.currency;
    } else {
      // Unknown (or a '{' inside literal text): keep the '{' and rescan after it, so that
      // "{{orderId}" still renders its placeholder.
      out += '{';
      i = open + 1;
      continue;
    }
    i = close + 1;
  }
  return out;
}

Template render(const Template& t, const TemplateVars& vars) {
  return {render(t.subject, vars), render(t.body, vars)};
}

Result<Templates> templates_from_config(const ConfigSection& section) {
  Templates out = default_templates();
  for (const auto& key : section.keys()) {
    std::string path = section.path() + "." + key;
    auto it = out.find(key);
    if (it == out.end())
      return config_invalid(
          fmt::format("unknown template \"{}\"; valid templates: {}", path, join_keys()), path);
    const auto* raw = section.raw(key);
    if (raw == nullptr || !raw->IsObject())
      return config_invalid(
          fmt::format("{} must be an object with \"subject\" and/or \"body\"", path), path);
    if (auto st = ConfigSpec{}
                      .string("subject", it->second.subject)
                      .string("body", it->second.body)
                      .read(section.section(key));
        !st)
      return st.error();
    if (it->second.subject.empty())
      return config_invalid(fmt::format("{}.subject must not be empty", path), path + ".subject");
  }
  return out;
}

}  // namespace ecom::notification
