#pragma once
/// Topic names and event types: the contract between modules (see docs/events.md). Modules never
/// call each other; these names are all they share.

#include <array>
#include <string_view>

namespace ecom::topics {

inline constexpr std::string_view kOrdersCreated{"orders.created"};
inline constexpr std::string_view kOrdersCancellations{"orders.cancellations"};
inline constexpr std::string_view kOrdersStatus{"orders.status"};
inline constexpr std::string_view kInventoryCommands{"inventory.commands"};
inline constexpr std::string_view kInventoryEvents{"inventory.events"};
inline constexpr std::string_view kInventoryUpdated{"inventory.updated"};
inline constexpr std::string_view kInventoryAlerts{"inventory.alerts"};
inline constexpr std::string_view kPaymentsCommands{"payments.commands"};
inline constexpr std::string_view kPaymentsEvents{"payments.events"};
inline constexpr std::string_view kNotificationsSent{"notifications.sent"};

/// Every topic, for provisioning (`ecomd topics create`); each also has a `<topic>.dlq`.
inline constexpr std::array kAll{kOrdersCreated,     kOrdersCancellations, kOrdersStatus,
                                 kInventoryCommands, kInventoryEvents,     kInventoryUpdated,
                                 kInventoryAlerts,   kPaymentsCommands,    kPaymentsEvents,
                                 kNotificationsSent};

}  // namespace ecom::topics

namespace ecom::event_types {

inline constexpr std::string_view kOrderCreated{"ecom.order.created.v1"};
inline constexpr std::string_view kOrderCancellationRequested{
    "ecom.order.cancellation-requested.v1"};
inline constexpr std::string_view kOrderStatusChanged{"ecom.order.status-changed.v1"};
inline constexpr std::string_view kReserveStock{"ecom.inventory.reserve-stock.v1"};
inline constexpr std::string_view kReleaseStock{"ecom.inventory.release-stock.v1"};
inline constexpr std::string_view kCommitStock{"ecom.inventory.commit-stock.v1"};
inline constexpr std::string_view kStockReserved{"ecom.inventory.stock-reserved.v1"};
inline constexpr std::string_view kStockReservationFailed{
    "ecom.inventory.stock-reservation-failed.v1"};
inline constexpr std::string_view kStockReleased{"ecom.inventory.stock-released.v1"};
inline constexpr std::string_view kStockCommitted{"ecom.inventory.stock-committed.v1"};
inline constexpr std::string_view kInventoryUpdated{"ecom.inventory.updated.v1"};
inline constexpr std::string_view kStockLevelLow{"ecom.inventory.stock-level-low.v1"};
inline constexpr std::string_view kStockDepleted{"ecom.inventory.stock-depleted.v1"};
inline constexpr std::string_view kStockLevelNormalized{"ecom.inventory.stock-level-normalized.v1"};
inline constexpr std::string_view kAuthorizePayment{"ecom.payment.authorize-payment.v1"};
inline constexpr std::string_view kRefundPayment{"ecom.payment.refund-payment.v1"};
inline constexpr std::string_view kPaymentAuthorized{"ecom.payment.payment-authorized.v1"};
inline constexpr std::string_view kPaymentDeclined{"ecom.payment.payment-declined.v1"};
inline constexpr std::string_view kPaymentRefunded{"ecom.payment.payment-refunded.v1"};
inline constexpr std::string_view kNotificationSent{"ecom.notification.sent.v1"};

}  // namespace ecom::event_types
