#pragma once
/// Minimal structured logging to stderr: one line per record, tagged with the module name.

#include <fmt/format.h>

#include <string_view>

namespace ecom::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

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
