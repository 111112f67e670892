// The shard's spool driver on a real reactor: group commits, segment files made on the ring
// (never inline on the shard thread), reclaim on the ring (recycling up to two segments as
// spares with their old bytes in them, unlinking the rest), and what happens when a segment
// cannot be created.
#include "core/server/shard_spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

#include "core/log/log.h"
#include "core/reactor/reactor.h"
#include "queue/spool.h"
#include "tests/queue/spool_test_util.h"
#include "tests/testing/testing.h"

namespace moat::server {
namespace {

using queue::testutil::MakeContent;
using queue::testutil::MakeEnvelope;

class ShardSpoolTest : public ::testing::Test {
 protected:
  queue::SpoolOptions Options() {
    queue::SpoolOptions o;
    o.directory = dir_.path() + "/spool/0";
    o.segment_bytes = 16 * 1024;
    o.direct_io = true;  // as the daemon runs (moat_spool_direct_io = yes)
    return o;
  }

  // Opens the spool and the driver on a fresh reactor; records every durable message.
  void Start(const queue::SpoolOptions& options) {
    absl::StatusOr<std::unique_ptr<queue::Spool>> spool = queue::Spool::Open(options, reporter_);
    ASSERT_TRUE(spool.ok()) << spool.status();
    absl::StatusOr<std::unique_ptr<reactor::Reactor>> reactor = reactor::Reactor::Create();
    ASSERT_TRUE(reactor.ok()) << reactor.status();
    reactor_ = *std::move(reactor);
    shard_spool_ = std::make_unique<ShardSpool>(*std::move(spool));
    shard_spool_->Attach(reactor_.get(), [this](const queue::QueuedMessage& m,
                                                std::shared_ptr<const std::string> content) {
      durable_.push_back({m.sequence, m.envelope.queue_id, m.envelope.recipients.size()});
      EXPECT_NE(content, nullptr);
    });
  }

  void Stop() {
    shard_spool_.reset();
    reactor_.reset();
  }

  // Runs loop turns until `done` holds; bounded (a few seconds at most).
  template <typename Done>
  bool RunUntil(Done done) {
    for (int i = 0; i < 5000 && !done(); ++i) {
      reactor_->RunOnce(absl::Milliseconds(2));
    }
    return done();
  }

  // Sessions connected to the shard that have no message staged: the commit delay waits only
  // while some session could still add one. Only their addresses are used.
  class NoAnswers : public AnswerTarget {
   public:
    void OnAnswered() override {}
  };
  void ConnectIdleSessions() {
    for (const std::max_align_t& slot : idle_sessions_) {
      shard_spool_->Register(reinterpret_cast<const net::SmtpSession*>(&slot), &no_answers_);
    }
  }
  std::array<std::max_align_t, 16> idle_sessions_{};
  NoAnswers no_answers_;

  // Runs loop turns for `d` of the loop's clock.
  void RunFor(absl::Duration d) {
    const int64_t until = reactor_->RefreshNow() + absl::ToInt64Nanoseconds(d);
    while (reactor_->RefreshNow() < until) {
      reactor_->RunOnce(absl::Milliseconds(1));
    }
  }

  // A steady load: one message per millisecond of the loop's clock (a commit takes less, so
  // without the commit delay each message would go alone).
  void SubmitOnePerMillisecond(int count, size_t bytes) {
    for (int i = 0; i < count; ++i) {
      Submit(1, bytes);
      RunFor(absl::Milliseconds(1));
    }
  }

  // Every submitted message durable and the driver idle (no timeout left on the ring).
  bool RunUntilAllDurable() {
    return RunUntil([&] { return durable_.size() == ids_.size() && shard_spool_->Idle(); });
  }

  void Submit(int count, size_t bytes) {
    for (int i = 0; i < count; ++i) {
      std::string id = shard_spool_->NewQueueId();
      shard_spool_->SubmitInternal(MakeEnvelope(id), MakeContent(id, bytes));
      ids_.push_back(id);
    }
  }

  // Journals every recipient of the durable messages as delivered, but for the last `keep`.
  void DeliverAllBut(size_t keep) {
    for (size_t i = 0; i + keep < durable_.size(); ++i) {
      for (uint32_t r = 0; r < durable_[i].recipients; ++r) {
        shard_spool_->StageOutcome({durable_[i].sequence, durable_[i].queue_id, r,
                                    queue::Outcome::kDelivered, 1, "250 2.0.0 ok"});
      }
    }
  }

