#pragma once
/// The consumer core both transports share: what happens to a record once its handler answered,
/// how a handler is called, and the rule for static member ids. The transports' consumers
/// (embedded_consumer.cpp, kafka_consumer.cpp) only fetch, commit offsets and write dead letters.
///
/// Pure: no clock, no I/O; a decision depends only on its arguments.

#include <chrono>
#include <string>
#include <string_view>
#include <utility>

#include "ecom/bus/event_bus.hpp"
#include "ecom/core/backoff.hpp"
#include "ecom/core/result.hpp"

namespace ecom::bus {

/// How a subscription redelivers.
struct DeliveryPolicy {
  int max_attempts = 5;  ///< handler calls of a retried record before it is dead-lettered (>= 1)
  Backoff backoff{std::chrono::milliseconds(100), std::chrono::milliseconds(10'000)};

  /// max_attempts (at least 1), initial_backoff and max_backoff of `o`.
  static DeliveryPolicy of(const SubscriptionOptions& o) noexcept;
};

/// What a transport does with a record after a handler's outcome.
struct Decision {
  enum class Action {
    kAdvance,     ///< handled: move past it (commit)
    kRetry,       ///< call the handler again after `delay`, holding back only its partition
    kDeadLetter,  ///< copy it to `<topic>.dlq` with `reason`, then move past it
  };
  Action action = Action::kAdvance;
  std::chrono::milliseconds delay{0};  ///< kRetry: how long to wait
  std::string reason;                  ///< kRetry: the handler's; kDeadLetter: for the headers

  static Decision advance() { return {}; }
  static Decision retry_at(std::chrono::milliseconds delay, std::string reason) {
    return {Action::kRetry, delay, std::move(reason)};
  }
  static Decision dead_letter(std::string reason) {
    return {Action::kDeadLetter, std::chrono::milliseconds(0), std::move(reason)};
  }
  bool operator==(const Decision&) const = default;
};

/// The decision on attempt `attempt` (1 on first delivery) of a record whose handler answered
/// `out`: an ack advances; a retry waits policy.backoff.after(attempt) while attempts remain and
/// is dead-lettered as "retries exhausted after N attempts: <reason>" on the last; a dead_letter
/// outcome is dead-lettered with its reason. A record that does not decode is the transport's
/// to describe: it passes Outcome::dead_letter(why).
Decision decide(const Outcome& out, int attempt, const DeliveryPolicy& policy);

/// Calls `handler`; an exception escaping it is a retry ("handler threw: <what>").
Outcome call_handler(const Handler& handler, const Message& m);

/// Kafka's rule for group.instance.id, kept by both buses so one configuration suits both: empty
/// (a dynamic member) or 1..249 characters of [A-Za-z0-9._-]. CONFIG_INVALID otherwise.
Status check_instance_id(std::string_view id);

}  // namespace ecom::bus
