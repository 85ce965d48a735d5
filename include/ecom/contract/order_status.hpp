#pragma once
/// The order statuses and cancellation reasons of docs/events.md: one definition for the order
/// module, the saga and the notification projection, which all apply "forward only".

#include <cstdint>
#include <optional>
#include <string_view>

namespace ecom::contract {

/// Where an order is. PENDING < STOCK_RESERVED < PAYMENT_AUTHORIZED < CONFIRMED = CANCELLED.
enum class OrderStatus : uint8_t {
  kPending,
  kStockReserved,
  kPaymentAuthorized,
  kConfirmed,
  kCancelled,
};

/// Every status, in lifecycle order.
inline constexpr OrderStatus kAllStatuses[] = {OrderStatus::kPending, OrderStatus::kStockReserved,
                                               OrderStatus::kPaymentAuthorized,
                                               OrderStatus::kConfirmed, OrderStatus::kCancelled};

/// The wire name ("PENDING", "STOCK_RESERVED", ...).
constexpr std::string_view name(OrderStatus s) noexcept {
  switch (s) {
    case OrderStatus::kPending:
      return "PENDING";
    case OrderStatus::kStockReserved:
      return "STOCK_RESERVED";
    case OrderStatus::kPaymentAuthorized:
      return "PAYMENT_AUTHORIZED";
    case OrderStatus::kConfirmed:
      return "CONFIRMED";
    case OrderStatus::kCancelled:
      return "CANCELLED";
  }
  return "UNKNOWN";
}

/// The status of a wire name; nullopt when it is none.
constexpr std::optional<OrderStatus> parse_order_status(std::string_view s) noexcept {
  for (auto st : kAllStatuses)
    if (name(st) == s) return st;
  return std::nullopt;
}

/// Progress of a status: a change is applied only when it ranks higher than the current one, so
/// redeliveries and reordering never move an order backwards. Terminal statuses share the top
/// rank: nothing moves a terminal order.
constexpr int rank(OrderStatus s) noexcept {
  switch (s) {
    case OrderStatus::kPending:
      return 0;
    case OrderStatus::kStockReserved:
      return 1;
    case OrderStatus::kPaymentAuthorized:
      return 2;
    case OrderStatus::kConfirmed:
    case OrderStatus::kCancelled:
      return 3;
  }
  return -1;
}

/// CONFIRMED and CANCELLED: final.
constexpr bool is_terminal(OrderStatus s) noexcept { return rank(s) == 3; }

/// Reasons of a CANCELLED order.
namespace reason {
inline constexpr std::string_view kOutOfStock{"OUT_OF_STOCK"};
/// The client's quoted unitAmount or expectedTotal differs from the catalogue's price.
inline constexpr std::string_view kPriceChanged{"PRICE_CHANGED"};
/// The order's currency is not the currency a product is sold in.
inline constexpr std::string_view kCurrencyMismatch{"CURRENCY_MISMATCH"};
inline constexpr std::string_view kPaymentDeclined{"PAYMENT_DECLINED"};
inline constexpr std::string_view kCustomerCancelled{"CUSTOMER_CANCELLED"};
inline constexpr std::string_view kTimeout{"TIMEOUT"};
}  // namespace reason

}  // namespace ecom::contract
