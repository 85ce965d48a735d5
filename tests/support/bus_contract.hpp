#pragma once
/// Cases of the bus contract that every EventBus keeps, written once and run against each bus
/// (tests/bus for the embedded bus, tests/kafka for Kafka). Each takes the bus, fresh topic and
/// group names (created beforehand where the bus needs that) and how long the bus may take.

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ecom/bus/event_bus.hpp"
#include "ecom/core/backoff.hpp"
#include "ecom/core/envelope.hpp"
#include "ecom/db/database.hpp"
#include "support/collector.hpp"
#include "support/stores.hpp"
#include "support/test_support.hpp"

namespace ecom::test {

namespace contract {

inline std::multiset<std::string> as_multiset(const std::vector<std::string>& ids) {
  return {ids.begin(), ids.end()};
}

inline Envelope event(const std::string& key, int n) {
  return make_event("test", "ecom.test.happened.v1", key, "{\"n\":" + std::to_string(n) + "}");
}

inline bus::Record record(const std::string& topic, const Envelope& e) {
  return bus::Record{topic, e.subject, encode_envelope(e)};
}

inline std::multiset<std::string> ids_of(const std::vector<Envelope>& events) {
  std::multiset<std::string> out;
  for (const auto& e : events) out.insert(e.id);
  return out;
}

/// The ids a fresh group (`group`-dlq) consumes from `<topic>.dlq`, read like any other topic,
/// once the first arrived and a second copy had time to.
inline std::vector<std::string> dead_lettered_ids(bus::EventBus& bus, const std::string& topic,
                                                  const std::string& group,
                                                  std::chrono::milliseconds timeout) {
  Collector dlq;
  auto sub =
      bus.subscribe({.group = group + "-dlq", .topics = {bus::dlq_topic(topic)}}, dlq.handler());
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return dlq.size() >= 1; }, timeout));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  (*sub)->close();
  return dlq.ids();
}

}  // namespace contract

/// Per-key order: two publishers at once, each owning half of 40 keys, interleave them in
/// batches of varying size; the subscriber gets every event once, each key's in its publisher's
/// order, and each partition's in increasing offsets. Returns the deliveries for checks that only
/// one bus makes.
inline std::vector<bus::Message> check_per_key_order(bus::EventBus& bus, const std::string& topic,
                                                     const std::string& group,
                                                     std::chrono::milliseconds timeout) {
  Collector got;
  auto sub = bus.subscribe({.group = group, .topics = {topic}}, got.handler());
  REQUIRE(sub.ok());

  constexpr int kKeys = 40;
  constexpr int kPerKey = 50;
  std::vector<std::vector<Envelope>> sent(2);
  std::atomic<bool> publish_failed{false};
  auto publisher = [&](int half) {
    std::vector<bus::Record> batch;
    for (int n = 0; n < kPerKey; ++n) {
      for (int k = half; k < kKeys; k += 2) {
        Envelope e = contract::event("key-" + std::to_string(k), n);
        batch.push_back(contract::record(topic, e));
        sent[half].push_back(std::move(e));
        if (batch.size() >= static_cast<size_t>(1 + (n * 7 + k) % 37)) {
          if (!bus.publish(batch).ok()) publish_failed = true;
          batch.clear();
        }
      }
    }
    if (!batch.empty() && !bus.publish(batch).ok()) publish_failed = true;
  };
  std::thread t0(publisher, 0);
  std::thread t1(publisher, 1);
  t0.join();
  t1.join();
  REQUIRE_FALSE(publish_failed);

  REQUIRE(eventually([&] { return got.size() >= kKeys * kPerKey; }, timeout));
  (*sub)->close();
  std::map<std::string, std::vector<std::string>> expected;
  for (const auto& half : sent) {
    for (const auto& e : half) expected[e.subject].push_back(e.id);
  }
  const auto msgs = got.messages();
  CHECK(msgs.size() == kKeys * kPerKey);  // nothing twice
  std::map<std::string, std::vector<std::string>> by_key;
  std::map<int, int64_t> last_offset;
  for (const auto& m : msgs) {
    CHECK(m.topic == topic);
    CHECK(m.key == m.envelope.subject);
    CHECK(m.attempt == 1);
    if (last_offset.count(m.partition) != 0) CHECK(m.offset > last_offset[m.partition]);
    last_offset[m.partition] = m.offset;
    by_key[m.key].push_back(m.envelope.id);
  }
  REQUIRE(by_key.size() == kKeys);
  for (const auto& [key, ids] : expected) {
    INFO("key " << key);
    CHECK(by_key[key] == ids);
  }
  return msgs;
}

