// QueueIndex: removing a reclaimed segment is immediate for the segment and spread over
// TrimRemoved() calls for its messages (queue/queue_index.h), without changing what the
// index reports as pending.
#include "queue/queue_index.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace moat::queue {
namespace {

QueuedMessage Message(const std::string& id, uint64_t sequence, uint64_t segment) {
  QueuedMessage m;
  m.sequence = sequence;
  m.location.segment = segment;
  m.envelope.queue_id = id;
  m.envelope.recipients.push_back(Recipient{"alice@example.com", "", 0, "", ""});
  return m;
}

void Deliver(QueueIndex& index, const std::string& id, uint64_t sequence, uint64_t segment) {
  OutcomeRecord o;
  o.message_sequence = sequence;
  o.queue_id = id;
  o.outcome = Outcome::kDelivered;
  ASSERT_TRUE(index.ApplyOutcome(o, segment));
}

TEST(QueueIndexTest, RemovedSegmentsMessagesLeaveInBoundedSteps) {
  QueueIndex index;
  index.AddSegment(1);
  index.AddSegment(2);
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(index.Add(Message(absl::StrCat("A", i), 1 + i, 1)));
    Deliver(index, absl::StrCat("A", i), 1 + i, 1);
  }
  ASSERT_TRUE(index.Add(Message("B", 100, 2)));  // pending, in segment 2
  EXPECT_EQ(index.pending_messages(), 1u);
  ASSERT_EQ(index.ReclaimableSegments(2), std::vector<uint64_t>{1});

  index.RemoveSegment(1);
  EXPECT_TRUE(index.HasRemoved());
  EXPECT_TRUE(index.ReclaimableSegments(2).empty());  // the segment itself is gone at once
  EXPECT_EQ(index.size(), 11u);                       // its messages not yet
  EXPECT_EQ(index.pending_messages(), 1u);

  EXPECT_TRUE(index.TrimRemoved(4));
  EXPECT_EQ(index.size(), 7u);
  EXPECT_TRUE(index.TrimRemoved(4));
  EXPECT_EQ(index.size(), 3u);
  EXPECT_FALSE(index.TrimRemoved(4));
  EXPECT_EQ(index.size(), 1u);
  EXPECT_FALSE(index.HasRemoved());
  EXPECT_EQ(index.Find("A0"), nullptr);
  EXPECT_NE(index.Find("B"), nullptr);
  EXPECT_EQ(index.pending_messages(), 1u);
}

TEST(QueueIndexTest, TrimKeepsANewerCopyInAnotherSegment) {
  QueueIndex index;
  index.AddSegment(1);
  index.AddSegment(2);
  ASSERT_TRUE(index.Add(Message("A", 1, 1)));
  Deliver(index, "A", 1, 1);
  index.RemoveSegment(1);
  // Before the trim reaches it, a newer copy of A (a later sequence) lands in segment 2.
  ASSERT_TRUE(index.Add(Message("A", 5, 2)));
  EXPECT_FALSE(index.TrimRemoved(100));
  const QueuedMessage* a = index.Find("A");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->location.segment, 2u);
  EXPECT_EQ(index.pending_messages(), 1u);
}

}  // namespace
}  // namespace moat::queue
