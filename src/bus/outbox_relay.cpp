#include "ecom/bus/outbox_relay.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "ecom/core/backoff.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/log.hpp"
#include "ecom/core/metrics.hpp"
#include "ecom/core/periodic_task.hpp"
#include "ecom/db/outbox.hpp"

namespace ecom::bus {
namespace {

// Measures how long work took and bounds drain(): real time, whatever clock schedules the relay.
using SteadyClock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::string_view kTag{"outbox"};
// After a failed relay pass; reset by a good one.
constexpr Backoff kRelayBackoff{milliseconds(100), milliseconds(5'000)};
// Between failed publishes of a drain, which has a deadline of its own.
constexpr Backoff kDrainBackoff{milliseconds(10), milliseconds(500)};
constexpr milliseconds kStopDrain{5'000};
// Under load, published rows are deleted at most this often (one transaction for all of them).
constexpr milliseconds kDeleteInterval{50};
// Inbox rows deleted per transaction, one transaction per relay turn. Inbox keys are random
// (event ids), so each row costs about one page write (~20-50 us): a module's handlers wait for
// the store a few milliseconds at most behind a prune.
constexpr int kPruneChunk = 200;
// Between two chunks of a prune that has more to do, twice as long as the chunk took (at least
// this), so that pruning holds the store a third of the time at most.
constexpr milliseconds kMinPrunePause{2};
// Replicas sharing a PostgreSQL outbox: each says it is alive, and looks for rows of replicas
// that stopped saying so (crashed, or scaled away with rows left), this many times per lease.
constexpr int kBeatsPerLease = 4;
// Batches of a dead replica's rows relayed per pass, so that this replica's own rows wait little.
constexpr int kOrphanBatchesPerPass = 8;
// A replica gone this long with no rows left is forgotten.
constexpr milliseconds kForgetAfter{std::chrono::hours(24)};

// The records of outbox rows of one source, each named by its row (Record::source/seq).
std::vector<Record> records_of(std::vector<db::OutboxRow>& rows, const std::string& source) {
  std::vector<Record> records;
  records.reserve(rows.size());
  for (auto& row : rows)
    records.push_back(
        Record{std::move(row.topic), std::move(row.key), std::move(row.payload), source, row.seq});
  return records;
}

}  // namespace

struct OutboxRelay::State {
  db::Database& db;
  EventBus& bus;
  Clock& clock;
  int batch_size;
  milliseconds idle_poll;
  milliseconds inbox_retention;  // non-positive: no pruning
  milliseconds prune_interval;

  std::mutex mu;  // guards started/stopped
  bool started = false;
  bool stopped = false;

  // Serialises pumping between the relay task and drain(): two pumps peeking the same rows
  // would publish them twice and could reorder them.
  std::mutex pump_mu;
  // Rows up to here are published but not deleted yet. Deletes are batched (one transaction per
  // kDeleteInterval under load, at once when the outbox runs dry), and peeks start after this.
  // A crash republishes what was not deleted. The embedded bus appends a row once per source
  // seq (Record::source); on Kafka consumers deduplicate through their inbox.
  std::optional<int64_t> published_through;
  // The source of this relay's rows: db::outbox_source (read at the first pump) on SQLite, the
  // replica's id on PostgreSQL, where replicas share the outbox (db::outbox_peek).
  std::string source;
  const std::string replica;  // db::Database::replica_id: empty on SQLite
  milliseconds replica_lease{10'000};
  int64_t next_alive_ms = 0;   // on `clock`
  int64_t last_delete_ms = 0;  // on `clock`
  std::atomic<uint64_t> published{0};
  std::atomic<uint64_t> pruned{0};
  // Set by set_role() before the task starts; no-ops until then.
  metrics::Counter published_records;
  metrics::Histogram publish_seconds;
  metrics::Counter relay_errors;

  // Touched by the task's step only.
  int failures = 0;
  int64_t retry_at_ms = 0;    // after a failed pass: no pass before this, woken or not
  int64_t next_prune_ms = 0;  // set by start()

  // Last, so that it stops (joins) before anything its step uses is destroyed.
  PeriodicTask task;

  State(db::Database& d, EventBus& b, int batch, milliseconds poll, milliseconds retention,
        milliseconds prune_every, Clock& c)
      : db(d),
        bus(b),
        clock(c),
        batch_size(std::max(batch, 1)),
        idle_poll(std::max(poll, milliseconds(1))),
        inbox_retention(retention),
        prune_interval(std::max(prune_every, milliseconds(1))),
        replica(d.replica_id()),
        task("outbox.relay", c, idle_poll, [this](int64_t now) { return step(now); }) {}

  bool pruning() const { return inbox_retention.count() > 0; }

  /// Deletes one chunk of expired inbox rows; returns when (on `clock`) the next chunk is due.
  int64_t prune_once() {
    const int64_t cutoff = clock.now_ms() - inbox_retention.count();
    const auto started = SteadyClock::now();
    auto r = db.transaction(
        [&](db::Tx& tx) -> Result<int64_t> { return db::inbox_prune(tx, cutoff, kPruneChunk); });
    const auto took = std::chrono::duration_cast<milliseconds>(SteadyClock::now() - started);
    if (!r) {
      log::warn(kTag, "pruning the inbox of {} failed, retrying in {} ms: {}", db.path(),
                prune_interval.count(), r.error().message);
      return clock.now_ms() + prune_interval.count();
    }
    pruned.fetch_add(static_cast<uint64_t>(*r), std::memory_order_relaxed);
    if (*r == kPruneChunk) return clock.now_ms() + std::max(kMinPrunePause, 2 * took).count();
    return clock.now_ms() + prune_interval.count();
  }

  /// Publishes one batch. Returns rows published (0 when the outbox is empty) or the failure.
  Result<size_t> pump_once() {
    std::lock_guard lock(pump_mu);
    auto rows = db.read([&](db::Tx& tx) -> Result<std::vector<db::OutboxRow>> {
      if (source.empty()) source = replica.empty() ? db::outbox_source(tx) : replica;
      return db::outbox_peek(tx, batch_size, published_through.value_or(0), replica);
    });
    if (!rows) return rows.error();
    if (rows->empty()) {
      if (auto st = flush_deletes(); !st) return st.error();
      return size_t{0};
    }

    const std::vector<Record> records = records_of(*rows, source);
    const auto publish_started = SteadyClock::now();
    if (auto st = bus.publish(records); !st) return st.error();
    publish_seconds.observe(
        std::chrono::duration<double>(SteadyClock::now() - publish_started).count());
    published_records.inc(static_cast<double>(records.size()));
    published_through = rows->back().seq;
    published.fetch_add(records.size(), std::memory_order_relaxed);
    if (clock.now_ms() - last_delete_ms >= kDeleteInterval.count()) {
      if (auto st = flush_deletes(); !st) return st.error();
    }
    return records.size();
  }

  // Deletes the rows published so far.
  Status flush_deletes() {
    if (!published_through) return {};
    if (auto st = remove_through(*published_through); !st) return st;
    published_through.reset();
    last_delete_ms = clock.now_ms();
    return {};
  }

  Status remove_through(int64_t seq, std::string_view of = {}) {
    if (of.empty()) of = replica;
    return db.transaction([&](db::Tx& tx) -> Status {
      db::outbox_remove_through(tx, seq, of);
      return {};
    });
  }

  milliseconds beat_interval() const { return replica_lease / kBeatsPerLease; }

  // Says this replica is alive: whatever its bus does, so that a bus outage does not make the
  // others take its rows (they could not publish them either). A store that cannot take it
  // fails everything else too, and says so there.
  void beat() {
    auto st = db.transaction([&](db::Tx& tx) -> Status {
      db::outbox_replica_alive(tx);
      return {};
    });
    if (!st)
      log::debug(kTag, "replica {} could not say it is alive: {}", replica, st.error().message);
    next_alive_ms = clock.now_ms() + beat_interval().count();
  }

  // Relays the rows of replicas that are not alive (in their seq order, under their source, as
  // they would have). Two replicas may relay one dead replica's rows at once: the copies are
  // recognised downstream (SourceMark).
  Status serve_orphans() {
    auto orphans = db.read([&](db::Tx& tx) -> Result<std::vector<std::string>> {
      return db::outbox_orphans(tx, replica_lease.count());
    });
    if (!orphans) return orphans.error();
    for (const auto& orphan : *orphans) {
      for (int i = 0; i < kOrphanBatchesPerPass; ++i) {
        auto rows = db.read([&](db::Tx& tx) -> Result<std::vector<db::OutboxRow>> {
          return db::outbox_peek(tx, batch_size, 0, orphan);
        });
        if (!rows) return rows.error();
        if (rows->empty()) break;
        if (i == 0)
          log::info(kTag, "relaying the rows of replica {}, silent for over {} ms", orphan,
                    replica_lease.count());
        const std::vector<Record> records = records_of(*rows, orphan);
        if (auto st = bus.publish(records); !st) return st;
        published_records.inc(static_cast<double>(records.size()));
        published.fetch_add(records.size(), std::memory_order_relaxed);
        if (auto st = remove_through(rows->back().seq, orphan); !st) return st;
      }
    }
    return db.transaction([&](db::Tx& tx) -> Status {
      db::outbox_forget_replicas(tx, kForgetAfter.count());
      return {};
    });
  }

  /// One relay pass: a batch, then a prune chunk when one is due. Returns the delay until the
  /// next pass: at once after a full batch (more may be waiting), the backoff after a failure,
  /// else the idle poll or the next prune, whichever comes first; a wake() (notify) comes sooner.
  std::optional<milliseconds> step(int64_t now) {
    bool beat_now = !replica.empty() && now >= next_alive_ms;
    if (beat_now) beat();
    // A notify during a backoff does not cut it short: the bus just failed.
    if (now < retry_at_ms) return until_beat(milliseconds(retry_at_ms - now));
    auto r = pump_once();
    if (r && beat_now) {
      std::lock_guard lock(pump_mu);
      if (auto st = serve_orphans(); !st) r = st.error();
    }
    if (pruning() && clock.now_ms() >= next_prune_ms) next_prune_ms = prune_once();
    if (!r) {
      relay_errors.inc();
      const milliseconds backoff = kRelayBackoff.after(++failures);
      log::warn(kTag, "relay of {} failed, retrying in {} ms: {}", db.path(), backoff.count(),
                r.error().message);
      retry_at_ms = clock.now_ms() + backoff.count();
      return until_beat(backoff);
    }
    failures = 0;
    if (*r == static_cast<size_t>(batch_size)) return milliseconds(0);
    milliseconds delay = idle_poll;
    if (pruning()) {
      delay = std::min(delay, milliseconds(std::max<int64_t>(next_prune_ms - clock.now_ms(), 0)));
    }
    return until_beat(delay);
  }

  // `delay`, or less when this replica must say it is alive sooner.
  milliseconds until_beat(milliseconds delay) const {
    if (replica.empty()) return delay;
    return std::min(delay, milliseconds(std::max<int64_t>(next_alive_ms - clock.now_ms(), 0)));
  }

  bool drain(milliseconds deadline) {
    const auto end = SteadyClock::now() + deadline;
    int failures = 0;
    while (true) {
      auto r = pump_once();
      if (r && *r == 0) return true;
      if (!r) {
        log::warn(kTag, "drain of {} failed: {}", db.path(), r.error().message);
        const milliseconds backoff = kDrainBackoff.after(++failures);
        if (SteadyClock::now() + backoff > end) return false;
        std::this_thread::sleep_for(backoff);
      }
      if (SteadyClock::now() > end) return false;
    }
  }
};

OutboxRelay::OutboxRelay(db::Database& db, EventBus& bus, int batch_size,
                         std::chrono::milliseconds idle_poll,
                         std::chrono::milliseconds inbox_retention,
                         std::chrono::milliseconds inbox_prune_interval, Clock& clock)
    : s_(std::make_unique<State>(db, bus, batch_size, idle_poll, inbox_retention,
                                 inbox_prune_interval, clock)) {}

OutboxRelay::~OutboxRelay() { stop(); }

void OutboxRelay::set_role(std::string_view role) {
  auto& registry = metrics::registry();
  s_->published_records =
      registry.counter("ecomd_bus_published_records_total",
                       "Records the outbox relay published to the bus, by role.", {{"role", role}});
  s_->publish_seconds = registry.histogram("ecomd_bus_publish_duration_seconds",
                                           "Time one publish call of the relay took until the bus "
                                           "acknowledged its records, by role.",
                                           metrics::kLatencyBuckets, {{"role", role}});
  s_->relay_errors = registry.counter(
      "ecomd_outbox_relay_errors_total",
      "Relay passes that failed (read, publish or delete), by role.", {{"role", role}});
}

void OutboxRelay::set_replica_lease(std::chrono::milliseconds lease) {
  s_->replica_lease = std::max(lease, std::chrono::milliseconds(1));
}

void OutboxRelay::start() {
  std::lock_guard lock(s_->mu);
  if (s_->started || s_->stopped) return;
  s_->started = true;
  s_->next_prune_ms = s_->clock.now_ms() + s_->prune_interval.count();
  if (!s_->replica.empty()) s_->beat();  // before this replica's module takes requests
  s_->task.start();                      // the first pass at once
}

void OutboxRelay::notify() noexcept { s_->task.wake(); }

bool OutboxRelay::drain(std::chrono::milliseconds deadline) { return s_->drain(deadline); }

void OutboxRelay::stop() {
  bool was_started = false;
  {
    std::lock_guard lock(s_->mu);
    if (s_->stopped) return;
    s_->stopped = true;
    was_started = s_->started;
  }
  s_->task.stop();
  // A relay that never ran has nothing to finish; publishing from a destructor would surprise.
  if (was_started && !s_->drain(kStopDrain)) {
    log::warn(kTag, "stopped with rows still pending in {}; they are relayed on next start",
              s_->db.path());
  }
}

uint64_t OutboxRelay::published() const noexcept {
  return s_->published.load(std::memory_order_relaxed);
}

uint64_t OutboxRelay::inbox_pruned() const noexcept {
  return s_->pruned.load(std::memory_order_relaxed);
}

}  // namespace ecom::bus
