// Kafka topic provisioning (Admin API), the topics config, and the shared librdkafka helpers.

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "ecom/bus/kafka_bus.hpp"
#include "ecom/core/config.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/topics.hpp"
#include "kafka_common.hpp"

namespace ecom::bus {
namespace kafka {
namespace {

void log_cb(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  std::string msg = fmt::format("{} {}: {}", rk != nullptr ? rd_kafka_name(rk) : "", fac, buf);
  if (level <= 3) {
    log::error(kTag, "{}", msg);
  } else if (level == 4) {
    log::warn(kTag, "{}", msg);
  } else if (level <= 6) {
    log::info(kTag, "{}", msg);
  } else {
    log::debug(kTag, "{}", msg);
  }
}

}  // namespace

Status conf_set(rd_kafka_conf_t* conf, const std::string& key, const std::string& value) {
  char err[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK)
    return config_invalid(fmt::format("kafka property \"{}\": {}", key, err), "kafka." + key);
  return {};
}

Result<ConfPtr> make_conf(const KafkaBusOptions& options, ClientKind kind,
                          const std::map<std::string, std::string>& preset) {
  ConfPtr conf(rd_kafka_conf_new());
  rd_kafka_conf_set_log_cb(conf.get(), &log_cb);
  std::map<std::string, std::string> all = {
      {"bootstrap.servers", options.bootstrap_servers},
      {"client.id", options.client_id},
  };
  for (const auto& [k, v] : preset) all[k] = v;
  for (const auto& [k, v] : options.properties) all[k] = v;
  const auto& own = kind == ClientKind::kProducer   ? options.producer_properties
                    : kind == ClientKind::kConsumer ? options.consumer_properties
                                                    : std::map<std::string, std::string>{};
  for (const auto& [k, v] : own) all[k] = v;
  for (const auto& [k, v] : all) {
    if (auto st = conf_set(conf.get(), k, v); !st) return st.error();
  }
  return conf;
}

Result<HandlePtr> make_client(rd_kafka_type_t type, ConfPtr conf) {
  char err[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), err, sizeof(err));
  if (rk == nullptr) return config_invalid(fmt::format("cannot create Kafka client: {}", err));
  (void)conf.release();  // owned by rk now
  return HandlePtr(rk);
}

Error kafka_error(std::string_view what, rd_kafka_resp_err_t err, bool retryable) {
  return Error{
      ErrorCode::kUnavailable, fmt::format("{}: {}", what, rd_kafka_err2str(err)), {}, retryable};
}

bool delivery_retryable(rd_kafka_resp_err_t err) noexcept {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return false;
    default:
      return true;
  }
}

}  // namespace kafka

using namespace kafka;

// --- topics config ------------------------------------------------------------------------------

