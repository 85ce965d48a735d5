# Embeds files in the binary as C arrays (the web UI in web/ and docs/openapi.yaml), so that the
# single ecomd executable serves its UI without anything on disk and without internet access.
#
# Two uses of this one file:
#  - include()d at configure time: defines ecom_embed_assets(), which adds a build-time rule that
#    regenerates the .cpp whenever an embedded file (or this script) changes. The file list is
#    globbed with CONFIGURE_DEPENDS, so adding or removing a file re-runs the configure step.
#  - run as a script (cmake -P) by that rule: reads every file with file(READ ... HEX) and writes
#    the .cpp with one array per file and the table that ecom::web::find_asset() searches.

# Content type by file extension (lower case); unknown extensions are served as bytes.
function(_ecom_content_type path out)
  string(TOLOWER "${path}" lower)
  get_filename_component(ext "${lower}" LAST_EXT)
  # A trailing "*" means a text type served as UTF-8 (";" cannot appear in a CMake list item).
  set(types
    ".html=text/html*" ".htm=text/html*" ".js=text/javascript*" ".mjs=text/javascript*"
    ".css=text/css*" ".json=application/json" ".webmanifest=application/manifest+json"
    ".map=application/json" ".svg=image/svg+xml" ".png=image/png" ".jpg=image/jpeg"
    ".jpeg=image/jpeg" ".gif=image/gif" ".webp=image/webp" ".ico=image/x-icon"
    ".woff2=font/woff2" ".woff=font/woff" ".txt=text/plain*" ".md=text/markdown*"
    ".yaml=application/yaml*" ".yml=application/yaml*")
  set(result "application/octet-stream")
  foreach(entry IN LISTS types)
    string(FIND "${entry}" "=" eq)
    string(SUBSTRING "${entry}" 0 ${eq} key)
    if(key STREQUAL ext)
      math(EXPR start "${eq} + 1")
      string(SUBSTRING "${entry}" ${start} -1 result)
      string(REGEX REPLACE "\\*$" "; charset=utf-8" result "${result}")
      break()
    endif()
  endforeach()
  set(${out} "${result}" PARENT_SCOPE)
endfunction()

# Lists the files under `dir` that are embedded: everything except hidden files and folders.
function(_ecom_web_files dir out)
  file(GLOB_RECURSE all LIST_DIRECTORIES false RELATIVE "${dir}" ${ARGN} "${dir}/*")
  set(files "")
  foreach(f IN LISTS all)
    if(NOT f MATCHES "(^|/)\\.")
      list(APPEND files "${f}")
    endif()
  endforeach()
  list(SORT files)
  set(${out} "${files}" PARENT_SCOPE)
endfunction()

# ecom_embed_assets(<out_var> OUTPUT <file.cpp> WEB_DIR <dir> [EXTRA <url>=<file> ...])
# Sets <out_var> to the generated source. Files under WEB_DIR are served at "/<relative path>";
# each EXTRA maps one more file to a URL path (e.g. /api/openapi.yaml=docs/openapi.yaml).
function(ecom_embed_assets out_var)
  cmake_parse_arguments(ARG "" "OUTPUT;WEB_DIR" "EXTRA" ${ARGN})
  _ecom_web_files("${ARG_WEB_DIR}" rel CONFIGURE_DEPENDS)
  set(depends "")
  foreach(f IN LISTS rel)
    list(APPEND depends "${ARG_WEB_DIR}/${f}")
  endforeach()
  set(extra_args "")
  set(i 0)
  foreach(entry IN LISTS ARG_EXTRA)
    string(FIND "${entry}" "=" eq)
    math(EXPR start "${eq} + 1")
    string(SUBSTRING "${entry}" ${start} -1 file)
    list(APPEND depends "${file}")
    list(APPEND extra_args "-DEXTRA_${i}=${entry}")
    math(EXPR i "${i} + 1")
  endforeach()
  add_custom_command(
    OUTPUT "${ARG_OUTPUT}"
    COMMAND "${CMAKE_COMMAND}" "-DWEB_DIR=${ARG_WEB_DIR}" "-DOUTPUT=${ARG_OUTPUT}"
            "-DEXTRA_COUNT=${i}" ${extra_args} -P "${CMAKE_CURRENT_FUNCTION_LIST_FILE}"
    DEPENDS ${depends} "${CMAKE_CURRENT_FUNCTION_LIST_FILE}"
    COMMENT "Embedding web assets into ${ARG_OUTPUT}"
    VERBATIM)
  set(${out_var} "${ARG_OUTPUT}" PARENT_SCOPE)
