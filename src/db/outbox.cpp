#include "ecom/db/outbox.hpp"

#include <array>

#include "ecom/core/clock.hpp"

namespace ecom::db {

Status migrate_messaging(Database& db) {
  static constexpr std::array<std::string_view, 3> kSteps{
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
  };
  return db.migrate("messaging", kSteps);
}

std::string outbox_source(Tx& tx) {
  auto s = tx.stmt("SELECT id FROM outbox_source");
  return s.step() ? s.col_text(0) : std::string();
}

void outbox_add(Tx& tx, std::string_view topic, const Envelope& e) {
  tx.stmt("INSERT INTO outbox(topic, key, payload, created_at) VALUES(?, ?, ?, ?)")
      .bind_all(topic, e.subject, encode_envelope(e), now_ms())
      .exec();
}

std::vector<OutboxRow> outbox_peek(Tx& tx, int limit, int64_t after_seq) {
  std::vector<OutboxRow> rows;
  auto s =
      tx.stmt("SELECT seq, topic, key, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?");
  s.bind(1, after_seq);
  s.bind(2, limit);
  while (s.step()) {
    rows.push_back(OutboxRow{s.col_int(0), s.col_text(1), s.col_text(2), s.col_text(3)});
  }
  return rows;
}

void outbox_remove_through(Tx& tx, int64_t seq) {
  tx.stmt("DELETE FROM outbox WHERE seq <= ?").bind(1, seq).exec();
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
