// The delivery side reclaims spool segments while the shard is busy (core/server/delivery.cc,
// DeliveryPipeline::MaybeReclaim): a shard that never goes idle still recycles the segments
// behind the one it writes, instead of writing every segment of a burst as a new file (each of
// whose syncs converts extents) until the traffic stops.
#include <filesystem>
#include <memory>
#include <string>

#include "gtest/gtest.h"

#include "absl/time/clock.h"
#include "core/reactor/reactor.h"
#include "core/server/delivery.h"
#include "core/server/shard_spool.h"
#include "queue/spool.h"
#include "tests/queue/spool_test_util.h"
#include "tests/testing/testing.h"

namespace moat::server {
namespace {

using queue::testutil::MakeContent;
using queue::testutil::MakeEnvelope;

size_t SegmentFiles(const std::string& directory) {
  size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(directory)) {
    n += e.path().string().ends_with(".seg") ? 1 : 0;
  }
  return n;
}

TEST(DeliveryReclaimTest, ABusyShardRecyclesTheSegmentsBehindTheCurrentOne) {
  testing::TempDir dir;
  queue::testutil::RecordingReporter reporter;
  queue::SpoolOptions options;
  options.directory = dir.path() + "/spool/0";
  // About 300 messages of 3 KB per segment: a few dozen segments in the run below, a handful
  // per busy reclaim (every 100 ms), as a 64 MiB segment at a few hundred MB/s has it.
  options.segment_bytes = 1024 * 1024;
  options.direct_io = true;
  absl::StatusOr<std::unique_ptr<queue::Spool>> spool = queue::Spool::Open(options, reporter);
  ASSERT_TRUE(spool.ok()) << spool.status();
  absl::StatusOr<std::unique_ptr<reactor::Reactor>> reactor = reactor::Reactor::Create();
  ASSERT_TRUE(reactor.ok()) << reactor.status();
  ShardSpool shard_spool(*std::move(spool));
  DeliverySettings settings;
  DeliveryPipeline delivery(settings, shard_spool,
                            [](std::string_view) { return std::string("discard:"); });
  shard_spool.Attach(reactor->get(), [&](const queue::QueuedMessage& m,
                                         std::shared_ptr<const std::string> content) {
    delivery.OnDurable(m, std::move(content));
  });
  delivery.Attach(reactor->get());

  // Traffic that never lets the spool go idle: a new message staged every loop turn, so a
  // commit is always in flight or waiting. Every message is final at once (discard:). Bounded:
  // 1.5 s of traffic, at most 30,000 messages.
  const absl::Time end = absl::Now() + absl::Milliseconds(1500);
  size_t messages = 0;
  size_t most_files = 0;
  while (absl::Now() < end && messages < 30000) {
    const std::string id = shard_spool.NewQueueId();
    queue::MessageEnvelope envelope = MakeEnvelope(id, 1);
    envelope.recipients[0].next_hop = "discard:";
    shard_spool.SubmitInternal(std::move(envelope), MakeContent(id, 3000));
    ++messages;
    (*reactor)->RunOnce(absl::ZeroDuration());
    if (messages % 64 == 0) {
      most_files = std::max(most_files, SegmentFiles(options.directory));
    }
  }
  const uint64_t segments = shard_spool.segments_created() + shard_spool.segments_recycled();
  ASSERT_GT(segments, 10u) << "the load spans many segments (" << messages << " messages)";
  // Recycled while the traffic went on: more than the two files a drained spool keeps, so
  // reclaims ran during the load, not only once before it grew.
  EXPECT_GT(shard_spool.segments_recycled(), ShardSpool::kFreeSegmentsMax)
      << messages << " messages, " << shard_spool.segments_created() << " segments created";
  // And the files on disk stayed few, not one per segment of the burst.
  EXPECT_LT(most_files, segments / 2) << "at most " << most_files << " of " << segments;
  delivery.Stop();
  for (int i = 0; i < 5000 && !(shard_spool.Idle() && delivery.Idle()); ++i) {
    (*reactor)->RunOnce(absl::Milliseconds(2));
  }
}

}  // namespace
}  // namespace moat::server
