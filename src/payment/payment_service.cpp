#include "payment_service.hpp"

#include <array>
#include <utility>

#include "ecom/contract/events.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/json.hpp"
#include "ecom/core/topics.hpp"
#include "ecom/db/outbox.hpp"

namespace ecom::payment {
namespace {

constexpr std::string_view kSource{"payment"};

template <typename E>
void emit(db::Tx& tx, const E& event, const Envelope& cause) {
  db::outbox_add(tx, E::kTopic, contract::make(kSource, event, &cause));
}

void emit_authorized(db::Tx& tx, const std::string& order_id, const std::string& payment_id,
                     int64_t amount, const std::string& currency, const Envelope& cause) {
  emit(tx, contract::PaymentAuthorized{order_id, payment_id, amount, currency}, cause);
}

void emit_declined(db::Tx& tx, const std::string& order_id, const std::string& reason,
                   const Envelope& cause) {
  emit(tx, contract::PaymentDeclined{order_id, reason}, cause);
}

void emit_refunded(db::Tx& tx, const std::string& order_id, const RefundResult& r,
                   const Envelope& cause) {
  emit(tx, contract::PaymentRefunded{order_id, r.amount, r.refunded}, cause);
}

// Runs a statement to its end, so no read cursor stays open until commit.
void finish(db::Statement& s) {
  while (s.step()) {
  }
}

constexpr std::string_view kAnswerAuthorized{"AUTHORIZED"};
constexpr std::string_view kAnswerDeclined{"DECLINED"};
constexpr std::string_view kAnswerNone{"NO_ANSWER"};

constexpr std::array<std::string_view, 1> kMigrations{
    // `status` is the lifecycle shown by the API; `answer` is the reply the first
    // AuthorizePayment got (NULL while none arrived), replayed for every repeat.
    R"sql(CREATE TABLE payments(
  order_id        TEXT PRIMARY KEY,
  payment_id      TEXT,
  status          TEXT NOT NULL CHECK (status IN
                    ('AUTHORIZED', 'DECLINED', 'REFUNDED', 'TIMEOUT_SIMULATED', 'VOIDED')),
  answer          TEXT CHECK (answer IN ('AUTHORIZED', 'DECLINED', 'NO_ANSWER')),
  amount          INTEGER NOT NULL DEFAULT 0,
  currency        TEXT NOT NULL DEFAULT '',
  reason          TEXT,
  refunded_amount INTEGER NOT NULL DEFAULT 0,
  created_at      TEXT NOT NULL,
  updated_at      TEXT NOT NULL
))sql",
};

struct Row {
  std::string payment_id;
  std::string status;
  std::string answer;  // empty when NULL
  int64_t amount = 0;
  std::string currency;
  std::string reason;
  int64_t refunded_amount = 0;
};

std::optional<Row> load(db::Tx& tx, const std::string& order_id) {
  auto s = tx.stmt(
      "SELECT payment_id, status, answer, amount, currency, reason, refunded_amount "
      "FROM payments WHERE order_id = ? FOR UPDATE");
  s.bind(1, order_id);
  if (!s.step()) return std::nullopt;
  Row r;
  r.payment_id = s.col_null(0) ? std::string() : s.col_text(0);
  r.status = s.col_text(1);
  r.answer = s.col_null(2) ? std::string() : s.col_text(2);
  r.amount = s.col_int(3);
  r.currency = s.col_text(4);
  r.reason = s.col_null(5) ? std::string() : s.col_text(5);
  r.refunded_amount = s.col_int(6);
  finish(s);
  return r;
}

std::string new_payment_id() { return "pay-" + new_uuid(); }

}  // namespace

std::span<const std::string_view> migrations() { return kMigrations; }

Result<AuthorizeCommand> parse_authorize_payment(std::string_view data_json) {
  auto ev = contract::AuthorizePayment::decode(data_json);
  if (!ev) return ev.error();
  // No token is a business outcome (MISSING_TOKEN), not a malformed command.
  return AuthorizeCommand{std::move(ev->order_id), ev->amount, std::move(ev->currency),
                          ev->payment_token.value_or("")};
}

Result<std::string> parse_refund_payment(std::string_view data_json) {
  auto ev = contract::RefundPayment::decode(data_json);
  if (!ev) return ev.error();
  return std::move(ev->order_id);
}

Decision decide(const Rules& rules, const AuthorizeCommand& cmd, std::string* reason) {
  auto decline = [&](std::string_view why) {
    if (reason) *reason = why;
    return Decision::kDeclined;
  };
  if (cmd.payment_token.empty()) return decline("MISSING_TOKEN");
  // A gateway that never answers does so whatever the request holds.
  if (cmd.payment_token == kTokenTimeout) return Decision::kNoAnswer;
  if (cmd.amount > rules.amount_limit) return decline("AMOUNT_LIMIT_EXCEEDED");
  if (cmd.payment_token == kTokenDecline) return decline("CARD_DECLINED");
  if (cmd.payment_token == kTokenInsufficientFunds) return decline("INSUFFICIENT_FUNDS");
  if (reason) reason->clear();
  return Decision::kAuthorized;
}

