#pragma once
/// Small RapidJSON helpers shared by the modules: find a member and write members with one call.
/// Reading event payloads is the contract's job (include/ecom/contract/events.hpp).
///
/// Thread safety: the functions keep no state.

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "ecom/core/result.hpp"

namespace ecom::json {

/// The writer every module uses: compact UTF-8 into a StringBuffer.
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

/// The member `name` of the object `obj`, or nullptr when absent.
const rapidjson::Value* find(const rapidjson::Value& obj, std::string_view name);

/// The string held by `v` (which must be a string), embedded NULs included.
inline std::string string_of(const rapidjson::Value& v) {
  return {v.GetString(), v.GetStringLength()};
}

/// Writes an object key.
inline void key(Writer& w, std::string_view k) {
  w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
}
/// Writes a string value.
inline void str(Writer& w, std::string_view v) {
  w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}
/// Writes `"k": "v"`.
inline void write_string(Writer& w, std::string_view k, std::string_view v) {
  key(w, k);
  str(w, v);
}
/// Writes `"k": n`.
inline void write_int64(Writer& w, std::string_view k, int64_t n) {
  key(w, k);
  w.Int64(n);
}
/// Writes `"k": true|false`.
inline void write_bool(Writer& w, std::string_view k, bool b) {
  key(w, k);
  w.Bool(b);
}

/// The text held by `sb`.
inline std::string to_string(const rapidjson::StringBuffer& sb) {
  return {sb.GetString(), sb.GetSize()};
}

/// A JSON object as text: `body(w)` writes its members between the braces.
template <typename F>
std::string object(F&& body) {
  rapidjson::StringBuffer sb;
  Writer w(sb);
  w.StartObject();
  body(w);
  w.EndObject();
  return to_string(sb);
}

}  // namespace ecom::json
