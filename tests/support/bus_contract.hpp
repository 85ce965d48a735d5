#pragma once
/// Cases of the bus contract that every EventBus keeps, written once and run against each bus
/// (tests/bus for the embedded bus, tests/kafka for Kafka). Each takes the bus, fresh topic and
/// group names (created beforehand where the bus needs that) and how long the bus may take.

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ecom/bus/event_bus.hpp"
#include "ecom/core/envelope.hpp"
#include "support/test_support.hpp"

namespace ecom::test {

/// How a handler lets go of its own subscription.
enum class SelfClose {
  kDestroy,  ///< destroys the handle on the consumer thread
  kClose,    ///< calls close(); the test thread destroys the handle afterwards
};

/// A handler that closes (or destroys) its own subscription while handling the first of three
/// records of one key: the call returns, nothing is delivered to it afterwards, and the record it
/// acknowledged was committed when the subscription left, so the next member of the group starts
/// right after it. Run under AddressSanitizer this also proves that the consumer thread does not
/// outlive what it uses.
inline void check_handler_closes_own_subscription(bus::EventBus& bus, const std::string& topic,
                                                  const std::string& group, SelfClose how,
                                                  std::chrono::milliseconds timeout) {
  std::vector<Envelope> events;
  std::vector<bus::Record> records;
  for (int n = 0; n < 3; ++n) {
    events.push_back(
        make_event("test", "ecom.test.v1", "one-key", "{\"n\":" + std::to_string(n) + "}"));
    records.push_back(bus::Record{topic, events.back().subject, encode_envelope(events.back())});
  }
  REQUIRE(bus.publish(records).ok());

  std::mutex mu;  // held by subscribe() below until `own` holds the handle
  std::unique_ptr<bus::Subscription> own;
  std::atomic<int> calls{0};
  std::atomic<bool> let_go{false};
  std::string first_id;
  auto handler = [&](const bus::Message& m) {
    std::lock_guard lock(mu);
    ++calls;
    if (!let_go) {
      first_id = m.envelope.id;
      if (how == SelfClose::kDestroy) {
        own.reset();
      } else {
        own->close();
      }
      let_go = true;
    }
    return bus::Outcome::ack();
  };
  {
    std::lock_guard lock(mu);
    auto sub = bus.subscribe({.group = group, .topics = {topic}}, handler);
    REQUIRE(sub.ok());
    own = std::move(sub).value();
  }
  REQUIRE(eventually([&] { return let_go.load(); }, timeout));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(calls.load() == 1);
  {
    std::lock_guard lock(mu);
    CHECK(first_id == events[0].id);
    CHECK((own == nullptr) == (how == SelfClose::kDestroy));
    own.reset();  // kClose: the owner's destruction joins the consumer thread
  }

  std::mutex got_mu;
  std::vector<std::string> got;
  auto next = bus.subscribe({.group = group, .topics = {topic}}, [&](const bus::Message& m) {
    std::lock_guard lock(got_mu);
    got.push_back(m.envelope.id);
    return bus::Outcome::ack();
  });
  REQUIRE(next.ok());
  auto received = [&] {
    std::lock_guard lock(got_mu);
    return got.size();
  };
  REQUIRE(eventually([&] { return received() >= 2; }, timeout));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  (*next)->close();
  std::lock_guard lock(got_mu);
  CHECK(got == std::vector<std::string>{events[1].id, events[2].id});
  CHECK(calls.load() == 1);
}

}  // namespace ecom::test
