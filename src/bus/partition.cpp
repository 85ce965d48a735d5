#include <cstdint>
#include <string_view>

#include "ecom/bus/event_bus.hpp"

namespace ecom::bus {

int partition_for(std::string_view key, int partitions) noexcept {
  if (partitions <= 1) return 0;
  // 32-bit FNV-1a: simple, stable across processes, builds and platforms.
  uint32_t h = 2166136261u;
  for (unsigned char c : key) {
    h ^= c;
    h *= 16777619u;
  }
  return static_cast<int>(h % static_cast<uint32_t>(partitions));
}

}  // namespace ecom::bus
