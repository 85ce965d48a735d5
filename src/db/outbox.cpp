#include "ecom/db/outbox.hpp"

#include <fmt/format.h>

#include <array>
#include <string>

#include "ecom/core/clock.hpp"

namespace ecom::db {

Status migrate_messaging(Database& db) {
  static constexpr std::array<std::string_view, 4> kSteps{
      "CREATE TABLE outbox("
      "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
      "  topic TEXT NOT NULL,"
      "  key TEXT NOT NULL,"
      "  payload TEXT NOT NULL,"
      "  created_at INTEGER NOT NULL);"
      "CREATE TABLE inbox("
      "  consumer TEXT NOT NULL,"
      "  event_id TEXT NOT NULL,"
      "  processed_at INTEGER NOT NULL,"
      "  PRIMARY KEY(consumer, event_id)) WITHOUT ROWID;",
      // v2: inbox_prune takes the oldest rows; without this index each prune scans the table.
      "CREATE INDEX IF NOT EXISTS inbox_by_time ON inbox(processed_at);",
      // v3: the outbox's identity as a source of records (see outbox_source).
      "CREATE TABLE outbox_source(id TEXT NOT NULL);"
      "INSERT INTO outbox_source VALUES(lower(hex(randomblob(16))));",
      // v4: replicas sharing one (PostgreSQL) outbox: each row names the replica that wrote it
      // (NULL on SQLite, whose one writer is the store's own source), and each replica says
      // when it was last alive, so that another relays a dead one's rows.
      "ALTER TABLE outbox ADD COLUMN source TEXT;"
      "CREATE INDEX IF NOT EXISTS outbox_by_source ON outbox(source, seq);"
      "CREATE TABLE IF NOT EXISTS outbox_replicas("
      "  source TEXT PRIMARY KEY,"
      "  seen_at INTEGER NOT NULL) WITHOUT ROWID;",
  };
  return db.migrate("messaging", kSteps);
}

std::string outbox_source(Tx& tx) {
  auto s = tx.stmt("SELECT id FROM outbox_source");
  return s.step() ? s.col_text(0) : std::string();
}

void outbox_add(Tx& tx, std::string_view topic, const Envelope& e) {
  auto s =
      tx.stmt("INSERT INTO outbox(topic, key, payload, created_at, source) VALUES(?, ?, ?, ?, ?)");
  s.bind_all(topic, e.subject, encode_envelope(e), now_ms());
  if (tx.replica_id().empty()) {
    s.bind_null(5);
  } else {
    s.bind(5, tx.replica_id());
  }
  s.exec();
}

std::vector<OutboxRow> outbox_peek(Tx& tx, int limit, int64_t after_seq, std::string_view source) {
  std::vector<OutboxRow> rows;
  auto s = source.empty() ? tx.stmt(
                                "SELECT seq, topic, key, payload FROM outbox WHERE seq > ? "
                                "ORDER BY seq LIMIT ?")
                          : tx.stmt(
                                "SELECT seq, topic, key, payload FROM outbox WHERE seq > ? "
                                "AND source = ? ORDER BY seq LIMIT ?");
  s.bind(1, after_seq);
  if (source.empty()) {
    s.bind(2, limit);
  } else {
    s.bind(2, source).bind(3, limit);
  }
  while (s.step()) {
    rows.push_back(OutboxRow{s.col_int(0), s.col_text(1), s.col_text(2), s.col_text(3)});
  }
  return rows;
}

void outbox_remove_through(Tx& tx, int64_t seq, std::string_view source) {
  if (source.empty()) {
    tx.stmt("DELETE FROM outbox WHERE seq <= ?").bind(1, seq).exec();
  } else {
    tx.stmt("DELETE FROM outbox WHERE seq <= ? AND source = ?").bind_all(seq, source).exec();
  }
}

// The database's clock, not the replicas': their leases are compared across hosts.
constexpr std::string_view kDbNowMs =
    "CAST(extract(epoch FROM clock_timestamp()) * 1000 AS BIGINT)";

void outbox_replica_alive(Tx& tx) {
  static const std::string sql = fmt::format(
      "INSERT INTO outbox_replicas(source, seen_at) VALUES(?, {}) "
      "ON CONFLICT(source) DO UPDATE SET seen_at = excluded.seen_at",
      kDbNowMs);
  tx.stmt(sql).bind(1, tx.replica_id()).exec();
}

std::vector<std::string> outbox_orphans(Tx& tx, int64_t lease_ms) {
  static const std::string sql = fmt::format(
      "SELECT o.source FROM outbox o LEFT JOIN outbox_replicas r ON r.source = o.source "
      "WHERE o.source IS NOT NULL AND o.source <> ? GROUP BY o.source "
      // Never seen alive: judged by its oldest row (on the writer's clock), as a replica may
      // write before its relay first says it is alive.
      "HAVING coalesce(max(r.seen_at), min(o.created_at)) < {} - ?",
      kDbNowMs);
  std::vector<std::string> out;
  auto s = tx.stmt(sql);
  s.bind(1, tx.replica_id()).bind(2, lease_ms);
  while (s.step()) out.push_back(s.col_text(0));
  return out;
}

int64_t outbox_forget_replicas(Tx& tx, int64_t older_than_ms) {
  static const std::string sql = fmt::format(
      "DELETE FROM outbox_replicas WHERE seen_at < {} - ? AND NOT EXISTS "
      "(SELECT 1 FROM outbox WHERE outbox.source = outbox_replicas.source)",
      kDbNowMs);
  return tx.stmt(sql).bind(1, older_than_ms).exec();
}

int64_t outbox_pending(Tx& tx) {
  auto s = tx.stmt("SELECT count(*) FROM outbox");
  return s.step() ? s.col_int(0) : 0;
}

OutboxBacklog outbox_backlog(Tx& tx) {
  auto s = tx.stmt("SELECT count(*), coalesce(min(created_at), 0) FROM outbox");
  if (!s.step()) return {};
  return OutboxBacklog{s.col_int(0), s.col_int(1)};
}

bool inbox_claim(Tx& tx, std::string_view consumer, std::string_view event_id) {
  return tx.stmt(
               "INSERT INTO inbox(consumer, event_id, processed_at) VALUES(?, ?, ?) "
               "ON CONFLICT DO NOTHING")
             .bind_all(consumer, event_id, now_ms())
             .exec() == 1;
}

int64_t inbox_prune(Tx& tx, int64_t older_than_ms, int limit) {
  if (limit <= 0) return 0;
  return tx
      .stmt(
          "DELETE FROM inbox WHERE (consumer, event_id) IN (SELECT consumer, event_id FROM inbox "
          "WHERE processed_at < ? ORDER BY processed_at LIMIT ?)")
      .bind_all(older_than_ms, limit)
      .exec();
}

}  // namespace ecom::db
