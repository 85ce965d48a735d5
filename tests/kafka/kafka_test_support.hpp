#pragma once
/// Helpers of the Kafka tests: the broker under test, unique topic names (tests rerun on one
/// broker), a raw reader that sees keys and headers, a delivery collector, and child processes.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/bus/event_bus.hpp"
#include "ecom/bus/kafka_bus.hpp"
#include "ecom/core/envelope.hpp"
#include "support/collector.hpp"

namespace ecom::test::kafka {

using namespace std::chrono_literals;

/// ECOM_KAFKA_BROKERS; fails the test, saying how to start a broker, when it is not set.
std::string brokers();
/// `base` plus a random suffix, so that every run uses fresh topics and groups.
std::string unique_name(std::string_view base);
/// Options with short intervals for tests.
bus::KafkaBusOptions fast_options(std::string bootstrap);
/// Creates `names` (and .dlq twins) with `partitions` partitions; REQUIREs success.
void make_topics(const bus::KafkaBusOptions& options, const std::vector<std::string>& names,
                 int partitions = 3);
/// make_kafka_bus or a failed REQUIRE.
std::unique_ptr<bus::EventBus> open_bus(const bus::KafkaBusOptions& options);

/// A test event keyed by `key` with data {"n":n}.
Envelope test_event(std::string key, int n);
/// data.n of a test event (-1 when absent).
int event_n(const Envelope& e);
/// The record publish(topic, e) would send.
bus::Record to_record(std::string topic, const Envelope& e);

/// A record as stored in Kafka.
struct RawRecord {
  int partition = 0;
  int64_t offset = 0;
  std::optional<std::string> key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;
  /// The first header called `name`, if any.
  std::optional<std::string> header(std::string_view name) const;
};
/// Reads `topic` from the beginning of every partition (no consumer group) until at least
/// `at_least` records arrived or `timeout` passed, then for `settle` more to catch extra ones.
std::vector<RawRecord> read_topic(const std::string& bootstrap, const std::string& topic,
                                  size_t at_least, std::chrono::milliseconds timeout = 30s,
                                  std::chrono::milliseconds settle = 0ms);

/// Records every delivery (tests/support/collector.hpp).
using Collector = ecom::test::Collector;

/// The kafka_test_consumer helper running as a child process: it joins `group` on `topic`,
/// appends "<id> <partition> <offset>" to `out` for every handled record, and writes "ready" to
/// `status` once its bus is healthy. Killed with SIGKILL on destruction if still running.
class ConsumerProcess {
 public:
  /// With `store`: the child applies each record in that SQLite file (table applied(id, n),
  /// n counting applications, no inbox) with its positions stored there (see BatchScope).
  ConsumerProcess(const std::string& bootstrap, const std::string& group, const std::string& topic,
                  std::string out, std::string status, std::chrono::milliseconds commit_interval,
                  std::string store = {});
  ~ConsumerProcess();
  ConsumerProcess(const ConsumerProcess&) = delete;
  ConsumerProcess& operator=(const ConsumerProcess&) = delete;

  bool ready() const;
  /// Ids handled so far (lines of `out`).
  std::vector<std::string> handled_ids() const;
  void kill9();
  /// SIGTERM and wait; the exit code, or -signal.
  int terminate(std::chrono::milliseconds wait = 30s);
  const std::string& log_path() const { return log_; }

 private:
  pid_t pid_ = -1;
  std::string out_, status_, log_;
};

/// Runs `kafka_test_consumer relay`: N events committed to the outbox of the SQLite file `store`
/// for `topic`, relayed by a process killed right after Kafka acknowledged them, before the
/// rows' delete. Returns the child's exit code, or -signal. Its output goes to `log`.
int run_dying_relay(const std::string& bootstrap, const std::string& topic,
                    const std::string& store, int n, const std::string& log);

/// Lines of a text file (empty when missing).
std::vector<std::string> read_lines(const std::string& path);

}  // namespace ecom::test::kafka
