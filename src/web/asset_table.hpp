#pragma once
// The table written by cmake/EmbedAssets.cmake into the build tree; searched by assets.cpp.

#include <cstddef>

#include "ecom/web/assets.hpp"

namespace ecom::web::detail {

extern const Asset kAssets[];
extern const std::size_t kAssetCount;

}  // namespace ecom::web::detail