AuthorizeResult authorize_payment(db::Tx& tx, const Rules& rules, const AuthorizeCommand& cmd,
                                  const Envelope& cause) {
  AuthorizeResult r;
  const std::string now = now_rfc3339();
  auto row = load(tx, cmd.order_id);

  if (row && !row->answer.empty()) {
    // A repeat: answer exactly as the first time, from the record, whatever this copy says.
    r.repeated = true;
    r.payment_id = row->payment_id;
    r.reason = row->reason;
    if (row->answer == kAnswerAuthorized) {
      r.decision = Decision::kAuthorized;
      emit_authorized(tx, cmd.order_id, row->payment_id, row->amount, row->currency, cause);
    } else if (row->answer == kAnswerDeclined) {
      r.decision = Decision::kDeclined;
      emit_declined(tx, cmd.order_id, row->reason, cause);
    } else {
      r.decision = Decision::kNoAnswer;
    }
    return r;
  }

  r.payment_id = new_payment_id();
  if (row) {
    // Refunded before it was authorized (the refund overtook this command): never take money.
    r.decision = Decision::kDeclined;
    r.reason = "VOIDED";
    tx.stmt(
          "UPDATE payments SET payment_id = ?, answer = ?, amount = ?, currency = ?, reason = ?, "
          "updated_at = ? WHERE order_id = ?")
        .bind_all(r.payment_id, kAnswerDeclined, cmd.amount, cmd.currency, r.reason, now,
                  cmd.order_id)
        .exec();
    emit_declined(tx, cmd.order_id, r.reason, cause);
    return r;
  }

  r.decision = decide(rules, cmd, &r.reason);
  std::string_view status;
  std::string_view answer;
  switch (r.decision) {
    case Decision::kAuthorized:
      status = "AUTHORIZED";
      answer = kAnswerAuthorized;
      break;
    case Decision::kDeclined:
      status = "DECLINED";
      answer = kAnswerDeclined;
      break;
    case Decision::kNoAnswer:
      status = "TIMEOUT_SIMULATED";
      answer = kAnswerNone;
      break;
  }
  auto insert = tx.stmt(
      "INSERT INTO payments(order_id, payment_id, status, answer, amount, currency, reason, "
      "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
  insert.bind_all(cmd.order_id, r.payment_id, status, answer, cmd.amount, cmd.currency);
  if (r.reason.empty()) {
    insert.bind_null(7);
  } else {
    insert.bind(7, r.reason);
  }
  insert.bind(8, now).bind(9, now).exec();

  if (r.decision == Decision::kAuthorized) {
    emit_authorized(tx, cmd.order_id, r.payment_id, cmd.amount, cmd.currency, cause);
  } else if (r.decision == Decision::kDeclined) {
    emit_declined(tx, cmd.order_id, r.reason, cause);
  }
  return r;
}

RefundResult refund_payment(db::Tx& tx, const std::string& order_id, const Envelope& cause) {
  RefundResult r;
  const std::string now = now_rfc3339();
  auto row = load(tx, order_id);
  if (!row) {
    // Nothing seen yet: void the order so an AuthorizePayment arriving later takes no money.
    tx.stmt(
          "INSERT INTO payments(order_id, payment_id, status, answer, amount, currency, reason, "
          "created_at, updated_at) VALUES (?, NULL, 'VOIDED', NULL, 0, '', NULL, ?, ?)")
        .bind_all(order_id, now, now)
        .exec();
  } else if (row->status == "AUTHORIZED") {
    tx.stmt(
          "UPDATE payments SET status = 'REFUNDED', refunded_amount = amount, updated_at = ? "
          "WHERE order_id = ?")
        .bind_all(now, order_id)
        .exec();
    r = {true, row->amount};
  } else if (row->status == "REFUNDED") {
    r = {true, row->refunded_amount};
  } else if (row->status == "TIMEOUT_SIMULATED") {
    // The attempt never answered and now never will count: void it.
    tx.stmt("UPDATE payments SET status = 'VOIDED', updated_at = ? WHERE order_id = ?")
        .bind_all(now, order_id)
        .exec();
  }
  emit_refunded(tx, order_id, r, cause);
  return r;
}

std::optional<Payment> find_payment(db::Tx& tx, std::string_view order_id) {
  auto s = tx.stmt(
      "SELECT order_id, payment_id, status, amount, currency, reason, created_at, updated_at "
      "FROM payments WHERE order_id = ?");
  s.bind(1, order_id);
  if (!s.step()) return std::nullopt;
  Payment p;
  p.order_id = s.col_text(0);
  p.payment_id = s.col_null(1) ? std::string() : s.col_text(1);
  p.status = s.col_text(2);
  p.amount = s.col_int(3);
  p.currency = s.col_text(4);
  p.reason = s.col_null(5) ? std::string() : s.col_text(5);
  p.created_at = s.col_text(6);
  p.updated_at = s.col_text(7);
  finish(s);
  return p;
}

}  // namespace ecom::payment
