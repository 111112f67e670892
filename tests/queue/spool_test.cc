// The spool's write side (queue/spool.h): staging, group commit, failures, segment rolling,
// oversized messages, outcomes and reclaiming, each checked again after a reopen (recovery).
#include "queue/spool.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

#include "queue/blocking_committer.h"
#include "tests/queue/spool_test_util.h"
#include "tests/testing/testing.h"

namespace moat::queue {
namespace {

using testutil::MakeContent;
using testutil::MakeEnvelope;

class SpoolTest : public ::testing::Test {
 protected:
  SpoolOptions Options() {
    SpoolOptions o;
    o.directory = dir_.path() + "/spool/0";
    o.shard = 0;
    o.segment_bytes = 64 * 1024;
    return o;
  }
  std::unique_ptr<Spool> OpenSpool(const SpoolOptions& options) {
    absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options, reporter_);
    EXPECT_TRUE(spool.ok()) << spool.status();
    return spool.ok() ? *std::move(spool) : nullptr;
  }
  // A 16 MiB-segment spool whose batches hold at most `records_max` records.
  std::unique_ptr<Spool> OpenBatchLimitedSpool(size_t records_max) {
    SpoolOptions options = Options();
    options.segment_bytes = 16 << 20;
    options.batch_records_max = records_max;
    return OpenSpool(options);
  }
  std::vector<std::string> SegmentFiles(const SpoolOptions& options) {
    std::vector<std::string> out;
    for (const auto& entry : std::filesystem::directory_iterator(options.directory)) {
      out.push_back(entry.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  testing::TempDir dir_;
  testutil::RecordingReporter reporter_;
};

TEST_F(SpoolTest, StagedMessageIsNotDurableUntilItsCommitCompletes) {
  SpoolOptions options = Options();
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  std::string id = spool->NewQueueId();
  std::string content = MakeContent("a@example", 300);
  Ticket ticket = spool->Stage(MakeEnvelope(id), content);
  EXPECT_TRUE(spool->HasPending());
  std::vector<TicketResult> results;
  spool->TakeResults(&results);
  EXPECT_TRUE(results.empty());
  EXPECT_EQ(spool->index().Find(id), nullptr);

  const CommitBatch* batch = spool->PrepareCommit();
  ASSERT_NE(batch, nullptr);
  EXPECT_TRUE(spool->CommitInFlight());
  EXPECT_EQ(spool->PrepareCommit(), nullptr) << "one commit in flight at a time";
  EXPECT_GE(batch->directory_fd, 0) << "first batch of a new segment must sync the directory";
  spool->TakeResults(&results);
  EXPECT_TRUE(results.empty()) << "no ticket is durable before OnCommitDone";

  spool->OnCommitDone(BlockingCommitter::Execute(*batch));
  spool->TakeResults(&results);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].sequence, ticket.sequence);
  EXPECT_EQ(results[0].error, 0);
  ASSERT_NE(spool->index().Find(id), nullptr);
}

TEST_F(SpoolTest, RoundTripThroughRecovery) {
  SpoolOptions options = Options();
  std::vector<std::pair<MessageEnvelope, std::string>> sent;
  {
    std::unique_ptr<Spool> spool = OpenSpool(options);
    ASSERT_NE(spool, nullptr);
    for (int i = 0; i < 20; ++i) {
      MessageEnvelope e = MakeEnvelope(spool->NewQueueId(), 1 + i % 3);
      sent.emplace_back(e, MakeContent(absl::StrFormat("m%d@example", i), 100 + 37 * i));
    }
    for (auto& [e, content] : sent) {
      spool->Stage(e, content);
    }
    BlockingCommitter::CommitAll(*spool);
    std::vector<TicketResult> results;
    spool->TakeResults(&results);
    ASSERT_EQ(results.size(), sent.size());
    for (const TicketResult& r : results) {
      EXPECT_EQ(r.error, 0);
    }
    // Readable in this process already.
    const QueuedMessage* m = spool->index().Find(sent[5].first.queue_id);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(*spool->ReadContent(*m), sent[5].second);
  }
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  EXPECT_TRUE(reporter_.reports.empty());
  EXPECT_EQ(spool->recovery_stats().messages, sent.size());
  EXPECT_EQ(spool->index().pending_messages(), sent.size());
  for (const auto& [e, content] : sent) {
    const QueuedMessage* m = spool->index().Find(e.queue_id);
    ASSERT_NE(m, nullptr) << e.queue_id;
    EXPECT_EQ(m->envelope, e);
    EXPECT_EQ(m->content_bytes, content.size());
    absl::StatusOr<std::string> got = spool->ReadContent(*m);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, content);
  }
  // A new process run appends to a new segment, and its IDs are above the recovered ones.
  std::string id = spool->NewQueueId();
  EXPECT_GT(id, sent.back().first.queue_id);
  std::string content = MakeContent("after@example", 10);
  spool->Stage(MakeEnvelope(id), content);
  BlockingCommitter::CommitAll(*spool);
  EXPECT_NE(spool->index().Find(id)->location.segment,
            spool->index().Find(sent[0].first.queue_id)->location.segment);
}

TEST_F(SpoolTest, GroupCommitMakesManyTicketsDurableWithOneBatch) {
  std::unique_ptr<Spool> spool = OpenSpool(Options());
  ASSERT_NE(spool, nullptr);
  std::vector<std::string> contents;
  std::vector<Ticket> tickets;
  for (int i = 0; i < 50; ++i) {
    contents.push_back(MakeContent(absl::StrFormat("g%d@example", i), 200));
  }
  for (int i = 0; i < 50; ++i) {
    tickets.push_back(spool->Stage(MakeEnvelope(spool->NewQueueId()), contents[i]));
  }
  EXPECT_EQ(BlockingCommitter::CommitAll(*spool), 1u) << "one write + fdatasync for all 50";
  std::vector<TicketResult> results;
  spool->TakeResults(&results);
  ASSERT_EQ(results.size(), 50u);
  for (size_t i = 0; i < results.size(); ++i) {
    EXPECT_EQ(results[i].sequence, tickets[i].sequence);
    EXPECT_EQ(results[i].error, 0);
  }
}

TEST_F(SpoolTest, BatchLimitsSplitABurstIntoSeveralCommits) {
  std::unique_ptr<Spool> spool = OpenBatchLimitedSpool(8);
  ASSERT_NE(spool, nullptr);
  std::string content = MakeContent("b@example", 100);
  for (int i = 0; i < 20; ++i) {
    spool->Stage(MakeEnvelope(spool->NewQueueId()), content);
  }
  EXPECT_EQ(BlockingCommitter::CommitAll(*spool), 3u);  // 8 + 8 + 4
  std::vector<TicketResult> results;
  spool->TakeResults(&results);
  EXPECT_EQ(results.size(), 20u);
}

// The staged-message counters a driver's commit delay reads: journal records are not messages,
// and a batch cut by its limits leaves the rest counted.
TEST_F(SpoolTest, PendingMessageCountersFollowStagingAndBatches) {
  std::unique_ptr<Spool> spool = OpenBatchLimitedSpool(2);
  ASSERT_NE(spool, nullptr);
  std::string content = MakeContent("c@example", 1000);
  std::vector<uint64_t> sequences;
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(spool->NewQueueId());
    sequences.push_back(spool->Stage(MakeEnvelope(ids.back()), content).sequence);
  }
  EXPECT_EQ(spool->pending_message_count(), 3u);
  const uint64_t per_message = spool->pending_message_bytes() / 3;
  EXPECT_GT(per_message, content.size());  // the payload: envelope and content
  const CommitBatch* batch = spool->PrepareCommit();  // two records of three
  ASSERT_NE(batch, nullptr);
  EXPECT_EQ(spool->pending_message_count(), 1u);
  EXPECT_EQ(spool->pending_message_bytes(), per_message);
  spool->OnCommitDone(BlockingCommitter::Execute(*batch));
  BlockingCommitter::CommitAll(*spool);
  EXPECT_FALSE(spool->HasPendingMessages());
  EXPECT_EQ(spool->pending_message_bytes(), 0u);

