#include "consumer_metrics.hpp"

#include "delivery.hpp"

namespace ecom::bus {

ConsumerMetrics::ConsumerMetrics(std::string_view group, const std::vector<std::string>& topics,
                                 metrics::Registry& registry)
    : registry_(registry), group_(group) {
  topics_.reserve(topics.size());
  for (const auto& name : topics) {
    Topic t;
    t.name_ = name;
    t.consumed_ = registry.counter("ecomd_bus_consumed_records_total",
                                   "Records handed to a subscription's handler, by group and "
                                   "topic (a retried record counts each time).",
                                   {{"group", group}, {"topic", name}});
    auto outcome = [&](std::string_view status) {
      return registry.counter("ecomd_bus_handler_outcomes_total",
                              "Handler outcomes by group, topic and status (ack, retry, "
                              "dead_letter; an undecodable record is a dead_letter).",
                              {{"group", group}, {"topic", name}, {"status", status}});
    };
    t.acked_ = outcome("ack");
    t.retried_ = outcome("retry");
    t.dead_letter_ = outcome("dead_letter");
    t.dlq_written_ = registry.counter("ecomd_bus_dead_letters_total",
                                      "Records copied to <topic>.dlq, by group and topic.",
                                      {{"group", group}, {"topic", name}});
    topics_.push_back(std::move(t));
  }
  handler_seconds_ =
      registry.histogram("ecomd_bus_handler_duration_seconds",
                         "Time one handler call took, by group (sampled: 1 call in 16).",
                         metrics::kLatencyBuckets, {{"group", group}});
  batch_seconds_ = registry.histogram("ecomd_bus_batch_duration_seconds",
                                      "Time one consumer pass took to handle (and group-commit) "
                                      "what it fetched, by group.",
                                      metrics::kLatencyBuckets, {{"group", group}});
  batch_size_ = registry.histogram("ecomd_bus_batch_records", "Records handled per pass, by group.",
                                   metrics::kSizeBuckets, {{"group", group}});
}

ConsumerMetrics::Topic* ConsumerMetrics::topic(std::string_view name) noexcept {
  for (auto& t : topics_)
    if (t.name_ == name) return &t;
  return nullptr;
}

Outcome ConsumerMetrics::call(Topic* topic, const Handler& handler, const Message& m) {
  const bool timed = ++calls_ % kSampleEvery == 0;
  const auto started =
      timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
  Outcome out = call_handler(handler, m);
  if (timed)
    handler_seconds_.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (topic == nullptr) return out;
  ++topic->pending_consumed_;
  switch (out.disposition) {
    case Disposition::kAck:
      ++topic->pending_acked_;
      break;
    case Disposition::kRetry:
      topic->retried_.inc();
      break;
    case Disposition::kDeadLetter:
      topic->dead_letter_.inc();
      break;
  }
  return out;
}

void ConsumerMetrics::undecodable(Topic* topic) noexcept {
  if (topic != nullptr) topic->dead_letter_.inc();
}

void ConsumerMetrics::dead_lettered(Topic* topic) noexcept {
  if (topic != nullptr) topic->dlq_written_.inc();
}

void ConsumerMetrics::batch(size_t records, std::chrono::steady_clock::duration elapsed) noexcept {
  if (records == 0) return;
  batch_size_.observe(static_cast<double>(records));
  batch_seconds_.observe(std::chrono::duration<double>(elapsed).count());
}

void ConsumerMetrics::flush() noexcept {
  for (auto& t : topics_) {
    if (t.pending_consumed_ > 0) t.consumed_.inc(static_cast<double>(t.pending_consumed_));
    if (t.pending_acked_ > 0) t.acked_.inc(static_cast<double>(t.pending_acked_));
    t.pending_consumed_ = t.pending_acked_ = 0;
  }
}

PartitionLag ConsumerMetrics::lag(std::string_view topic, int partition) {
  const std::string p = std::to_string(partition);
  return PartitionLag(
      registry_.gauge("ecomd_bus_consumer_lag_records",
                      "Records of a partition not yet committed by the group that holds it "
                      "(log end or high watermark less the committed offset).",
                      {{"group", group_}, {"topic", topic}, {"partition", p}}));
}

}  // namespace ecom::bus