namespace {

constexpr int kMaxPartitions = 10'000;

bool valid_topic_name(std::string_view name) {
  if (name.empty() || name.size() > 249 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

std::string scalar_text(const rapidjson::Value& v) {
  if (v.IsString()) return std::string(v.GetString(), v.GetStringLength());
  if (v.IsBool()) return v.GetBool() ? "true" : "false";
  if (v.IsInt64()) return std::to_string(v.GetInt64());
  if (v.IsUint64()) return std::to_string(v.GetUint64());
  if (v.IsDouble()) return fmt::format("{}", v.GetDouble());
  return {};
}

// Reads a map of librdkafka or topic properties: values may be strings, numbers or booleans.
ConfigSpec::Reader properties(std::map<std::string, std::string>& out) {
  return [&out](const rapidjson::Value& v, const std::string& path) -> Status {
    if (!v.IsObject()) return config_invalid(path + " must be an object of properties", path);
    for (const auto& m : v.GetObject()) {
      const std::string key(m.name.GetString(), m.name.GetStringLength());
      if (!(m.value.IsString() || m.value.IsBool() || m.value.IsNumber()))
        return config_invalid(fmt::format("{}.{} must be a string, number or boolean", path, key),
                              path + "." + key);
      out[key] = scalar_text(m.value);
    }
    return {};
  };
}

// Retention of a topic in ms: -1 keeps records forever.
constexpr int64_t kMaxRetentionMs = 3650LL * 24 * 3'600'000;

Status read_spec(const ConfigSection& s, TopicSpec& spec) {
  return ConfigSpec{}
      .integer("partitions", spec.partitions, 1, kMaxPartitions)
      .integer("replication_factor", spec.replication_factor, 1, 999)
      .integer("retention_ms", spec.retention_ms, -1, kMaxRetentionMs)
      .integer("dlq_retention_ms", spec.dlq_retention_ms, -1, kMaxRetentionMs)
      .boolean("dlq", spec.dlq)
      .custom("config", properties(spec.config))
      .read(s);
}

}  // namespace

TopicsConfig default_topics_config(const TopicSpec& defaults) {
  TopicsConfig tc;
  tc.defaults = defaults;
  tc.defaults.name.clear();
  for (auto name : topics::kAll) {
    TopicSpec spec = tc.defaults;
    spec.name = name;
    tc.topics.push_back(std::move(spec));
  }
  return tc;
}

Result<TopicsConfig> topics_config_from_section(const ConfigSection& section) {
  TopicSpec defaults;
  TopicsConfig tc;
  const auto topics = [&](const rapidjson::Value& v, const std::string& path) -> Status {
    if (!v.IsObject()) return config_invalid(path + " must be an object of topics by name", path);
    const ConfigSection list(&v, path);
    for (const auto& name : list.keys()) {
      if (!valid_topic_name(name) || name.ends_with(".dlq"))
        return config_invalid(
            fmt::format("{}: \"{}\" is not a valid topic name (letters, digits, '.', '_', '-'; "
                        "the .dlq twins are implicit)",
                        path, name),
            list.path_of(name));
      if (!list.raw(name)->IsObject())
        return config_invalid(fmt::format("{} must be an object", list.path_of(name)),
                              list.path_of(name));
      auto it = std::find_if(tc.topics.begin(), tc.topics.end(),
                             [&](const TopicSpec& t) { return t.name == name; });
      if (it == tc.topics.end()) {
        tc.topics.push_back(defaults);
        it = std::prev(tc.topics.end());
        it->name = name;
      }
      if (auto st = read_spec(list.section(name), *it); !st) return st;
    }
    return {};
  };
  // Entries are read in order: the defaults first, as every topic, listed or not, starts from them.
  tc = default_topics_config(defaults);
  const auto read_defaults = [&](const rapidjson::Value& v, const std::string& path) -> Status {
    if (!v.IsObject()) return config_invalid(path + " must be an object", path);
    if (auto st = read_spec(ConfigSection(&v, path), defaults); !st) return st;
    tc = default_topics_config(defaults);
    return {};
  };
  if (auto st =
          ConfigSpec{}.custom("defaults", read_defaults).custom("topics", topics).read(section);
      !st)
    return st.error();
  return tc;
}

Result<TopicsConfig> load_topics_config(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return config_invalid(fmt::format("cannot read topics file \"{}\"", path), "topics_file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  auto doc = parse_json_config(buffer.str());
  if (!doc) return config_invalid(fmt::format("{}: {}", path, doc.error().message), "topics_file");
  if (!doc.value()->IsObject())
    return config_invalid(fmt::format("{}: must hold a JSON object", path), "topics_file");
  auto tc = topics_config_from_section(ConfigSection(doc.value().get(), ""));
  if (!tc) {
    Error e = tc.error();
    e.message = fmt::format("{}: {}", path, e.message);
    return e;
  }
  return tc;
}

// --- options ------------------------------------------------------------------------------------

namespace {

std::string join_path(const std::string& base, const std::string& file) {
  if (file.empty() || file.front() == '/' || base.empty()) return file;
  return base.back() == '/' ? base + file : base + "/" + file;
}

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

Result<KafkaBusOptions> kafka_options_from_config(const ConfigSection& s,
                                                  const std::string& base_dir) {
  KafkaBusOptions o;
  std::string topics_file;
  if (auto st = ConfigSpec{}
                    .string("bootstrap_servers", o.bootstrap_servers)
                    .string("client_id", o.client_id)
                    .string("topic_prefix", o.topic_prefix)
                    .string("group_prefix", o.group_prefix)
                    .choice("compression", o.compression, {"none", "gzip", "snappy", "lz4", "zstd"})
                    .integer("linger_ms", o.linger_ms, 0, 900'000)
                    .integer("batch_num_messages", o.batch_num_messages, 1, 1'000'000)
                    .integer("batch_size_bytes", o.batch_size_bytes, 1, 2'147'483'647)
                    .millis("delivery_timeout_ms", o.delivery_timeout, 1'000, 3'600'000)
                    .millis("session_timeout_ms", o.session_timeout, 1'000, 3'600'000)
                    .millis("commit_interval_ms", o.commit_interval, 1, 600'000)
                    .millis("health_interval_ms", o.health_interval, 100, 600'000)
                    .string("topics_file", topics_file)
                    .custom("properties", properties(o.properties))
                    .custom("producer_properties", properties(o.producer_properties))
                    .custom("consumer_properties", properties(o.consumer_properties))
                    .read(s);
      !st)
    return st.error();
  if (o.bootstrap_servers.empty())
    return config_invalid("kafka.bootstrap_servers must not be empty", "kafka.bootstrap_servers");
  if (!o.topic_prefix.empty() && !valid_topic_name(o.topic_prefix))
    return config_invalid("kafka.topic_prefix may hold only letters, digits, '.', '_' and '-'",
                          "kafka.topic_prefix");
  // Properties are checked now, so that a typo fails start-up rather than the first publish.
  for (auto kind : {ClientKind::kProducer, ClientKind::kConsumer}) {
    auto conf = make_conf(o, kind, {});
    if (!conf) return conf.error();
  }
  if (!topics_file.empty()) {
    auto tc = load_topics_config(join_path(base_dir, topics_file));
    if (!tc) return tc.error();
    o.topics = std::move(tc).value();
  }
  o.partitions = o.topics.defaults.partitions;
  o.replication_factor = o.topics.defaults.replication_factor;
  return o;
}

Result<KafkaBusOptions> kafka_options_from_settings(const Settings& settings) {
  std::string base = settings.config_file.empty() ? std::string() : dir_of(settings.config_file);
  auto o = kafka_options_from_config(settings.section("kafka"), base);
  if (!o) return o;
  if (settings.root().has("topics")) {
    auto tc = topics_config_from_section(settings.section("topics"));
    if (!tc) return tc.error();
    o->topics = std::move(tc).value();
    o->partitions = o->topics.defaults.partitions;
    o->replication_factor = o->topics.defaults.replication_factor;
  }
  if (!settings.brokers.empty()) o->bootstrap_servers = settings.brokers;
  o->instance_id = settings.instance_id;
  // Secrets (SASL passwords, key passphrases) come from the environment so that config files and
  // ConfigMaps never hold them: ECOMD_KAFKA_PROP_SASL_PASSWORD=x sets sasl.password=x.
  constexpr std::string_view kEnvPrefix = "ECOMD_KAFKA_PROP_";
  for (char** env = environ; env != nullptr && *env != nullptr; ++env) {
    std::string_view entry(*env);
    auto eq = entry.find('=');
    if (entry.substr(0, kEnvPrefix.size()) != kEnvPrefix || eq == std::string_view::npos ||
        eq == kEnvPrefix.size())
      continue;
    std::string name(entry.substr(kEnvPrefix.size(), eq - kEnvPrefix.size()));
    for (auto& c : name)
      c = c == '_' ? '.' : static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    o->properties[name] = std::string(entry.substr(eq + 1));
  }
  return o;
}

// --- admin --------------------------------------------------------------------------------------

namespace {

struct MetadataDeleter {
  void operator()(const rd_kafka_metadata_t* m) const noexcept { rd_kafka_metadata_destroy(m); }
};
using MetadataPtr = std::unique_ptr<const rd_kafka_metadata_t, MetadataDeleter>;

struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const noexcept { rd_kafka_queue_destroy(q); }
};
struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const noexcept { rd_kafka_event_destroy(e); }
};
struct AdminOptionsDeleter {
  void operator()(rd_kafka_AdminOptions_t* o) const noexcept { rd_kafka_AdminOptions_destroy(o); }
};

int timeout_int(std::chrono::milliseconds t) {
  return static_cast<int>(std::clamp<int64_t>(t.count(), 1, 3'600'000));
}

// A short-lived client for admin requests. Connection errors are expected while the brokers are
// away and are reported through the results, so librdkafka's own error logs are quieted.
Result<HandlePtr> admin_client(const KafkaBusOptions& options) {
  auto conf = make_conf(options, ClientKind::kAdmin, {{"client.id", options.client_id + "-admin"}});
  if (!conf) return conf.error();
  rd_kafka_conf_set_error_cb(conf->get(), [](rd_kafka_t*, int err, const char* reason, void*) {
    log::debug(kTag, "admin client: {} ({})", reason,
               rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)));
  });
  return make_client(RD_KAFKA_PRODUCER, std::move(conf).value());
}

// Names of the non-internal topics on the cluster, sorted.
std::vector<std::string> cluster_topics(const rd_kafka_metadata_t* md) {
  std::vector<std::string> out;
  for (int i = 0; i < md->topic_cnt; ++i) {
    const auto& t = md->topics[i];
    if (t.err != RD_KAFKA_RESP_ERR_NO_ERROR || std::strncmp(t.topic, "__", 2) == 0) continue;
    out.emplace_back(t.topic);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<MetadataPtr> all_metadata(rd_kafka_t* rk, const KafkaBusOptions& options,
                                 std::chrono::milliseconds timeout) {
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 1, nullptr, &md, timeout_int(timeout));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    return kafka_error(fmt::format("cannot reach Kafka at {}", options.bootstrap_servers), err);
  return MetadataPtr(md);
}

const rd_kafka_metadata_topic_t* find_topic(const rd_kafka_metadata_t* md, std::string_view name) {
  for (int i = 0; i < md->topic_cnt; ++i) {
    const auto& t = md->topics[i];
    if (name == t.topic && t.err == RD_KAFKA_RESP_ERR_NO_ERROR) return &t;
  }
  return nullptr;
}

// A configured topic or .dlq twin as it should exist.
struct Wanted {
  std::string name;
  int partitions;
  int replication_factor;
  std::map<std::string, std::string> config;
};

std::vector<Wanted> expand(const TopicsConfig& tc, const std::string& prefix) {
  std::vector<Wanted> out;
  for (const auto& t : tc.topics) {
    Wanted w{prefix + t.name, t.partitions, t.replication_factor, t.config};
    w.config["retention.ms"] = std::to_string(t.retention_ms);
    out.push_back(w);
    if (t.dlq) {
      w.name = dlq_topic(prefix + t.name);
      w.config["retention.ms"] = std::to_string(t.dlq_retention_ms);
      out.push_back(std::move(w));
    }
  }
  return out;
}

struct EnsureReport {
  std::vector<std::string> created;
  std::vector<std::string> existing;
  std::vector<std::string> mismatched;  // human-readable
};

Result<EnsureReport> ensure_impl(const KafkaBusOptions& options, const TopicsConfig& tc,
                                 std::chrono::milliseconds timeout) {
  auto rk = admin_client(options);
  if (!rk) return rk.error();
  auto md = all_metadata(rk->get(), options, timeout);
  if (!md) return md.error();
  EnsureReport report;
  std::vector<Wanted> missing;
  for (auto& w : expand(tc, options.topic_prefix)) {
    const auto* t = find_topic(md->get(), w.name);
    if (t == nullptr) {
      missing.push_back(std::move(w));
      continue;
    }
    report.existing.push_back(w.name);
    if (t->partition_cnt != w.partitions) {
      report.mismatched.push_back(
          fmt::format("topic {} has {} partitions but the topics config says {}; left unchanged "
                      "(Kafka can only add partitions, which moves keys: change it deliberately)",
                      w.name, t->partition_cnt, w.partitions));
      log::warn(kTag, "{}", report.mismatched.back());
    }
  }
  if (missing.empty()) return report;

  std::vector<rd_kafka_NewTopic_t*> new_topics;
  auto free_new = [&] {
    for (auto* nt : new_topics) rd_kafka_NewTopic_destroy(nt);
  };
  for (const auto& w : missing) {
    char err[512];
    rd_kafka_NewTopic_t* nt =
        rd_kafka_NewTopic_new(w.name.c_str(), w.partitions, w.replication_factor, err, sizeof(err));
    if (nt == nullptr) {
      free_new();
      return config_invalid(fmt::format("topic {}: {}", w.name, err), "topics");
    }
    new_topics.push_back(nt);
    for (const auto& [k, v] : w.config) {
      if (rd_kafka_NewTopic_set_config(nt, k.c_str(), v.c_str()) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free_new();
        return config_invalid(fmt::format("topic {}: invalid config {}={}", w.name, k, v),
                              "topics");
      }
    }
  }
  std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter> aopts(
      rd_kafka_AdminOptions_new(rk->get(), RD_KAFKA_ADMIN_OP_CREATETOPICS));
  char err[512];
  rd_kafka_AdminOptions_set_request_timeout(aopts.get(), timeout_int(timeout), err, sizeof(err));
  rd_kafka_AdminOptions_set_operation_timeout(aopts.get(), timeout_int(timeout), err, sizeof(err));
  std::unique_ptr<rd_kafka_queue_t, QueueDeleter> q(rd_kafka_queue_new(rk->get()));
  rd_kafka_CreateTopics(rk->get(), new_topics.data(), new_topics.size(), aopts.get(), q.get());
  free_new();
  std::unique_ptr<rd_kafka_event_t, EventDeleter> ev(
      rd_kafka_queue_poll(q.get(), timeout_int(timeout) + 5'000));
  if (!ev) return Error{ErrorCode::kUnavailable, "creating topics timed out", {}, true};
  if (rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR)
    return kafka_error("creating topics failed", rd_kafka_event_error(ev.get()));
  const rd_kafka_CreateTopics_result_t* res = rd_kafka_event_CreateTopics_result(ev.get());
  size_t cnt = 0;
  const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(res, &cnt);
  std::vector<std::string> failures;
  bool retryable = true;
  for (size_t i = 0; i < cnt; ++i) {
    std::string name = rd_kafka_topic_result_name(results[i]);
    rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
      auto it = std::find_if(missing.begin(), missing.end(),
                             [&](const Wanted& w) { return w.name == name; });
      log::info(kTag, "created topic {} ({} partitions, replication {})", name,
                it != missing.end() ? it->partitions : 0,
                it != missing.end() ? it->replication_factor : 0);
      report.created.push_back(name);
    } else if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      report.existing.push_back(name);  // another process was faster
    } else {
      const char* why = rd_kafka_topic_result_error_string(results[i]);
      failures.push_back(fmt::format("{}: {}", name, why != nullptr ? why : rd_kafka_err2str(e)));
      if (e == RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR ||
          e == RD_KAFKA_RESP_ERR_INVALID_PARTITIONS || e == RD_KAFKA_RESP_ERR_INVALID_CONFIG ||
          e == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION ||
          e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
          e == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
          e == RD_KAFKA_RESP_ERR_POLICY_VIOLATION)
        retryable = false;
    }
  }
  if (!failures.empty()) {
    std::string joined;
    for (const auto& f : failures) joined += (joined.empty() ? "" : "; ") + f;
    return Error{ErrorCode::kUnavailable, "cannot create topics: " + joined, {}, retryable};
  }
  return report;
}

}  // namespace

Status ensure_topics(const KafkaBusOptions& options, const TopicsConfig& topics,
                     std::chrono::milliseconds timeout) {
  auto r = ensure_impl(options, topics, timeout);
  if (!r) return r.error();
  return {};
}

Status create_topics(const KafkaBusOptions& options, const std::vector<std::string>& names) {
  TopicsConfig tc;
  tc.defaults = options.topics.defaults;
  tc.defaults.partitions = options.partitions;
  tc.defaults.replication_factor = options.replication_factor;
  for (const auto& n : names) {
    TopicSpec spec = tc.defaults;
    spec.name = n;
    tc.topics.push_back(std::move(spec));
  }
  return ensure_topics(options, tc);
}

Result<std::vector<TopicInfo>> describe_topics(const KafkaBusOptions& options,
                                               std::chrono::milliseconds timeout) {
  auto rk = admin_client(options);
  if (!rk) return rk.error();
  auto md = all_metadata(rk->get(), options, timeout);
  if (!md) return md.error();

  std::vector<TopicInfo> out;
  std::set<std::string> seen;
  for (const auto& w : expand(options.topics, options.topic_prefix)) {
    TopicInfo info;
    info.name = w.name;
    info.expected_partitions = w.partitions;
    if (const auto* t = find_topic(md->get(), w.name)) {
      info.exists = true;
      info.partitions = t->partition_cnt;
      info.replication_factor = t->partition_cnt > 0 ? t->partitions[0].replica_cnt : 0;
    }
    seen.insert(w.name);
    out.push_back(std::move(info));
  }
  // Unconfigured topics under our own prefix (a shared cluster's other topics are not ours).
  if (!options.topic_prefix.empty()) {
    for (const auto& name : cluster_topics(md->get())) {
      if (seen.contains(name) || !name.starts_with(options.topic_prefix)) continue;
      const auto* t = find_topic(md->get(), name);
      TopicInfo info;
      info.name = name;
      info.exists = true;
      info.partitions = t->partition_cnt;
      info.replication_factor = t->partition_cnt > 0 ? t->partitions[0].replica_cnt : 0;
      out.push_back(std::move(info));
    }
  }

  // retention.ms of the existing topics, in one DescribeConfigs request.
  std::vector<rd_kafka_ConfigResource_t*> resources;
  for (const auto& info : out)
    if (info.exists)
      resources.push_back(rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, info.name.c_str()));
  if (resources.empty()) return out;
  std::unique_ptr<rd_kafka_queue_t, QueueDeleter> q(rd_kafka_queue_new(rk->get()));
  std::unique_ptr<rd_kafka_AdminOptions_t, AdminOptionsDeleter> aopts(
      rd_kafka_AdminOptions_new(rk->get(), RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS));
  char err[512];
  rd_kafka_AdminOptions_set_request_timeout(aopts.get(), timeout_int(timeout), err, sizeof(err));
  rd_kafka_DescribeConfigs(rk->get(), resources.data(), resources.size(), aopts.get(), q.get());
  for (auto* r : resources) rd_kafka_ConfigResource_destroy(r);
  std::unique_ptr<rd_kafka_event_t, EventDeleter> ev(
      rd_kafka_queue_poll(q.get(), timeout_int(timeout) + 5'000));
  if (!ev || rd_kafka_event_error(ev.get()) != RD_KAFKA_RESP_ERR_NO_ERROR) return out;
  const rd_kafka_DescribeConfigs_result_t* res = rd_kafka_event_DescribeConfigs_result(ev.get());
  size_t cnt = 0;
  const rd_kafka_ConfigResource_t** rs = rd_kafka_DescribeConfigs_result_resources(res, &cnt);
  for (size_t i = 0; i < cnt; ++i) {
    if (rd_kafka_ConfigResource_error(rs[i]) != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    std::string name = rd_kafka_ConfigResource_name(rs[i]);
    size_t ecnt = 0;
    const rd_kafka_ConfigEntry_t** entries = rd_kafka_ConfigResource_configs(rs[i], &ecnt);
    for (size_t j = 0; j < ecnt; ++j) {
      if (std::strcmp(rd_kafka_ConfigEntry_name(entries[j]), "retention.ms") != 0) continue;
      const char* v = rd_kafka_ConfigEntry_value(entries[j]);
      for (auto& info : out)
        if (info.name == name && v != nullptr) info.retention_ms = std::strtoll(v, nullptr, 10);
    }
  }
  return out;
}

int run_topics_command(std::string_view verb, const KafkaBusOptions& options, std::FILE* out) {
  if (verb == "create") {
    auto r = ensure_impl(options, options.topics, std::chrono::seconds(30));
    if (!r) {
      fmt::print(out, "error: {}\n", r.error().message);
      return 1;
    }
    for (const auto& n : r->created) fmt::print(out, "created  {}\n", n);
    for (const auto& n : r->existing) fmt::print(out, "exists   {}\n", n);
    for (const auto& m : r->mismatched) fmt::print(out, "warning: {}\n", m);
    fmt::print(out, "{} created, {} already existed, {} with a different partition count\n",
               r->created.size(), r->existing.size(), r->mismatched.size());
    return 0;
  }
  if (verb == "list") {
    auto rk = admin_client(options);
    if (!rk) {
      fmt::print(out, "error: {}\n", rk.error().message);
      return 1;
    }
    auto md = all_metadata(rk->get(), options, std::chrono::seconds(15));
    if (!md) {
      fmt::print(out, "error: {}\n", md.error().message);
      return 1;
    }
    for (const auto& name : cluster_topics(md->get())) fmt::print(out, "{}\n", name);
    return 0;
  }
  if (verb == "describe") {
    auto r = describe_topics(options);
    if (!r) {
      fmt::print(out, "error: {}\n", r.error().message);
      return 1;
    }
    fmt::print(out, "{:<32} {:>10} {:>11} {:>14}  {}\n", "TOPIC", "PARTITIONS", "REPLICATION",
               "RETENTION.MS", "STATUS");
    int missing = 0, mismatched = 0;
    for (const auto& t : r.value()) {
      std::string status = "ok";
      if (!t.exists) {
        status = "missing (run: ecomd topics create)";
        ++missing;
      } else if (t.expected_partitions == 0) {
        status = "not in the topics config";
      } else if (t.partitions != t.expected_partitions) {
        status = fmt::format("partitions differ: config says {}", t.expected_partitions);
        ++mismatched;
      }
      fmt::print(out, "{:<32} {:>10} {:>11} {:>14}  {}\n", t.name,
                 t.exists ? std::to_string(t.partitions) : "-",
                 t.exists ? std::to_string(t.replication_factor) : "-",
                 t.retention_ms >= -1 ? std::to_string(t.retention_ms) : "-", status);
    }
    fmt::print(out, "{} topics, {} missing, {} with a different partition count\n", r->size(),
               missing, mismatched);
    return 0;
  }
  fmt::print(out, "usage: ecomd topics create|list|describe (unknown verb \"{}\")\n", verb);
  return 2;
}

}  // namespace ecom::bus
