#pragma once
/// The web UI and docs/openapi.yaml, embedded in the binary at build time
/// (cmake/EmbedAssets.cmake), so a single ecomd executable serves its UI with nothing on disk and
/// no internet access.

#include <string_view>

namespace ecom::web {

/// One embedded file. All views point into static storage: valid for the whole program.
struct Asset {
  std::string_view path;          ///< URL path, e.g. "/assets/app.js", "/api/openapi.yaml"
  std::string_view content_type;  ///< e.g. "text/javascript; charset=utf-8"
  std::string_view data;          ///< the file's bytes
};

/// The asset for a URL path ("/" means "/index.html"), or nullptr. Thread-safe (read-only data).
const Asset* find_asset(std::string_view path) noexcept;

}  // namespace ecom::web