  spool->StageOutcome({sequences[0], ids[0], 0, Outcome::kDelivered, 1, "250 ok"});
  EXPECT_TRUE(spool->HasPending());
  EXPECT_FALSE(spool->HasPendingMessages()) << "a journal record is not a message";
  BlockingCommitter::CommitAll(*spool);
  EXPECT_FALSE(spool->HasPending());
}

TEST_F(SpoolTest, FailedCommitFailsItsTicketsAndLaterCommitsUseANewSegment) {
  SpoolOptions options = Options();
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  std::string content = MakeContent("f@example", 500);
  std::string ok_id = spool->NewQueueId();
  spool->Stage(MakeEnvelope(ok_id), content);
  BlockingCommitter::CommitAll(*spool);
  uint64_t first_segment = spool->current_segment();

  std::vector<std::string> failed_ids;
  std::vector<Ticket> failed;
  for (int i = 0; i < 3; ++i) {
    failed_ids.push_back(spool->NewQueueId());
    failed.push_back(spool->Stage(MakeEnvelope(failed_ids.back()), content));
  }
  const CommitBatch* batch = spool->PrepareCommit();
  ASSERT_NE(batch, nullptr);
  spool->OnCommitDone(-ENOSPC);  // e.g. the write CQE said ENOSPC; nothing was written
  std::vector<TicketResult> results;
  spool->TakeResults(&results);
  ASSERT_EQ(results.size(), 4u);
  EXPECT_EQ(results[0].error, 0);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(results[1 + i].sequence, failed[i].sequence);
    EXPECT_EQ(results[1 + i].error, ENOSPC);
    EXPECT_EQ(spool->index().Find(failed_ids[i]), nullptr);
  }

  std::string later_id = spool->NewQueueId();
  spool->Stage(MakeEnvelope(later_id), content);
  const CommitBatch* next = spool->PrepareCommit();
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(next->offset, 0u) << "a sealed segment is never appended to again";
  EXPECT_GE(next->directory_fd, 0);
  spool->OnCommitDone(BlockingCommitter::Execute(*next));
  spool->TakeResults(&results);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].error, 0);
  EXPECT_NE(spool->current_segment(), first_segment);

  spool.reset();
  spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  EXPECT_NE(spool->index().Find(ok_id), nullptr);
  EXPECT_NE(spool->index().Find(later_id), nullptr);
  EXPECT_EQ(spool->index().Find(failed_ids[0]), nullptr);
}

