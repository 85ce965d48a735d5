#pragma once
/// How a transport learns of group commit without knowing the storage: a subscriber hands the bus
/// a BatchScope (its store), and the bus runs the handlers of one fetched run inside it, committing
/// the offsets only after it. db::Database is one; a PostgreSQL store will be another.
///
/// The scope also keeps where each consumer group stands ("store offsets outside Kafka", as
/// KafkaConsumer's documentation calls it): the bus writes a partition's next offset in the same
/// batch as the effects of the records before it, and starts there on assignment. A record whose
/// effects are durable is then never handed to its handler again, whatever the broker's
/// committed offset says, and the broker's offsets may be committed lazily (they are for tools).

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/core/result.hpp"

namespace ecom {

/// Where a consumer group stands on one partition: the next offset to consume.
struct ConsumedPosition {
  std::string topic;
  int partition = 0;
  int64_t next = 0;
  bool operator==(const ConsumedPosition&) const = default;
};

class BatchScope {
 public:
  virtual ~BatchScope() = default;
  /// Begins one batch, runs `body` (whose transactions on this store join the batch), and commits
  /// it; aborts it when `body` throws or the commit fails. Not ok: nothing of the batch is
  /// durable, and every unit in it counts as not applied.
  virtual Status run(const std::function<void()>& body) = 0;
  /// Records the positions of `group`, durable with the batch when called inside run()'s body on
  /// its thread (its own transaction otherwise). Overwrites: a topic recreated from offset 0
  /// must be able to move its position back.
  virtual Status save_positions(std::string_view group,
                                std::span<const ConsumedPosition> positions) = 0;
  /// The stored positions of `group` (empty before its first save).
  virtual Result<std::vector<ConsumedPosition>> load_positions(std::string_view group) = 0;
};

}  // namespace ecom
