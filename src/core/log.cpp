#include "ecom/core/log.hpp"

#include <unistd.h>

#include <atomic>
#include <string>

#include "ecom/core/clock.hpp"

namespace ecom::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
constexpr std::string_view kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
}  // namespace

void set_level(Level level) noexcept { g_level.store(static_cast<int>(level)); }

bool parse_level(std::string_view s, Level& out) noexcept {
  for (int i = 0; i < 4; ++i) {
    std::string upper(s);
    for (auto& c : upper) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
    if (upper == kNames[i]) {
      out = static_cast<Level>(i);
      return true;
    }
  }
  return false;
}

bool enabled(Level level) noexcept { return static_cast<int>(level) >= g_level.load(); }

void write(Level level, std::string_view tag, std::string_view message) noexcept {
  try {
    std::string line = fmt::format("{} {:<5} [{}] {}\n", now_rfc3339(),
                                   kNames[static_cast<int>(level)], tag, message);
    // One write(2) per record keeps lines whole when threads log concurrently.
    ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
    (void)ignored;
  } catch (...) {
  }
}

}  // namespace ecom::log