TEST_F(SpoolTest, ShortWritesAreResumedByConsume) {
  std::unique_ptr<Spool> spool = OpenSpool(Options());
  ASSERT_NE(spool, nullptr);
  std::string content = MakeContent("s@example", 3000);
  std::string id = spool->NewQueueId();
  spool->Stage(MakeEnvelope(id), content);
  const CommitBatch* batch = spool->PrepareCommit();
  ASSERT_NE(batch, nullptr);
  // Write the batch 7 bytes at a time, as a driver resuming short writes would.
  CommitBatch rest = *batch;
  uint64_t total = rest.bytes;
  uint64_t written = 0;
  for (int round = 0; rest.bytes > 0 && round < 100000; ++round) {
    std::vector<iovec> first(1, rest.iov[0]);
    first[0].iov_len = std::min<size_t>(first[0].iov_len, 7);
    ssize_t n = pwritev(rest.fd, first.data(), 1, static_cast<off_t>(rest.offset));
    ASSERT_GT(n, 0);
    rest.Consume(static_cast<uint64_t>(n));
    written += static_cast<uint64_t>(n);
  }
  EXPECT_EQ(written, total);
  ASSERT_EQ(fdatasync(batch->fd), 0);
  ASSERT_EQ(fsync(batch->directory_fd), 0);
  spool->OnCommitDone(0);
  EXPECT_EQ(*spool->ReadContent(*spool->index().Find(id)), content);
}

TEST_F(SpoolTest, OwnedContentIsKeptByTheSpool) {
  SpoolOptions options = Options();
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  std::string expected = MakeContent("o@example", 700);
  std::string id = spool->NewQueueId();
  {
    std::string content = expected;
    spool->Stage(MakeEnvelope(id), std::move(content));
  }
  std::string small = "x\r\n";  // short enough for the small-string buffer: must survive moves
  std::string small_id = spool->NewQueueId();
  spool->Stage(MakeEnvelope(small_id), std::move(small));
  BlockingCommitter::CommitAll(*spool);
  EXPECT_EQ(*spool->ReadContent(*spool->index().Find(id)), expected);
  EXPECT_EQ(*spool->ReadContent(*spool->index().Find(small_id)), "x\r\n");
}

TEST_F(SpoolTest, SegmentsRollOverAndOversizedMessagesGetTheirOwnSegment) {
  SpoolOptions options = Options();  // 64 KiB segments
  std::vector<std::pair<std::string, std::string>> sent;
  {
    std::unique_ptr<Spool> spool = OpenSpool(options);
    ASSERT_NE(spool, nullptr);
    for (int i = 0; i < 30; ++i) {
      // Every 10th message is 200 KiB: larger than a whole segment.
      size_t size = i % 10 == 9 ? 200 * 1024 : 9000;
      sent.emplace_back(spool->NewQueueId(), MakeContent(absl::StrFormat("r%d@x", i), size));
    }
    for (int i = 0; i < 30; i += 3) {  // stage three per loop turn
      for (int j = i; j < i + 3; ++j) {
        spool->Stage(MakeEnvelope(sent[j].first), sent[j].second);
      }
      BlockingCommitter::CommitAll(*spool);
    }
    std::vector<TicketResult> results;
    spool->TakeResults(&results);
    ASSERT_EQ(results.size(), 30u);
    for (int i = 0; i < 30; ++i) {
      const QueuedMessage* m = spool->index().Find(sent[i].first);
      ASSERT_NE(m, nullptr);
      EXPECT_LE(m->location.offset + m->location.record_bytes,
                std::max<uint64_t>(options.segment_bytes, m->location.record_bytes + 1024))
          << i;
      if (i % 10 == 9) {
        // Alone in its segment: right after the segment header, and nothing follows it.
        EXPECT_LT(m->location.offset, 128u) << i;
        if (i + 1 < 30) {
          EXPECT_NE(spool->index().Find(sent[i + 1].first)->location.segment, m->location.segment);
        }
      }
    }
  }
  EXPECT_GE(SegmentFiles(options).size(), 6u);
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  EXPECT_TRUE(reporter_.reports.empty());
  for (const auto& [id, content] : sent) {
    const QueuedMessage* m = spool->index().Find(id);
    ASSERT_NE(m, nullptr) << id;
    EXPECT_EQ(*spool->ReadContent(*m), content);
  }
}

TEST_F(SpoolTest, RecordOverTheFormatLimitFailsAtOnce) {
  std::unique_ptr<Spool> spool = OpenSpool(Options());
  ASSERT_NE(spool, nullptr);
  // A view of 1 GiB + 1 bytes that is never read: the size check comes first.
  static const char kByte = 'x';
  std::string_view huge(&kByte, size_t{kPayloadBytesMax} + 1);
  Ticket t = spool->Stage(MakeEnvelope(spool->NewQueueId()), huge);
  EXPECT_FALSE(spool->HasPending());
  std::vector<TicketResult> results;
  spool->TakeResults(&results);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].sequence, t.sequence);
  EXPECT_EQ(results[0].error, EFBIG);
}

