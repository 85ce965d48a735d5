#include "delivery.hpp"

#include <algorithm>
#include <exception>

#include "ecom/core/log.hpp"

namespace ecom::bus {

DeliveryPolicy DeliveryPolicy::of(const SubscriptionOptions& o) noexcept {
  return DeliveryPolicy{std::max(1, o.max_attempts), Backoff{o.initial_backoff, o.max_backoff}};
}

Decision decide(const Outcome& out, int attempt, const DeliveryPolicy& policy) {
  switch (out.disposition) {
    case Disposition::kAck:
      return Decision::advance();
    case Disposition::kRetry:
      if (attempt >= std::max(1, policy.max_attempts)) {
        return Decision::dead_letter("retries exhausted after " + std::to_string(attempt) +
                                     " attempts: " + out.reason);
      }
      return Decision::retry_at(policy.backoff.after(attempt), out.reason);
    case Disposition::kDeadLetter:
      return Decision::dead_letter(out.reason);
  }
  return Decision::dead_letter(out.reason);  // not reached: every disposition is handled above
}

Outcome call_handler(const Handler& handler, const Message& m) {
  // What the handler logs names the record it works on (JSON log lines).
  const TraceIds trace = trace_ids(m.envelope.traceparent);
  const log::Context context{m.envelope.subject, m.envelope.correlation_id,
                             trace.trace_id,     trace.span_id,
                             m.envelope.type,    m.topic,
                             m.partition,        m.offset};
  const log::Scope scope(context);
  try {
    return handler(m);
  } catch (const std::exception& e) {
    return Outcome::retry(std::string("handler threw: ") + e.what());
  } catch (...) {
    return Outcome::retry("handler threw");
  }
}

Status check_instance_id(std::string_view id) {
  const bool valid = id.size() <= 249 && std::all_of(id.begin(), id.end(), [](char c) {
                       return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
                     });
  if (valid) return {};
  return Error{
      ErrorCode::kConfigInvalid,
      "instance_id \"" + std::string(id) + "\" must be 1..249 characters of [a-zA-Z0-9._-]",
      "instance_id"};
}

}  // namespace ecom::bus
