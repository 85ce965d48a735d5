#pragma once
/// Result types: run-time failures are returned, not thrown, and say whether a retry can help.

#include <string>
#include <utility>
#include <variant>

namespace ecom {

/// A failure with a stable machine-readable code, a human message and, for input errors, the field.
struct Error {
  std::string code;        ///< e.g. "VALIDATION_FAILED", "NOT_FOUND", "DB_BUSY"
  std::string message;     ///< human-readable, safe to show to API clients
  std::string field;       ///< the offending input field, empty when not about input
  bool retryable = false;  ///< true when the same call may succeed later (busy, unavailable)
};

/// Holds either a value or an Error.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  /// True when a value is held.
  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  /// The value; only valid when ok().
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  /// The error; only valid when !ok().
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

/// Success or an Error, for operations without a value.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

  bool ok() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  const Error& error() const { return error_; }

 private:
  Error error_;
  bool ok_ = true;
};

using Status = Result<void>;

}  // namespace ecom