TEST_F(SpoolTest, OutcomesAreJournaledReplayedAndFinishedSegmentsReclaimed) {
  SpoolOptions options = Options();
  options.segment_bytes = 4096;  // a few messages per segment
  std::vector<std::string> ids;
  std::vector<uint64_t> sequences;
  {
    std::unique_ptr<Spool> spool = OpenSpool(options);
    ASSERT_NE(spool, nullptr);
    std::string content = MakeContent("j@example", 1000);
    for (int i = 0; i < 6; ++i) {
      ids.push_back(spool->NewQueueId());
      sequences.push_back(spool->Stage(MakeEnvelope(ids.back(), 2), content).sequence);
      BlockingCommitter::CommitAll(*spool);
    }
    // Message 0: both recipients delivered. Message 1: one delivered, one deferred.
    spool->StageOutcome({sequences[0], ids[0], 0, Outcome::kDelivered, 1, "250 ok"});
    spool->StageOutcome({sequences[0], ids[0], 1, Outcome::kBounced, 2, "550 no"});
    spool->StageOutcome({sequences[1], ids[1], 0, Outcome::kDelivered, 3, "250 ok"});
    spool->StageOutcome({sequences[1], ids[1], 1, Outcome::kDeferred, 4, "451 later"});
    BlockingCommitter::CommitAll(*spool);
    EXPECT_TRUE(spool->index().Find(ids[0])->final());
    EXPECT_FALSE(spool->index().Find(ids[1])->final());
  }
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->recovery_stats().outcomes, 4u);
  const QueuedMessage* m0 = spool->index().Find(ids[0]);
  const QueuedMessage* m1 = spool->index().Find(ids[1]);
  ASSERT_NE(m0, nullptr);
  ASSERT_NE(m1, nullptr);
  EXPECT_TRUE(m0->final()) << "journaled as delivered: never delivered again";
  EXPECT_EQ(m0->recipients[0], RecipientStatus::kDelivered);
  EXPECT_EQ(m0->recipients[1], RecipientStatus::kBounced);
  EXPECT_EQ(m1->recipients[0], RecipientStatus::kDelivered);
  EXPECT_EQ(m1->recipients[1], RecipientStatus::kPending);
  EXPECT_EQ(spool->index().pending_messages(), 5u);
  int pending_seen = 0;
  spool->index().ForEachPending([&](const QueuedMessage& m) {
    EXPECT_NE(m.envelope.queue_id, ids[0]);
    ++pending_seen;
  });
  EXPECT_EQ(pending_seen, 5);

  // Finish every message; every old segment becomes reclaimable and is deleted.
  for (int i = 1; i < 6; ++i) {
    for (uint32_t r = 0; r < 2; ++r) {
      spool->StageOutcome({sequences[i], ids[i], r, Outcome::kDelivered, 5, "250 ok"});
    }
  }
  BlockingCommitter::CommitAll(*spool);
  EXPECT_EQ(spool->index().pending_messages(), 0u);
  size_t before = SegmentFiles(options).size();
  absl::StatusOr<size_t> removed = spool->ReclaimSegments();
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_GT(*removed, 0u);
  EXPECT_EQ(SegmentFiles(options).size(), before - *removed);
  EXPECT_EQ(spool->index().Find(ids[0]), nullptr);

  spool.reset();
  spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->index().pending_messages(), 0u) << "nothing is delivered twice";
}

TEST_F(SpoolTest, SegmentWithPendingMessageIsNotReclaimedNorAreOutcomesPointingAtIt) {
  SpoolOptions options = Options();
  options.segment_bytes = 4096;
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  std::string content = MakeContent("p@example", 1500);
  std::vector<std::string> ids;
  std::vector<uint64_t> sequences;
  for (int i = 0; i < 4; ++i) {
    ids.push_back(spool->NewQueueId());
    sequences.push_back(spool->Stage(MakeEnvelope(ids.back(), 1), content).sequence);
    BlockingCommitter::CommitAll(*spool);
  }
  uint64_t seg0 = spool->index().Find(ids[0])->location.segment;
  ASSERT_EQ(spool->index().Find(ids[1])->location.segment, seg0) << "test wants 2 per segment";
  // Message 1 finishes (its outcome lands in a later segment); message 0 stays pending.
  spool->StageOutcome({sequences[1], ids[1], 0, Outcome::kDelivered, 1, "250 ok"});
  BlockingCommitter::CommitAll(*spool);
  for (uint64_t s : spool->index().ReclaimableSegments(spool->current_segment())) {
    EXPECT_NE(s, seg0);
  }
  ASSERT_TRUE(spool->ReclaimSegments().ok());
  spool.reset();
  spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  ASSERT_NE(spool->index().Find(ids[1]), nullptr);
  EXPECT_TRUE(spool->index().Find(ids[1])->final()) << "its outcome survived";
  EXPECT_FALSE(spool->index().Find(ids[0])->final());
}

