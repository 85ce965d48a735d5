#pragma once
/// Reading JSON answers in tests: a document from text, a string field or "" (never a throw, so
/// a wrong answer fails the check that reads it, with the body in the message).

#include <rapidjson/document.h>

#include <string>

namespace ecom::test {

inline rapidjson::Document parse(const std::string& s) {
  rapidjson::Document d;
  d.Parse(s.c_str());
  return d;
}

/// `v[name]` when `v` is an object and that member a string; else "".
inline std::string str(const rapidjson::Value& v, const char* name) {
  if (!v.IsObject() || !v.HasMember(name) || !v[name].IsString()) return {};
  return v[name].GetString();
}

}  // namespace ecom::test
