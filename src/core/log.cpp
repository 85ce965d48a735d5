#include "ecom/core/log.hpp"

#include <unistd.h>

#include <atomic>
#include <string>

#include "ecom/core/clock.hpp"
#include "ecom/core/utf8.hpp"

namespace ecom::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::atomic<int> g_format{static_cast<int>(Format::kText)};
std::string g_role;  // written at start-up only
constexpr std::string_view kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
constexpr std::string_view kJsonNames[] = {"debug", "info", "warn", "error"};
thread_local const Context* t_context = nullptr;

// `s` as the inside of a JSON string: quotes, backslashes and control characters escaped, and
// bytes that are not UTF-8 (a driver's message, a peer's bytes) replaced by U+FFFD, so every
// line parses.
void append_json(std::string& out, std::string_view s) {
  while (!s.empty()) {
    const auto bad = invalid_utf8_at(s);
    const std::string_view good = s.substr(0, bad.value_or(s.size()));
    for (char c : good) {
      switch (c) {
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            out += fmt::format("\\u{:04x}", static_cast<unsigned char>(c));
          } else {
            out += c;
          }
      }
    }
    if (!bad) break;
    out += "\xEF\xBF\xBD";
    s.remove_prefix(*bad + 1);
  }
}

void field(std::string& out, std::string_view name, std::string_view value) {
  if (value.empty()) return;
  out += ",\"";
  out += name;
  out += "\":\"";
  append_json(out, value);
  out += '"';
}

std::string json_line(Level level, std::string_view tag, std::string_view message) {
  std::string line;
  line.reserve(96 + message.size());
  line += "{\"ts\":\"";
  line += now_rfc3339();
  line += "\",\"level\":\"";
  line += kJsonNames[static_cast<int>(level)];
  line += '"';
  field(line, "role", g_role);
  field(line, "tag", tag);
  field(line, "msg", message);
  if (const Context* c = t_context) {
    field(line, "orderId", c->order_id);
    field(line, "correlationId", c->correlation_id);
    field(line, "traceId", c->trace_id);
    field(line, "spanId", c->span_id);
    field(line, "eventType", c->event_type);
    field(line, "topic", c->topic);
    if (c->partition >= 0) line += fmt::format(",\"partition\":{}", c->partition);
    if (c->offset >= 0) line += fmt::format(",\"offset\":{}", c->offset);
  }
  line += "}\n";
  return line;
}

}  // namespace

void set_level(Level level) noexcept { g_level.store(static_cast<int>(level)); }
void set_format(Format format) noexcept { g_format.store(static_cast<int>(format)); }
void set_role(std::string_view role) { g_role.assign(role); }

bool parse_format(std::string_view s, Format& out) noexcept {
  if (s == "text")
    out = Format::kText;
  else if (s == "json")
    out = Format::kJson;
  else
    return false;
  return true;
}

Scope::Scope(const Context& c) noexcept : previous_(t_context) { t_context = &c; }
Scope::~Scope() { t_context = previous_; }

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
    std::string line = g_format.load(std::memory_order_relaxed) == static_cast<int>(Format::kJson)
                           ? json_line(level, tag, message)
                           : fmt::format("{} {:<5} [{}] {}\n", now_rfc3339(),
                                         kNames[static_cast<int>(level)], tag, message);
    // One write(2) per record keeps lines whole when threads log concurrently.
    ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
    (void)ignored;
  } catch (...) {
  }
}

}  // namespace ecom::log
