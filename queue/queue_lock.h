// queue/queue_lock.h
//
// The queue directory belongs to one running daemon. Two `moat serve` on one spool would
// both recover the same messages and deliver them twice, and each would reclaim segments the
// other still appends to; with SO_REUSEPORT they would even share the listening port without
// an error. Like Postfix's master.lock: `moat serve` takes an exclusive flock on
// QUEUE_DIRECTORY/moat.pid (which then holds its PID) before it recovers anything, and keeps
// it until it exits. The kernel drops the lock when the process dies, so a kill -9 leaves
// nothing to clean up.
//
// Thread-compatible; the lock is held by the open file description (flock), so a second
// Acquire() in the same process fails too.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace moat::queue {

class QueueLock {
 public:
  // Creates QUEUE_DIRECTORY/moat.pid if needed, locks it and writes the caller's PID into it.
  // FailedPrecondition, naming the holder's PID, when another process holds it.
  static absl::StatusOr<QueueLock> Acquire(const std::string& queue_directory);

  QueueLock(QueueLock&& other) noexcept;
  QueueLock& operator=(QueueLock&& other) = delete;
  QueueLock(const QueueLock&) = delete;
  QueueLock& operator=(const QueueLock&) = delete;
  ~QueueLock();

 private:
  explicit QueueLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace moat::queue
