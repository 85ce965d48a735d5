#pragma once
/// How a transport learns of group commit without knowing the storage: a subscriber hands the bus
/// a BatchScope (its store), and the bus runs the handlers of one fetched run inside it, committing
/// the offsets only after it. db::Database is one; a PostgreSQL store will be another.

#include <functional>

#include "ecom/core/result.hpp"

namespace ecom {

class BatchScope {
 public:
  virtual ~BatchScope() = default;
  /// Begins one batch, runs `body` (whose transactions on this store join the batch), and commits
  /// it; aborts it when `body` throws or the commit fails. Not ok: nothing of the batch is
  /// durable, and every unit in it counts as not applied.
  virtual Status run(const std::function<void()>& body) = 0;
};

}  // namespace ecom
