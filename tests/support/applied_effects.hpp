#pragma once
/// Effects that show a double apply: each event's applications are counted in table
/// applied(id, n), so an event applied twice has n = 2. Like a module, the inbox is claimed only
/// for events the bus does not deliver once (Message::once, db::inbox_claim).

#include <array>
#include <string_view>

#include "ecom/bus/event_bus.hpp"
#include "ecom/db/database.hpp"
#include "ecom/db/outbox.hpp"

namespace ecom::test {

inline constexpr std::array<std::string_view, 1> kAppliedSchema{
    "CREATE TABLE applied(id TEXT PRIMARY KEY, n INTEGER NOT NULL);"};

/// The inbox (messaging tables) and the applied table.
inline Status migrate_applied(db::Database& db) {
  if (auto st = db::migrate_messaging(db); !st) return st;
  return db.migrate("applied", kAppliedSchema);
}

/// Applies `m` once more in its own transaction (a savepoint inside the bus's batch).
inline bus::Outcome apply_counted(db::Database& db, const bus::Message& m) {
  auto r = db.transaction([&](db::Tx& tx) -> Status {
    if (!db::inbox_claim(tx, "applied", m.envelope.id, m.once)) return {};
    tx.stmt(
          "INSERT INTO applied(id, n) VALUES(?, 1) ON CONFLICT(id) DO UPDATE SET n = applied.n + 1")
        .bind(1, m.envelope.id)
        .exec();
    return {};
  });
  return r ? bus::Outcome::ack() : bus::Outcome::retry(r.error().message);
}

}  // namespace ecom::test
