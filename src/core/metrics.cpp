// The metrics interface on prometheus-cpp's core (Debian's prometheus-cpp-dev): its registry
// keeps the families and series, its TextSerializer writes format 0.0.4. Its HTTP exposer
// (civetweb) is not used: /metrics is a route of our own server. No prometheus header leaves
// this file.

#include "ecom/core/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <vector>

#include "ecom/core/log.hpp"

namespace ecom::metrics {
namespace {

constexpr std::string_view kTag{"metrics"};

prometheus::Labels to_labels(Labels labels) {
  prometheus::Labels out;
  for (const auto& l : labels) out.emplace(std::string(l.name), std::string(l.value));
  return out;
}

// Every prometheus-cpp call that can throw (bad names, a name reused with another type) is made
// here; a failure is a handle that does nothing, logged once per call site's attempt.
template <typename F>
auto guarded(std::string_view name, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    log::error(kTag, "metric {}: {}", name, e.what());
    return {};
  }
}

}  // namespace

// --- handles ----------------------------------------------------------------------------------

void Counter::inc(double by) const noexcept {
  if (cell_ != nullptr) static_cast<prometheus::Counter*>(cell_)->Increment(by);
}
double Counter::value() const noexcept {
  return cell_ != nullptr ? static_cast<prometheus::Counter*>(cell_)->Value() : 0.0;
}

void Gauge::set(double v) const noexcept {
  if (cell_ != nullptr) static_cast<prometheus::Gauge*>(cell_)->Set(v);
}
void Gauge::inc(double by) const noexcept {
  if (cell_ != nullptr) static_cast<prometheus::Gauge*>(cell_)->Increment(by);
}
void Gauge::dec(double by) const noexcept {
  if (cell_ != nullptr) static_cast<prometheus::Gauge*>(cell_)->Decrement(by);
}
double Gauge::value() const noexcept {
  return cell_ != nullptr ? static_cast<prometheus::Gauge*>(cell_)->Value() : 0.0;
}

void Histogram::observe(double v) const noexcept {
  if (cell_ != nullptr) static_cast<prometheus::Histogram*>(cell_)->Observe(v);
}

// --- registry ---------------------------------------------------------------------------------

struct Registry::Impl {
  prometheus::Registry registry;  // Merge: the same name and type gives the same family
  std::mutex hooks_mu;            // held while hooks run, so a removed hook never runs again
  std::map<uint64_t, std::function<void()>> hooks;
  uint64_t next_hook = 1;
};

Registry::Registry() : impl_(std::make_unique<Impl>()) {}
Registry::~Registry() = default;

Counter Registry::counter(std::string_view name, std::string_view help, Labels labels) {
  return guarded(name, [&] {
    auto& family = prometheus::BuildCounter()
                       .Name(std::string(name))
                       .Help(std::string(help))
                       .Register(impl_->registry);
    Counter c;
    c.cell_ = &family.Add(to_labels(labels));
    return c;
  });
}

Gauge Registry::gauge(std::string_view name, std::string_view help, Labels labels) {
  return guarded(name, [&] {
    auto& family = prometheus::BuildGauge()
                       .Name(std::string(name))
                       .Help(std::string(help))
                       .Register(impl_->registry);
    Gauge g;
    g.cell_ = &family.Add(to_labels(labels));
    return g;
  });
}

Histogram Registry::histogram(std::string_view name, std::string_view help,
                              std::span<const double> buckets, Labels labels) {
  return guarded(name, [&] {
    auto& family = prometheus::BuildHistogram()
                       .Name(std::string(name))
                       .Help(std::string(help))
                       .Register(impl_->registry);
    Histogram h;
    h.cell_ = &family.Add(to_labels(labels),
                          prometheus::Histogram::BucketBoundaries(buckets.begin(), buckets.end()));
    return h;
  });
}

