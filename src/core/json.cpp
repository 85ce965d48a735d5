#include "ecom/core/json.hpp"

namespace ecom::json {
namespace {

Error field_error(std::string_view code, std::string_view name, std::string_view what) {
  return Error{std::string(code), std::string(name) + std::string(what), std::string(name), false};
}

}  // namespace

Result<rapidjson::Document> parse_object(std::string_view text, Error if_not_object) {
  rapidjson::Document d;
  d.Parse(text.data(), text.size());
  if (d.HasParseError() || !d.IsObject()) return if_not_object;
  return d;
}

const rapidjson::Value* find(const rapidjson::Value& obj, std::string_view name) {
  const rapidjson::Value k(
      rapidjson::StringRef(name.data(), static_cast<rapidjson::SizeType>(name.size())));
  auto it = obj.FindMember(k);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

Result<std::string> require_string(const rapidjson::Value& obj, std::string_view name,
                                   std::string_view code) {
  const auto* v = find(obj, name);
  if (v == nullptr) return field_error(code, name, " is missing");
  if (!v->IsString() || v->GetStringLength() == 0) {
    return field_error(code, name, " must be a non-empty string");
  }
  return string_of(*v);
}

Result<std::optional<std::string>> optional_string(const rapidjson::Value& obj,
                                                   std::string_view name, std::string_view code,
                                                   Null null) {
  const auto* v = find(obj, name);
  if (v == nullptr || (null == Null::kAbsent && v->IsNull())) return std::optional<std::string>();
  if (!v->IsString()) return field_error(code, name, " must be a string");
  return std::optional<std::string>(string_of(*v));
}

}  // namespace ecom::json
