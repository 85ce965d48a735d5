#include "ecom/core/config.hpp"

#include <fmt/format.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "ecom/core/log.hpp"

namespace ecom {
namespace {

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

std::string dotted(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

Error config_error(std::string message, std::string field = {}) {
  return Error{ErrorCode::kConfigInvalid, std::move(message), std::move(field), false};
}

Error usage_error(std::string message) {
  return Error{ErrorCode::kUsage, std::move(message), {}, false};
}

// The fixed options: flag name, environment variable, config-file key, and where they land.
struct OptionSpec {
  std::string_view flag;
  const char* env;
  std::string_view file_key;
  std::string Settings::*field;
};

const OptionSpec kOptions[] = {
    {"role", "ECOMD_ROLE", "role", &Settings::roles},
    {"data-dir", "ECOMD_DATA_DIR", "data_dir", &Settings::data_dir},
    {"http", "ECOMD_HTTP", "http", &Settings::http},
    {"bus", "ECOMD_BUS", "bus", &Settings::bus},
    {"brokers", "ECOMD_BROKERS", "brokers", &Settings::brokers},
    {"log-level", "ECOMD_LOG_LEVEL", "log_level", &Settings::log_level},
    {"instance-id", "ECOMD_INSTANCE_ID", "instance_id", &Settings::instance_id},
};

// Sections of the file that are not modules but areas of the host.
const std::vector<std::string> kAreaSections = {"http_server", "embedded_bus", "kafka", "topics"};

Result<std::pair<std::string, uint16_t>> split_host_port(std::string_view s) {
  auto colon = s.rfind(':');
  if (colon == std::string_view::npos || colon + 1 >= s.size())
    return config_error(fmt::format("http must be HOST:PORT, got \"{}\"", s), "http");
  std::string host(s.substr(0, colon));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto port_text = s.substr(colon + 1);
  unsigned port = 0;
  auto [p, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || p != port_text.data() + port_text.size() || port > 65535)
    return config_error(fmt::format("http port must be 0..65535, got \"{}\"", port_text), "http");
  if (host.empty()) host = "0.0.0.0";
  return std::pair{host, static_cast<uint16_t>(port)};
}

std::string type_name(const rapidjson::Value& v) {
  if (v.IsNull()) return "null";
  if (v.IsBool()) return "a boolean";
  if (v.IsNumber()) return "a number";
  if (v.IsString()) return "a string";
  if (v.IsArray()) return "an array";
  return "an object";
}

}  // namespace

// --- ConfigSection -----------------------------------------------------------------------------

const rapidjson::Value* ConfigSection::raw(std::string_view key) const {
  if (v_ == nullptr || !v_->IsObject()) return nullptr;
  auto it = v_->FindMember(rapidjson::StringRef(key.data(), key.size()));
  return it == v_->MemberEnd() ? nullptr : &it->value;
}

bool ConfigSection::has(std::string_view key) const { return raw(key) != nullptr; }

std::string ConfigSection::get_string(std::string_view key, std::string_view def) const {
  const auto* v = raw(key);
  if (v == nullptr) return std::string(def);
  if (!v->IsString())
    throw ConfigError(
        fmt::format("{} must be a string, got {}", dotted(path_, key), type_name(*v)));
  return std::string(v->GetString(), v->GetStringLength());
}

int64_t ConfigSection::get_int(std::string_view key, int64_t def) const {
  const auto* v = raw(key);
  if (v == nullptr) return def;
  if (!v->IsInt64())
    throw ConfigError(
        fmt::format("{} must be an integer, got {}", dotted(path_, key), type_name(*v)));
  return v->GetInt64();
}

double ConfigSection::get_double(std::string_view key, double def) const {
  const auto* v = raw(key);
  if (v == nullptr) return def;
  if (!v->IsNumber())
    throw ConfigError(
        fmt::format("{} must be a number, got {}", dotted(path_, key), type_name(*v)));
  return v->GetDouble();
}

bool ConfigSection::get_bool(std::string_view key, bool def) const {
  const auto* v = raw(key);
  if (v == nullptr) return def;
  if (!v->IsBool())
    throw ConfigError(
        fmt::format("{} must be true or false, got {}", dotted(path_, key), type_name(*v)));
  return v->GetBool();
}

std::vector<std::string> ConfigSection::get_strings(std::string_view key) const {
  std::vector<std::string> out;
  const auto* v = raw(key);
  if (v == nullptr) return out;
  if (!v->IsArray())
    throw ConfigError(fmt::format("{} must be an array of strings", dotted(path_, key)));
  for (const auto& item : v->GetArray()) {
    if (!item.IsString())
      throw ConfigError(fmt::format("{} must be an array of strings", dotted(path_, key)));
    out.emplace_back(item.GetString(), item.GetStringLength());
  }
  return out;
}

ConfigSection ConfigSection::section(std::string_view key) const {
  const auto* v = raw(key);
  if (v != nullptr && !v->IsObject())
    throw ConfigError(
        fmt::format("{} must be an object, got {}", dotted(path_, key), type_name(*v)));
  return ConfigSection(v, dotted(path_, key));
}

std::vector<std::string> ConfigSection::keys() const {
  std::vector<std::string> out;
  if (v_ == nullptr || !v_->IsObject()) return out;
  for (const auto& m : v_->GetObject())
    out.emplace_back(m.name.GetString(), m.name.GetStringLength());
  return out;
}

Status ConfigSection::check_keys(std::initializer_list<std::string_view> allowed) const {
  for (const auto& key : keys()) {
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::vector<std::string> names(allowed.begin(), allowed.end());
    std::string where = path_.empty() ? "the configuration" : "\"" + path_ + "\"";
    return config_error(
        fmt::format("unknown config key \"{}\" in {}; valid keys: {}", dotted(path_, key), where,
                    names.empty() ? std::string("(none)") : join(names)),
        dotted(path_, key));
  }
  return {};
}

// --- Settings ----------------------------------------------------------------------------------

std::string Settings::http_host() const {
  auto r = split_host_port(http);
  return r ? r->first : "0.0.0.0";
}

uint16_t Settings::http_port() const {
  auto r = split_host_port(http);
  return r ? r->second : 8080;
}

std::optional<std::string> process_env(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return std::nullopt;
  return std::string(v);
}

Result<std::shared_ptr<rapidjson::Document>> parse_json_config(std::string_view text) {
  auto doc = std::make_shared<rapidjson::Document>();
  doc->Parse<rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag>(text.data(),
                                                                                  text.size());
  if (doc->HasParseError()) {
    size_t offset = doc->GetErrorOffset();
    size_t line = 1 + static_cast<size_t>(std::count(
                          text.begin(), text.begin() + std::min(offset, text.size()), '\n'));
    return config_error(fmt::format("invalid JSON at line {} (offset {}): {}", line, offset,
                                    rapidjson::GetParseError_En(doc->GetParseError())));
  }
  if (!doc->IsObject()) return config_error("the configuration must be a JSON object");
  return doc;
}

std::string usage_text(const std::vector<std::string>& module_names) {
  std::vector<std::string> roles = module_names;
  roles.emplace_back("all");
  return fmt::format(
      "Usage: ecomd [options]\n"
      "       ecomd topics create|list|describe [options]\n"
      "\n"
      "Runs the ecomd order-processing services chosen by --role in one process.\n"
      "\n"
      "Options (each also settable by the environment variable shown; flags win over the\n"
      "environment, the environment over the config file):\n"
      "  --role=ROLES        {} or a comma list (default all)   ECOMD_ROLE\n"
      "  --config=FILE       JSON config file (comments allowed)                 ECOMD_CONFIG\n"
      "  --data-dir=DIR      where each role keeps its SQLite store (./data)     ECOMD_DATA_DIR\n"
      "  --http=HOST:PORT    HTTP listen address (0.0.0.0:8080)                  ECOMD_HTTP\n"
      "  --bus=KIND          embedded (default) or kafka                         ECOMD_BUS\n"
      "  --brokers=LIST      Kafka bootstrap servers HOST:PORT[,...]             ECOMD_BROKERS\n"
      "  --log-level=LEVEL   debug, info, warn or error (info)                   ECOMD_LOG_LEVEL\n"
      "  --instance-id=ID    stable member id: a restart takes its partitions back  "
      "ECOMD_INSTANCE_ID\n"
      "  --help              show this help\n"
      "  --version           print the version\n",
      fmt::join(roles, "|"));
}

Result<Settings> load_settings(int argc, const char* const* argv, const EnvLookup& env,
                               const std::vector<std::string>& module_names) {
  Settings s;
  // Pass 1: flags into a map, so we know --config before reading the file.
  std::vector<std::pair<std::string, std::string>> flags;
  std::optional<std::string> config_flag;
  std::vector<std::string> valid_flags;
  for (const auto& o : kOptions) valid_flags.push_back("--" + std::string(o.flag));
  for (const char* f : {"--config", "--help", "--version"}) valid_flags.emplace_back(f);

  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      s.help = true;
      continue;
    }
    if (arg == "--version") {
      s.version = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) {
      s.positional.emplace_back(arg);
      continue;
    }
    std::string name;
    std::string value;
    auto eq = arg.find('=');
    if (eq != std::string_view::npos) {
      name = std::string(arg.substr(2, eq - 2));
      value = std::string(arg.substr(eq + 1));
    } else {
      name = std::string(arg.substr(2));
      bool known =
          name == "config" || std::any_of(std::begin(kOptions), std::end(kOptions),
                                          [&](const OptionSpec& o) { return o.flag == name; });
      if (!known)
        return usage_error(
            fmt::format("unknown option \"{}\"; valid options: {}", arg, join(valid_flags)));
      if (i + 1 >= argc) return usage_error(fmt::format("option \"{}\" needs a value", arg));
      value = argv[++i];
    }
    if (name == "config") {
      config_flag = value;
      continue;
    }
    bool known = std::any_of(std::begin(kOptions), std::end(kOptions),
                             [&](const OptionSpec& o) { return o.flag == name; });
    if (!known)
      return usage_error(
          fmt::format("unknown option \"--{}\"; valid options: {}", name, join(valid_flags)));
    flags.emplace_back(name, value);
  }