/// Separate groups each see every event once, on every topic they subscribe to, and a group that
/// joins after the events were published still starts from the beginning of the log.
inline void check_separate_groups(bus::EventBus& bus, const std::string& topic_a,
                                  const std::string& topic_b, const std::string& group_1,
                                  const std::string& group_2, std::chrono::milliseconds timeout) {
  Collector g1, g2;
  auto s1 = bus.subscribe({.group = group_1, .topics = {topic_a, topic_b}}, g1.handler());
  REQUIRE(s1.ok());
  std::vector<Envelope> sent;
  std::vector<bus::Record> records;
  for (int i = 0; i < 100; ++i) {
    sent.push_back(contract::event("o" + std::to_string(i % 13), i));
    records.push_back(contract::record(i % 2 == 0 ? topic_a : topic_b, sent.back()));
  }
  REQUIRE(bus.publish(records).ok());
  auto s2 = bus.subscribe({.group = group_2, .topics = {topic_b, topic_a}}, g2.handler());
  REQUIRE(s2.ok());
  REQUIRE(
      eventually([&] { return g1.size() >= sent.size() && g2.size() >= sent.size(); }, timeout));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // room for a wrong redelivery
  (*s1)->close();
  (*s2)->close();
  CHECK(contract::as_multiset(g1.ids()) == contract::ids_of(sent));
  CHECK(contract::as_multiset(g2.ids()) == contract::ids_of(sent));
}

/// A group resumes after its committed offsets: a subscription that handled everything and closed
/// (committing), then a new bus object (as a restarted process would open) and subscription of
/// the same group get exactly the events published since.
inline void check_resume_from_committed(
    const std::function<std::unique_ptr<bus::EventBus>()>& open_bus, const std::string& topic,
    const std::string& group, std::chrono::milliseconds timeout) {
  std::vector<Envelope> first, second;
  for (int i = 0; i < 20; ++i) first.push_back(contract::event("k" + std::to_string(i % 5), i));
  for (int i = 20; i < 30; ++i) second.push_back(contract::event("k" + std::to_string(i % 5), i));
  {
    auto bus = open_bus();
    std::vector<bus::Record> records;
    for (const auto& e : first) records.push_back(contract::record(topic, e));
    REQUIRE(bus->publish(records).ok());
    Collector got;
    auto sub = bus->subscribe({.group = group, .topics = {topic}}, got.handler());
    REQUIRE(sub.ok());
    REQUIRE(eventually([&] { return got.size() >= first.size(); }, timeout));
    (*sub)->close();  // commits and leaves the group
    CHECK(contract::as_multiset(got.ids()) == contract::ids_of(first));
    records.clear();
    for (const auto& e : second) records.push_back(contract::record(topic, e));
    REQUIRE(bus->publish(records).ok());
  }
  auto bus = open_bus();
  Collector got;
  auto sub = bus->subscribe({.group = group, .topics = {topic}}, got.handler());
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return got.size() >= second.size(); }, timeout));
  std::this_thread::sleep_for(std::chrono::seconds(1));  // room for a wrong redelivery
  (*sub)->close();
  CHECK(contract::as_multiset(got.ids()) == contract::ids_of(second));
}

