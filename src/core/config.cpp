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
    {"log-format", "ECOMD_LOG_FORMAT", "log_format", &Settings::log_format},
    {"store", "ECOMD_STORE", "store", &Settings::store},
    {"store-url", "ECOMD_STORE_URL", "store_url", &Settings::store_url},
    {"store-schema-prefix", "ECOMD_STORE_SCHEMA_PREFIX", "store_schema_prefix",
     &Settings::store_schema_prefix},
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

std::string ConfigSection::path_of(std::string_view key) const { return dotted(path_, key); }

ConfigSection ConfigSection::section(std::string_view key) const {
  const auto* v = raw(key);
  return ConfigSection(v != nullptr && v->IsObject() ? v : nullptr, dotted(path_, key));
}

std::vector<std::string> ConfigSection::keys() const {
  std::vector<std::string> out;
  if (v_ == nullptr || !v_->IsObject()) return out;
  for (const auto& m : v_->GetObject())
    out.emplace_back(m.name.GetString(), m.name.GetStringLength());
  return out;
}

Error config_invalid(std::string message, std::string field) {
  return config_error(std::move(message), std::move(field));
}

// --- ConfigSpec --------------------------------------------------------------------------------

namespace {

Error wrong_type(const std::string& path, std::string_view want, const rapidjson::Value& v) {
  return config_error(fmt::format("{} must be {}, got {}", path, want, type_name(v)), path);
}

Result<int64_t> integer_in(const rapidjson::Value& v, const std::string& path, int64_t lo,
                           int64_t hi) {
  if (!v.IsInt64()) return wrong_type(path, fmt::format("an integer {}..{}", lo, hi), v);
  const int64_t n = v.GetInt64();
  if (n < lo || n > hi)
    return config_error(fmt::format("{} must be {}..{}, got {}", path, lo, hi, n), path);
  return n;
}

}  // namespace

ConfigSpec& ConfigSpec::add_integer(std::string_view key, int64_t lo, int64_t hi,
                                    std::function<void(int64_t)> set) {
  return custom(
      key,
      [lo, hi, set = std::move(set)](const rapidjson::Value& v, const std::string& path) -> Status {
        auto n = integer_in(v, path, lo, hi);
        if (!n) return n.error();
        set(*n);
        return {};
      });
}

ConfigSpec& ConfigSpec::integer(std::string_view key, std::optional<int64_t>& out, int64_t lo,
                                int64_t hi) {
  return add_integer(key, lo, hi, [&out](int64_t v) { out = v; });
}

ConfigSpec& ConfigSpec::millis(std::string_view key, std::chrono::milliseconds& out, int64_t lo,
                               int64_t hi) {
  return add_integer(key, lo, hi, [&out](int64_t v) { out = std::chrono::milliseconds(v); });
}

ConfigSpec& ConfigSpec::boolean(std::string_view key, bool& out) {
  return custom(key, [&out](const rapidjson::Value& v, const std::string& path) -> Status {
    if (!v.IsBool()) return wrong_type(path, "true or false", v);
    out = v.GetBool();
    return {};
  });
}

ConfigSpec& ConfigSpec::string(std::string_view key, std::string& out) {
  return custom(key, [&out](const rapidjson::Value& v, const std::string& path) -> Status {
    if (!v.IsString()) return wrong_type(path, "a string", v);
    out.assign(v.GetString(), v.GetStringLength());
    return {};
  });
}

ConfigSpec& ConfigSpec::choice(std::string_view key, std::string& out,
                               std::vector<std::string> allowed) {
  return custom(key,
                [&out, allowed = std::move(allowed)](const rapidjson::Value& v,
                                                     const std::string& path) -> Status {
                  const std::string one_of = fmt::format("one of {}", join(allowed));
                  if (!v.IsString()) return wrong_type(path, one_of, v);
                  std::string value(v.GetString(), v.GetStringLength());
                  if (std::find(allowed.begin(), allowed.end(), value) == allowed.end())
                    return config_error(
                        fmt::format("{} must be {}, got \"{}\"", path, one_of, value), path);
                  out = std::move(value);
                  return {};
                });
}

