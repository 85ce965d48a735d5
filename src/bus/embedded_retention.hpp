#pragma once
// The embedded bus's retention: deleting records past their topic's retention. Private to
// src/bus.

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <tuple>

#include "ecom/core/periodic_task.hpp"
#include "ecom/db/database.hpp"
#include "embedded_log.hpp"

namespace ecom::bus::embedded {

/// Deletes records past their topic's retention on one background task. Only a prefix of each
/// partition log goes (oldest offsets first, up to the first record still within retention), so
/// a log stays a dense offset range and a clock that went back never punches holes into it.
///
/// A pass runs each retention_check_interval on the bus's clock, the first one interval after
/// opening; a partition with more than one chunk to delete is worked through in the same pass,
/// pausing (on the clock) between chunks.
class RetentionJanitor final {
 public:
  explicit RetentionJanitor(std::shared_ptr<Core> core);
  // The task stops (joins) first: its step uses core_ and the pass state.
  ~RetentionJanitor() { task_.stop(); }
  RetentionJanitor(const RetentionJanitor&) = delete;
  RetentionJanitor& operator=(const RetentionJanitor&) = delete;

 private:
  struct Chunk {
    int64_t deleted = 0;
    bool more = false;  ///< a full chunk went: the partition may hold more expired records
  };

  /// One turn: a new pass when none is under way, then chunks of its partitions until one
  /// needs a pause (returned as the delay: the task runs this again after it) or the pass is done.
  std::optional<std::chrono::milliseconds> step(int64_t now);

  using Work = std::deque<std::tuple<std::string, int, int64_t>>;

  /// Takes this interval's lease; returns the partitions whose oldest record expired, with their
  /// cutoff (the rest cost no write), or nullopt when there is nothing to do or it failed.
  std::optional<Work> plan(int64_t now);

  static Chunk delete_chunk(db::Tx& tx, const std::string& topic, int partition, int64_t cutoff);

  std::shared_ptr<Core> core_;
  // The pass under way; touched by the task's step only.
  std::optional<Work> pending_;
  int64_t total_ = 0;
  PeriodicTask task_;  // last: stops before the members its step uses go
};

}  // namespace ecom::bus::embedded
