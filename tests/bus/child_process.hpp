#pragma once
/// Crash-test helpers: run a function in a forked child process, read what it reports over a
/// pipe, and kill it with SIGKILL.
///
/// Fork only while the parent has no open SQLite connection and no other threads: neither
/// survives fork(). The child must open its own bus/store.

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ecom::test {

/// Writes one line to the parent with a single write(2), so it arrives whole even if the child
/// is killed right after.
void send_line(int fd, std::string_view line);

/// A forked child. Killed with SIGKILL and reaped on destruction if still running.
class ChildProcess {
 public:
  /// Forks; the child runs `body(fd)` (fd: the pipe to the parent) and _exit()s with its result,
  /// never returning into the test framework. An exception in the child exits with 99.
  explicit ChildProcess(std::function<int(int fd)> body);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  /// The next line the child sent; nullopt at end of stream (child gone) or after `timeout`.
  std::optional<std::string> next_line(std::chrono::milliseconds timeout);
  /// Every line until the child closes the pipe (normally: dies), or `timeout`.
  std::vector<std::string> lines_until_eof(std::chrono::milliseconds timeout);
  /// Sends SIGKILL (if still running).
  void kill9();
  /// Waits for the child to end: its exit code, or -signal when killed. Kills it with SIGKILL
  /// after `timeout`; the result is then kWaitTimedOut.
  int wait(std::chrono::milliseconds timeout);

 private:
  bool fill(std::chrono::milliseconds timeout);

  pid_t pid_ = -1;
  int fd_ = -1;
  bool eof_ = false;
  bool reaped_ = false;
  int status_ = 0;
  std::string buffer_;
};

/// ChildProcess::wait's result when the child had to be killed after the timeout.
inline constexpr int kWaitTimedOut = -1000;
/// ChildProcess::wait's result for a child that died of SIGKILL (not from a wait timeout).
int killed_by_sigkill();

}  // namespace ecom::test
