#include "ecom/core/clock.hpp"

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string_view>

namespace ecom {
namespace {

// Ids are capabilities (an order id is all it takes to read or cancel the order), so their
// random bits come from the kernel's CSPRNG (getrandom), not a predictable PRNG such as
// mt19937_64, whose state a few outputs reveal. Each thread draws 512 bytes at a time: one
// syscall per 64 values keeps the cost off the order path.
uint64_t random_u64() {
  thread_local std::array<uint64_t, 64> pool;
  thread_local size_t next = pool.size();
  if (next == pool.size()) {
    auto* bytes = reinterpret_cast<unsigned char*>(pool.data());
    size_t filled = 0;
    while (filled < sizeof pool) {
      ssize_t n = getrandom(bytes + filled, sizeof pool - filled, 0);
      if (n > 0) {
        filled += static_cast<size_t>(n);
      } else if (n < 0 && errno != EINTR) {
        // Only possible without kernel support (ENOSYS): no safe way to make an id.
        std::fprintf(stderr, "getrandom failed: %s\n", std::strerror(errno));
        std::abort();
      }
    }
    next = 0;
  }
  return pool[next++];
}

constexpr char kHex[] = "0123456789abcdef";

void append_hex(std::string& out, uint64_t v, int nibbles) {
  for (int i = nibbles - 1; i >= 0; --i) out.push_back(kHex[(v >> (i * 4)) & 0xF]);
}

bool digits(std::string_view s, size_t pos, size_t n) {
  if (pos + n > s.size()) return false;
  for (size_t i = pos; i < pos + n; ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

}  // namespace

std::optional<int64_t> parse_rfc3339_ms(std::string_view s) noexcept {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  auto num = [&](size_t pos, size_t n) -> int {
    int v = 0;
    for (size_t i = pos; i < pos + n; ++i) v = v * 10 + (s[i] - '0');
    return v;
  };
  if (s.size() < 20 || !digits(s, 0, 4) || s[4] != '-' || !digits(s, 5, 2) || s[7] != '-' ||
      !digits(s, 8, 2) || (s[10] != 'T' && s[10] != 't') || !digits(s, 11, 2) || s[13] != ':' ||
      !digits(s, 14, 2) || s[16] != ':' || !digits(s, 17, 2))
    return std::nullopt;
  const int y = num(0, 4), mo = num(5, 2), d = num(8, 2), h = num(11, 2), mi = num(14, 2),
            sec = num(17, 2);
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  size_t pos = 19;
  int64_t ms = 0;
  if (pos < s.size() && s[pos] == '.') {
    const size_t start = ++pos;
    int scale = 100;
    for (; pos < s.size() && s[pos] >= '0' && s[pos] <= '9'; ++pos, scale /= 10)
      ms += (s[pos] - '0') * scale;
    if (pos == start) return std::nullopt;
  }
  int64_t offset_min = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    if (pos + 6 != s.size() || !digits(s, pos + 1, 2) || s[pos + 3] != ':' ||
        !digits(s, pos + 4, 2))
      return std::nullopt;
    offset_min = (num(pos + 1, 2) * 60 + num(pos + 4, 2)) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  // Days from civil (Howard Hinnant's algorithm).
  const int64_t yy = y - (mo <= 2 ? 1 : 0);
  const int64_t era = (yy >= 0 ? yy : yy - 399) / 400;
  const int64_t yoe = yy - era * 400;
  const int64_t doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  const int64_t days = era * 146097 + doe - 719468;
  return ((days * 24 + h) * 60 + mi - offset_min) * 60'000 + sec * 1000 + ms;
}

int64_t now_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string format_rfc3339(int64_t epoch_ms) {
  std::time_t secs = static_cast<std::time_t>(epoch_ms / 1000);
  int ms = static_cast<int>(epoch_ms % 1000);
  if (ms < 0) {
    ms += 1000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

bool is_rfc3339(std::string_view s) noexcept { return parse_rfc3339_ms(s).has_value(); }

std::string new_uuid() {
  // Version 7 (RFC 9562): the millisecond time leads, so ids made close together sort together
  // and inserts into the B-trees keyed by them (orders, inbox, sagas, ...) append to a few hot
  // pages instead of dirtying a random page each. The 12 bits after the time count up within one
  // millisecond (RFC 9562 method 3), so this process's ids never repeat or go backwards; the 62
  // random bits keep them unguessable and unique across processes.
  static std::atomic<uint64_t> last{0};  // (unix ms << 12) | counter
  const uint64_t now = static_cast<uint64_t>(now_ms()) << 12;
  uint64_t prev = last.load(std::memory_order_relaxed);
  uint64_t next;
  do {
    next = std::max(now, prev + 1);
  } while (!last.compare_exchange_weak(prev, next, std::memory_order_relaxed));
  const uint64_t ms = next >> 12;
  uint64_t hi = (ms << 16) | 0x7000ull | (next & 0x0FFFull);
  uint64_t lo = random_u64();
  lo = (lo & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;  // RFC 4122 variant
  std::string out;
  out.reserve(36);
  append_hex(out, hi >> 32, 8);
  out.push_back('-');
  append_hex(out, (hi >> 16) & 0xFFFF, 4);
  out.push_back('-');
  append_hex(out, hi & 0xFFFF, 4);
  out.push_back('-');
  append_hex(out, lo >> 48, 4);
  out.push_back('-');
  append_hex(out, lo & 0xFFFFFFFFFFFFull, 12);
  return out;
}

std::string new_traceparent() {
  std::string out = "00-";
  append_hex(out, random_u64(), 16);
  append_hex(out, random_u64(), 16);
  out.push_back('-');
  append_hex(out, random_u64() | 1, 16);
  out += "-01";
  return out;
}

}  // namespace ecom
