#include <fmt/format.h>

#include "store.hpp"

// The live feed's wire formats: one SSE event and one WebSocket message per feed row.
namespace ecom::notification {

std::string sse_event(int64_t id, std::string_view event, std::string_view data_json) {
  return fmt::format("id: {}\nevent: {}\ndata: {}\n\n", id, event, data_json);
}

std::string ws_event(int64_t id, std::string_view event, std::string_view data_json) {
  return fmt::format(R"({{"id":{},"event":"{}","data":{}}})", id, event, data_json);
}

}  // namespace ecom::notification
