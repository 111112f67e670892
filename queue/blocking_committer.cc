// queue/blocking_committer.cc: see blocking_committer.h. Blocking; control side only.
#include "queue/blocking_committer.h"

#include <unistd.h>

#include <cerrno>

namespace moat::queue {

int BlockingCommitter::Execute(const CommitBatch& batch) {
  CommitBatch rest = batch;  // alloc: a copy of the iovec list, so short writes can be resumed
  // Bounded: each round writes at least one byte or returns.
  while (rest.bytes > 0) {
    ssize_t n = pwritev(rest.fd, rest.iov.data(), static_cast<int>(rest.iov.size()),
                        static_cast<off_t>(rest.offset));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return n == 0 ? -EIO : -errno;
    }
    rest.Consume(static_cast<uint64_t>(n));
  }
  if (fdatasync(batch.fd) != 0) {
    return -errno;
  }
  if (batch.directory_fd >= 0 && fsync(batch.directory_fd) != 0) {
    return -errno;
  }
  return 0;
}

size_t BlockingCommitter::CommitAll(Spool& spool) {
  size_t batches = 0;
  while (const CommitBatch* batch = spool.PrepareCommit()) {
    spool.OnCommitDone(Execute(*batch));
    ++batches;
  }
  return batches;
}

}  // namespace moat::queue