endfunction()

# Appends one file as a string literal of \xNN escapes (every byte escaped, so a hex digit after an
# escape can never be read as part of it), 32 bytes per line.
function(_ecom_append_array body_var index url file)
  file(READ "${file}" hex HEX)
  string(LENGTH "${hex}" hex_len)
  math(EXPR size "${hex_len} / 2")
  string(REPEAT "[0-9a-f]" 64 line)
  string(REGEX REPLACE "(${line})" "\\1\n" hex "${hex}")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "\\\\x\\1" hex "${hex}")
  string(REGEX REPLACE "\n$" "" hex "${hex}")
  string(REPLACE "\n" "\"\n    \"" hex "${hex}")
  set(body "${${body_var}}")
  string(APPEND body "// ${url} (${size} bytes)\nconstexpr char kData${index}[] =\n    \"${hex}\";\n\n")
  set(${body_var} "${body}" PARENT_SCOPE)
endfunction()

if(CMAKE_SCRIPT_MODE_FILE AND DEFINED OUTPUT)
  set(urls "")
  set(paths "")
  _ecom_web_files("${WEB_DIR}" rel)
  foreach(f IN LISTS rel)
    list(APPEND urls "/${f}")
    list(APPEND paths "${WEB_DIR}/${f}")
  endforeach()
  if(DEFINED EXTRA_COUNT AND EXTRA_COUNT GREATER 0)
    math(EXPR last "${EXTRA_COUNT} - 1")
    foreach(i RANGE ${last})
      string(FIND "${EXTRA_${i}}" "=" eq)
      string(SUBSTRING "${EXTRA_${i}}" 0 ${eq} url)
      math(EXPR start "${eq} + 1")
      string(SUBSTRING "${EXTRA_${i}}" ${start} -1 file)
      list(APPEND urls "${url}")
      list(APPEND paths "${file}")
    endforeach()
  endif()

  set(arrays "")
  set(table "")
  list(LENGTH urls count)
  if(count EQUAL 0)
    message(FATAL_ERROR "EmbedAssets: no files under ${WEB_DIR}")
  endif()
  math(EXPR last "${count} - 1")
  foreach(i RANGE ${last})
    list(GET urls ${i} url)
    list(GET paths ${i} file)
    if(NOT EXISTS "${file}")
      message(FATAL_ERROR "EmbedAssets: ${file} does not exist")
    endif()
    _ecom_append_array(arrays ${i} "${url}" "${file}")
    _ecom_content_type("${url}" type)
    string(APPEND table "    {\"${url}\", \"${type}\", {kData${i}, sizeof(kData${i}) - 1}},\n")
  endforeach()

  set(content "// Generated by cmake/EmbedAssets.cmake from web/ and docs/openapi.yaml. Do not edit.
#include \"asset_table.hpp\"

namespace ecom::web::detail {
namespace {

${arrays}}  // namespace

constexpr Asset kAssets[] = {
${table}};
constexpr std::size_t kAssetCount = sizeof(kAssets) / sizeof(kAssets[0]);

}  // namespace ecom::web::detail
")
  # Write only when the content changed, so an unchanged asset set does not recompile.
  set(tmp "${OUTPUT}.tmp")
  file(WRITE "${tmp}" "${content}")
  file(COPY_FILE "${tmp}" "${OUTPUT}" ONLY_IF_DIFFERENT)
  file(REMOVE "${tmp}")
endif()
