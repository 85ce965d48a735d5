#include "embedded_log.hpp"

#include <array>
#include <utility>

#include "ecom/core/clock.hpp"
#include "ecom/core/log.hpp"

namespace ecom::bus::embedded {
namespace {

// "partition" and "offset" are SQL keywords, hence quoted throughout.
constexpr std::array<std::string_view, 4> kSchema{
    // v1
    R"sql(
CREATE TABLE IF NOT EXISTS records(
  topic TEXT NOT NULL,
  "partition" INTEGER NOT NULL,
  "offset" INTEGER NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  ts INTEGER NOT NULL,
  headers TEXT,
  PRIMARY KEY(topic, "partition", "offset"));
CREATE TABLE IF NOT EXISTS log_end(
  topic TEXT NOT NULL,
  "partition" INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,
  PRIMARY KEY(topic, "partition")) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS group_offsets(
  grp TEXT NOT NULL,
  topic TEXT NOT NULL,
  "partition" INTEGER NOT NULL,
  committed INTEGER NOT NULL,
  PRIMARY KEY(grp, topic, "partition")) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members(
  grp TEXT NOT NULL,
  member_id TEXT NOT NULL,
  heartbeat_ms INTEGER NOT NULL,
  PRIMARY KEY(grp, member_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ownership(
  grp TEXT NOT NULL,
  topic TEXT NOT NULL,
  "partition" INTEGER NOT NULL,
  owner TEXT NOT NULL,
  PRIMARY KEY(grp, topic, "partition")) WITHOUT ROWID;
)sql",
    // v2: the file's partition count, fixed at creation. Key-to-partition mapping (and so
    // per-key order) depends on it, so every process must use the same.
    "CREATE TABLE IF NOT EXISTS bus_meta(name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
    // v3: which incarnation (subscription object) of a member heartbeats. Static members keep
    // their id across restarts; this tells a restarted process from a stale one still running.
    "ALTER TABLE members ADD COLUMN incarnation TEXT NOT NULL DEFAULT '';",
    // v4: records appended once per source seq (Record::source), and the highest seq appended
    // of each source. A relay that crashed between this commit and its delete republishes rows
    // this table then skips, so consumers see every such event at one offset only.
    "ALTER TABLE records ADD COLUMN once INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE IF NOT EXISTS sources(source TEXT PRIMARY KEY, seq INTEGER NOT NULL) "
    "WITHOUT ROWID;",
};

constexpr std::string_view kInsertRecord{
    R"(INSERT INTO records(topic, "partition", "offset", key, value, ts, headers, once) )"
    "VALUES(?, ?, ?, ?, ?, ?, ?, ?)"};
constexpr std::string_view kSelectSource{"SELECT seq FROM sources WHERE source=?"};
constexpr std::string_view kUpsertSource{
    "INSERT INTO sources(source, seq) VALUES(?, ?) "
    "ON CONFLICT(source) DO UPDATE SET seq=excluded.seq"};
constexpr std::string_view kSelectLogEnd{
    R"(SELECT next_offset FROM log_end WHERE topic=? AND "partition"=?)"};
constexpr std::string_view kUpsertLogEnd{
    R"(INSERT INTO log_end(topic, "partition", next_offset) VALUES(?, ?, ?) )"
    R"(ON CONFLICT(topic, "partition") DO UPDATE SET next_offset=excluded.next_offset)"};
constexpr std::string_view kTopicLogEnds{
    R"(SELECT "partition", next_offset FROM log_end WHERE topic=?)"};
constexpr std::string_view kFetch{
    R"(SELECT "offset", key, value, once FROM records WHERE topic=? AND "partition"=? )"
    R"(AND "offset">=? ORDER BY "offset" LIMIT ?)"};
}  // namespace

Result<std::shared_ptr<Core>> open_log(EmbeddedBusOptions options) {
  auto db = db::Database::open(options.path);
  if (!db) return db.error();
  if (auto st = (*db)->migrate("embedded_bus", kSchema); !st) return st.error();
  auto stored = (*db)->transaction([&](db::Tx& tx) -> Result<int64_t> {
    tx.stmt("INSERT INTO bus_meta(name, value) VALUES('partitions', ?) ON CONFLICT DO NOTHING")
        .bind(1, options.partitions)
        .exec();
    auto s = tx.stmt("SELECT value FROM bus_meta WHERE name='partitions'");
    return s.step() ? s.col_int(0) : int64_t{options.partitions};
  });
  if (!stored) return stored.error();
  if (*stored != options.partitions) {
    log::warn(kTag, "{} was created with {} partitions per topic; using that, not {}", options.path,
              *stored, options.partitions);
    options.partitions = static_cast<int>(*stored);
  }
  auto core = std::make_shared<Core>();
  core->opt = std::move(options);
  core->db = std::move(db).value();
  return core;
}

Appender::Appender(db::Tx& tx, int partitions) : tx_(tx), partitions_(partitions), ts_(now_ms()) {}

bool Appender::admit(std::string_view source, int64_t seq) {
  Source* known = nullptr;
  for (Source& s : sources_) {
    if (s.source == source) known = &s;
  }
  if (known == nullptr) {
    auto s = tx_.stmt(kSelectSource);
    s.bind(1, source);
    const int64_t stored = s.step() ? s.col_int(0) : 0;
    sources_.push_back(Source{std::string(source), stored, stored});
    known = &sources_.back();
  }
  if (seq <= known->seq) return false;
  known->seq = seq;
  return true;
}

int Appender::append(std::string_view topic, std::string_view key, std::string_view value,
                     const std::string* headers, bool once) {
  const int partition = partition_for(key, partitions_);
  End& end = end_of(topic, partition);
  auto s = tx_.stmt(kInsertRecord);
  s.bind_all(topic, partition, end.next, key, value, ts_);
  if (headers != nullptr) {
    s.bind(7, *headers);
  } else {
    s.bind_null(7);
  }
  s.bind(8, once ? 1 : 0);
  s.exec();
  ++end.next;
  return partition;
}

void Appender::finish() {
  for (const End& e : ends_) {
    tx_.stmt(kUpsertLogEnd).bind_all(e.topic, e.partition, e.next).exec();
  }
  for (const Source& s : sources_) {
    if (s.seq != s.stored) tx_.stmt(kUpsertSource).bind_all(s.source, s.seq).exec();
  }
}

Appender::End& Appender::end_of(std::string_view topic, int partition) {
  // Batches touch few partitions: a linear scan beats hashing the topic per record.
  for (End& e : ends_) {
    if (e.partition == partition && e.topic == topic) return e;
  }
  auto s = tx_.stmt(kSelectLogEnd);
  s.bind_all(topic, partition);
  int64_t next = s.step() ? s.col_int(0) : 0;
  ends_.push_back(End{std::string(topic), partition, next});
  return ends_.back();
}

void read_records(db::Tx& tx, std::string_view topic, int partition, int64_t from, int limit,
                  std::deque<LogRecord>& out) {
  auto s = tx.stmt(kFetch);
  s.bind_all(topic, partition, from, limit);
  while (s.step()) {
    out.push_back(LogRecord{s.col_int(0), s.col_text(1), s.col_text(2), s.col_int(3) != 0});
  }
}

void for_each_log_end(db::Tx& tx, std::string_view topic,
                      const std::function<void(int partition, int64_t log_end)>& f) {
  auto s = tx.stmt(kTopicLogEnds);
  s.bind(1, topic);
  while (s.step()) f(static_cast<int>(s.col_int(0)), s.col_int(1));
}

}  // namespace ecom::bus::embedded
