#include "embedded_membership.hpp"

#include <algorithm>

#include "ecom/core/clock.hpp"
#include "ecom/core/log.hpp"

namespace ecom::bus::embedded {
namespace {

// Commits an offset only while `owner` still owns the partition and no other incarnation took
// its member id over: a member that was evicted (and whose partitions moved on), or a static
// member replaced by a newer process, cannot overwrite the new owner's progress.
constexpr std::string_view kCommitIfOwner{
    R"(INSERT INTO group_offsets(grp, topic, "partition", committed) SELECT ?1, ?2, ?3, ?4 )"
    R"(WHERE EXISTS(SELECT 1 FROM ownership WHERE grp=?1 AND topic=?2 AND "partition"=?3 )"
    R"(AND owner=?5) AND NOT EXISTS(SELECT 1 FROM members WHERE grp=?1 AND member_id=?5 )"
    R"(AND incarnation<>?6) ON CONFLICT(grp, topic, "partition") )"
    R"(DO UPDATE SET committed=excluded.committed)"};
constexpr std::string_view kSelectCommitted{
    R"(SELECT committed FROM group_offsets WHERE grp=? AND topic=? AND "partition"=?)"};
}  // namespace

Membership::Membership(std::shared_ptr<Core> core, std::string group,
                       std::vector<std::string> topics, const std::string& instance_id)
    : core_(std::move(core)),
      group_(std::move(group)),
      topics_(std::move(topics)),
      incarnation_(new_uuid()),
      member_id_(instance_id.empty() ? incarnation_ : instance_id) {}

std::optional<Membership::Plan> Membership::heartbeat(const Positions& held) {
  const int partitions = core_->opt.partitions;
  const int64_t timeout = core_->opt.session_timeout.count();
  auto r = core_->db->transaction([&](db::Tx& tx) -> Result<Plan> {
    Plan plan;
    const int64_t now = now_ms();
    {
      auto s = tx.stmt("SELECT incarnation FROM members WHERE grp=? AND member_id=?");
      s.bind_all(group_, member_id_);
      if (!s.step()) {
        plan.evicted = joined_;
      } else if (s.col_view(0) != incarnation_) {
        // Before joining: a previous incarnation (typically of a crashed process) whose
        // membership and partitions this one now resumes. After: this one was replaced.
        if (joined_) {
          plan.fenced = true;
          return plan;
        }
        log::info(kTag, "group {}: static member {} resumes its previous incarnation", group_,
                  member_id_);
      }
    }
    tx.stmt(
          "INSERT INTO members(grp, member_id, heartbeat_ms, incarnation) VALUES(?, ?, ?, ?) "
          "ON CONFLICT(grp, member_id) DO UPDATE SET heartbeat_ms=excluded.heartbeat_ms, "
          "incarnation=excluded.incarnation")
        .bind_all(group_, member_id_, now, incarnation_)
        .exec();
    // Both directions, so that a wall-clock jump cannot make a dead member immortal.
    tx.stmt("DELETE FROM members WHERE grp=? AND (heartbeat_ms < ? OR heartbeat_ms > ?)")
        .bind_all(group_, now - timeout, now + timeout)
        .exec();
    std::vector<std::string> live;
    {
      auto s = tx.stmt("SELECT member_id FROM members WHERE grp=? ORDER BY member_id");
      s.bind(1, group_);
      while (s.step()) live.push_back(s.col_text(0));
    }
    const auto me = std::find(live.begin(), live.end(), member_id_);
    const int n = static_cast<int>(live.size());
    const int index = static_cast<int>(me - live.begin());
    auto is_live = [&](const std::string& id) {
      return std::binary_search(live.begin(), live.end(), id);
    };

    for (const auto& topic : topics_) {
      std::map<int, std::string> owners;
      {
        auto s = tx.stmt(R"(SELECT "partition", owner FROM ownership WHERE grp=? AND topic=?)");
        s.bind_all(group_, topic);
        while (s.step()) owners.emplace(static_cast<int>(s.col_int(0)), s.col_text(1));
      }
      for (int p = 0; p < partitions; ++p) {
        PartKey key{topic, p};
        const auto it = owners.find(p);
        const bool db_mine = it != owners.end() && it->second == member_id_;
        const auto held_it = plan.evicted ? held.end() : held.find(key);
        const bool have = held_it != held.end();
        const bool target = p % n == index;
        if (target && db_mine) {
          if (!have) plan.claims.push_back({key, load_committed(tx, key)});
        } else if (target && (it == owners.end() || !is_live(it->second))) {
          tx.stmt(R"(INSERT INTO ownership(grp, topic, "partition", owner) VALUES(?, ?, ?, ?) )"
                  R"(ON CONFLICT(grp, topic, "partition") DO UPDATE SET owner=excluded.owner)")
              .bind_all(group_, topic, p, member_id_)
              .exec();
          if (have) plan.dropped.push_back(key);
          plan.claims.push_back({key, load_committed(tx, key)});
        } else if (db_mine) {
          // Not ours any more: commit progress before letting go, so the next owner
          // continues exactly where this member stopped.
          if (have) commit_offset(tx, topic, p, held_it->second);
          tx.stmt(R"(DELETE FROM ownership WHERE grp=? AND topic=? AND "partition"=? AND owner=?)")
              .bind_all(group_, topic, p, member_id_)
              .exec();
          if (have) plan.dropped.push_back(key);
        } else if (have) {
          plan.dropped.push_back(std::move(key));
        }
      }
    }
    return plan;
  });
  if (!r) {
    log::warn(kTag, "group {}: heartbeat of member {} failed: {}", group_, member_id_,
              r.error().message);
    return std::nullopt;
  }
  Plan& plan = *r;
  if (plan.fenced) {
    log::error(kTag,
               "group {}: static member {} was taken over by another subscription with the "
               "same instance_id (two processes configured alike?); this one stops consuming",
               group_, member_id_);
    return plan;
  }
  if (plan.evicted) {
    log::warn(kTag, "group {}: member {} was evicted (silent longer than {} ms); rejoined", group_,
              member_id_, timeout);
  }
  joined_ = true;
  return plan;
}

bool Membership::commit_offset(db::Tx& tx, const std::string& topic, int partition,
                               int64_t position) const {
  return tx.stmt(kCommitIfOwner)
             .bind_all(group_, topic, partition, position, member_id_, incarnation_)
             .exec() > 0;
}

void Membership::leave(const Positions& progress) {
  auto r = core_->db->transaction([&](db::Tx& tx) -> Status {
    {
      auto s = tx.stmt("SELECT 1 FROM members WHERE grp=? AND member_id=? AND incarnation<>?");
      s.bind_all(group_, member_id_, incarnation_);
      if (s.step()) return {};
    }
    for (const auto& [key, position] : progress) {
      commit_offset(tx, key.first, key.second, position);
    }
    tx.stmt("DELETE FROM ownership WHERE grp=? AND owner=?").bind_all(group_, member_id_).exec();
    tx.stmt("DELETE FROM members WHERE grp=? AND member_id=?").bind_all(group_, member_id_).exec();
    return {};
  });
  if (!r) {
    log::warn(kTag, "group {}: member {} could not leave cleanly: {}", group_, member_id_,
              r.error().message);
  }
}

int64_t Membership::load_committed(db::Tx& tx, const PartKey& k) const {
  auto s = tx.stmt(kSelectCommitted);
  s.bind_all(group_, k.first, k.second);
  return s.step() ? s.col_int(0) : 0;
}

}  // namespace ecom::bus::embedded