// Without inline creation (the shard's way), a failed early spare (disk full) is not asked for
// again every loop turn: only once a batch really needs the next segment.
TEST_F(SpoolTest, FailedEarlySpareIsRetriedOnlyWhenASegmentIsNeeded) {
  SpoolOptions options = Options();
  options.segment_bytes = 8192;
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  spool->set_inline_segment_creation(false);
  auto adopt_created = [&] {
    Spool::SpareRequest r = spool->RequestSpareSegment();
    spool->AdoptSpareSegment(r.number, Spool::CreateSegmentFile(r.path, r.bytes, r.preallocate));
  };
  std::string content = MakeContent("early@example", 3000);
  spool->Stage(MakeEnvelope(spool->NewQueueId()), content);
  EXPECT_EQ(spool->PrepareCommit(), nullptr) << "no segment yet, and none made inline";
  ASSERT_TRUE(spool->NeedsSegment());
  ASSERT_TRUE(spool->ShouldPrepareSpare());
  adopt_created();
  BlockingCommitter::CommitAll(*spool);
  spool->Stage(MakeEnvelope(spool->NewQueueId()), content);
  BlockingCommitter::CommitAll(*spool);  // past half of the segment
  ASSERT_TRUE(spool->ShouldPrepareSpare()) << "early spare for the next roll-over";
  Spool::SpareRequest early = spool->RequestSpareSegment();
  spool->AdoptSpareSegment(early.number, absl::ResourceExhaustedError("disk full"));
  EXPECT_TRUE(spool->WantsSpareSegment());
  EXPECT_FALSE(spool->ShouldPrepareSpare()) << "not again until one is needed";
  spool->Stage(MakeEnvelope(spool->NewQueueId()), content);  // does not fit any more
  EXPECT_TRUE(spool->NeedsSegment());
  EXPECT_TRUE(spool->ShouldPrepareSpare());
  adopt_created();
  BlockingCommitter::CommitAll(*spool);
  EXPECT_FALSE(spool->HasPending());
}

TEST_F(SpoolTest, SpareSegmentIsUsedWhenTheSegmentFillsUp) {
  SpoolOptions options = Options();
  options.segment_bytes = 8192;
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  std::string content = MakeContent("spare@example", 3000);
  std::string first = spool->NewQueueId();
  spool->Stage(MakeEnvelope(first), content);
  BlockingCommitter::CommitAll(*spool);

  ASSERT_TRUE(spool->WantsSpareSegment());
  Spool::SpareRequest request = spool->RequestSpareSegment();
  EXPECT_FALSE(spool->WantsSpareSegment()) << "one request at a time";
  EXPECT_GT(request.number, spool->current_segment());
  // The blocking part, as the control thread would run it.
  absl::StatusOr<int> fd =
      Spool::CreateSegmentFile(request.path, request.bytes, request.preallocate);
  ASSERT_TRUE(fd.ok()) << fd.status();
  spool->AdoptSpareSegment(request.number, fd);
  EXPECT_FALSE(spool->WantsSpareSegment()) << "a spare is ready";

  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {  // fills the first segment and rolls into the spare
    ids.push_back(spool->NewQueueId());
    spool->Stage(MakeEnvelope(ids.back()), content);
    BlockingCommitter::CommitAll(*spool);
  }
  EXPECT_EQ(spool->index().Find(ids.back())->location.segment, request.number);
  EXPECT_TRUE(spool->WantsSpareSegment()) << "the spare was taken";

  // A failed creation is only a warning: the next roll-over creates its segment inline.
  Spool::SpareRequest again = spool->RequestSpareSegment();
  spool->AdoptSpareSegment(again.number, absl::ResourceExhaustedError("disk full"));
  EXPECT_TRUE(spool->WantsSpareSegment());

  // A spare that arrives after an inline roll-over is too old to use: it is removed.
  Spool::SpareRequest late = spool->RequestSpareSegment();
  for (int i = 0; i < 3; ++i) {
    ids.push_back(spool->NewQueueId());
    spool->Stage(MakeEnvelope(ids.back()), content);
    BlockingCommitter::CommitAll(*spool);
  }
  ASSERT_GT(spool->current_segment(), late.number);
  absl::StatusOr<int> late_fd = Spool::CreateSegmentFile(late.path, late.bytes, late.preallocate);
  ASSERT_TRUE(late_fd.ok()) << late_fd.status();
  spool->AdoptSpareSegment(late.number, late_fd);
  EXPECT_FALSE(std::filesystem::exists(late.path));
  EXPECT_TRUE(spool->WantsSpareSegment());
  spool.reset();
  spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  EXPECT_TRUE(reporter_.reports.empty());
  for (const std::string& id : ids) {
    EXPECT_NE(spool->index().Find(id), nullptr);
  }
}

