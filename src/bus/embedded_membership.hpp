#pragma once
// One member of an embedded consumer group: its row in `members`, the partitions it owns in
// `ownership`, and the group's committed offsets. Knows nothing of delivery: the consumer tells
// it the positions it holds and applies the plan a heartbeat returns. Private to src/bus.
//
// A static member (instance_id set) uses the instance id as its member id, so a restarted
// process finds its previous incarnation's membership and partitions and resumes them at its
// first heartbeat. The incarnation id tells the two apart: the newer one wins, and the older,
// if it is still running, is fenced (stops; its commits and its leave() are refused).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ecom/db/database.hpp"
#include "embedded_log.hpp"

namespace ecom::bus::embedded {

using PartKey = std::pair<std::string, int>;

/// Partitions a member holds, with the next offset it would deliver of each.
using Positions = std::map<PartKey, int64_t>;

class Membership {
 public:
  /// `instance_id` empty: a dynamic member, whose member id is its incarnation id.
  Membership(std::shared_ptr<Core> core, std::string group, std::vector<std::string> topics,
             const std::string& instance_id);

  const std::string& member_id() const noexcept { return member_id_; }

  /// A partition this member now owns, and where its group committed.
  struct Claim {
    PartKey key;
    int64_t committed;
  };

  /// What a heartbeat changed.
  struct Plan {
    bool evicted = false;
    bool fenced = false;  ///< another incarnation took this static member id over
    std::vector<Claim> claims;
    std::vector<PartKey> dropped;  ///< released or lost
  };

  /// Refreshes membership and moves partition ownership towards the deterministic assignment:
  /// live members sorted by id, member i takes partitions p with p % n == i. A partition is
  /// claimed only when unowned or owned by a member that is gone, so no two live members ever
  /// own the same partition. A partition of `held` it lets go of is committed at its position
  /// first. Nullopt (logged) when the transaction failed.
  std::optional<Plan> heartbeat(const Positions& held);

  /// Commits `position` of topic[partition] inside `tx` while this member still owns it and is
  /// not fenced; false otherwise.
  bool commit_offset(db::Tx& tx, const std::string& topic, int partition, int64_t position) const;

  /// Commits `progress`, releases partitions and leaves the group, in one transaction. A fenced
  /// static member leaves nothing: its id belongs to the newer incarnation now.
  void leave(const Positions& progress);

 private:
  int64_t load_committed(db::Tx& tx, const PartKey& k) const;

  std::shared_ptr<Core> core_;
  const std::string group_;
  const std::vector<std::string> topics_;
  const std::string incarnation_;  ///< unique per subscription object
  const std::string member_id_;    ///< the instance id of a static member, else incarnation_
  bool joined_ = false;            ///< a heartbeat succeeded (touched by one thread only)
};

}  // namespace ecom::bus::embedded
