#pragma once
/// Process metrics, served as Prometheus text at GET /metrics. The one interface modules and the
/// bus use; the implementation (src/core/metrics.cpp) is the only place that sees prometheus-cpp.
///
/// A series is resolved once, by name and a bounded label set, into a handle that is then only
/// an atomic update: resolve handles at start-up or per partition assignment, never per record
/// (resolving takes a lock and a map lookup). Label values must come from a small fixed set
/// (role, topic, partition, group, route template, status), never from ids.
///
/// Thread safety: handles and the registry are safe from any thread. A default handle (or one
/// whose resolution failed, which is logged) does nothing.

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace ecom::metrics {

/// One label of a series.
struct Label {
  std::string_view name;
  std::string_view value;
};
using Labels = std::initializer_list<Label>;

/// Bucket upper bounds, in seconds, for latencies from 100 us to 10 s.
inline constexpr double kLatencyBuckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                             0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                             1,      2.5,     5,      10};
/// Bucket upper bounds for counts (batch sizes): 1 to 4096.
inline constexpr double kSizeBuckets[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096};

/// A monotonically increasing count.
class Counter {
 public:
  Counter() = default;
  void inc(double by = 1.0) const noexcept;
  double value() const noexcept;
  explicit operator bool() const noexcept { return cell_ != nullptr; }

 private:
  friend class Registry;
  void* cell_ = nullptr;
};

/// A value that goes up and down.
class Gauge {
 public:
  Gauge() = default;
  void set(double v) const noexcept;
  void inc(double by = 1.0) const noexcept;
  void dec(double by = 1.0) const noexcept;
  double value() const noexcept;
  explicit operator bool() const noexcept { return cell_ != nullptr; }

 private:
  friend class Registry;
  void* cell_ = nullptr;
};

/// A distribution in fixed buckets (observe takes a short lock: per batch or request, not per
/// record).
class Histogram {
 public:
  Histogram() = default;
  void observe(double v) const noexcept;
  explicit operator bool() const noexcept { return cell_ != nullptr; }

 private:
  friend class Registry;
  void* cell_ = nullptr;
};

/// Named families of series and the text exposition of all of them.
class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  /// The series `labels` of the family `name` (created on first use; a later call with the same
  /// name and labels returns the same series). A name used with another type, or an invalid
  /// name or label, is logged and gives a handle that does nothing.
  Counter counter(std::string_view name, std::string_view help, Labels labels = {});
  Gauge gauge(std::string_view name, std::string_view help, Labels labels = {});
  Histogram histogram(std::string_view name, std::string_view help, std::span<const double> buckets,
                      Labels labels = {});

  /// Runs `fn` before every exposition, to set gauges that are cheaper to read on a scrape than
  /// to keep current (store sizes, /proc). Removed when the returned hook is destroyed; a hook
  /// never runs after its destructor returned.
  class Hook {
   public:
    Hook() = default;
    Hook(Hook&&) noexcept;
    Hook& operator=(Hook&&) noexcept;
    ~Hook();

   private:
    friend class Registry;
    Hook(Registry* r, uint64_t id) : registry_(r), id_(id) {}
    Registry* registry_ = nullptr;
    uint64_t id_ = 0;
  };
  [[nodiscard]] Hook on_collect(std::function<void()> fn);

  /// Runs the hooks and renders every family in the Prometheus text format 0.0.4.
  std::string text();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// The registry of this process, which GET /metrics serves. It also reports the process's CPU
/// time, resident memory and open file descriptors (from /proc) on every exposition.
Registry& registry();

/// The Content-Type of Registry::text().
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace ecom::metrics
