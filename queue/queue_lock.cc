// queue/queue_lock.cc
#include "queue/queue_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moat::queue {

absl::StatusOr<QueueLock> QueueLock::Acquire(const std::string& queue_directory) {
  std::string path = absl::StrCat(queue_directory, "/moat.pid");
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrFormat("open %s: %s", path, strerror(err)));
  }
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder = "unknown";
    char buf[32] = {};
    const ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n > 0) {
      holder = std::string(absl::StripAsciiWhitespace(absl::string_view(buf, static_cast<size_t>(n))));
    }
    close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "queue directory %s is in use by another moat (pid %s, lock %s); two daemons on one "
          "spool would deliver its mail twice",
          queue_directory, holder, path));
    }
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrFormat("lock %s: %s", path, strerror(err)));
  }
  const std::string pid = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 ||
      pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    close(fd);
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrFormat("write %s: %s", path, strerror(err)));
  }
  return QueueLock(fd);
}

QueueLock::QueueLock(QueueLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}

QueueLock::~QueueLock() {
  if (fd_ >= 0) {
    close(fd_);  // releases the lock; the file stays, like Postfix's master.pid
  }
}

}  // namespace moat::queue
