#pragma once
// Private helpers shared by the Kafka bus (producer, consumer) and the topic admin code.
// librdkafka stays in src/bus.

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "ecom/bus/kafka_bus.hpp"
#include "ecom/core/config.hpp"
#include "ecom/core/result.hpp"

namespace ecom::bus::kafka {

inline constexpr std::string_view kTag{"kafka"};
/// Headers of a relayed record: its outbox source id and row seq (Record::source, SourceMark).
inline constexpr const char* kSourceHeader = "ecom_source";
inline constexpr const char* kSeqHeader = "ecom_seq";

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* c) const noexcept { rd_kafka_conf_destroy(c); }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const noexcept { rd_kafka_destroy(rk); }
};
using HandlePtr = std::unique_ptr<rd_kafka_t, HandleDeleter>;

/// Which client a configuration is for; decides which extra property map applies.
enum class ClientKind { kProducer, kConsumer, kAdmin };

/// A base configuration: bootstrap servers, client id, logging into ecom::log, then
/// options.properties and the client kind's own properties. Unknown or invalid properties fail
/// with CONFIG_INVALID naming the property.
Result<ConfPtr> make_conf(const KafkaBusOptions& options, ClientKind kind,
                          const std::map<std::string, std::string>& preset);

/// Sets one property; CONFIG_INVALID on failure.
Status conf_set(rd_kafka_conf_t* conf, const std::string& key, const std::string& value);

/// Creates a client from `conf` (which it takes over on success).
Result<HandlePtr> make_client(rd_kafka_type_t type, ConfPtr conf);

/// An UNAVAILABLE error (retryable unless told otherwise) with librdkafka's reason.
Error kafka_error(std::string_view what, rd_kafka_resp_err_t err, bool retryable = true);

/// True when a failed delivery may succeed when tried again later.
bool delivery_retryable(rd_kafka_resp_err_t err) noexcept;

// Connection errors repeat with every reconnect attempt while a broker is away; healthy() and
// the health-check log report the outage, so each client logs them at most every 30 s.
class ErrorThrottle {
 public:
  bool quiet(rd_kafka_resp_err_t err) {
    if (err != RD_KAFKA_RESP_ERR__TRANSPORT && err != RD_KAFKA_RESP_ERR__RESOLVE) return false;
    int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
    int64_t last = last_ms_.load();
    if (last != 0 && now - last < 30'000) return true;
    return !last_ms_.compare_exchange_strong(last, now);
  }

 private:
  std::atomic<int64_t> last_ms_{0};
};

}  // namespace ecom::bus::kafka