/// close() returns only after the in-flight handler call finished, and nothing is delivered to
/// a closed subscription afterwards. Idempotent.
inline void check_close_waits_for_handler(bus::EventBus& bus, const std::string& topic,
                                          const std::string& group,
                                          std::chrono::milliseconds timeout) {
  std::atomic<bool> entered{false};
  std::atomic<bool> finished{false};
  std::atomic<int> calls{0};
  auto sub = bus.subscribe({.group = group, .topics = {topic}}, [&](const bus::Message&) {
    ++calls;
    entered = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    finished = true;
    return bus::Outcome::ack();
  });
  REQUIRE(sub.ok());
  REQUIRE(bus.publish(topic, contract::event("k", 1)).ok());
  REQUIRE(bus.publish(topic, contract::event("k", 2)).ok());
  REQUIRE(eventually([&] { return entered.load(); }, timeout));
  (*sub)->close();
  CHECK(finished.load());
  const int after_close = calls.load();
  REQUIRE(bus.publish(topic, contract::event("k", 3)).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(calls.load() == after_close);
  (*sub)->close();  // idempotent
}

/// Destroying the bus closes its live subscriptions: an event published afterwards (through
/// another bus object) does not reach them, and closing and destroying a handle is still safe.
inline void check_bus_destroyed_first(
    const std::function<std::unique_ptr<bus::EventBus>()>& open_bus, const std::string& topic,
    const std::string& group, std::chrono::milliseconds timeout) {
  std::atomic<int> calls{0};
  auto first = open_bus();
  auto sub = first->subscribe({.group = group, .topics = {topic}}, [&](const bus::Message&) {
    ++calls;
    return bus::Outcome::ack();
  });
  REQUIRE(sub.ok());
  REQUIRE(first->publish(topic, contract::event("k", 1)).ok());
  REQUIRE(eventually([&] { return calls.load() == 1; }, timeout));
  first.reset();
  auto second = open_bus();
  REQUIRE(second->publish(topic, contract::event("k", 2)).ok());
  std::this_thread::sleep_for(std::chrono::seconds(1));
  CHECK(calls.load() == 1);
  (*sub)->close();
  sub->reset();
}

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

/// Retries: a record whose handler answers retry (or throws) is redelivered with the next attempt
/// number after at least the backoff of its attempt (doubling from initial_backoff, capped at
/// max_backoff). Meanwhile the rest of its partition waits and the other partitions go on. After
/// max_attempts it is dead-lettered once to `<topic>.dlq`, an ordinary topic that another group
/// consumes (created beforehand where the bus needs that). `timeout` bounds each wait.
inline void check_retries(bus::EventBus& bus, const std::string& topic, const std::string& group,
                          std::chrono::milliseconds timeout) {
  using Clock = std::chrono::steady_clock;
  constexpr int kMaxAttempts = 8;
  const Backoff backoff{std::chrono::milliseconds(100), std::chrono::milliseconds(400)};
  const Envelope slow0 = contract::event("slow", 0);
  const Envelope slow1 = contract::event("slow", 1);
  const Envelope doomed = contract::event("doomed", 0);
  const Envelope thrower = contract::event("thrower", 0);

  struct Call {
    std::string id;
    int attempt;
    Clock::time_point at;
  };
  std::mutex mu;
  std::vector<Call> calls;  // in handling order
  std::atomic<int> slow_partition{-1};
  std::atomic<int> others_meanwhile{0};  // other partitions' records handled while slow0 waits
  auto handler = [&](const bus::Message& m) -> bus::Outcome {
    {
      std::lock_guard lock(mu);
      calls.push_back({m.envelope.id, m.attempt, Clock::now()});
    }
    if (m.envelope.id == slow0.id) {
      slow_partition = m.partition;
      // Succeeds only once other partitions made progress: if its retry blocked them, this
      // record would exhaust its attempts and the checks below would fail.
      return others_meanwhile > 0 ? bus::Outcome::ack() : bus::Outcome::retry("waiting");
    }
    if (m.key.rfind("other-", 0) == 0 && slow_partition >= 0 && m.partition != slow_partition) {
      ++others_meanwhile;
    }
    if (m.envelope.id == doomed.id) return bus::Outcome::retry("never works");
    if (m.envelope.id == thrower.id && m.attempt == 1) throw std::runtime_error("boom");
    return bus::Outcome::ack();
  };
  auto attempts_of = [&](const std::string& id) {
    std::lock_guard lock(mu);
    std::vector<Call> out;
    for (const auto& c : calls) {
      if (c.id == id) out.push_back(c);
    }
    return out;
  };
  auto distinct = [&] {
    std::lock_guard lock(mu);
    std::set<std::string> ids;
    for (const auto& c : calls) ids.insert(c.id);
    return ids.size();
  };
  bus::SubscriptionOptions options{.group = group,
                                   .topics = {topic},
                                   .max_attempts = kMaxAttempts,
                                   .initial_backoff = backoff.base,
                                   .max_backoff = backoff.cap};
  auto sub = bus.subscribe(options, handler);
  REQUIRE(sub.ok());

  std::vector<bus::Record> first;
  for (const auto* e : {&slow0, &slow1, &doomed, &thrower}) {
    first.push_back(contract::record(topic, *e));
  }
  REQUIRE(bus.publish(first).ok());
  REQUIRE(eventually([&] { return !attempts_of(slow0.id).empty(); }, timeout));
  std::vector<bus::Record> others;
  for (int i = 0; i < 30; ++i) {
    others.push_back(contract::record(topic, contract::event("other-" + std::to_string(i), i)));
  }
  REQUIRE(bus.publish(others).ok());
  REQUIRE(eventually(
      [&] {
        return attempts_of(thrower.id).size() >= 2 &&
               attempts_of(doomed.id).size() >= kMaxAttempts && distinct() == 34;
      },
      timeout));

  // Dead-lettered once, into a topic another group reads like any other.
  CHECK(contract::dead_lettered_ids(bus, topic, group, timeout) ==
        std::vector<std::string>{doomed.id});
  (*sub)->close();

  CHECK(others_meanwhile.load() > 0);
  const auto slow = attempts_of(slow0.id);
  CHECK(slow.size() >= 2);
  for (size_t i = 0; i < slow.size(); ++i) CHECK(slow[i].attempt == static_cast<int>(i) + 1);
  // Its successor on the key waited until it succeeded, and came once.
  const auto next = attempts_of(slow1.id);
  REQUIRE(next.size() == 1);
  CHECK(next[0].attempt == 1);
  CHECK(next[0].at >= slow.back().at);

  const auto dead = attempts_of(doomed.id);
  REQUIRE(dead.size() == kMaxAttempts);  // none past the last attempt
  for (size_t i = 0; i < dead.size(); ++i) {
    const int attempt = static_cast<int>(i) + 1;
    CHECK(dead[i].attempt == attempt);
    if (i > 0) {
      INFO("attempt " << attempt);
      CHECK(dead[i].at - dead[i - 1].at >= backoff.after(attempt - 1));
    }
  }
  // A throw is a retry: attempt 2 follows.
  const auto threw = attempts_of(thrower.id);
  REQUIRE(threw.size() == 2);
  CHECK(threw[1].attempt == 2);
}

/// The values stored in `<topic>.dlq`, in offset order, once there are at least `at_least`.
using DlqValues = std::function<std::vector<std::string>(size_t at_least)>;

/// What check_dead_letters sent, in this order on one key: `doomed` (retried until its attempts,
/// 3, ran out), `garbage` (not JSON), `rejected` (a dead_letter outcome, "bad data"),
/// `incomplete` (JSON but no envelope), then an event that is simply handled.
struct DeadLetters {
  Envelope doomed;
  std::string garbage;
  Envelope rejected;
  std::string incomplete;
};

/// Dead letters: exhausted retries, a dead_letter outcome and records that are not envelopes
/// (poison pills, never handed to the handler) each go to `<topic>.dlq` with their value
/// unchanged and in order, and the consumer moves on past them on their partition. The offsets
/// past them are committed: the group's next member does not see them again. Returns what was
/// sent, for the checks of each bus's own dead-letter headers.
inline DeadLetters check_dead_letters(bus::EventBus& bus, const std::string& topic,
                                      const std::string& group, const DlqValues& dlq_values,
                                      std::chrono::milliseconds timeout) {
  const DeadLetters sent{contract::event("k", 1), "this is not json", contract::event("k", 2),
                         R"({"specversion":"1.0","id":"x"})"};
  const Envelope fine = contract::event("k", 3);
  Collector got([&](const bus::Message& m) {
    if (m.envelope.id == sent.doomed.id) return bus::Outcome::retry("never works");
    if (m.envelope.id == sent.rejected.id) return bus::Outcome::dead_letter("bad data");
    return bus::Outcome::ack();
  });
  auto sub = bus.subscribe({.group = group,
                            .topics = {topic},
                            .max_attempts = 3,
                            .initial_backoff = std::chrono::milliseconds(10),
                            .max_backoff = std::chrono::milliseconds(20)},
                           got.handler());
  REQUIRE(sub.ok());
  std::vector<bus::Record> records{
      contract::record(topic, sent.doomed),   bus::Record{topic, "k", sent.garbage},
      contract::record(topic, sent.rejected), bus::Record{topic, "k", sent.incomplete},
      contract::record(topic, fine),
  };
  REQUIRE(bus.publish(records).ok());
  REQUIRE(eventually(
      [&] {
        const auto ids = got.ids();
        return std::find(ids.begin(), ids.end(), fine.id) != ids.end();
      },
      timeout));
  std::vector<std::string> seen;
  for (const auto& m : got.messages()) {
    seen.push_back(m.envelope.id + "#" + std::to_string(m.attempt));
  }
  const std::string doomed = sent.doomed.id + "#";
  CHECK(seen == std::vector<std::string>{doomed + "1", doomed + "2", doomed + "3",
                                         sent.rejected.id + "#1", fine.id + "#1"});
  CHECK(dlq_values(4) == std::vector<std::string>{encode_envelope(sent.doomed), sent.garbage,
                                                  encode_envelope(sent.rejected), sent.incomplete});

  // Committed past them: after a marker on the same key, the group's next member gets only it.
  (*sub)->close();
  Collector again;
  auto next = bus.subscribe({.group = group, .topics = {topic}}, again.handler());
  REQUIRE(next.ok());
  const Envelope marker = contract::event("k", 4);
  REQUIRE(bus.publish(topic, marker).ok());
  REQUIRE(eventually([&] { return again.size() >= 1; }, timeout));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  (*next)->close();
  CHECK(again.ids() == std::vector<std::string>{marker.id});
  return sent;
}

/// A dead letter whose write fails is held, never skipped: the rest of its partition waits while
/// the write alone is retried after a backoff, and the handler is not called again for it. Once
/// writes succeed again the copy is written once and the consumer moves on. `refuse` makes the
/// bus's dead-letter writes (and only those) fail until `accept`.
inline void check_dead_letter_write_failure(bus::EventBus& bus, const std::string& topic,
                                            const std::string& group,
                                            const std::function<void()>& refuse,
                                            const std::function<void()>& accept,
                                            std::chrono::milliseconds timeout) {
  const Envelope rejected = contract::event("k", 1);
  const Envelope next = contract::event("k", 2);
  std::vector<bus::Record> records{contract::record(topic, rejected),
                                   contract::record(topic, next)};
  REQUIRE(bus.publish(records).ok());
  refuse();
  std::atomic<int> rejected_calls{0};
  Collector got([&](const bus::Message& m) {
    if (m.envelope.id != rejected.id) return bus::Outcome::ack();
    ++rejected_calls;
    return bus::Outcome::dead_letter("bad data");
  });
  auto sub = bus.subscribe({.group = group,
                            .topics = {topic},
                            .initial_backoff = std::chrono::milliseconds(100),
                            .max_backoff = std::chrono::milliseconds(200)},
                           got.handler());
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return rejected_calls.load() >= 1; }, timeout));
  std::this_thread::sleep_for(std::chrono::seconds(1));  // several failed writes
  CHECK(rejected_calls.load() == 1);
  CHECK(got.ids() == std::vector<std::string>{rejected.id});  // the next record waits
  accept();
  REQUIRE(eventually([&] { return got.size() >= 2; }, timeout));
  (*sub)->close();
  CHECK(got.ids() == std::vector<std::string>{rejected.id, next.id});
  CHECK(rejected_calls.load() == 1);

  CHECK(contract::dead_lettered_ids(bus, topic, group, timeout) ==
        std::vector<std::string>{rejected.id});
}

