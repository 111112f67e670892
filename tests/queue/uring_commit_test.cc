// The group commit driven through io_uring, as a shard will drive it (queue/spool.h): linked
// writev -> fsync(DATASYNC) [-> fsync(directory)], one chain per batch, OnCommitDone when the
// chain's last CQE arrives. Uses liburing directly (not the reactor), so it checks the
// CommitBatch contract itself: iovecs usable by the kernel as they are, one batch in flight,
// stages during a commit going to the next batch, and everything recovered afterwards.
#include <cerrno>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include <liburing.h>

#include "queue/spool.h"
#include "tests/queue/spool_test_util.h"
#include "tests/testing/testing.h"

namespace moat::queue {
namespace {

using testutil::MakeContent;
using testutil::MakeEnvelope;

class UringCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int rc = io_uring_queue_init(8, &ring_, 0);
    if (rc < 0) {
      GTEST_SKIP() << "io_uring unavailable: " << strerror(-rc);
    }
    ring_ok_ = true;
  }
  void TearDown() override {
    if (ring_ok_) {
      io_uring_queue_exit(&ring_);
    }
  }

  // Submits the batch as one linked chain; returns how many CQEs to reap.
  int Submit(const CommitBatch& batch) {
    io_uring_sqe* write = io_uring_get_sqe(&ring_);
    io_uring_prep_writev(write, batch.fd, batch.iov.data(), static_cast<unsigned>(batch.iov.size()),
                         batch.offset);
    write->flags |= IOSQE_IO_LINK;
    write->user_data = batch.bytes;  // a short write shows as res != user_data
    io_uring_sqe* sync = io_uring_get_sqe(&ring_);
    io_uring_prep_fsync(sync, batch.fd, IORING_FSYNC_DATASYNC);
    sync->user_data = 0;
    int n = 2;
    if (batch.directory_fd >= 0) {
      sync->flags |= IOSQE_IO_LINK;
      io_uring_sqe* dir = io_uring_get_sqe(&ring_);
      io_uring_prep_fsync(dir, batch.directory_fd, 0);
      dir->user_data = 0;
      n = 3;
    }
    EXPECT_EQ(io_uring_submit(&ring_), n);
    return n;
  }

  // Reaps the chain: 0 when the write was whole and every sync succeeded, else -errno.
  int Reap(int n) {
    int result = 0;
    for (int i = 0; i < n; ++i) {
      io_uring_cqe* cqe = nullptr;
      int rc = io_uring_wait_cqe(&ring_, &cqe);
      if (rc < 0) {
        return rc;
      }
      if (cqe->res < 0 && result == 0) {
        result = cqe->res;
      } else if (cqe->user_data != 0 && static_cast<uint64_t>(cqe->res) != cqe->user_data &&
                 result == 0) {
        result = -EIO;  // short write: the linked syncs come back -ECANCELED
      }
      io_uring_cqe_seen(&ring_, cqe);
    }
    return result;
  }

  io_uring ring_;
  bool ring_ok_ = false;
  testing::TempDir dir_;
  testutil::RecordingReporter reporter_;
};

TEST_F(UringCommitTest, LinkedWritevAndFdatasyncCommitBatchesThatRecoveryFinds) {
  SpoolOptions options;
  options.directory = dir_.path() + "/spool/0";
  options.segment_bytes = 32 * 1024;  // several segments, so several directory syncs
  absl::StatusOr<std::unique_ptr<Spool>> opened = Spool::Open(options, reporter_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  Spool& spool = **opened;

  std::vector<std::pair<std::string, std::string>> sent;  // kept alive until recovered
  sent.reserve(120);
  auto stage = [&](int count) {
    for (int i = 0; i < count; ++i) {
      std::string id = spool.NewQueueId();
      sent.emplace_back(id, MakeContent(id + "@uring", 500 + 97 * (sent.size() % 40)));
      spool.Stage(MakeEnvelope(id), sent.back().second);
    }
  };
  std::vector<TicketResult> results;
  size_t acknowledged = 0;
  int batches = 0;
  stage(5);
  // Loop turns: commit what is staged; while it is in flight, more sessions stage.
  for (int turn = 0; turn < 1000 && (spool.HasPending() || sent.size() < 120); ++turn) {
    const CommitBatch* batch = spool.PrepareCommit();
    ASSERT_NE(batch, nullptr);
    uint64_t last = batch->last_sequence;
    int n = Submit(*batch);
    size_t before = sent.size();
    if (sent.size() < 120) {
      stage(std::min<int>(7, static_cast<int>(120 - sent.size())));
    }
    EXPECT_EQ(spool.PrepareCommit(), nullptr) << "one commit in flight";
    spool.OnCommitDone(Reap(n));
    ++batches;
    spool.TakeResults(&results);
    for (const TicketResult& r : results) {
      EXPECT_EQ(r.error, 0);
      EXPECT_LE(r.sequence, last) << "a ticket staged during the commit is not covered by it";
    }
    acknowledged += results.size();
    EXPECT_LE(acknowledged, before) << "only what was staged before the batch was prepared";
  }
  EXPECT_EQ(acknowledged, sent.size());
  EXPECT_LT(batches, 120) << "staging during commits must batch";
  opened->reset();

  testutil::RecordingReporter reporter;
  absl::StatusOr<std::unique_ptr<Spool>> recovered = Spool::Open(options, reporter);
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_TRUE(reporter.reports.empty());
  EXPECT_GT((*recovered)->recovery_stats().segments, 2u);
  for (const auto& [id, content] : sent) {
    const QueuedMessage* m = (*recovered)->index().Find(id);
    ASSERT_NE(m, nullptr) << id;
    EXPECT_EQ(*(*recovered)->ReadContent(*m), content);
  }
}

}  // namespace
}  // namespace moat::queue
