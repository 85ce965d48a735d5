// The embedded bus: the EventBus over one SQLite file. The file and its records are
// embedded_log, group membership embedded_membership, a subscription's thread embedded_consumer,
// deleting old records embedded_retention; this file checks the options and wires them.

#include "ecom/bus/embedded_bus.hpp"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

#include "consumer_worker.hpp"
#include "delivery.hpp"
#include "embedded_consumer.hpp"
#include "embedded_log.hpp"
#include "embedded_retention.hpp"

namespace ecom::bus {
namespace {

class EmbeddedBus final : public EventBus {
 public:
  explicit EmbeddedBus(std::shared_ptr<embedded::Core> core) : core_(std::move(core)) {
    if (core_->opt.retention.count() >= 0 || core_->opt.dlq_retention.count() >= 0) {
      janitor_ = std::make_unique<embedded::RetentionJanitor>(core_);
    }
  }

  ~EmbeddedBus() override {
    janitor_.reset();
    workers_.close_all();
  }

  using EventBus::publish;

  Status publish(std::span<const Record> records) override {
    if (records.empty()) return {};
    for (const auto& r : records) {
      if (r.topic.empty())
        return Error{ErrorCode::kValidationFailed, "record topic is empty", "topic"};
    }
    auto st = core_->db->transaction([&](db::Tx& tx) -> Status {
      embedded::Appender app(tx, core_->opt.partitions);
      for (const auto& r : records) {
        if (r.source.empty()) {
          app.append(r.topic, r.key, r.value, nullptr);
        } else if (app.admit(r.source, r.seq)) {
          app.append(r.topic, r.key, r.value, nullptr, true);
        }
      }
      app.finish();
      return {};
    });
    if (st) {
      std::vector<std::string_view> topics;
      for (const auto& r : records) {
        if (std::find(topics.begin(), topics.end(), r.topic) == topics.end())
          topics.push_back(r.topic);
      }
      core_->wake(topics);
    }
    return st;
  }

  Result<std::unique_ptr<Subscription>> subscribe(SubscriptionOptions options,
                                                  Handler handler) override {
    if (options.group.empty()) {
      return Error{ErrorCode::kValidationFailed, "subscription group is empty", "group"};
    }
    if (options.topics.empty()) {
      return Error{ErrorCode::kValidationFailed, "subscription has no topics", "topics"};
    }
    for (const auto& t : options.topics) {
      if (t.empty())
        return Error{ErrorCode::kValidationFailed, "subscription topic is empty", "topics"};
    }
    if (!handler)
      return Error{ErrorCode::kValidationFailed, "subscription handler is empty", "handler"};
    std::sort(options.topics.begin(), options.topics.end());
    options.topics.erase(std::unique(options.topics.begin(), options.topics.end()),
                         options.topics.end());
    if (options.instance_id.empty()) options.instance_id = core_->opt.instance_id;
    if (!options.instance_id.empty()) {
      if (auto st = check_instance_id(options.instance_id); !st) return st.error();
      // Two live subscriptions with one member id would take its partitions from each other.
      if (!core_->register_instance(options.group, options.instance_id)) {
        return Error{ErrorCode::kConfigInvalid,
                     "group \"" + options.group +
                         "\" already has a live subscription with "
                         "instance_id \"" +
                         options.instance_id + "\" on this bus",
                     "instance_id"};
      }
    }

    std::string thread = consumer_thread_name(options.group);
    auto consumer = embedded::make_consumer(core_, std::move(options), std::move(handler));
    ConsumerWorker::start(consumer,
                          std::move(thread));  // a throw releases the instance with the consumer
    workers_.add(consumer);
    return std::unique_ptr<Subscription>(new WorkerSubscription(std::move(consumer)));
  }

  bool healthy() override { return core_->db->healthy(); }

  std::string_view kind() const noexcept override { return "embedded"; }

 private:
  std::shared_ptr<embedded::Core> core_;
  ConsumerWorkers workers_;
  std::unique_ptr<embedded::RetentionJanitor> janitor_;
};

Status check_options(const EmbeddedBusOptions& o) {
  auto invalid = [](std::string field, std::string message) {
    return Error{ErrorCode::kConfigInvalid, "embedded_bus." + field + ": " + message, field};
  };
  if (o.path.empty()) return invalid("path", "must not be empty");
  if (o.partitions < 1 || o.partitions > 1024) return invalid("partitions", "must be 1..1024");
  if (o.batch_size < 1) return invalid("batch_size", "must be positive");
  if (o.poll_interval.count() < 1) return invalid("poll_interval", "must be positive");
  if (o.heartbeat_interval.count() < 1) return invalid("heartbeat_interval", "must be positive");
  if (o.session_timeout <= o.heartbeat_interval) {
    return invalid("session_timeout", "must be longer than heartbeat_interval");
  }
  if (o.retention.count() == 0) {
    return invalid("retention", "must be positive, or negative for ever");
  }
  if (o.dlq_retention.count() == 0) {
    return invalid("dlq_retention", "must be positive, or negative for ever");
  }
  if (o.retention_check_interval.count() < 1) {
    return invalid("retention_check_interval", "must be positive");
  }
  if (o.clock == nullptr) return invalid("clock", "must not be null");
  if (auto st = check_instance_id(o.instance_id); !st) return st.error();
  return {};
}

}  // namespace

Result<std::unique_ptr<EventBus>> make_embedded_bus(EmbeddedBusOptions options) {
  if (auto st = check_options(options); !st) return st.error();
  auto core = embedded::open_log(std::move(options));
  if (!core) return core.error();
  return std::unique_ptr<EventBus>(new EmbeddedBus(std::move(core).value()));
}

}  // namespace ecom::bus
