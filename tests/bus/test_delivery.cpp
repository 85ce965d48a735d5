// The consumer core (src/bus/delivery.hpp): the decision both transports act on after a
// handler's outcome, the handler call, and the instance-id rule.

#include <catch2/catch.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "delivery.hpp"

using ecom::bus::Decision;
using ecom::bus::DeliveryPolicy;
using ecom::bus::Message;
using ecom::bus::Outcome;
using ecom::bus::SubscriptionOptions;
using std::chrono::milliseconds;

namespace {

DeliveryPolicy policy(int max_attempts) {
  return DeliveryPolicy{max_attempts, ecom::Backoff{milliseconds(100), milliseconds(1'000)}};
}

}  // namespace

TEST_CASE("delivery: an ack advances on any attempt", "[bus][delivery]") {
  CHECK(decide(Outcome::ack(), 1, policy(3)) == Decision::advance());
  CHECK(decide(Outcome::ack(), 3, policy(3)) == Decision::advance());
}

TEST_CASE("delivery: a retry waits the backoff of its attempt while attempts remain",
          "[bus][delivery]") {
  CHECK(decide(Outcome::retry("busy"), 1, policy(5)) ==
        Decision::retry_at(milliseconds(100), "busy"));
  CHECK(decide(Outcome::retry("busy"), 2, policy(5)) ==
        Decision::retry_at(milliseconds(200), "busy"));
  CHECK(decide(Outcome::retry("busy"), 4, policy(5)) ==
        Decision::retry_at(milliseconds(800), "busy"));
  CHECK(decide(Outcome::retry("busy"), 4, policy(50)) ==
        Decision::retry_at(milliseconds(800), "busy"));
  CHECK(decide(Outcome::retry("busy"), 9, policy(50)) ==
        Decision::retry_at(milliseconds(1'000), "busy"));
}

TEST_CASE("delivery: the last attempt's retry dead-letters with the exhausted reason",
          "[bus][delivery]") {
  CHECK(decide(Outcome::retry("busy"), 3, policy(3)) ==
        Decision::dead_letter("retries exhausted after 3 attempts: busy"));
  // A record redelivered past the limit (a policy lowered meanwhile) is not retried either.
  CHECK(decide(Outcome::retry("busy"), 7, policy(3)) ==
        Decision::dead_letter("retries exhausted after 7 attempts: busy"));
  // At least one attempt, even with max_attempts 0 or below.
  CHECK(decide(Outcome::retry("x"), 1, policy(0)) ==
        Decision::dead_letter("retries exhausted after 1 attempts: x"));
}

TEST_CASE("delivery: a dead_letter outcome dead-letters at once with its reason",
          "[bus][delivery]") {
  CHECK(decide(Outcome::dead_letter("bad payload"), 1, policy(5)) ==
        Decision::dead_letter("bad payload"));
  CHECK(decide(Outcome::dead_letter("poison pill: not json"), 2, policy(5)) ==
        Decision::dead_letter("poison pill: not json"));
}

TEST_CASE("delivery: the policy of a subscription", "[bus][delivery]") {
  SubscriptionOptions o;
  o.max_attempts = 4;
  o.initial_backoff = milliseconds(20);
  o.max_backoff = milliseconds(70);
  const DeliveryPolicy p = DeliveryPolicy::of(o);
  CHECK(p.max_attempts == 4);
  CHECK(p.backoff.after(1) == milliseconds(20));
  CHECK(p.backoff.after(2) == milliseconds(40));
  CHECK(p.backoff.after(3) == milliseconds(70));
  o.max_attempts = 0;
  CHECK(DeliveryPolicy::of(o).max_attempts == 1);
}

TEST_CASE("delivery: a handler that throws is a retry", "[bus][delivery]") {
  Message m;
  auto ok = [](const Message&) { return Outcome::dead_letter("no"); };
  auto throws = [](const Message&) -> Outcome { throw std::runtime_error("boom"); };
  auto throws_int = [](const Message&) -> Outcome { throw 42; };
  CHECK(call_handler(ok, m).reason == "no");
  const Outcome a = call_handler(throws, m);
  CHECK(a.disposition == ecom::bus::Disposition::kRetry);
  CHECK(a.reason == "handler threw: boom");
  const Outcome b = call_handler(throws_int, m);
  CHECK(b.disposition == ecom::bus::Disposition::kRetry);
  CHECK(b.reason == "handler threw");
}

TEST_CASE("delivery: instance ids follow Kafka's group.instance.id rule", "[bus][delivery]") {
  using ecom::bus::check_instance_id;
  CHECK(check_instance_id("").ok());  // a dynamic member
  CHECK(check_instance_id("order-0").ok());
  CHECK(check_instance_id("Pod_1.ns-2").ok());
  CHECK(check_instance_id(std::string(249, 'a')).ok());
  for (const std::string& bad :
       std::vector<std::string>{"node 1", "node@host", "n/1", "é", std::string(250, 'a')}) {
    auto st = check_instance_id(bad);
    REQUIRE_FALSE(st.ok());
    CHECK(st.error().code == ecom::ErrorCode::kConfigInvalid);
    CHECK(st.error().field == "instance_id");
  }
}
