#pragma once
/// Transactional outbox and inbox tables, written inside a module's own transactions.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ecom/core/envelope.hpp"
#include "ecom/core/result.hpp"
#include "ecom/db/database.hpp"

namespace ecom::db {

/// Creates the outbox and inbox tables (migration component "messaging").
Status migrate_messaging(Database& db);

/// Queues an event for publication in the caller's transaction; it is published only if that
/// transaction commits. The key is the envelope subject.
void outbox_add(Tx& tx, std::string_view topic, const Envelope& e);

/// The outbox's identity as a source of records: random, made when the store was created, so a
/// new store (a wiped data dir) is a new source whose row seqs may start again at 1. With the
/// row seq it names each event once (Record::source/seq). A store restored from a backup must
/// be given a new one (its seqs go back). Empty before migrate_messaging.
std::string outbox_source(Tx& tx);

/// One queued row.
struct OutboxRow {
  int64_t seq;
  std::string topic;
  std::string key;
  std::string payload;  ///< the encoded envelope
};

/// Oldest `limit` rows after `after_seq`, in commit order, of every writer (SQLite) or of the
/// replica `source` (PostgreSQL, see Tx::replica_id). The two are the same: rows become visible
/// in seq order only where one connection writes them, since a sequence value is taken before
/// commit. Rows of two replicas interleave in any order, so each replica's rows are a source of
/// their own (Record::source), published in their own order.
std::vector<OutboxRow> outbox_peek(Tx& tx, int limit, int64_t after_seq = 0,
                                   std::string_view source = {});
/// Deletes rows up to and including `seq` (after the bus acknowledged them), of `source` alone
/// when given.
void outbox_remove_through(Tx& tx, int64_t seq, std::string_view source = {});

/// PostgreSQL, replicas sharing the outbox: says this replica (Tx::replica_id) is alive now, on
/// the database's clock.
void outbox_replica_alive(Tx& tx);
/// Replicas other than this one with rows waiting and no sign of life for `lease_ms` (one never
/// seen alive: whose oldest row is that old): crashed or scaled away. Another relays their rows
/// (under their source: a copy of a row it had published is then recognised downstream).
std::vector<std::string> outbox_orphans(Tx& tx, int64_t lease_ms);
/// Forgets replicas silent for `older_than_ms` that have no rows left; returns how many.
int64_t outbox_forget_replicas(Tx& tx, int64_t older_than_ms);
/// Rows still waiting.
int64_t outbox_pending(Tx& tx);

/// What waits in the outbox, for the metrics.
struct OutboxBacklog {
  int64_t rows = 0;
  int64_t oldest_ms = 0;  ///< created_at (epoch ms) of the oldest row; 0 when empty
};
OutboxBacklog outbox_backlog(Tx& tx);

/// Records that `consumer` processed `event_id`; false when it already had (a redelivery): the
/// caller then skips its effects. Must run in the same transaction as those effects.
bool inbox_claim(Tx& tx, std::string_view consumer, std::string_view event_id);
/// As above, for an event the bus delivered: one the bus hands over once only (bus::Message::
/// once: its offset's position is stored with these effects, and no copy can come under another
/// offset) needs no row, and is claimed without one.
inline bool inbox_claim(Tx& tx, std::string_view consumer, std::string_view event_id,
                        bool delivered_once) {
  return delivered_once || inbox_claim(tx, consumer, event_id);
}

/// Deletes at most `limit` inbox rows processed before `older_than_ms` (epoch ms), oldest first;
/// returns how many. Once a row is gone a redelivery of its event would be applied again, so
/// only rows older than any redelivery window may go (see OutboxRelay's inbox_retention).
int64_t inbox_prune(Tx& tx, int64_t older_than_ms, int limit);

}  // namespace ecom::db
