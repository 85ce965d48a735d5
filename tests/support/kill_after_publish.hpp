#pragma once
/// A bus whose process dies (SIGKILL) right after the first publish it made durable: an outbox
/// relay over it is killed between the bus's acknowledgement and its delete of the rows.

#include <csignal>
#include <memory>
#include <span>
#include <string_view>
#include <utility>

#include "ecom/bus/event_bus.hpp"

namespace ecom::test {

class KillAfterPublish final : public bus::EventBus {
 public:
  explicit KillAfterPublish(bus::EventBus& bus) : bus_(bus) {}
  using EventBus::publish;
  Status publish(std::span<const bus::Record> records) override {
    Status st = bus_.publish(records);
    if (st) ::raise(SIGKILL);
    return st;
  }
  Result<std::unique_ptr<bus::Subscription>> subscribe(bus::SubscriptionOptions o,
                                                       bus::Handler h) override {
    return bus_.subscribe(std::move(o), std::move(h));
  }
  bool healthy() override { return bus_.healthy(); }
  std::string_view kind() const noexcept override { return bus_.kind(); }

 private:
  bus::EventBus& bus_;
};

}  // namespace ecom::test