Registry::Hook Registry::on_collect(std::function<void()> fn) {
  std::lock_guard lock(impl_->hooks_mu);
  const uint64_t id = impl_->next_hook++;
  impl_->hooks.emplace(id, std::move(fn));
  return Hook(this, id);
}

Registry::Hook::Hook(Hook&& o) noexcept : registry_(o.registry_), id_(o.id_) {
  o.registry_ = nullptr;
}
Registry::Hook& Registry::Hook::operator=(Hook&& o) noexcept {
  if (this != &o) {
    Hook old(std::move(*this));
    registry_ = o.registry_;
    id_ = o.id_;
    o.registry_ = nullptr;
  }
  return *this;
}
Registry::Hook::~Hook() {
  if (registry_ == nullptr) return;
  std::lock_guard lock(registry_->impl_->hooks_mu);
  registry_->impl_->hooks.erase(id_);
}

std::string Registry::text() {
  {
    std::lock_guard lock(impl_->hooks_mu);
    for (auto& [id, fn] : impl_->hooks) {
      try {
        fn();
      } catch (const std::exception& e) {
        log::warn(kTag, "collecting: {}", e.what());
      }
    }
  }
  try {
    return prometheus::TextSerializer().Serialize(impl_->registry.Collect());
  } catch (const std::exception& e) {
    log::error(kTag, "serializing: {}", e.what());
    return {};
  }
}

// --- the process ------------------------------------------------------------------------------

namespace {

// CPU time, resident memory and open descriptors from /proc, read on each scrape.
class ProcessCollector {
 public:
  explicit ProcessCollector(Registry& r)
      : cpu_(r.counter("ecomd_process_cpu_seconds_total", "User and system CPU time spent.")),
        rss_(r.gauge("ecomd_process_resident_memory_bytes", "Resident memory size.")),
        fds_(r.gauge("ecomd_process_open_fds", "Open file descriptors.")),
        threads_(r.gauge("ecomd_process_threads", "Threads of the process.")),
        start_(r.gauge("ecomd_process_start_time_seconds", "Start time, seconds since epoch.")),
        hook_(r.on_collect([this] { collect(); })) {
    start_.set(static_cast<double>(std::time(nullptr)));
  }

 private:
  void collect() {
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    if (FILE* f = std::fopen("/proc/self/stat", "r")) {
      // Fields after the command (which may hold spaces, hence the scan from ')'), see proc(5):
      // 14 utime, 15 stime, 20 num_threads, 24 rss.
      char buf[1024];
      size_t n = std::fread(buf, 1, sizeof(buf) - 1, f);
      std::fclose(f);
      buf[n] = '\0';
      std::string_view s(buf, n);
      size_t close = s.rfind(')');
      if (close != std::string_view::npos) {
        unsigned long utime = 0, stime = 0;
        long threads = 0, rss = 0;
        if (std::sscanf(buf + close + 2,
                        "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu %*d %*d %*d %*d %ld "
                        "%*d %*u %*u %ld",
                        &utime, &stime, &threads, &rss) == 4) {
          const double cpu = static_cast<double>(utime + stime) / ticks;
          if (cpu > cpu_seen_) cpu_.inc(cpu - cpu_seen_);
          cpu_seen_ = std::max(cpu_seen_, cpu);
          threads_.set(static_cast<double>(threads));
          rss_.set(static_cast<double>(rss) * page);
        }
      }
    }
    std::error_code ec;
    size_t open = 0;
    for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
      ++open;
    if (!ec && open > 0) fds_.set(static_cast<double>(open - 1));  // less the iterator's own
  }

  Counter cpu_;
  Gauge rss_;
  Gauge fds_;
  Gauge threads_;
  Gauge start_;
  double cpu_seen_ = 0;  // under the registry's hook lock
  Registry::Hook hook_;
};

}  // namespace

Registry& registry() {
  // Never destroyed: threads may still count while the process exits.
  static Registry* r = [] {
    auto* reg = new Registry();
    static ProcessCollector process(*reg);
    return reg;
  }();
  return *r;
}

}  // namespace ecom::metrics
