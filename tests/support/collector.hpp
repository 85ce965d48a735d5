#pragma once
/// A thread-safe record of a subscription's deliveries, for the tests of either bus.

#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ecom/bus/event_bus.hpp"

namespace ecom::test {

/// Records every delivery; `decide` picks the outcome (ack when empty). Handlers run on bus
/// threads, so no Catch assertions in there.
class Collector {
 public:
  using Decide = std::function<bus::Outcome(const bus::Message&)>;
  explicit Collector(Decide decide = {}) : decide_(std::move(decide)) {}

  bus::Handler handler() {
    return [this](const bus::Message& m) {
      bus::Outcome out = decide_ ? decide_(m) : bus::Outcome::ack();
      std::lock_guard lock(mu_);
      msgs_.push_back(m);
      return out;
    };
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return msgs_.size();
  }
  std::vector<bus::Message> messages() const {
    std::lock_guard lock(mu_);
    return msgs_;
  }
  std::vector<std::string> ids() const {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& m : msgs_) out.push_back(m.envelope.id);
    return out;
  }
  /// Distinct envelope ids seen.
  size_t distinct() const {
    std::lock_guard lock(mu_);
    std::set<std::string> ids;
    for (const auto& m : msgs_) ids.insert(m.envelope.id);
    return ids.size();
  }
  /// Envelope ids per key, in delivery order.
  std::map<std::string, std::vector<std::string>> ids_by_key() const {
    std::lock_guard lock(mu_);
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& m : msgs_) out[m.key].push_back(m.envelope.id);
    return out;
  }

 private:
  Decide decide_;
  mutable std::mutex mu_;
  std::vector<bus::Message> msgs_;
};

}  // namespace ecom::test
