#pragma once
/// Start-up configuration: a JSON file (comments allowed), ECOMD_* environment variables and
/// command-line flags, in rising order of precedence.

#include <rapidjson/document.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/core/result.hpp"

namespace ecom {

/// A configuration value of the wrong type. Thrown only by ConfigSection getters, which are used
/// at start-up, where main turns it into exit code 2 with this message.
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// A read-only view of one object in the configuration. Cheap to copy; valid while the owning
/// Settings lives. Missing keys yield the given defaults; a present key of the wrong type throws
/// ConfigError naming the dotted path (e.g. "saga.step_timeout_ms must be an integer").
class ConfigSection {
 public:
  ConfigSection() = default;
  explicit ConfigSection(const rapidjson::Value* v, std::string path = {})
      : v_(v), path_(std::move(path)) {}

  /// True when the key is present.
  bool has(std::string_view key) const;
  std::string get_string(std::string_view key, std::string_view def) const;
  int64_t get_int(std::string_view key, int64_t def) const;
  double get_double(std::string_view key, double def) const;
  bool get_bool(std::string_view key, bool def) const;
  std::vector<std::string> get_strings(std::string_view key) const;
  /// A nested object (empty when absent).
  ConfigSection section(std::string_view key) const;
  /// The raw JSON value, or nullptr when absent.
  const rapidjson::Value* raw(std::string_view key) const;
  /// Keys present in this object.
  std::vector<std::string> keys() const;
  /// Dotted path of this section, for messages (e.g. "inventory.seed").
  const std::string& path() const { return path_; }
  /// Fails (code CONFIG_INVALID) when a key is not in `allowed` or a present key has the wrong
  /// JSON type; the message lists the valid names.
  Status check_keys(std::initializer_list<std::string_view> allowed) const;

 private:
  const rapidjson::Value* v_ = nullptr;
  std::string path_;
};

/// The resolved process settings.
struct Settings {
  std::string roles = "all";          ///< --role / ECOMD_ROLE / "role"
  std::string config_file;            ///< --config / ECOMD_CONFIG
  std::string data_dir = "./data";    ///< --data-dir / ECOMD_DATA_DIR / "data_dir"
  std::string http = "0.0.0.0:8080";  ///< --http / ECOMD_HTTP / "http"
  std::string bus = "embedded";       ///< --bus / ECOMD_BUS / "bus"
  std::string brokers;                ///< --brokers / ECOMD_BROKERS / "brokers" (Kafka bootstrap)
  std::string log_level = "info";     ///< --log-level / ECOMD_LOG_LEVEL / "log_level"
  /// --instance-id / ECOMD_INSTANCE_ID / "instance_id": a stable id for static group membership
  /// (Kafka's group.instance.id), so a restarted process takes its partitions back at once.
  std::string instance_id;
  bool help = false;
  bool version = false;
  std::vector<std::string> positional;  ///< sub-commands, e.g. `topics create`
  /// The parsed file (an empty object when no file was given).
  std::shared_ptr<rapidjson::Document> document;

  /// The top-level section of the file.
  ConfigSection root() const { return ConfigSection(document.get(), ""); }
  /// The section named after a module or area (empty when absent).
  ConfigSection section(std::string_view name) const { return root().section(name); }
  /// Host part of `http`.
  std::string http_host() const;
  /// Port part of `http`.
  uint16_t http_port() const;
};

/// Looks up an environment variable; injectable for tests.
using EnvLookup = std::function<std::optional<std::string>(const char*)>;
/// The process environment.
std::optional<std::string> process_env(const char* name);

/// Parses flags, environment and file. `module_names` are the valid top-level sections besides
/// the fixed keys. Errors have code CONFIG_INVALID or USAGE and list the valid names.
Result<Settings> load_settings(int argc, const char* const* argv, const EnvLookup& env,
                               const std::vector<std::string>& module_names);

/// Usage text for --help.
std::string usage_text(const std::vector<std::string>& module_names);

/// Parses a JSON text allowing comments and trailing commas; error names line/offset.
Result<std::shared_ptr<rapidjson::Document>> parse_json_config(std::string_view text);

}  // namespace ecom