// A recycled spare (FORMAT.md, "Recycled segments") keeps its earlier records behind the new
// ones. Its header says so: recovery counts those bytes as stale instead of reporting a torn
// tail, and none of the old records (another salt) comes back. Without the flag the same file
// is reported, which is what the flag is for.
TEST_F(SpoolTest, RecycledSegmentsOldBytesAreStaleNotATornTail) {
  SpoolOptions old_options = Options();
  old_options.directory = dir_.path() + "/old";
  old_options.shard = 1;  // queue IDs of their own, unlike the new spool's
  std::unique_ptr<Spool> old_spool = OpenSpool(old_options);
  ASSERT_NE(old_spool, nullptr);
  std::vector<std::string> old_ids;
  for (int i = 0; i < 6; ++i) {
    old_ids.push_back(old_spool->NewQueueId());
    old_spool->Stage(MakeEnvelope(old_ids.back()), MakeContent(old_ids.back(), 3000));
  }
  BlockingCommitter::CommitAll(*old_spool);
  const std::string old_bytes = testutil::ReadAll(old_spool->SegmentPath(1));
  old_spool.reset();
  ASSERT_GT(old_bytes.size(), 6u * 3000);

  for (bool recycled : {true, false}) {
    SCOPED_TRACE(recycled ? "recycled" : "not marked recycled");
    SpoolOptions options = Options();
    options.directory = dir_.path() + (recycled ? "/new" : "/unmarked");
    reporter_.reports.clear();
    std::unique_ptr<Spool> spool = OpenSpool(options);
    ASSERT_NE(spool, nullptr);
    Spool::SpareRequest request = spool->RequestSpareSegment();
    testutil::WriteAll(request.path, old_bytes);  // as the rename of a ".seg.free" leaves it
    int fd = open(request.path.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    spool->AdoptSpareSegment(request.number, fd, recycled);
    const std::string id = spool->NewQueueId();
    spool->Stage(MakeEnvelope(id), MakeContent(id, 500));
    BlockingCommitter::CommitAll(*spool);
    spool.reset();

    spool = OpenSpool(options);
    ASSERT_NE(spool, nullptr);
    EXPECT_NE(spool->index().Find(id), nullptr);
    for (const std::string& old_id : old_ids) {
      EXPECT_EQ(spool->index().Find(old_id), nullptr) << old_id;
    }
    EXPECT_EQ(spool->recovery_stats().messages, 1u);
    if (recycled) {
      EXPECT_TRUE(reporter_.reports.empty());
      EXPECT_GT(spool->recovery_stats().stale_bytes, 5u * 3000);
      EXPECT_EQ(spool->recovery_stats().dropped_bytes, 0u);
    } else {
      ASSERT_EQ(reporter_.reports.size(), 1u);
      EXPECT_NE(reporter_.reports[0].reason.find("torn tail"), std::string::npos);
      EXPECT_EQ(spool->recovery_stats().stale_bytes, 0u);
    }
  }
}

// O_DIRECT (SpoolOptions::direct_io): batches of odd sizes, so most start and end inside a
// block that an earlier batch wrote. Every message comes back byte-exact at the offset the page
// cache path puts it, nothing is reported, and nothing follows the last record but zeros.
TEST_F(SpoolTest, DirectIoKeepsTheFormatOfThePageCachePath) {
  constexpr int kMessages = 24;
  auto id_of = [](int k) { return absl::StrCat("Q", k); };
  auto content_of = [&](int k) {
    return MakeContent(id_of(k), 300 + static_cast<size_t>(k) * 1777 % 9000);
  };
  std::vector<uint64_t> offsets[2];
  uint64_t ends[2] = {0, 0};
  for (bool direct : {false, true}) {
    SCOPED_TRACE(direct ? "direct" : "buffered");
    SpoolOptions options = Options();
    options.directory = dir_.path() + (direct ? "/direct" : "/buffered");
    options.segment_bytes = 256 * 1024;
    options.direct_io = direct;
    std::unique_ptr<Spool> spool = OpenSpool(options);
    ASSERT_NE(spool, nullptr);
    // Batches of 1, 2 and 3 messages of 300 bytes to 9 KB: from a fraction of a block to several.
    for (int k = 0; k < kMessages;) {
      for (int i = 0; i <= (k / 2) % 3 && k < kMessages; ++i, ++k) {
        spool->Stage(MakeEnvelope(id_of(k)), content_of(k));
      }
      BlockingCommitter::CommitAll(*spool);
    }
    EXPECT_EQ(spool->direct_io_active(), direct);
    const std::string path = spool->SegmentPath(spool->current_segment());
    spool.reset();
    const std::string bytes = testutil::ReadAll(path);
    ends[direct] = bytes.find_last_not_of('\0') + 1;
    spool = OpenSpool(options);
    ASSERT_NE(spool, nullptr);
    EXPECT_TRUE(reporter_.reports.empty());
    EXPECT_EQ(spool->recovery_stats().messages, static_cast<uint64_t>(kMessages));
    for (int k = 0; k < kMessages; ++k) {
      const QueuedMessage* m = spool->index().Find(id_of(k));
      ASSERT_NE(m, nullptr) << id_of(k);
      offsets[direct].push_back(m->location.offset);
      absl::StatusOr<std::string> content = spool->ReadContent(*m);
      ASSERT_TRUE(content.ok()) << content.status();
      EXPECT_EQ(*content, content_of(k));
    }
  }
  EXPECT_EQ(offsets[0], offsets[1]);
  EXPECT_EQ(ends[0], ends[1]);
}

// A file system that accepts O_DIRECT on the fd but refuses the write (EINVAL) must not fail
// every later batch too: the batch fails, and the next segments use the page cache. Other
// errors (ENOSPC) keep O_DIRECT.
TEST_F(SpoolTest, RefusedDirectWriteFallsBackToThePageCache) {
  SpoolOptions options = Options();
  options.direct_io = true;
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  const std::string content = MakeContent("d@example", 700);
  for (int err : {ENOSPC, EINVAL}) {
    spool->Stage(MakeEnvelope(spool->NewQueueId()), content);
    const CommitBatch* batch = spool->PrepareCommit();
    ASSERT_NE(batch, nullptr);
    EXPECT_TRUE(spool->direct_io_active());
    spool->OnCommitDone(-err);
  }
  const std::string id = spool->NewQueueId();
  spool->Stage(MakeEnvelope(id), content);
  BlockingCommitter::CommitAll(*spool);
  EXPECT_FALSE(spool->direct_io_active());
  std::vector<TicketResult> results;
  spool->TakeResults(&results);
  ASSERT_EQ(results.size(), 3u);
  EXPECT_EQ(results[0].error, ENOSPC);
  EXPECT_EQ(results[1].error, EINVAL);
  EXPECT_EQ(results[2].error, 0);
  spool.reset();
  spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  EXPECT_NE(spool->index().Find(id), nullptr);
}

TEST_F(SpoolTest, UnusedSegmentsAreRemovedSilentlyAtRecovery) {
  SpoolOptions options = Options();
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  std::string content = MakeContent("u@example", 100);
  std::string id = spool->NewQueueId();
  spool->Stage(MakeEnvelope(id), content);
  BlockingCommitter::CommitAll(*spool);
  spool.reset();
  // A spare created just before a crash: preallocated zeros; and an empty file.
  std::string zeros = absl::StrFormat("%s/%016x.seg", options.directory, 100);
  std::string empty = absl::StrFormat("%s/%016x.seg", options.directory, 101);
  testutil::WriteAll(zeros, std::string(4096, '\0'));
  testutil::WriteAll(empty, "");
  spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  EXPECT_TRUE(reporter_.reports.empty());
  EXPECT_EQ(spool->recovery_stats().unused_segments, 2u);
  EXPECT_FALSE(std::filesystem::exists(zeros));
  EXPECT_FALSE(std::filesystem::exists(empty));
  EXPECT_NE(spool->index().Find(id), nullptr);
}

TEST_F(SpoolTest, ReadOnlyOpenChangesNothing) {
  SpoolOptions options = Options();
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  std::string content = MakeContent("ro@example", 100);
  std::string id = spool->NewQueueId();
  spool->Stage(MakeEnvelope(id), content);
  BlockingCommitter::CommitAll(*spool);
  uint64_t segment = spool->current_segment();
  spool.reset();
  std::string path = absl::StrFormat("%s/%016x.seg", options.directory, segment);
  std::string bytes = testutil::ReadAll(path);
  testutil::WriteAll(path, bytes + "torn tail garbage");

  options.read_only = true;
  spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(reporter_.reports.size(), 1u) << "damage is still reported";
  EXPECT_EQ(testutil::ReadAll(path), bytes + "torn tail garbage") << "but not repaired";
  EXPECT_NE(spool->index().Find(id), nullptr);
  Ticket t = spool->Stage(MakeEnvelope(spool->NewQueueId()), content);
  std::vector<TicketResult> results;
  spool->TakeResults(&results);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].sequence, t.sequence);
  EXPECT_EQ(results[0].error, EROFS);
  EXPECT_EQ(spool->PrepareCommit(), nullptr);
  EXPECT_FALSE(spool->WantsSpareSegment());
  EXPECT_FALSE(spool->ReclaimSegments().ok());
}

