// Queue IDs (queue/queue_id.h): shape, strictly increasing per shard, distinct across shards,
// and above every recovered ID after a restart.
#include "queue/queue_id.h"

#include <set>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "gtest/gtest.h"

namespace moat::queue {
namespace {

bool IsUpperHex(const std::string& s) {
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

TEST(QueueIdTest, SixteenUppercaseHexDigitsThatParseBack) {
  QueueIdGenerator gen(3);
  std::string id = gen.Next(1700000000);
  EXPECT_EQ(id.size(), kQueueIdChars);
  EXPECT_TRUE(IsUpperHex(id)) << id;
  std::optional<uint64_t> v = ParseQueueId(id);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(FormatQueueId(*v), id);
  EXPECT_EQ(QueueIdShard(*v), 3u);
  EXPECT_FALSE(ParseQueueId("0123").has_value());
  EXPECT_FALSE(ParseQueueId("0123456789ABCDEG").has_value());
}

TEST(QueueIdTest, StrictlyIncreasingWithinASecondAndAcrossSeconds) {
  QueueIdGenerator gen(0);
  std::string prev;
  for (int64_t second = 1700000000; second < 1700000003; ++second) {
    for (int i = 0; i < 1000; ++i) {
      std::string id = gen.Next(second);
      EXPECT_GT(id, prev);
      prev = id;
    }
  }
}

TEST(QueueIdTest, ClockSteppingBackStillIncreases) {
  QueueIdGenerator gen(1);
  std::string a = gen.Next(1700000100);
  std::string b = gen.Next(1700000000);
  std::string c = gen.Next(1700000050);
  EXPECT_GT(b, a);
  EXPECT_GT(c, b);
}

TEST(QueueIdTest, CounterOverflowBorrowsTheNextSecond) {
  QueueIdGenerator gen(2);
  uint64_t prev = gen.NextValue(1700000000);
  constexpr int kPerSecond = 1 << 24;
  // Run past one second's worth of counter values; every ID stays increasing and unique.
  for (int i = 0; i < kPerSecond + 10; ++i) {
    uint64_t id = gen.NextValue(1700000000);
    ASSERT_GT(id, prev) << i;
    prev = id;
  }
  EXPECT_EQ(prev >> 32, 1700000001u);
  EXPECT_EQ(QueueIdShard(prev), 2u);
  EXPECT_GT(gen.Next(1700000000), FormatQueueId(prev));
}

TEST(QueueIdTest, ShardsNeverCollide) {
  absl::flat_hash_set<std::string> seen;
  for (uint32_t shard = 0; shard < 8; ++shard) {
    QueueIdGenerator gen(shard);
    for (int i = 0; i < 500; ++i) {
      EXPECT_TRUE(seen.insert(gen.Next(1700000000 + i / 100)).second);
    }
  }
  EXPECT_EQ(seen.size(), 8u * 500u);
}

TEST(QueueIdTest, RaiseFloorKeepsNewIdsAboveRecoveredOnes) {
  QueueIdGenerator before(4);
  std::string last;
  for (int i = 0; i < 10; ++i) {
    last = before.Next(1700000500);
  }
  // A restart with a clock that went back an hour.
  QueueIdGenerator after(4);
  after.RaiseFloor(*ParseQueueId(last));
  EXPECT_GT(after.Next(1700000500 - 3600), last);

  // A floor from a higher shard (a renumbered spool) is passed too.
  QueueIdGenerator other(9);
  std::string high = other.Next(1700000500);
  QueueIdGenerator low(1);
  low.RaiseFloor(*ParseQueueId(high));
  std::string next = low.Next(1700000500);
  EXPECT_GT(next, high);
  EXPECT_EQ(QueueIdShard(*ParseQueueId(next)), 1u);
}

}  // namespace
}  // namespace moat::queue
