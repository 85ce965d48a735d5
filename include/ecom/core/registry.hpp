#pragma once
/// The explicit list of modules built into the binary, and the parsing of `--role`.

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/core/module.hpp"
#include "ecom/core/result.hpp"

namespace ecom {

/// Creates a module instance.
using ModuleFactory = std::function<std::unique_ptr<Module>()>;

/// Modules known to the binary, in registration order. Not thread-safe; filled in main().
class ModuleRegistry final {
 public:
  /// Registers a module. An empty factory marks it "not implemented": it is a valid role name
  /// but refuses to start.
  void add(std::string_view name, ModuleFactory factory);
  /// All registered names, in registration order.
  std::vector<std::string> names() const;
  /// True when `name` has a factory.
  bool implemented(std::string_view name) const;
  /// Resolves "all", one name or a comma list into module names (registration order, no
  /// duplicates). Unknown names fail with code UNKNOWN_ROLE and list the valid names.
  Result<std::vector<std::string>> resolve(std::string_view spec) const;
  /// Creates the named module; fails with NOT_IMPLEMENTED for a registered name without factory.
  Result<std::unique_ptr<Module>> create(std::string_view name) const;

 private:
  struct Entry {
    std::string name;
    ModuleFactory factory;
  };
  std::vector<Entry> entries_;
};

}  // namespace ecom