  // 20 messages over several segments, all durable and then all final, the spool idle.
  bool FillAndDeliverAll(const queue::SpoolOptions& options) {
    Start(options);
    Submit(20, 3000);
    if (!RunUntil([&] { return durable_.size() == ids_.size(); })) {
      return false;
    }
    DeliverAllBut(0);
    return RunUntil([&] { return shard_spool_->Idle(); });
  }

  // Every durable message final but the last, then a reclaim, run to its end (the reclaimed
  // segments' index entries included): the current segment stays, the older ones go.
  bool ReclaimAllButTheLast() {
    DeliverAllBut(1);
    if (!RunUntil([&] { return shard_spool_->Idle(); })) {
      return false;
    }
    shard_spool_->Reclaim();
    return RunUntil(
        [&] { return shard_spool_->Idle() && !shard_spool_->spool().index().HasRemoved(); });
  }

  std::vector<std::string> Files(const queue::SpoolOptions& options) {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(options.directory)) {
      out.push_back(e.path().string());
    }
    return out;
  }

  // 20 messages, all final but the last; a reclaim recycles kFreeSegmentsMax segments; 12
  // more messages reuse them; recovery finds every pending one intact.
  void RecycleWhileTrafficContinues(uint64_t segment_bytes, size_t first_bytes,
                                    size_t second_bytes);

