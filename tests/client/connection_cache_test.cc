// tests/client/connection_cache_test.cc: the outbound connection cache bookkeeping
// (net/client/connection_cache.h). Owned by: outbound.
#include "net/client/connection_cache.h"

#include "gtest/gtest.h"

namespace moat::client {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

TEST(ConnectionCacheTest, ReusesTheNewestConnectionForTheSameDestination) {
  ConnectionCache cache;
  EXPECT_TRUE(cache.Put("relay:[a]:25", 1, kT0, 1, kT0));
  EXPECT_TRUE(cache.Put("relay:[a]:25", 2, kT0, 1, kT0 + absl::Milliseconds(500)));
  EXPECT_TRUE(cache.Put("relay:[b]:25", 3, kT0, 1, kT0));
  EXPECT_EQ(cache.size(), 3u);
  EXPECT_EQ(cache.Take("relay:[a]:25", kT0 + absl::Seconds(1)), std::optional<uint64_t>(2));
  EXPECT_EQ(cache.Take("relay:[a]:25", kT0 + absl::Seconds(1)), std::optional<uint64_t>(1));
  EXPECT_EQ(cache.Take("relay:[a]:25", kT0 + absl::Seconds(1)), std::nullopt);
  EXPECT_EQ(cache.Take("relay:[c]:25", kT0), std::nullopt);
  EXPECT_EQ(cache.size(), 1u);
}

TEST(ConnectionCacheTest, IdleConnectionsExpireAfterTheCacheTimeLimit) {
  ConnectionCache cache;  // idle 2 s (smtp_connection_cache_time_limit)
  ASSERT_TRUE(cache.Put("d", 1, kT0, 1, kT0));
  ASSERT_TRUE(cache.Put("d", 2, kT0, 1, kT0 + absl::Seconds(1)));
  EXPECT_EQ(cache.NextExpiry(), kT0 + absl::Seconds(2));
  EXPECT_TRUE(cache.Expire(kT0 + absl::Milliseconds(1999)).empty());
  // A stale connection is never handed out, only expired.
  EXPECT_EQ(cache.Expire(kT0 + absl::Seconds(2)), std::vector<uint64_t>{1});
  EXPECT_EQ(cache.Take("d", kT0 + absl::Seconds(3)), std::nullopt);
  EXPECT_EQ(cache.Expire(kT0 + absl::Seconds(3)), std::vector<uint64_t>{2});
  EXPECT_EQ(cache.size(), 0u);
  EXPECT_EQ(cache.NextExpiry(), absl::InfiniteFuture());
}

TEST(ConnectionCacheTest, ReuseLimitsAndCapacity) {
  ConnectionCacheLimits limits;
  limits.reuse_count = 3;
  limits.per_destination_max = 2;
  limits.total_max = 3;
  ConnectionCache cache(limits);
  EXPECT_FALSE(cache.Put("d", 1, kT0, 3, kT0));  // carried reuse_count transactions
  EXPECT_FALSE(cache.Put("d", 1, kT0, 1, kT0 + absl::Seconds(300)));  // too old
  EXPECT_TRUE(cache.Put("d", 1, kT0, 1, kT0));
  EXPECT_FALSE(cache.Put("d", 1, kT0, 1, kT0));  // already cached
  EXPECT_TRUE(cache.Put("d", 2, kT0, 1, kT0));
  EXPECT_FALSE(cache.Put("d", 3, kT0, 1, kT0));  // per destination
  EXPECT_TRUE(cache.Put("e", 4, kT0, 1, kT0));
  EXPECT_FALSE(cache.Put("f", 5, kT0, 1, kT0));  // total
  // The idle deadline stops at the reuse time limit.
  ConnectionCache c2;
  ASSERT_TRUE(c2.Put("d", 9, kT0, 1, kT0 + absl::Milliseconds(299500)));
  EXPECT_EQ(c2.NextExpiry(), kT0 + absl::Seconds(300));
}

TEST(ConnectionCacheTest, RemoveAConnectionTheServerClosed) {
  ConnectionCache cache;
  ASSERT_TRUE(cache.Put("d", 1, kT0, 1, kT0));
  ASSERT_TRUE(cache.Put("d", 2, kT0, 1, kT0));
  EXPECT_TRUE(cache.Remove(2));
  EXPECT_FALSE(cache.Remove(2));
  EXPECT_EQ(cache.Take("d", kT0), std::optional<uint64_t>(1));
  EXPECT_EQ(cache.size(), 0u);
}

}  // namespace
}  // namespace moat::client
