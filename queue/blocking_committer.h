// queue/blocking_committer.h
//
// Drives a Spool's group commit with blocking system calls: pwritev (short writes resumed),
// fdatasync, and fsync of the directory for a new segment. For tests, tools and the control
// thread; never on a shard thread (the ring does this there). Stateless; thread-compatible.
#pragma once

#include <cstddef>

#include "queue/spool.h"

namespace moat::queue {

class BlockingCommitter {
 public:
  // Performs the I/O of one batch. Returns 0 or -errno, as Spool::OnCommitDone() expects.
  static int Execute(const CommitBatch& batch);
  // Commits everything staged: PrepareCommit / Execute / OnCommitDone until nothing is pending.
  // Returns the number of batches (= fdatasync calls).
  static size_t CommitAll(Spool& spool);
};

}  // namespace moat::queue
