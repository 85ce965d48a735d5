#include "child_process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <thread>

namespace ecom::test {

using Clock = std::chrono::steady_clock;

void send_line(int fd, std::string_view line) {
  std::string buf(line);
  buf += '\n';
  const char* p = buf.data();
  size_t left = buf.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    p += n;
    left -= static_cast<size_t>(n);
  }
}

int killed_by_sigkill() { return -SIGKILL; }

ChildProcess::ChildProcess(std::function<int(int fd)> body) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe failed");
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::close(fds[0]);
    int rc = 99;
    try {
      rc = body(fds[1]);
    } catch (...) {
    }
    ::_exit(rc);
  }
  ::close(fds[1]);
  fd_ = fds[0];
}

ChildProcess::~ChildProcess() {
  if (!reaped_) {
    kill9();
    wait(std::chrono::seconds(30));
  }
  if (fd_ >= 0) ::close(fd_);
}

bool ChildProcess::fill(std::chrono::milliseconds timeout) {
  if (eof_) return false;
  struct pollfd pfd {
    fd_, POLLIN, 0
  };
  int r = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
  if (r <= 0) return false;
  char buf[4096];
  ssize_t n = ::read(fd_, buf, sizeof buf);
  if (n <= 0) {
    if (n < 0 && errno == EINTR) return true;
    eof_ = true;
    return false;
  }
  buffer_.append(buf, static_cast<size_t>(n));
  return true;
}

std::optional<std::string> ChildProcess::next_line(std::chrono::milliseconds timeout) {
  const auto end = Clock::now() + timeout;
  while (true) {
    auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    if (eof_ || left.count() <= 0) return std::nullopt;
    fill(left);
  }
}

std::vector<std::string> ChildProcess::lines_until_eof(std::chrono::milliseconds timeout) {
  const auto end = Clock::now() + timeout;
  std::vector<std::string> lines;
  while (true) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    auto line = next_line(std::max(left, std::chrono::milliseconds(0)));
    if (!line) break;
    lines.push_back(std::move(*line));
  }
  return lines;
}

void ChildProcess::kill9() {
  if (pid_ > 0 && !reaped_) ::kill(pid_, SIGKILL);
}

int ChildProcess::wait(std::chrono::milliseconds timeout) {
  if (reaped_) return status_;
  const auto end = Clock::now() + timeout;
  while (true) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      status_ = WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
      return status_;
    }
    if (r < 0 && errno != EINTR) {
      reaped_ = true;
      status_ = -2000;  // not our child any more: cannot happen
      return status_;
    }
    if (Clock::now() > end) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
      reaped_ = true;
      status_ = kWaitTimedOut;
      return status_;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace ecom::test
