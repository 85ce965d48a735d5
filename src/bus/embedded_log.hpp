#pragma once
// The embedded bus's file: its schema, appending records to partition logs, reading them back,
// and the state every bus object of one file shares (Core). Private to src/bus.

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ecom/bus/embedded_bus.hpp"
#include "ecom/core/result.hpp"
#include "ecom/db/database.hpp"

namespace ecom::bus::embedded {

inline constexpr std::string_view kTag{"bus"};

/// A consumer thread waiting for records of its topics (see Core::wake).
struct Waiter {
  std::vector<std::string> topics;  ///< sorted
  std::condition_variable cv;
  bool signalled = false;  ///< guarded by Core::mu: records (or a stop) came since it looked
};

/// What every bus object of one file shares: the connection and the in-process wake-up.
struct Core {
  EmbeddedBusOptions opt;
  std::unique_ptr<db::Database> db;
  std::mutex mu;  ///< guards waiters and their flags
  std::vector<Waiter*> waiters;

  /// After a local commit that added records to `topics`: wakes only the consumers of those
  /// topics. Waking every consumer thread of the process for every record (one condition
  /// variable for all) cost a context switch and a read of the log ends per thread and record
  /// (perf at 100 orders/s: ~30% of the process in scheduling; ~20% fewer samples after).
  void wake(const std::vector<std::string_view>& topics) {
    std::lock_guard lock(mu);
    for (Waiter* w : waiters) {
      const bool mine = std::any_of(topics.begin(), topics.end(), [&](std::string_view t) {
        return std::binary_search(w->topics.begin(), w->topics.end(), t, std::less<>());
      });
      if (!mine) continue;
      w->signalled = true;
      w->cv.notify_one();
    }
  }
  /// Wakes `w` whatever its topics (to stop it).
  void wake(Waiter& w) {
    std::lock_guard lock(mu);
    w.signalled = true;
    w.cv.notify_one();
  }
  void add_waiter(Waiter& w) {
    std::lock_guard lock(mu);
    waiters.push_back(&w);
  }
  void remove_waiter(Waiter& w) {
    std::lock_guard lock(mu);
    std::erase(waiters, &w);
  }

  /// Static members of this bus object, (group, instance_id): each may be live only once.
  std::mutex instances_mu;
  std::set<std::pair<std::string, std::string>> instances;

  bool register_instance(const std::string& group, const std::string& instance) {
    std::lock_guard lock(instances_mu);
    return instances.emplace(group, instance).second;
  }
  void release_instance(const std::string& group, const std::string& instance) {
    std::lock_guard lock(instances_mu);
    instances.erase({group, instance});
  }
};

/// Opens the file at options.path, creating (or upgrading) its schema. The partition count is the
/// one the file was created with, which may differ from options.partitions (logged): key-to-
/// partition mapping, and so per-key order, depends on it. Options are checked by the caller.
Result<std::shared_ptr<Core>> open_log(EmbeddedBusOptions options);

/// Appends records to partition logs inside one write transaction, tracking each touched
/// partition's log end so that a batch costs one INSERT per record plus one UPSERT per partition.
class Appender {
 public:
  Appender(db::Tx& tx, int partitions);

  /// False when `seq` of `source` was appended before (by this or an earlier transaction): the
  /// caller then skips the record. Seqs of one source must come in increasing order, which an
  /// outbox relay's do (SQLite's AUTOINCREMENT under its single writer, published in order).
  bool admit(std::string_view source, int64_t seq);

  /// Appends one record; returns its partition. `once`: admitted by its source seq.
  int append(std::string_view topic, std::string_view key, std::string_view value,
             const std::string* headers, bool once = false);

  void finish();

 private:
  struct End {
    std::string topic;
    int partition;
    int64_t next;
  };

  struct Source {
    std::string source;
    int64_t seq;     ///< highest admitted
    int64_t stored;  ///< as read from the file
  };

  End& end_of(std::string_view topic, int partition);

  db::Tx& tx_;
  int partitions_;
  int64_t ts_;
  std::vector<End> ends_;
  std::vector<Source> sources_;
};

/// One record of a partition log.
struct LogRecord {
  int64_t offset;
  std::string key;
  std::string value;
  bool once = false;  ///< appended once per source seq
};

/// Appends up to `limit` records of topic[partition] from offset `from` on to `out`, in offset
/// order. Retention may have deleted the head of the log: the first one may be past `from`.
void read_records(db::Tx& tx, std::string_view topic, int partition, int64_t from, int limit,
                  std::deque<LogRecord>& out);

/// Calls `f(partition, next offset)` for every partition of `topic` that has a log end.
void for_each_log_end(db::Tx& tx, std::string_view topic,
                      const std::function<void(int partition, int64_t log_end)>& f);

}  // namespace ecom::bus::embedded
