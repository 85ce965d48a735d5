#pragma once
/// Notification templates: plain text with `{placeholder}`s, one per order status. Pure functions,
/// thread-safe.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/core/config.hpp"
#include "ecom/core/result.hpp"

namespace ecom::notification {

/// One template: subject line and body.
struct Template {
  std::string subject;
  std::string body;
};

/// Templates by key ("order.created", "order.confirmed", ...).
using Templates = std::map<std::string, Template, std::less<>>;

/// The values a template may use.
struct TemplateVars {
  std::string order_id;      ///< {orderId}
  std::string customer_id;   ///< {customerId}
  std::string status;        ///< {status}
  std::string reason;        ///< {reason} (empty unless cancelled)
  int64_t total_amount = 0;  ///< {totalAmount}, minor units, rendered as "25.00"
  std::string currency;      ///< {currency}
};

/// The template keys, in lifecycle order: order.created, order.stock_reserved,
/// order.payment_authorized, order.confirmed, order.cancelled.
const std::vector<std::string_view>& template_keys();
/// The template key for an order status ("PENDING" → "order.created"); nullopt when unknown.
std::optional<std::string_view> template_key_for_status(std::string_view status);
/// The built-in templates (every key of template_keys()).
Templates default_templates();
/// A cancellation reason code in a customer's words ({reasonText}): "PAYMENT_DECLINED" → "the
/// payment was declined."; unknown codes as their words.
std::string reason_text(std::string_view code);
/// Minor units as a decimal amount with two places: 2500 → "25.00", -5 → "-0.05".
std::string format_money(int64_t minor_units);
/// Replaces known placeholders; unknown ones (and a lone '{') are left as they are.
std::string render(std::string_view text, const TemplateVars& vars);
/// Renders subject and body.
Template render(const Template& t, const TemplateVars& vars);
/// The defaults overridden by a `templates` config section ({"order.created": {"subject": ...,
/// "body": ...}, ...}); a key may set only one of the two. Unknown keys fail with CONFIG_INVALID.
Result<Templates> templates_from_config(const ConfigSection& section);

}  // namespace ecom::notification
