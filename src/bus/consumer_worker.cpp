#include "consumer_worker.hpp"

#include <string>
#include <utility>

#include "ecom/core/periodic_task.hpp"

namespace ecom::bus {
namespace {

// The worker whose thread this is; compared by address, never dereferenced.
thread_local const ConsumerWorker* tl_current = nullptr;

}  // namespace

ConsumerWorker::~ConsumerWorker() {
  std::lock_guard lock(join_mu_);
  if (!thread_.joinable()) return;
  // The thread holds a reference until run() returned, so it has nothing of ours left to touch.
  // It is the last owner only when the bus and the handle were both dropped on it (a handler
  // that destroyed its bus), and a thread cannot join itself.
  if (on_own_thread()) {
    thread_.detach();
  } else {
    thread_.join();
  }
}

void ConsumerWorker::start(const std::shared_ptr<ConsumerWorker>& worker, std::string name) {
  std::lock_guard lock(worker->join_mu_);
  worker->thread_ = std::thread([self = worker, name = std::move(name)] {
    name_this_thread(name);
    tl_current = self.get();
    self->run();
    self->finished_ = true;
    tl_current = nullptr;
  });
}

std::string consumer_thread_name(std::string_view group) {
  constexpr std::string_view kOurs = "ecomd-";
  if (group.substr(0, kOurs.size()) == kOurs) group.remove_prefix(kOurs.size());
  return "in:" + std::string(group);
}

bool ConsumerWorker::on_own_thread() const noexcept { return tl_current == this; }

void ConsumerWorker::close() {
  stop_ = true;
  wake();
  if (on_own_thread()) return;
  std::lock_guard lock(join_mu_);
  if (thread_.joinable()) thread_.join();
}

void ConsumerWorkers::add(std::shared_ptr<ConsumerWorker> worker) {
  std::vector<std::shared_ptr<ConsumerWorker>> ended;
  {
    std::lock_guard lock(mu_);
    for (auto it = workers_.begin(); it != workers_.end();) {
      if ((*it)->finished()) {
        ended.push_back(std::move(*it));
        it = workers_.erase(it);
      } else {
        ++it;
      }
    }
    workers_.push_back(std::move(worker));
  }
  for (auto& w : ended) w->close();  // quick: their loops returned
}

void ConsumerWorkers::close_all() {
  std::vector<std::shared_ptr<ConsumerWorker>> all;
  {
    std::lock_guard lock(mu_);
    all.swap(workers_);
  }
  for (auto& w : all) w->close();
}

}  // namespace ecom::bus
