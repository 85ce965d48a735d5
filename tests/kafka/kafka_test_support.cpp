#include "kafka_test_support.hpp"

#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "ecom/core/clock.hpp"
#include "support/test_support.hpp"

namespace ecom::test::kafka {

using Clock = std::chrono::steady_clock;

std::string brokers() {
  const char* b = std::getenv("ECOM_KAFKA_BROKERS");
  if (b == nullptr || *b == '\0') {
    FAIL(
        "ECOM_KAFKA_BROKERS is not set. These tests need a real Kafka broker: start one with\n"
        "  KAFKA_PORT=9092 scripts/kafka.sh start\n"
        "and run them with ECOM_KAFKA_BROKERS=127.0.0.1:9092 (scripts/test.sh does both).");
  }
  return b;
}

std::string unique_name(std::string_view base) {
  // The random tail of the id: its head is the time (UUIDv7), the same for a minute.
  return std::string(base) + "-" + new_uuid().substr(24);
}

bus::KafkaBusOptions fast_options(std::string bootstrap) {
  bus::KafkaBusOptions o;
  o.bootstrap_servers = std::move(bootstrap);
  o.client_id = "ecomd-test";
  o.linger_ms = 2;
  o.delivery_timeout = 20s;
  // The broker's group.min.session.timeout.ms is 6 s; a shorter session is refused.
  o.session_timeout = 6s;
  o.commit_interval = 100ms;
  o.health_interval = 300ms;
  return o;
}

void make_topics(const bus::KafkaBusOptions& options, const std::vector<std::string>& names,
                 int partitions) {
  bus::TopicsConfig tc;
  tc.defaults.partitions = partitions;
  for (const auto& n : names) {
    bus::TopicSpec spec = tc.defaults;
    spec.name = n;
    tc.topics.push_back(spec);
  }
  auto st = bus::ensure_topics(options, tc);
  INFO((st ? std::string() : st.error().message));
  REQUIRE(st.ok());
}

std::unique_ptr<bus::EventBus> open_bus(const bus::KafkaBusOptions& options) {
  auto b = bus::make_kafka_bus(options);
  INFO((b ? std::string() : b.error().message));
  REQUIRE(b.ok());
  return std::move(b).value();
}

Envelope test_event(std::string key, int n) {
  return make_event("test", "ecom.test.happened.v1", std::move(key),
                    "{\"n\":" + std::to_string(n) + "}");
}

int event_n(const Envelope& e) {
  rapidjson::Document d;
  d.Parse(e.data.c_str());
  if (!d.IsObject() || !d.HasMember("n") || !d["n"].IsInt()) return -1;
  return d["n"].GetInt();
}

bus::Record to_record(std::string topic, const Envelope& e) {
  return bus::Record{std::move(topic), e.subject, encode_envelope(e)};
}

std::optional<std::string> RawRecord::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (k == name) return v;
  return std::nullopt;
}

std::vector<RawRecord> read_topic(const std::string& bootstrap, const std::string& topic,
                                  size_t at_least, std::chrono::milliseconds timeout,
                                  std::chrono::milliseconds settle) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "enable.partition.eof", "false", err, sizeof(err));
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
  // consumer_poll needs a group id even with assign(); nothing joins or commits.
  rd_kafka_conf_set(conf, "group.id", unique_name("reader").c_str(), err, sizeof(err));
  rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof(err));
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  REQUIRE(rk != nullptr);
  std::vector<RawRecord> out;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  rd_kafka_resp_err_t merr = rd_kafka_metadata(rk, 0, rkt, &md, 10'000);
  int partitions = 0;
  if (merr == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
      md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
    partitions = md->topics[0].partition_cnt;
  if (md != nullptr) rd_kafka_metadata_destroy(md);
  rd_kafka_topic_destroy(rkt);
  INFO("topic " << topic << ": " << rd_kafka_err2str(merr));
  REQUIRE(partitions > 0);
  rd_kafka_topic_partition_list_t* l = rd_kafka_topic_partition_list_new(partitions);
  for (int p = 0; p < partitions; ++p)
    rd_kafka_topic_partition_list_add(l, topic.c_str(), p)->offset = RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_assign(rk, l);
  rd_kafka_topic_partition_list_destroy(l);
  auto deadline = Clock::now() + timeout;
  std::optional<Clock::time_point> settle_end;
  while (true) {
    auto now = Clock::now();
    if (!settle_end && (out.size() >= at_least || now > deadline)) settle_end = now + settle;
    if (settle_end && now >= *settle_end) break;
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      RawRecord r;
      r.partition = m->partition;
      r.offset = m->offset;
      if (m->key != nullptr) r.key = std::string(static_cast<const char*>(m->key), m->key_len);
      if (m->payload != nullptr) r.value.assign(static_cast<const char*>(m->payload), m->len);
      rd_kafka_headers_t* h = nullptr;
      if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name;
        const void* val;
        size_t size;
        for (size_t i = 0; rd_kafka_header_get_all(h, i, &name, &val, &size) == 0; ++i)
          r.headers.emplace_back(
              name, val ? std::string(static_cast<const char*>(val), size) : std::string());
      }
      out.push_back(std::move(r));
    } else {
      UNSCOPED_INFO("reading " << topic << ": " << rd_kafka_message_errstr(m));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return out;
}

std::vector<std::string> read_lines(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(line);
  return out;
}

ConsumerProcess::ConsumerProcess(const std::string& bootstrap, const std::string& group,
                                 const std::string& topic, std::string out, std::string status,
                                 std::chrono::milliseconds commit_interval, std::string store)
    : out_(std::move(out)), status_(std::move(status)), log_(out_ + ".log") {
  std::vector<std::string> args{KAFKA_CHILD_BINARY,
                                bootstrap,
                                group,
                                topic,
                                out_,
                                status_,
                                std::to_string(commit_interval.count())};
  if (!store.empty()) args.push_back(std::move(store));
  pid_ = spawn_logged(std::move(args), log_, /*append=*/false);
  REQUIRE(pid_ >= 0);
}

int run_dying_relay(const std::string& bootstrap, const std::string& topic,
                    const std::string& store, int n, const std::string& log) {
  pid_t pid = spawn_logged(
      {KAFKA_CHILD_BINARY, "relay", bootstrap, topic, store, std::to_string(n)}, log, false);
  REQUIRE(pid >= 0);
  int st = 0;
  ::waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

ConsumerProcess::~ConsumerProcess() {
  if (pid_ > 0) kill9();
}

bool ConsumerProcess::ready() const {
  auto lines = read_lines(status_);
  return !lines.empty() && lines.back() == "ready";
}

std::vector<std::string> ConsumerProcess::handled_ids() const {
  std::vector<std::string> ids;
  for (const auto& line : read_lines(out_)) ids.push_back(line.substr(0, line.find(' ')));
  return ids;
}

void ConsumerProcess::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  ::waitpid(pid_, &st, 0);
  pid_ = -1;
}

int ConsumerProcess::terminate(std::chrono::milliseconds wait) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  auto end = Clock::now() + wait;
  int st = 0;
  while (true) {
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) break;
    if (Clock::now() > end) {
      kill9();
      return -SIGKILL;
    }
    std::this_thread::sleep_for(20ms);
  }
  pid_ = -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
}

}  // namespace ecom::test::kafka
