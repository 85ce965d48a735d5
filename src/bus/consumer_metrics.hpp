#pragma once
// The metrics of one subscription, the same for both transports' consumers: records consumed,
// handler outcomes, (sampled) handler latency, batch size and latency, dead letters written, and
// the lag of each partition held. Private to src/bus.
//
// Cost on the per-record path: plain increments of the calling thread's own counts (moved into
// the shared counters by flush(), once per consumer loop) and, for 1 record in kSampleEvery,
// two clock reads. Series are resolved when the subscription starts (per topic) and when a
// partition is assigned (its lag), never per record.
//
// Thread safety: used by its consumer's thread only; what it exposes is read by scrapes.

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ecom/bus/event_bus.hpp"
#include "ecom/core/metrics.hpp"

namespace ecom::bus {

/// The lag of one partition while this member holds it. When it goes (revoked, lost, left)
/// the series is set to 0, so that a partition another member now holds is not reported twice.
/// The series itself stays: members of one group in one process share it.
class PartitionLag {
 public:
  PartitionLag() = default;
  explicit PartitionLag(metrics::Gauge g) : g_(g) {}
  PartitionLag(PartitionLag&& o) noexcept : g_(std::exchange(o.g_, {})) {}
  PartitionLag& operator=(PartitionLag&& o) noexcept {
    if (this != &o) {
      g_.set(0);
      g_ = std::exchange(o.g_, {});
    }
    return *this;
  }
  ~PartitionLag() { g_.set(0); }
  void set(int64_t records) const noexcept {
    g_.set(static_cast<double>(records > 0 ? records : 0));
  }

 private:
  metrics::Gauge g_;
};

class ConsumerMetrics {
 public:
  /// Handler calls timed: one in this many.
  static constexpr uint32_t kSampleEvery = 16;

  /// The series of one topic of the subscription.
  class Topic {
   public:
    const std::string& name() const noexcept { return name_; }

   private:
    friend class ConsumerMetrics;
    std::string name_;
    metrics::Counter consumed_;
    metrics::Counter acked_;
    metrics::Counter retried_;
    metrics::Counter dead_letter_;  // outcome: the handler (or the decoder) said so
    metrics::Counter dlq_written_;  // copies written to <topic>.dlq
    uint64_t pending_consumed_ = 0;
    uint64_t pending_acked_ = 0;
  };

  ConsumerMetrics(std::string_view group, const std::vector<std::string>& topics,
                  metrics::Registry& registry = metrics::registry());
  ConsumerMetrics(const ConsumerMetrics&) = delete;
  ConsumerMetrics& operator=(const ConsumerMetrics&) = delete;

  /// The series of `topic`, one of the subscription's (resolve it when a partition is assigned);
  /// nullptr for any other, which counts nothing.
  Topic* topic(std::string_view name) noexcept;

  /// Calls the handler through call_handler (bus/delivery.hpp), counting the record and its
  /// outcome, and timing 1 call in kSampleEvery.
  Outcome call(Topic* topic, const Handler& handler, const Message& m);
  /// A record that could not be decoded, to be dead-lettered without calling the handler.
  void undecodable(Topic* topic) noexcept;
  /// A copy of a record of `topic` was written to its dead-letter topic.
  void dead_lettered(Topic* topic) noexcept;
  /// One pass handled `records` (in one store batch, when the subscription has a store) in
  /// `elapsed`. A pass that handled nothing is not recorded.
  void batch(size_t records, std::chrono::steady_clock::duration elapsed) noexcept;
  /// Moves the counts kept since the last flush into the shared counters. Once per loop.
  void flush() noexcept;

  /// The lag gauge of one partition held (log end or high watermark less the committed offset),
  /// resolved when it is assigned.
  PartitionLag lag(std::string_view topic, int partition);

 private:
  metrics::Registry& registry_;
  std::string group_;
  std::vector<Topic> topics_;
  metrics::Histogram handler_seconds_;
  metrics::Histogram batch_seconds_;
  metrics::Histogram batch_size_;
  uint32_t calls_ = 0;
};

}  // namespace ecom::bus