TEST_F(SpoolTest, SegmentThatCannotBeCreatedFailsTheStagedTickets) {
  SpoolOptions options = Options();
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  std::filesystem::remove_all(options.directory);  // open(O_CREAT) now fails with ENOENT
  std::string content = MakeContent("nodir@example", 100);
  Ticket a = spool->Stage(MakeEnvelope(spool->NewQueueId()), content);
  Ticket b = spool->Stage(MakeEnvelope(spool->NewQueueId()), content);
  EXPECT_EQ(spool->PrepareCommit(), nullptr);
  EXPECT_FALSE(spool->HasPending());
  std::vector<TicketResult> results;
  spool->TakeResults(&results);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[0].sequence, a.sequence);
  EXPECT_EQ(results[1].sequence, b.sequence);
  EXPECT_EQ(results[0].error, EIO);
  EXPECT_EQ(results[1].error, EIO);
}

TEST_F(SpoolTest, OpenRejectsBadOptions) {
  SpoolOptions options = Options();
  options.segment_bytes = 100;
  EXPECT_FALSE(Spool::Open(options, reporter_).ok());
  options = Options();
  options.shard = kShardsMax;
  EXPECT_FALSE(Spool::Open(options, reporter_).ok());
  options = Options();
  options.batch_records_max = 1000;  // 1 + 3 * 1000 iovecs > IOV_MAX
  EXPECT_FALSE(Spool::Open(options, reporter_).ok());
}

// Fills 64 KiB of the stack below the caller, so the next call from the same frame (here
// BlockingCommitter::CommitAll -> Spool::PrepareCommit) starts on memory that, read as an
// uninitialised (64-byte aligned) XXH3_state_t at any 64-byte boundary, has seed == `seed`,
// extSecret == nullptr and a customSecret that is not the one derived from `seed`: the state an
// earlier hash with the same seed leaves behind once other calls clobbered its secret.
volatile uint64_t scribble_sink = 0;
[[gnu::noinline]] void ScribbleStack(uint64_t seed) {
  alignas(64) volatile uint64_t words[8192];
  for (size_t i = 0; i < 8192; ++i) {
    switch (i % 8) {
      case 5:  // XXH3_state_t::seed is at byte 552 = 8 * 64 + 40
        words[i] = seed;
        break;
      case 7:  // XXH3_state_t::extSecret is at byte 568 = 8 * 64 + 56
        words[i] = 0;
        break;
      default:
        words[i] = 0x5a5a5a5a5a5a5a5a;
    }
  }
  scribble_sink = words[0];
}

