#include "ecom/web/assets.hpp"

#include "asset_table.hpp"

namespace ecom::web {

const Asset* find_asset(std::string_view path) noexcept {
  if (path == "/" || path.empty()) path = "/index.html";
  // A few dozen entries: a linear scan is as fast as anything else and needs no sorted table.
  for (std::size_t i = 0; i < detail::kAssetCount; ++i) {
    if (detail::kAssets[i].path == path) return &detail::kAssets[i];
  }
  return nullptr;
}

}  // namespace ecom::web
