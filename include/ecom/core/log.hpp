#pragma once
/// Logging to stderr, one line per record tagged with the module name: text for people
/// (`2026-12-08T00:00:00.000Z INFO  [order] ...`, the default) or JSON for collectors
/// (`--log-format=json`: `{"ts","level","role","tag","msg"}` plus the record's context, below).

#include <fmt/format.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace ecom::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class Format { kText = 0, kJson = 1 };

/// Sets the line format. Call at start-up, before threads log.
void set_format(Format format) noexcept;
/// Parses "text|json"; returns false when unknown.
bool parse_format(std::string_view s, Format& out) noexcept;
/// The process's roles ("order", "all", "inventory,payment"): the `role` field of JSON lines.
/// Call at start-up, before threads log.
void set_role(std::string_view role);

/// What a thread is working on, added to each JSON line it writes while a Scope lives (the
/// bus's consumer core sets it around each record it hands to a handler). Empty fields and a
/// negative partition or offset are left out.
struct Context {
  std::string_view order_id;
  std::string_view correlation_id;
  std::string_view trace_id;
  std::string_view span_id;
  std::string_view event_type;
  std::string_view topic;
  int partition = -1;
  int64_t offset = -1;
};
/// Sets this thread's context for its lifetime (the views must outlive it), restoring the one
/// before. Not copyable.
class Scope final {
 public:
  explicit Scope(const Context& c) noexcept;
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  const Context* previous_;
};

/// Sets the minimum level that is written. Thread-safe.
void set_level(Level level) noexcept;
/// Parses "debug|info|warn|error"; returns false when unknown.
bool parse_level(std::string_view s, Level& out) noexcept;
/// Writes one record. Thread-safe: each record is one write(2).
void write(Level level, std::string_view tag, std::string_view message) noexcept;
/// True when records of `level` are written.
bool enabled(Level level) noexcept;

template <typename... Args>
void info(std::string_view tag, fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kInfo)) write(Level::kInfo, tag, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void warn(std::string_view tag, fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kWarn)) write(Level::kWarn, tag, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void error(std::string_view tag, fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kError))
    write(Level::kError, tag, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void debug(std::string_view tag, fmt::format_string<Args...> f, Args&&... args) {
  if (enabled(Level::kDebug))
    write(Level::kDebug, tag, fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace ecom::log