// The kill -9 e2e test once lost acknowledged messages: their records were on disk, whole, with a
// valid header, but recovery found a wrong payload checksum. Cause: PrepareCommit hashed each
// record with an XXH3_state_t on the stack that was never initialised. XXH3_64bits_reset_withSeed
// derives its secret from the seed only when state->seed differs from the seed, so a stack slot
// still holding the segment's salt (an earlier PrepareCommit) kept a stale, clobbered secret:
// every record over 240 bytes (a message; outcomes are shorter and take another path) written
// then got a checksum recovery could never match. Here the stack holds the salt everywhere.
TEST_F(SpoolTest, RecordChecksumsDoNotDependOnStackContents) {
  SpoolOptions options = Options();
  std::vector<std::pair<std::string, std::string>> sent;  // queue ID, content
  {
    std::unique_ptr<Spool> spool = OpenSpool(options);
    ASSERT_NE(spool, nullptr);
    std::string first_id = spool->NewQueueId();
    std::string first = MakeContent("first@example", 400);
    spool->Stage(MakeEnvelope(first_id), first);
    ASSERT_EQ(BlockingCommitter::CommitAll(*spool), 1u);
    sent.emplace_back(first_id, first);
    // The segment header payload: u32 version, u32 shard, u64 number, u64 salt.
    std::string segment = testutil::ReadAll(spool->SegmentPath(spool->current_segment()));
    ASSERT_GE(segment.size(), kHeaderBytes + 24);
    uint64_t salt = GetU64(segment.data() + kHeaderBytes + 16);
    for (int i = 0; i < 16; ++i) {
      std::string id = spool->NewQueueId();
      std::string content = MakeContent(absl::StrCat(i, "@example"), 300 + 37 * i);
      spool->Stage(MakeEnvelope(id), content);
      ScribbleStack(salt);
      ASSERT_EQ(BlockingCommitter::CommitAll(*spool), 1u);
      sent.emplace_back(id, content);
    }
  }
  std::unique_ptr<Spool> reopened = OpenSpool(options);
  ASSERT_NE(reopened, nullptr);
  EXPECT_TRUE(reporter_.reports.empty()) << reporter_.reports.size() << " damage report(s)";
  EXPECT_EQ(reopened->recovery_stats().skipped_bytes, 0u);
  for (const auto& [id, content] : sent) {
    const QueuedMessage* m = reopened->index().Find(id);
    ASSERT_NE(m, nullptr) << id << " not recovered";
    absl::StatusOr<std::string> read = reopened->ReadContent(*m);
    ASSERT_TRUE(read.ok()) << id << ": " << read.status();
    EXPECT_EQ(*read, content);
  }
}

// An idle spool whose every message is final holds no file: the current segment is reclaimed
// too (sealed first), and the next message opens a new segment that recovery finds.
TEST_F(SpoolTest, IdleSpoolWithEverythingFinalKeepsNoSegment) {
  SpoolOptions options = Options();
  std::unique_ptr<Spool> spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  std::string id = spool->NewQueueId();
  std::string content = MakeContent("idle@example", 700);
  uint64_t sequence = spool->Stage(MakeEnvelope(id, 1), content).sequence;
  BlockingCommitter::CommitAll(*spool);
  uint64_t first = spool->current_segment();
  ASSERT_EQ(SegmentFiles(options).size(), 1u);
  absl::StatusOr<size_t> removed = spool->ReclaimSegments();
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 0u) << "a pending message keeps its segment";

  spool->StageOutcome({sequence, id, 0, Outcome::kDelivered, 1, "250 ok"});
  removed = spool->ReclaimSegments();
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 0u) << "a staged (not yet durable) outcome keeps the segment";
  BlockingCommitter::CommitAll(*spool);
  removed = spool->ReclaimSegments();
  ASSERT_TRUE(removed.ok());
  EXPECT_EQ(*removed, 1u);
  EXPECT_TRUE(SegmentFiles(options).empty());

  std::string next_id = spool->NewQueueId();
  spool->Stage(MakeEnvelope(next_id, 1), content);
  std::vector<TicketResult> results;
  BlockingCommitter::CommitAll(*spool);
  spool->TakeResults(&results);
  ASSERT_FALSE(results.empty());
  EXPECT_EQ(results.back().error, 0);
  EXPECT_GT(spool->current_segment(), first) << "a new segment, never the deleted one";
  spool.reset();
  spool = OpenSpool(options);
  ASSERT_NE(spool, nullptr);
  EXPECT_EQ(spool->index().Find(id), nullptr);
  ASSERT_NE(spool->index().Find(next_id), nullptr);
  EXPECT_EQ(spool->index().pending_messages(), 1u);
}

}  // namespace
}  // namespace moat::queue
