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
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/core/result.hpp"

namespace ecom {

/// The highest sequence number of one producer (an outbox source, see bus::Record::source)
/// whose record a group has handled on one partition. A relay publishes each source's rows in
/// sequence order and never lets a later row overtake an earlier one, so a record of that source
/// at or below the mark is a copy of one already handled (republished under a new offset by a
/// relay that crashed between the broker's ack and its delete).
struct SourceMark {
  std::string source;
  int64_t seq = 0;
  bool operator==(const SourceMark&) const = default;
};

/// Where a consumer group stands on one partition: the next offset to consume, and the marks of
/// the sources seen there (empty on a bus that deduplicates at the log).
struct ConsumedPosition {
  std::string topic;
  int partition = 0;
  int64_t next = 0;
  std::vector<SourceMark> marks;  ///< saved as given (a source absent here keeps its stored mark)
  /// Fencing, for consumers of one group that share a store (replicas on PostgreSQL): when set,
  /// the save applies only while the stored offset is still this one (-1: none stored yet).
  /// Else another consumer has handled the partition since (a rebalance this one has not seen
  /// yet, or that took the partition while this one stalled): save_positions then fails with
  /// kConflict, and with it the batch, so no record's effects are applied twice.
  std::optional<int64_t> expected;
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
  /// its thread (its own transaction otherwise). Overwrites the offset and the marks given: a
  /// topic recreated from offset 0 must be able to move its position back.
  virtual Status save_positions(std::string_view group,
                                std::span<const ConsumedPosition> positions) = 0;
  /// The stored positions of `group` with every stored mark (empty before its first save).
  virtual Result<std::vector<ConsumedPosition>> load_positions(std::string_view group) = 0;
};

}  // namespace ecom