ConfigSpec& ConfigSpec::object(std::string_view key, ConfigSpec nested) {
  return custom(
      key,
      [nested = std::move(nested)](const rapidjson::Value& v, const std::string& path) -> Status {
        if (!v.IsObject()) return wrong_type(path, "an object", v);
        return nested.read(ConfigSection(&v, path));
      });
}

ConfigSpec& ConfigSpec::custom(std::string_view key, Reader read) {
  entries_.push_back(Entry{std::string(key), std::move(read)});
  return *this;
}

Status ConfigSpec::read(const ConfigSection& section) const {
  for (const auto& key : section.keys()) {
    auto known =
        std::any_of(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.key == key; });
    if (known) continue;
    std::vector<std::string> names;
    for (const auto& e : entries_) names.push_back(e.key);
    const std::string where =
        section.path().empty() ? "the configuration" : "\"" + section.path() + "\"";
    return config_error(
        fmt::format("unknown config key \"{}\" in {}; valid keys: {}", section.path_of(key), where,
                    names.empty() ? std::string("(none)") : join(names)),
        section.path_of(key));
  }
  for (const auto& e : entries_) {
    const auto* v = section.raw(e.key);
    if (v == nullptr) continue;
    if (auto st = e.read(*v, section.path_of(e.key)); !st) return st;
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
  doc->Parse<rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag |
             rapidjson::kParseValidateEncodingFlag>(text.data(), text.size());
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
      "  --log-format=F      text (one line for people) or json (one object per line) (text)\n"
      "                                                                          ECOMD_LOG_FORMAT\n"
      "  --store=KIND        sqlite (default: a file per role in --data-dir) or  ECOMD_STORE\n"
      "                      postgres (a schema per role, shared by replicas)\n"
      "  --store-url=URL     postgresql://USER@HOST:PORT/DB for --store=postgres ECOMD_STORE_URL\n"
      "  --store-schema-prefix=P  schema of a role: P + role (ecomd_)  ECOMD_STORE_SCHEMA_PREFIX\n"
      "  --instance-id=ID    stable member id: a restart takes its partitions back  "
      "ECOMD_INSTANCE_ID\n"
      "  --help              show this help\n"
      "  --version           print the version\n"
      "\n"
      "Secrets come from the environment (or a *_file config key), never the config file:\n"
      "  ECOMD_WEBHOOK_SECRET        HMAC key that signs notification webhooks\n"
      "  ECOMD_SMTP_PASSWORD         password of notification.smtp.username\n"
      "  ECOMD_STORE_PASSWORD        password of the --store-url user (or libpq's PGPASSWORD)\n"
      "  ECOMD_KAFKA_PROP_<NAME>     a librdkafka property, e.g. ECOMD_KAFKA_PROP_SASL_PASSWORD\n"
      "                              sets sasl.password\n",
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
  log::Format format;
  if (!log::parse_format(s.log_format, format))
    return config_error(fmt::format("log format must be text or json, got \"{}\"", s.log_format),
                        "log_format");
  if (s.data_dir.empty()) return config_error("data dir must not be empty", "data_dir");
  if (s.store != "sqlite" && s.store != "postgres")
    return config_error(
        fmt::format("store must be \"sqlite\" or \"postgres\", got \"{}\"", s.store), "store");
  if (s.store == "postgres" && !s.store_url.starts_with("postgresql://") &&
      !s.store_url.starts_with("postgres://"))
    return config_error(s.store_url.empty()
                            ? std::string("store postgres needs store_url (postgresql://...)")
                            : "store_url must start with postgresql://",
                        "store_url");
  if (s.store_schema_prefix.empty() ||
      s.store_schema_prefix.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_") !=
          std::string::npos ||
      (s.store_schema_prefix[0] >= '0' && s.store_schema_prefix[0] <= '9'))
    return config_error(
        "store schema prefix must be lower-case letters, digits and _, not "
        "starting with a digit",
        "store_schema_prefix");
  return s;
}

}  // namespace ecom
