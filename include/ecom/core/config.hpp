#pragma once
/// Start-up configuration: a JSON file (comments allowed), ECOMD_* environment variables and
/// command-line flags, in rising order of precedence.

#include <rapidjson/document.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "ecom/core/result.hpp"

namespace ecom {

/// A read-only view of one object in the configuration. Cheap to copy; valid while the owning
/// Settings lives. It only finds values: what a section may hold, of which type and range, is
/// declared and checked by a ConfigSpec, the one way any module or area reads its config.
class ConfigSection {
 public:
  ConfigSection() = default;
  explicit ConfigSection(const rapidjson::Value* v, std::string path = {})
      : v_(v), path_(std::move(path)) {}

  /// True when the key is present.
  bool has(std::string_view key) const { return raw(key) != nullptr; }
  /// A nested section; empty when absent or not an object (ConfigSpec::object checks the type).
  ConfigSection section(std::string_view key) const;
  /// The raw JSON value, or nullptr when absent.
  const rapidjson::Value* raw(std::string_view key) const;
  /// Keys present in this object.
  std::vector<std::string> keys() const;
  /// Dotted path of this section, for messages (e.g. "inventory.seed").
  const std::string& path() const { return path_; }
  /// Dotted path of one of its keys ("saga" + "step_timeout_ms" -> "saga.step_timeout_ms").
  std::string path_of(std::string_view key) const;

 private:
  const rapidjson::Value* v_ = nullptr;
  std::string path_;
};

/// A CONFIG_INVALID error naming `field` (a dotted path).
Error config_invalid(std::string message, std::string field = {});

/// The keys one config section may hold, each with its type, range and the variable it fills.
/// read() fails with CONFIG_INVALID naming the dotted key on an unknown key (listing the valid
/// ones), a value of the wrong type or out of range; an absent key leaves its variable at the
/// default it holds. Checks that span keys (one bound by another) follow read() in the caller.
/// A spec refers to its variables: build it, read it, drop it.
class ConfigSpec {
 public:
  /// Reads a present value; `path` is its dotted key, for messages.
  using Reader = std::function<Status(const rapidjson::Value& value, const std::string& path)>;

  /// An integer in [lo, hi].
  template <typename T>
  requires(std::is_integral_v<T> &&
           !std::is_same_v<T, bool>) ConfigSpec& integer(std::string_view key, T& out, int64_t lo,
                                                         int64_t hi) {
    return add_integer(key, lo, hi, [&out](int64_t v) { out = static_cast<T>(v); });
  }
  /// An integer in [lo, hi] whose absence matters (its default depends on another key).
  ConfigSpec& integer(std::string_view key, std::optional<int64_t>& out, int64_t lo, int64_t hi);
  /// A duration in whole milliseconds in [lo, hi].
  ConfigSpec& millis(std::string_view key, std::chrono::milliseconds& out, int64_t lo, int64_t hi);
  ConfigSpec& boolean(std::string_view key, bool& out);
  ConfigSpec& string(std::string_view key, std::string& out);
  /// A string that must be one of `allowed`.
  ConfigSpec& choice(std::string_view key, std::string& out, std::vector<std::string> allowed);
  /// A nested object with its own spec.
  ConfigSpec& object(std::string_view key, ConfigSpec nested);
  /// A value of any shape read by `read` (arrays of records, maps with free keys).
  ConfigSpec& custom(std::string_view key, Reader read);

  /// Checks `section` against the spec and fills the variables.
  Status read(const ConfigSection& section) const;

 private:
  ConfigSpec& add_integer(std::string_view key, int64_t lo, int64_t hi,
                          std::function<void(int64_t)> set);
  struct Entry {
    std::string key;
    Reader read;
  };
  std::vector<Entry> entries_;
};

/// The resolved process settings.
struct Settings {
  std::string roles = "all";          ///< --role / ECOMD_ROLE / "role"
  std::string config_file;            ///< --config / ECOMD_CONFIG
  std::string data_dir = "./data";    ///< --data-dir / ECOMD_DATA_DIR / "data_dir"
  std::string http = "0.0.0.0:8080";  ///< --http / ECOMD_HTTP / "http"
  std::string bus = "embedded";       ///< --bus / ECOMD_BUS / "bus"
  std::string brokers;                ///< --brokers / ECOMD_BROKERS / "brokers" (Kafka bootstrap)
  std::string log_format = "text";    ///< --log-format / ECOMD_LOG_FORMAT / "log_format"
  std::string log_level = "info";     ///< --log-level / ECOMD_LOG_LEVEL / "log_level"
  /// --store / ECOMD_STORE / "store": where each role keeps its state: "sqlite" (a file per
  /// role in data_dir, the default) or "postgres" (a schema per role on store_url's server,
  /// shared by the role's replicas).
  std::string store = "sqlite";
  /// --store-url / ECOMD_STORE_URL / "store_url": postgresql://USER@HOST:PORT/DB[?...]. The
  /// password comes from ECOMD_STORE_PASSWORD (or libpq's PGPASSWORD / PGPASSFILE), not here.
  std::string store_url;
  /// --store-schema-prefix / ECOMD_STORE_SCHEMA_PREFIX / "store_schema_prefix": a role's schema
  /// is this followed by the role's name (ecomd_order, ...).
  std::string store_schema_prefix = "ecomd_";
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