/// Offsets with the effects (see BatchScope): a subscription with a store records in it, with
/// each batch, where its group stands; and a group whose store is ahead of the bus's committed
/// offsets (a consumer killed between its store's commit and the bus's) starts at the store's
/// positions, so what the store already applied is not handed over again.
/// `engine`: the store's ("sqlite" in memory, or "postgres": see support/stores.hpp).
inline void check_stored_positions(bus::EventBus& bus, const std::string& topic,
                                   const std::string& group, std::chrono::milliseconds timeout,
                                   const std::string& engine = "sqlite") {
  std::vector<Envelope> first, second;
  for (int i = 0; i < 24; ++i) first.push_back(contract::event("k" + std::to_string(i % 6), i));
  for (int i = 24; i < 36; ++i) second.push_back(contract::event("k" + std::to_string(i % 6), i));
  std::vector<bus::Record> records;
  for (const auto& e : first) records.push_back(contract::record(topic, e));
  REQUIRE(bus.publish(records).ok());

  auto store = std::optional(open_store(engine));
  Collector got;
  auto sub =
      bus.subscribe({.group = group, .topics = {topic}, .store = store->get()}, got.handler());
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return got.size() >= first.size(); }, timeout));
  (*sub)->close();
  CHECK(contract::as_multiset(got.ids()) == contract::ids_of(first));
  auto positions = (*store)->load_positions(group);
  REQUIRE(positions.ok());
  // Each partition's position is one past its last record: on fresh topics they add up.
  int64_t total = 0;
  for (const auto& p : *positions) {
    CHECK(p.topic.ends_with(topic));
    total += p.next;
  }
  CHECK(total == static_cast<int64_t>(first.size()));

  // A store that has applied `first` meets a group with nothing committed on the bus.
  records.clear();
  for (const auto& e : second) records.push_back(contract::record(topic, e));
  REQUIRE(bus.publish(records).ok());
  const std::string behind = group + "-behind";
  REQUIRE((*store)->save_positions(behind, *positions).ok());
  Collector rest;
  auto sub2 =
      bus.subscribe({.group = behind, .topics = {topic}, .store = store->get()}, rest.handler());
  REQUIRE(sub2.ok());
  REQUIRE(eventually([&] { return rest.size() >= second.size(); }, timeout));
  std::this_thread::sleep_for(std::chrono::seconds(1));  // room for a wrong redelivery
  (*sub2)->close();
  CHECK(contract::as_multiset(rest.ids()) == contract::ids_of(second));
  // Records published straight to the bus, not through an outbox relay, may come twice.
  for (const auto& m : rest.messages()) CHECK_FALSE(m.once);
}

