#pragma once
// Persistence of sagas in the module's SQLite store: the `sagas` table and its history. Every
// function runs inside the caller's transaction or read.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/core/result.hpp"
#include "ecom/db/database.hpp"
#include "saga_machine.hpp"

namespace ecom::saga::store {

// Creates or upgrades the saga tables (migration component "saga").
Status migrate(db::Database& db);

// The saga of `order_id`, or nullopt. Throws db::DbError (caught by the transaction).
/// How load() treats a saga another transaction holds (replicas share a PostgreSQL store).
enum class Lock {
  kNone,        ///< a read: no lock
  kWait,        ///< a step: lock the row, waiting for whoever holds it
  kSkipLocked,  ///< a timeout: a held saga is being moved on by its holder; nullopt, not waited for
};
std::optional<SagaRecord> load(db::Tx& tx, std::string_view order_id, Lock lock = Lock::kNone);
// Inserts or replaces the row.
void save(db::Tx& tx, const SagaRecord& r);

// One applied input, for operators.
struct HistoryRow {
  int64_t at_ms = 0;
  std::string input;
  std::string event_id;
  std::string from_state;
  std::string to_state;
  std::string note;
};
void add_history(db::Tx& tx, std::string_view order_id, const HistoryRow& h);
// The latest `limit` rows, oldest first.
std::vector<HistoryRow> history(db::Tx& tx, std::string_view order_id, int limit);

// Order ids whose deadline is due at `now_ms`, earliest first.
std::vector<std::string> due(db::Tx& tx, int64_t now_ms, int limit);
// Sagas that still have a deadline (in flight or waiting for an acknowledgement).
int64_t count_with_deadline(db::Tx& tx);
// Sagas per state name.
std::vector<std::pair<std::string, int64_t>> count_by_state(db::Tx& tx);
// Sagas with a deadline, earliest first (for the operator listing).
std::vector<SagaRecord> with_deadline(db::Tx& tx, int limit);

}  // namespace ecom::saga::store
