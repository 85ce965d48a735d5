#pragma once
/// Payment business logic (a deterministic simulated gateway), independent of bus and HTTP
/// wiring: every operation works inside the caller's db transaction (db::Tx) and queues the reply
/// with db::outbox_add, so the payment record and its event commit together. SQLite failures
/// surface as db::DbError, which the enclosing Database::transaction() turns into an Error.
///
/// Thread safety: the functions keep no state; concurrency is handled by the transaction.

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "ecom/core/envelope.hpp"
#include "ecom/core/result.hpp"
#include "ecom/db/database.hpp"

namespace ecom::payment {

/// Tokens with a scripted outcome; any other non-empty token authorizes.
inline constexpr std::string_view kTokenDecline{"tok_decline"};
inline constexpr std::string_view kTokenInsufficientFunds{"tok_insufficient_funds"};
inline constexpr std::string_view kTokenTimeout{"tok_timeout"};

/// Gateway limits.
struct Rules {
  int64_t amount_limit = 1'000'000;  ///< larger amounts (minor units) are declined
};

/// A parsed AuthorizePayment command.
struct AuthorizeCommand {
  std::string order_id;
  int64_t amount = 0;  ///< minor units, >= 0
  std::string currency;
  std::string payment_token;  ///< empty when absent or null
};

/// Parses AuthorizePayment `data`; the error (code INVALID_PAYLOAD) names the offending field.
Result<AuthorizeCommand> parse_authorize_payment(std::string_view data_json);
/// Parses RefundPayment `{orderId}`; returns the order id.
Result<std::string> parse_refund_payment(std::string_view data_json);

/// Schema steps for Database::migrate("payment", ...); step i is version i+1.
std::span<const std::string_view> migrations();

/// How the gateway answers an authorization.
enum class Decision {
  kAuthorized,
  kDeclined,
  kNoAnswer,  ///< tok_timeout: recorded, nothing emitted
};

/// The gateway's rule for a fresh authorization; `reason` receives the decline reason
/// (MISSING_TOKEN, AMOUNT_LIMIT_EXCEEDED, CARD_DECLINED, INSUFFICIENT_FUNDS). Pure.
Decision decide(const Rules& rules, const AuthorizeCommand& cmd, std::string* reason);

/// The outcome of AuthorizePayment for an order.
struct AuthorizeResult {
  Decision decision = Decision::kNoAnswer;
  std::string payment_id;  ///< set when authorized
  std::string reason;      ///< set when declined (incl. VOIDED: refunded before authorized)
  bool repeated = false;   ///< the order already had an outcome, which was replayed
};

/// Decides (or replays the recorded decision for the order) and queues PaymentAuthorized or
/// PaymentDeclined on `payments.events`; for tok_timeout records the attempt and queues nothing.
/// An order refunded before it was authorized is declined with reason VOIDED.
AuthorizeResult authorize_payment(db::Tx& tx, const Rules& rules, const AuthorizeCommand& cmd,
                                  const Envelope& cause);

/// The outcome of RefundPayment for an order.
struct RefundResult {
  bool refunded = false;  ///< true only when an authorization was (or had been) refunded
  int64_t amount = 0;     ///< refunded amount, 0 when nothing was refunded
};

/// Refunds an authorized payment once (repeats answer the same) and queues PaymentRefunded.
/// Without an authorization it answers refunded:false; when no authorization was seen yet the
/// order is voided so a later AuthorizePayment is declined.
RefundResult refund_payment(db::Tx& tx, const std::string& order_id, const Envelope& cause);

/// A payment record as served by GET /api/payments/{orderId}.
struct Payment {
  std::string order_id;
  std::string payment_id;  ///< empty when no authorization attempt was made (voided first)
  std::string status;      ///< AUTHORIZED|DECLINED|REFUNDED|TIMEOUT_SIMULATED|VOIDED
  int64_t amount = 0;
  std::string currency;
  std::string reason;      ///< decline reason, empty otherwise
  std::string created_at;  ///< RFC 3339
  std::string updated_at;  ///< RFC 3339
};

/// The record of an order, or nullopt.
std::optional<Payment> find_payment(db::Tx& tx, std::string_view order_id);

}  // namespace ecom::payment