/// A relay that republishes after a crash (between the broker's ack and its delete) sends the
/// same outbox rows again, under new offsets. A subscription with a store hands each (source,
/// seq) to its handler once and says so (Message::once), across publishes and across restarts
/// of the group's member (the marks live in the store with the positions); a later seq of the
/// source, and a record of another source with the same seq, are new.
inline void check_source_copies_once(bus::EventBus& bus, const std::string& topic,
                                     const std::string& group, std::chrono::milliseconds timeout,
                                     const std::string& engine = "sqlite") {
  std::vector<Envelope> events;
  for (int i = 0; i < 30; ++i) events.push_back(contract::event("k" + std::to_string(i % 7), i));
  auto relayed = [&](size_t from, size_t to, const std::string& source) {
    std::vector<bus::Record> out;
    for (size_t i = from; i < to; ++i) {
      bus::Record r = contract::record(topic, events[i]);
      r.source = source;
      r.seq = static_cast<int64_t>(i + 1);
      out.push_back(std::move(r));
    }
    return out;
  };
  // Rows 1..20 published, then 11..20 again (the relay's last batch before its crash) and on.
  REQUIRE(bus.publish(relayed(0, 20, "outbox-a")).ok());
  REQUIRE(bus.publish(relayed(10, 25, "outbox-a")).ok());

  auto store = std::optional(open_store(engine));
  Collector got;
  {
    auto sub =
        bus.subscribe({.group = group, .topics = {topic}, .store = store->get()}, got.handler());
    REQUIRE(sub.ok());
    REQUIRE(eventually([&] { return got.size() >= 25; }, timeout));
    std::this_thread::sleep_for(std::chrono::seconds(1));  // room for a wrong second copy
    (*sub)->close();
  }
  std::multiset<std::string> expected;
  for (size_t i = 0; i < 25; ++i) expected.insert(events[i].id);
  CHECK(contract::as_multiset(got.ids()) == expected);
  for (const auto& m : got.messages()) CHECK(m.once);

  // The member restarts; the relay, restarted too, sends 21..30 once more and the rest after.
  // Another source's seq 5 is its own record, not a copy.
  REQUIRE(bus.publish(relayed(20, 30, "outbox-a")).ok());
  Envelope other = contract::event("k-other", 99);
  bus::Record o = contract::record(topic, other);
  o.source = "outbox-b";
  o.seq = 5;
  REQUIRE(bus.publish(std::span<const bus::Record>(&o, 1)).ok());
  Collector rest;
  auto sub =
      bus.subscribe({.group = group, .topics = {topic}, .store = store->get()}, rest.handler());
  REQUIRE(sub.ok());
  REQUIRE(eventually([&] { return rest.size() >= 6; }, timeout));
  std::this_thread::sleep_for(std::chrono::seconds(1));
  (*sub)->close();
  expected.clear();
  for (size_t i = 25; i < 30; ++i) expected.insert(events[i].id);
  expected.insert(other.id);
  CHECK(contract::as_multiset(rest.ids()) == expected);
}

}  // namespace ecom::test
