#pragma once
/// What every command handler does around its own logic: never let an exception escape (retry),
/// dead-letter a payload that can never be processed, and map a failed store transaction. Each
/// writes one log line tagged with the module name.
///
/// Thread safety: stateless; safe from any bus thread.

#include <exception>
#include <string>
#include <string_view>
#include <utility>

#include "ecom/bus/event_bus.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/result.hpp"

namespace ecom::bus {

/// Returns fn(); an exception escaping it becomes a retry, logged as an unexpected failure.
template <typename F>
Outcome guarded(std::string_view tag, const Message& m, F&& fn) {
  try {
    return std::forward<F>(fn)();
  } catch (const std::exception& e) {
    log::error(tag, "{} {}: unexpected failure: {}", m.envelope.type, m.envelope.id, e.what());
    return Outcome::retry(e.what());
  }
}

/// Dead-letters `m` because of `e` (bad data: it can never succeed), with a warning.
inline Outcome reject(std::string_view tag, const Message& m, const Error& e) {
  std::string why = m.envelope.type + " " + m.envelope.id + ": " + e.message;
  log::warn(tag, "dead-lettering {}", why);
  return Outcome::dead_letter(std::move(why));
}

/// The outcome of a failed store transaction: retry when `e` is retryable, otherwise dead-letter
/// with an error log line.
inline Outcome store_failure(std::string_view tag, const Message& m, const Error& e) {
  std::string why = std::string(name(e.code)) + ": " + e.message;
  if (e.retryable) return Outcome::retry(std::move(why));
  log::error(tag, "{} {}: store error {}", m.envelope.type, m.envelope.id, why);
  return Outcome::dead_letter(std::move(why));
}

}  // namespace ecom::bus
