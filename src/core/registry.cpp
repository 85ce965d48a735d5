#include "ecom/core/registry.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace ecom {

void ModuleRegistry::add(std::string_view name, ModuleFactory factory) {
  entries_.push_back(Entry{std::string(name), std::move(factory)});
}

std::vector<std::string> ModuleRegistry::names() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e.name);
  return out;
}

bool ModuleRegistry::implemented(std::string_view name) const {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Entry& e) { return e.name == name; });
  return it != entries_.end() && static_cast<bool>(it->factory);
}

Result<std::vector<std::string>> ModuleRegistry::resolve(std::string_view spec) const {
  auto valid = [this] {
    std::string out;
    for (const auto& e : entries_) out += e.name + ", ";
    return out + "all";
  };
  std::vector<std::string> wanted;
  size_t start = 0;
  while (start <= spec.size()) {
    size_t comma = spec.find(',', start);
    std::string_view part =
        spec.substr(start, comma == std::string_view::npos ? spec.npos : comma - start);
    while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
    while (!part.empty() && part.back() == ' ') part.remove_suffix(1);
    if (part.empty())
      return Error{ErrorCode::kUnknownRole,
                   fmt::format("empty role in \"{}\"; valid roles: {}", spec, valid()), "role"};
    if (part == "all") {
      for (const auto& e : entries_) wanted.push_back(e.name);
    } else if (std::any_of(entries_.begin(), entries_.end(),
                           [&](const Entry& e) { return e.name == part; })) {
      wanted.emplace_back(part);
    } else {
      return Error{ErrorCode::kUnknownRole,
                   fmt::format("unknown role \"{}\"; valid roles: {}", part, valid()), "role"};
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  // Registration order, no duplicates: start-up order must not depend on how the list was typed.
  std::vector<std::string> out;
  for (const auto& e : entries_)
    if (std::find(wanted.begin(), wanted.end(), e.name) != wanted.end()) out.push_back(e.name);
  return out;
}

Result<std::unique_ptr<Module>> ModuleRegistry::create(std::string_view name) const {
  for (const auto& e : entries_) {
    if (e.name != name) continue;
    if (!e.factory)
      return Error{ErrorCode::kNotImplemented,
                   fmt::format("module \"{}\" is not implemented in this build of ecomd", name),
                   "role"};
    return e.factory();
  }
  return Error{ErrorCode::kUnknownRole, fmt::format("unknown module \"{}\"", name), "role"};
}

}  // namespace ecom
