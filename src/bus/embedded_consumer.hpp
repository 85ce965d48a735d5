#pragma once
// The embedded bus's consumer: one subscription's thread, which heartbeats its membership,
// fetches from the partition logs it owns, calls the handler, settles the outcome
// (bus/delivery.hpp) and commits. Private to src/bus.

#include <memory>

#include "consumer_worker.hpp"
#include "ecom/bus/event_bus.hpp"
#include "embedded_log.hpp"

namespace ecom::bus::embedded {

/// The consumer of one subscription, not started yet (ConsumerWorker::start). `options` is
/// checked, its topics sorted and unique. A static member's (group, instance_id) must already be
/// registered in `core`; the consumer releases it when its thread ends (or, never started, when
/// it is destroyed).
std::shared_ptr<ConsumerWorker> make_consumer(std::shared_ptr<Core> core,
                                              SubscriptionOptions options, Handler handler);

}  // namespace ecom::bus::embedded
