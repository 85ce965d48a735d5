#include "ecom/bus/outbox_relay.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "ecom/core/backoff.hpp"
#include "ecom/core/clock.hpp"
#include "ecom/core/log.hpp"
#include "ecom/db/outbox.hpp"

namespace ecom::bus {
namespace {

using Clock = std::chrono::steady_clock;
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

}  // namespace

struct OutboxRelay::State {
  db::Database& db;
  EventBus& bus;
  int batch_size;
  milliseconds idle_poll;
  milliseconds inbox_retention;  // non-positive: no pruning
  milliseconds prune_interval;

  std::mutex mu;  // guards notified/stopping/started
  std::condition_variable cv;
  bool notified = false;
  bool stopping = false;
  bool started = false;
  bool stopped = false;
  std::thread thread;

  // Serialises pumping between the relay thread and drain(): two pumps peeking the same rows
  // would publish them twice and could reorder them.
  std::mutex pump_mu;
  // Rows up to here are published but not deleted yet. Deletes are batched (one transaction per
  // kDeleteInterval under load, at once when the outbox runs dry), and peeks start after this.
  // A crash republishes what was not deleted; consumers deduplicate through their inbox.
  std::optional<int64_t> published_through;
  Clock::time_point last_delete{};
  std::atomic<uint64_t> published{0};
  std::atomic<uint64_t> pruned{0};

  State(db::Database& d, EventBus& b, int batch, milliseconds poll, milliseconds retention,
        milliseconds prune_every)
      : db(d),
        bus(b),
        batch_size(std::max(batch, 1)),
        idle_poll(std::max(poll, milliseconds(1))),
        inbox_retention(retention),
        prune_interval(std::max(prune_every, milliseconds(1))) {}

  bool pruning() const { return inbox_retention.count() > 0; }

  /// Deletes one chunk of expired inbox rows; returns when the next chunk is due.
  Clock::time_point prune_once() {
    const int64_t cutoff = now_ms() - inbox_retention.count();
    const auto started = Clock::now();
    auto r = db.transaction(
        [&](db::Tx& tx) -> Result<int64_t> { return db::inbox_prune(tx, cutoff, kPruneChunk); });
    const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - started);
    if (!r) {
      log::warn(kTag, "pruning the inbox of {} failed, retrying in {} ms: {}", db.path(),
                prune_interval.count(), r.error().message);
      return Clock::now() + prune_interval;
    }
    pruned.fetch_add(static_cast<uint64_t>(*r), std::memory_order_relaxed);
    if (*r == kPruneChunk) return Clock::now() + std::max(kMinPrunePause, 2 * took);
    return Clock::now() + prune_interval;
  }

  /// Publishes one batch. Returns rows published (0 when the outbox is empty) or the failure.
  Result<size_t> pump_once() {
    std::lock_guard lock(pump_mu);
    auto rows = db.read([&](db::Tx& tx) -> Result<std::vector<db::OutboxRow>> {
      return db::outbox_peek(tx, batch_size, published_through.value_or(0));
    });
    if (!rows) return rows.error();
    if (rows->empty()) {
      if (auto st = flush_deletes(); !st) return st.error();
      return size_t{0};
    }

    std::vector<Record> records;
    records.reserve(rows->size());
    for (auto& row : *rows) {
      records.push_back(Record{std::move(row.topic), std::move(row.key), std::move(row.payload)});
    }
    if (auto st = bus.publish(records); !st) return st.error();
    published_through = rows->back().seq;
    published.fetch_add(records.size(), std::memory_order_relaxed);
    if (Clock::now() - last_delete >= kDeleteInterval) {
      if (auto st = flush_deletes(); !st) return st.error();
    }
    return records.size();
  }

  // Deletes the rows published so far.
  Status flush_deletes() {
    if (!published_through) return {};
    if (auto st = remove_through(*published_through); !st) return st;
    published_through.reset();
    last_delete = Clock::now();
    return {};
  }

  Status remove_through(int64_t seq) {
    return db.transaction([&](db::Tx& tx) -> Status {
      db::outbox_remove_through(tx, seq);
      return {};
    });
  }

  void run() {
    int failures = 0;
    auto next_prune = Clock::now() + prune_interval;
    std::unique_lock lock(mu);
    while (!stopping) {
      notified = false;
      lock.unlock();
      auto r = pump_once();
      if (pruning() && Clock::now() >= next_prune) next_prune = prune_once();
      lock.lock();
      if (!r) {
        const milliseconds backoff = kRelayBackoff.after(++failures);
        log::warn(kTag, "relay of {} failed, retrying in {} ms: {}", db.path(), backoff.count(),
                  r.error().message);
        cv.wait_for(lock, backoff, [&] { return stopping; });
        continue;
      }
      failures = 0;
      // A full batch means more may be waiting: go again at once.
      if (*r == static_cast<size_t>(batch_size)) continue;
      auto until = Clock::now() + idle_poll;
      if (pruning()) until = std::min(until, next_prune);
      cv.wait_until(lock, until, [&] { return stopping || notified; });
    }
  }

  bool drain(milliseconds deadline) {
    const auto end = Clock::now() + deadline;
    int failures = 0;
    while (true) {
      auto r = pump_once();
      if (r && *r == 0) return true;
      if (!r) {
        log::warn(kTag, "drain of {} failed: {}", db.path(), r.error().message);
        const milliseconds backoff = kDrainBackoff.after(++failures);
        if (Clock::now() + backoff > end) return false;
        std::this_thread::sleep_for(backoff);
      }
      if (Clock::now() > end) return false;
    }
  }
};

OutboxRelay::OutboxRelay(db::Database& db, EventBus& bus, int batch_size,
                         std::chrono::milliseconds idle_poll,
                         std::chrono::milliseconds inbox_retention,
                         std::chrono::milliseconds inbox_prune_interval)
    : s_(std::make_unique<State>(db, bus, batch_size, idle_poll, inbox_retention,
                                 inbox_prune_interval)) {}

OutboxRelay::~OutboxRelay() { stop(); }

void OutboxRelay::start() {
  std::lock_guard lock(s_->mu);
  if (s_->started || s_->stopped) return;
  s_->started = true;
  s_->thread = std::thread([s = s_.get()] { s->run(); });
}

void OutboxRelay::notify() noexcept {
  try {
    {
      std::lock_guard lock(s_->mu);
      s_->notified = true;
    }
    s_->cv.notify_one();
  } catch (...) {
    // Locking can only fail on a broken mutex; the idle poll still picks the rows up.
  }
}

bool OutboxRelay::drain(std::chrono::milliseconds deadline) { return s_->drain(deadline); }

void OutboxRelay::stop() {
  bool was_started = false;
  {
    std::lock_guard lock(s_->mu);
    if (s_->stopped) return;
    s_->stopped = true;
    s_->stopping = true;
    was_started = s_->started;
  }
  s_->cv.notify_one();
  if (s_->thread.joinable()) s_->thread.join();
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