  // The file: --config, else ECOMD_CONFIG.
  if (config_flag) {
    s.config_file = *config_flag;
  } else if (auto e = env("ECOMD_CONFIG")) {
    s.config_file = *e;
  }
  if (!s.config_file.empty()) {
    std::ifstream in(s.config_file);
    if (!in)
      return config_error(fmt::format("cannot read config file \"{}\"", s.config_file), "config");
    std::stringstream buffer;
    buffer << in.rdbuf();
    auto doc = parse_json_config(buffer.str());
    if (!doc) {
      Error e = doc.error();
      e.message = fmt::format("{}: {}", s.config_file, e.message);
      return e;
    }
    s.document = std::move(doc).value();
  } else {
    s.document = std::make_shared<rapidjson::Document>();
    s.document->SetObject();
  }

  // Validate top-level keys: fixed options, host areas and module sections.
  std::vector<std::string> valid_keys;
  for (const auto& o : kOptions) valid_keys.emplace_back(o.file_key);
  valid_keys.insert(valid_keys.end(), kAreaSections.begin(), kAreaSections.end());
  valid_keys.insert(valid_keys.end(), module_names.begin(), module_names.end());
  for (const auto& m : s.document->GetObject()) {
    std::string key(m.name.GetString(), m.name.GetStringLength());
    if (std::find(valid_keys.begin(), valid_keys.end(), key) == valid_keys.end())
      return config_error(
          fmt::format("unknown config key \"{}\"; valid keys: {}", key, join(valid_keys)), key);
    bool is_option = std::any_of(std::begin(kOptions), std::end(kOptions),
                                 [&](const OptionSpec& o) { return o.file_key == key; });
    if (is_option && !m.value.IsString())
      return config_error(fmt::format("config key \"{}\" must be a string", key), key);
    if (!is_option && !m.value.IsObject())
      return config_error(fmt::format("config key \"{}\" must be an object", key), key);
  }

  // Apply in rising precedence: file, environment, flags.
  for (const auto& o : kOptions) {
    auto it = s.document->FindMember(rapidjson::StringRef(o.file_key.data(), o.file_key.size()));
    if (it != s.document->MemberEnd()) s.*o.field = it->value.GetString();
    if (auto e = env(o.env)) s.*o.field = *e;
  }
  for (const auto& [name, value] : flags) {
    for (const auto& o : kOptions)
      if (o.flag == name) s.*o.field = value;
  }

  // Values that can be checked without knowing the modules.
  if (s.bus != "embedded" && s.bus != "kafka")
    return config_error(fmt::format("bus must be \"embedded\" or \"kafka\", got \"{}\"", s.bus),
                        "bus");
  if (auto hp = split_host_port(s.http); !hp) return hp.error();
  log::Level level;
  if (!log::parse_level(s.log_level, level))
    return config_error(
        fmt::format("log level must be debug, info, warn or error, got \"{}\"", s.log_level),
        "log_level");
  if (s.data_dir.empty()) return config_error("data dir must not be empty", "data_dir");
  return s;
}

}  // namespace ecom