  struct Durable {
    uint64_t sequence;
    std::string queue_id;
    size_t recipients;
  };
  testing::TempDir dir_;
  queue::testutil::RecordingReporter reporter_;
  std::unique_ptr<reactor::Reactor> reactor_;
  std::unique_ptr<ShardSpool> shard_spool_;
  std::vector<Durable> durable_;
  std::vector<std::string> ids_;
};

TEST_F(ShardSpoolTest, SegmentsAreMadeOnTheRingAndEveryMessageIsRecovered) {
  queue::SpoolOptions options = Options();
  Start(options);
  // 3 KB messages in 16 KiB segments: a roll-over every five messages or so. Some turns stage
  // several messages (one group commit), some one.
  for (int round = 0; round < 12; ++round) {
    Submit(1 + round % 4, 3000);
    ASSERT_TRUE(RunUntil([&] { return durable_.size() == ids_.size(); }))
        << durable_.size() << " of " << ids_.size();
  }
  ASSERT_TRUE(RunUntil([&] { return shard_spool_->Idle(); }));
  EXPECT_EQ(shard_spool_->committed_messages(), ids_.size());
  // Inline creation is off for the shard, so every segment came from the ring: one for the
  // first batch, then one per roll-over.
  const uint64_t segments = shard_spool_->segments_created();
  EXPECT_GE(segments, ids_.size() * 3000 / options.segment_bytes);
  EXPECT_LT(shard_spool_->commits(), ids_.size()) << "some batches carried several messages";
  EXPECT_TRUE(shard_spool_->spool().direct_io_active());
  Stop();

  // Everything acknowledged is found again, and nothing was damaged.
  absl::StatusOr<std::unique_ptr<queue::Spool>> reopened = queue::Spool::Open(options, reporter_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE(reporter_.reports.empty());
  for (const std::string& id : ids_) {
    EXPECT_NE((*reopened)->index().Find(id), nullptr) << id;
  }
  EXPECT_EQ((*reopened)->recovery_stats().messages, ids_.size());
}

// Journal batches: an outcome alone does not start a commit; it rides with the next message, or
// goes on its own after journal_delay(), or at once after Flush() (shutdown).
TEST_F(ShardSpoolTest, JournalRecordsRideWithTheNextMessages) {
  Start(Options());
  shard_spool_->set_journal_delay(absl::Hours(1));  // only messages or a flush commit it here
  Submit(2, 3000);
  ASSERT_TRUE(RunUntil([&] { return durable_.size() == 2 && shard_spool_->Idle(); }));
  const uint64_t commits = shard_spool_->commits();
  const queue::QueueIndex& index = shard_spool_->spool().index();
  ASSERT_EQ(index.pending_messages(), 2u);

  DeliverAllBut(1);  // the first message's outcome, staged
  for (int i = 0; i < 20; ++i) {
    reactor_->RunOnce(absl::Milliseconds(2));
  }
  EXPECT_EQ(shard_spool_->commits(), commits) << "a journal record alone waits";
  EXPECT_FALSE(shard_spool_->Idle());
  EXPECT_EQ(index.pending_messages(), 2u) << "not final before it is durable";

  Submit(1, 3000);  // a message: the outcome goes with it, in the same batch
  ASSERT_TRUE(RunUntil([&] { return durable_.size() == 3 && shard_spool_->Idle(); }));
  EXPECT_EQ(shard_spool_->commits(), commits + 1);
  EXPECT_EQ(shard_spool_->journal_only_commits(), 0u);
  EXPECT_EQ(index.pending_messages(), 2u) << "the first final, the third pending";

  // Shutdown does not wait for the delay.
  for (uint32_t r = 0; r < durable_[1].recipients; ++r) {
    shard_spool_->StageOutcome(
        {durable_[1].sequence, durable_[1].queue_id, r, queue::Outcome::kDelivered, 1, "250 ok"});
  }
  shard_spool_->Flush();
  ASSERT_TRUE(RunUntil([&] { return shard_spool_->Idle(); }));
  EXPECT_EQ(shard_spool_->commits(), commits + 2);
  EXPECT_EQ(shard_spool_->journal_only_commits(), 1u);
  EXPECT_EQ(index.pending_messages(), 1u);
}

TEST_F(ShardSpoolTest, JournalRecordsAloneGoOutAfterTheDelay) {
  Start(Options());
  shard_spool_->set_journal_delay(absl::Milliseconds(20));
  Submit(1, 3000);
  ASSERT_TRUE(RunUntil([&] { return durable_.size() == 1 && shard_spool_->Idle(); }));
  DeliverAllBut(0);
  ASSERT_TRUE(RunUntil([&] { return shard_spool_->Idle(); }));
  EXPECT_EQ(shard_spool_->journal_only_commits(), 1u);
  EXPECT_EQ(shard_spool_->spool().index().pending_messages(), 0u);
}

// Commit delay: under load (a message staged every loop turn) a small batch waits for
// kCommitBatchTarget messages; here the delay is an hour, so only the target or Flush() ends
// the wait. Without the wait nearly every message would be a commit of its own.
TEST_F(ShardSpoolTest, UnderLoadSmallBatchesWaitForMoreMessages) {
  Start(Options());
  ConnectIdleSessions();
  shard_spool_->set_commit_delay(absl::Hours(1));
  constexpr int kMessages = 64;
  SubmitOnePerMillisecond(kMessages, 1000);
  shard_spool_->Flush();  // the last, partial batch
  ASSERT_TRUE(RunUntilAllDurable());
  // Measured: 19 commits (the first rate window's messages go alone), 64 without the wait.
  EXPECT_LE(shard_spool_->commits(), kMessages / 2)
      << "batches of up to " << ShardSpool::kCommitBatchTarget;
  EXPECT_GT(shard_spool_->delayed_batches(), 0u);
}

// A shard that saw no message in the last window does not wait (the delay is an hour, so a
// held message would not be durable within the test's bound).
TEST_F(ShardSpoolTest, ALightlyLoadedShardNeverWaits) {
  Start(Options());
  ConnectIdleSessions();
  shard_spool_->set_commit_delay(absl::Hours(1));
  for (int i = 0; i < 3; ++i) {
    Submit(1, 1000);
    ASSERT_TRUE(RunUntil([&] { return durable_.size() == ids_.size(); })) << i;
    EXPECT_EQ(shard_spool_->delayed_batches(), 0u);
    RunFor(absl::Milliseconds(25));  // two rate windows without a message
  }
}

// Under the same load, but with no session that could add a message (these are the daemon's own
// messages, bounces; no session is connected), a batch does not wait.
TEST_F(ShardSpoolTest, NoBatchWaitsWhenNoSessionCouldAddAMessage) {
  Start(Options());
  shard_spool_->set_commit_delay(absl::Hours(1));
  SubmitOnePerMillisecond(64, 1000);
  ASSERT_TRUE(RunUntilAllDurable());
  EXPECT_EQ(shard_spool_->delayed_batches(), 0u);
}

// Under the same load, a batch of kCommitBatchBytes or more goes at once: its write is its cost.
TEST_F(ShardSpoolTest, ALargeBatchDoesNotWait) {
  queue::SpoolOptions options = Options();
  options.segment_bytes = uint64_t{8} << 20;
  Start(options);
  ConnectIdleSessions();
  shard_spool_->set_commit_delay(absl::Hours(1));
  SubmitOnePerMillisecond(32, ShardSpool::kCommitBatchBytes + 1000);
  ASSERT_TRUE(RunUntilAllDurable());
  EXPECT_EQ(shard_spool_->delayed_batches(), 0u);
}

// One expected arrival within the delay is enough to wait (kCommitDelayMinArrivals): a message
// a millisecond and a 1.7 ms delay predict 1.7 (at most 11 in a 10 ms window: 1.87), so a batch
// waits; it would never wait if two were needed. W5's shards (a message per connection) run at
// about that rate per delay.
TEST_F(ShardSpoolTest, OneExpectedArrivalWithinTheDelayIsEnoughToWait) {
  Start(Options());
  ConnectIdleSessions();
  shard_spool_->set_commit_delay(absl::Microseconds(1700));
  SubmitOnePerMillisecond(64, 1000);
  ASSERT_TRUE(RunUntilAllDurable());
  EXPECT_GT(shard_spool_->delayed_batches(), 0u);
  EXPECT_LT(shard_spool_->commits(), 64u);
}

// The wait ends when the delay runs out, without more messages and without Flush().
TEST_F(ShardSpoolTest, AWaitingBatchGoesWhenTheDelayRunsOut) {
  Start(Options());
  ConnectIdleSessions();
  shard_spool_->set_commit_delay(absl::Milliseconds(300));
  SubmitOnePerMillisecond(20, 1000);
  EXPECT_LT(durable_.size(), ids_.size()) << "the last batch waits";
  ASSERT_TRUE(RunUntilAllDurable());
}

TEST_F(ShardSpoolTest, ReclaimUnlinksOnTheRingAndAnEmptySpoolHoldsNoFile) {
  queue::SpoolOptions options = Options();
  ASSERT_TRUE(FillAndDeliverAll(options));
  ASSERT_GT(Files(options).size(), 2u);
  ASSERT_EQ(shard_spool_->spool().index().pending_messages(), 0u);

  shard_spool_->set_free_segments_linger(absl::Milliseconds(300));
  shard_spool_->Reclaim();
  ASSERT_TRUE(RunUntil([&] { return shard_spool_->Idle(); }));
  EXPECT_GT(shard_spool_->segments_reclaimed(), 2u);
  // Drained: only the recycled files stay for a while, for the next burst...
  EXPECT_EQ(Files(options).size(), ShardSpool::kFreeSegmentsMax);
  EXPECT_EQ(shard_spool_->free_segments(), ShardSpool::kFreeSegmentsMax);
  // ... then they go too.
  ASSERT_TRUE(RunUntil([&] { return Files(options).empty() && shard_spool_->Idle(); }))
      << "an idle spool with every message final holds no file, spare included";
  EXPECT_EQ(shard_spool_->free_segments(), 0u);
  EXPECT_EQ(shard_spool_->segments_recycled(), 0u);

  // The next message gets a new segment from the ring.
  durable_.clear();
  ids_.clear();
  Submit(1, 500);
  ASSERT_TRUE(RunUntil([&] { return durable_.size() == 1; }));
  EXPECT_EQ(Files(options).size(), 1u);
  Stop();
}

// Under load the delivery side reclaims without the current segment (Reclaim(false)): the
// segments behind it go (recycled), the one being written stays open and takes the next
// batches, even when every message in it is final.
TEST_F(ShardSpoolTest, AReclaimUnderLoadKeepsTheCurrentSegment) {
  queue::SpoolOptions options = Options();
  ASSERT_TRUE(FillAndDeliverAll(options));
  ASSERT_EQ(shard_spool_->spool().index().pending_messages(), 0u);
  const uint64_t current = shard_spool_->spool().current_segment();
  const std::string current_path = shard_spool_->spool().SegmentPath(current);

  shard_spool_->Reclaim(/*include_current=*/false);
  ASSERT_TRUE(RunUntil([&] { return shard_spool_->Idle(); }));
  EXPECT_GE(shard_spool_->segments_reclaimed(), ShardSpool::kFreeSegmentsMax);
  EXPECT_EQ(shard_spool_->free_segments(), ShardSpool::kFreeSegmentsMax);
  EXPECT_TRUE(std::filesystem::exists(current_path));
  for (const std::string& f : Files(options)) {
    EXPECT_TRUE(f == current_path || f.ends_with(".seg.free") ||
                f == shard_spool_->spool().SegmentPath(current + 1))
        << f << ": only the current segment, its spare and the recycled files stay";
  }
  // The next message goes into the same segment: it was not sealed.
  Submit(1, 500);
  ASSERT_TRUE(RunUntil([&] { return durable_.size() == ids_.size(); }));
  EXPECT_EQ(shard_spool_->spool().current_segment(), current);
  EXPECT_EQ(shard_spool_->spool().index().Find(ids_.back())->location.segment, current);

  // The same reclaim with the current segment included (the idle spool's) closes it.
  DeliverAllBut(0);
  ASSERT_TRUE(RunUntil([&] { return shard_spool_->Idle(); }));
  shard_spool_->Reclaim(/*include_current=*/true);
  ASSERT_TRUE(RunUntil([&] { return shard_spool_->Idle(); }));
  EXPECT_FALSE(std::filesystem::exists(current_path));
  Stop();
}

TEST_F(ShardSpoolTest, ABurstAfterTheSpoolDrainedTakesTheRecycledFiles) {
  queue::SpoolOptions options = Options();
  ASSERT_TRUE(FillAndDeliverAll(options));
  shard_spool_->Reclaim();  // default linger: longer than this test
  ASSERT_TRUE(RunUntil([&] { return shard_spool_->Idle(); }));
  ASSERT_EQ(shard_spool_->free_segments(), ShardSpool::kFreeSegmentsMax);
  const uint64_t created = shard_spool_->segments_created();
  Submit(1, 500);
  ASSERT_TRUE(RunUntil([&] { return durable_.size() == ids_.size(); }));
  EXPECT_EQ(shard_spool_->segments_created(), created);
  EXPECT_GE(shard_spool_->segments_recycled(), 1u);
  Stop();
  absl::StatusOr<std::unique_ptr<queue::Spool>> reopened = queue::Spool::Open(options, reporter_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE(reporter_.reports.empty());
  EXPECT_EQ((*reopened)->index().pending_messages(), 1u);
  EXPECT_NE((*reopened)->index().Find(ids_.back()), nullptr);
}

void ShardSpoolTest::RecycleWhileTrafficContinues(uint64_t segment_bytes, size_t first_bytes,
                                                  size_t second_bytes) {
  queue::SpoolOptions options = Options();
  options.segment_bytes = segment_bytes;
  Start(options);
  Submit(20, first_bytes);
  ASSERT_TRUE(RunUntil([&] { return durable_.size() == ids_.size(); }));
  ASSERT_TRUE(ReclaimAllButTheLast());
  ASSERT_GE(shard_spool_->segments_reclaimed(), ShardSpool::kFreeSegmentsMax);
  EXPECT_EQ(shard_spool_->free_segments(), ShardSpool::kFreeSegmentsMax);
  std::vector<std::string> free;
  for (const std::string& f : Files(options)) {
    if (f.ends_with(".seg.free")) {
      free.push_back(f);
    }
  }
  ASSERT_EQ(free.size(), ShardSpool::kFreeSegmentsMax);
  for (const std::string& f : free) {
    // Renamed with its bytes: still allocated (and written), its old records in it.
    std::string bytes = queue::testutil::ReadAll(f);
    EXPECT_EQ(bytes.size(), options.segment_bytes) << f;
    EXPECT_EQ(bytes.substr(0, 4), "MOAT") << f << ": its old segment header";
  }

  // The next roll-overs take the free files instead of creating new ones.
  const uint64_t created = shard_spool_->segments_created();
  const size_t first_round = ids_.size();
  Submit(12, second_bytes);
  ASSERT_TRUE(RunUntil([&] { return durable_.size() == ids_.size(); }));
  ASSERT_TRUE(RunUntil([&] { return shard_spool_->Idle(); }));
  EXPECT_EQ(shard_spool_->segments_recycled(), ShardSpool::kFreeSegmentsMax);
  EXPECT_EQ(shard_spool_->free_segments(), 0u);
  EXPECT_GT(shard_spool_->segments_created(), created) << "12 messages need more than two segments";
  Stop();

  // Recovery reads the reused files like new ones: every pending message, nothing reported
  // (the old records left in them carry another salt), no final message back from the dead.
  absl::StatusOr<std::unique_ptr<queue::Spool>> reopened = queue::Spool::Open(options, reporter_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE(reporter_.reports.empty()) << reporter_.reports[0].reason;
  EXPECT_EQ((*reopened)->index().pending_messages(), 1 + ids_.size() - first_round);
  EXPECT_EQ((*reopened)->index().Find(ids_[0]), nullptr) << "in the first recycled segment";
  for (size_t i = first_round - 1; i < ids_.size(); ++i) {
    const queue::QueuedMessage* m = (*reopened)->index().Find(ids_[i]);
    ASSERT_NE(m, nullptr) << ids_[i];
    absl::StatusOr<std::string> content = (*reopened)->ReadContent(*m);
    ASSERT_TRUE(content.ok()) << content.status();
    EXPECT_EQ(*content, MakeContent(ids_[i], i < first_round ? first_bytes : second_bytes));
  }
}

TEST_F(ShardSpoolTest, ReclaimedSegmentsAreRecycledAsSparesWhileTrafficContinues) {
  RecycleWhileTrafficContinues(16 * 1024, 3000, 3000);
}

TEST_F(ShardSpoolTest, MessagesLargerThanTheRecordsTheyOverwriteAreRecovered) {
  // Fewer, larger records in the reused files than in their first use, and the other way
  // round: the new records end in the middle of old ones.
  RecycleWhileTrafficContinues(24 * 1024, 3000, 9000);
}

TEST_F(ShardSpoolTest, ARecycledSpareWhoseFirstBatchNeverLandedIsUnused) {
  queue::SpoolOptions options = Options();
  Start(options);
  Submit(20, 3000);
  ASSERT_TRUE(RunUntil([&] { return durable_.size() == ids_.size(); }));
  ASSERT_TRUE(ReclaimAllButTheLast());
  ASSERT_EQ(shard_spool_->free_segments(), ShardSpool::kFreeSegmentsMax);
  const std::string spare = shard_spool_->spool().SegmentPath(1000);
  Stop();
  // A crash right after a free file was renamed to its new number, before its first batch:
  // its header and records are its old segment's, every one of them final and reclaimed.
  std::string free;
  for (const std::string& f : Files(options)) {
    if (f.ends_with(".seg.free")) {
      free = f;
    }
  }
  ASSERT_FALSE(free.empty());
  ASSERT_EQ(rename(free.c_str(), spare.c_str()), 0);
  absl::StatusOr<std::unique_ptr<queue::Spool>> reopened = queue::Spool::Open(options, reporter_);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  EXPECT_TRUE(reporter_.reports.empty());
  EXPECT_FALSE(std::filesystem::exists(spare));
  EXPECT_EQ((*reopened)->index().pending_messages(), 1u);
  EXPECT_EQ((*reopened)->index().Find(ids_[0]), nullptr) << "a reclaimed message came back";
  EXPECT_EQ((*reopened)->recovery_stats().unused_segments, ShardSpool::kFreeSegmentsMax);
  EXPECT_NE((*reopened)->index().Find(ids_.back()), nullptr);
  for (const std::string& f : Files(options)) {
    EXPECT_FALSE(f.ends_with(".seg.free")) << f;
  }
}

TEST_F(ShardSpoolTest, AFreeSegmentLeftByACrashIsDeletedByRecovery) {
  queue::SpoolOptions options = Options();
  std::filesystem::create_directories(options.directory);
  const std::string free = options.directory + "/0000000000000007.seg.free";
  std::ofstream(free) << std::string(options.segment_bytes, '\0');
  absl::StatusOr<std::unique_ptr<queue::Spool>> spool = queue::Spool::Open(options, reporter_);
  ASSERT_TRUE(spool.ok()) << spool.status();
  EXPECT_FALSE(std::filesystem::exists(free));
  EXPECT_TRUE(reporter_.reports.empty());
}

TEST_F(ShardSpoolTest, TakenSegmentNumbersAreSkippedAndAFailedCreationFailsOnlyTheWaiters) {
  queue::SpoolOptions options = Options();
  Start(options);
  // Files in the way of the next 20 segment numbers (as an earlier run's unreadable segments
  // would be): the driver skips at most 16 in a row, then fails the message that waited.
  for (uint64_t n = 1; n <= 20; ++n) {
    std::ofstream(shard_spool_->spool().SegmentPath(n)) << "not a segment";
  }
  std::string log;
  log::CaptureForTest(&log);
  Submit(1, 500);
  ASSERT_TRUE(RunUntil([&] { return shard_spool_->Idle(); }));
  EXPECT_TRUE(durable_.empty());
  EXPECT_NE(log.find("failing 1 staged records"), std::string::npos) << log;

  // The next message finds a free number after the remaining four taken ones.
  Submit(1, 500);
  ASSERT_TRUE(RunUntil([&] { return durable_.size() == 1; }));
  log::CaptureForTest(nullptr);
  EXPECT_EQ(durable_[0].queue_id, ids_[1]);
  EXPECT_GT(shard_spool_->spool().current_segment(), 20u);
  Stop();
}

}  // namespace
}  // namespace moat::server
