#include "ecom/core/json.hpp"

namespace ecom::json {

const rapidjson::Value* find(const rapidjson::Value& obj, std::string_view name) {
  const rapidjson::Value k(
      rapidjson::StringRef(name.data(), static_cast<rapidjson::SizeType>(name.size())));
  auto it = obj.FindMember(k);
  return it == obj.MemberEnd() ? nullptr : &it->value;
}

}  // namespace ecom::json
