// `moat queue list` support (queue/queue_listing.h): every shard's pending messages, read-only,
// in Postfix's postqueue -p layout.
#include "queue/queue_listing.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"

#include "queue/blocking_committer.h"
#include "queue/spool.h"
#include "tests/queue/spool_test_util.h"
#include "tests/testing/testing.h"

namespace moat::queue {
namespace {

using testutil::MakeEnvelope;

class QueueListingTest : public ::testing::Test {
 protected:
  // Commits one message with a fixed arrival time to shard `shard`; returns its queue ID.
  std::string Queue(uint32_t shard, int64_t arrival_unix_s, const std::string& sender, size_t bytes,
                    int recipients, bool deliver_first = false) {
    SpoolOptions options;
    options.directory = absl::StrFormat("%s/spool/%d", dir_.path(), shard);
    options.shard = shard;
    absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options, reporter_);
    EXPECT_TRUE(spool.ok()) << spool.status();
    std::string id = (*spool)->NewQueueId();
    MessageEnvelope e = MakeEnvelope(id, recipients);
    e.arrival_unix_us = arrival_unix_s * 1000000;
    e.sender = sender;
    Ticket t = (*spool)->Stage(e, std::string(bytes, 'x'));
    if (deliver_first) {
      BlockingCommitter::CommitAll(**spool);
      (*spool)->StageOutcome({t.sequence, id, 0, Outcome::kDelivered, 0, "250 ok"});
    }
    BlockingCommitter::CommitAll(**spool);
    return id;
  }

  testing::TempDir dir_;
  testutil::RecordingReporter reporter_;
};

TEST_F(QueueListingTest, EmptyOrMissingQueue) {
  absl::StatusOr<std::vector<ListedMessage>> listed = ListQueue(dir_.path(), reporter_);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_TRUE(listed->empty());
  EXPECT_EQ(FormatQueueListing(*listed, absl::UTCTimeZone()), "Mail queue is empty\n");
}

TEST_F(QueueListingTest, ListsEveryShardInArrivalOrderLikePostqueue) {
  // 2026-11-23 17:55:01 UTC and one minute later.
  std::string late = Queue(1, 1795456561, "alice@example.net", 2000, 2, /*deliver_first=*/true);
  std::string early = Queue(0, 1795456501, "", 500, 1);
  absl::StatusOr<std::vector<ListedMessage>> listed = ListQueue(dir_.path(), reporter_);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].message.envelope.queue_id, early);
  EXPECT_EQ((*listed)[0].shard, 0u);
  EXPECT_EQ((*listed)[1].shard, 1u);
  std::string expected =
      "-Queue ID-       --Size-- ----Arrival Time---- -Sender/Recipient-------\n" + early +
      "*     500 Mon Nov 23 17:55:01  MAILER-DAEMON\n" +
      "                                               user0@example.com\n"
      "\n" +
      late + "*    2000 Mon Nov 23 17:56:01  alice@example.net\n" +
      "                                               user1@example.com\n"
      "\n"
      "-- 3 Kbytes in 2 Requests.\n";
  EXPECT_EQ(FormatQueueListing(*listed, absl::UTCTimeZone()), expected);
}

TEST_F(QueueListingTest, ReadOnlyNextToALiveSpool) {
  std::string id = Queue(0, 1795456501, "a@example.net", 100, 1);
  std::string seg = absl::StrFormat("%s/spool/0/%016x.seg", dir_.path(), 1);
  std::string bytes = testutil::ReadAll(seg);
  ASSERT_FALSE(bytes.empty());
  testutil::WriteAll(seg, bytes + "a batch being written");
  absl::StatusOr<std::vector<ListedMessage>> listed = ListQueue(dir_.path(), reporter_);
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].message.envelope.queue_id, id);
  EXPECT_EQ(testutil::ReadAll(seg), bytes + "a batch being written") << "nothing truncated";
}

}  // namespace
}  // namespace moat::queue
