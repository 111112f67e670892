// queue/queue_id.h
//
// Queue IDs: 16 uppercase hex digits, Postfix-like in the logs ("3F2A1C...: client=..."), unique
// across shards and restarts and strictly increasing per shard. The 64-bit value is
//
//   unix seconds (32 bits) | shard (8 bits) | counter within that second (24 bits)
//
// so IDs of different shards never collide, and IDs of one shard sort by time. The counter resets
// when the clock moves on; if it runs out within a second (16.7 million IDs) or the clock steps
// back, the generator borrows the next second, so the sequence stays strictly increasing. After a
// restart, Spool::Open() raises the floor to the highest ID found in the shard's spool, so a clock
// that went backwards across the restart cannot produce an ID that is still queued.
//
// One generator per shard, owned by the shard's Spool; not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace moat::queue {

inline constexpr uint32_t kShardsMax = 256;
inline constexpr size_t kQueueIdChars = 16;

std::string FormatQueueId(uint64_t value);

class QueueIdGenerator {
 public:
  // REQUIRES: shard < kShardsMax.
  explicit QueueIdGenerator(uint32_t shard);

  // The next ID for the current time `unix_seconds` (a parameter so tests control the clock).
  std::string Next(int64_t unix_seconds) { return FormatQueueId(NextValue(unix_seconds)); }
  uint64_t NextValue(int64_t unix_seconds);
  // Every later ID is greater than `id` (used after recovery).
  void RaiseFloor(uint64_t id);

  uint32_t shard() const { return shard_; }

 private:
  uint32_t shard_;
  uint64_t last_ = 0;  // last value handed out (0 = none yet)
};

// Parses 16 hex digits (either case) back to the value; nullopt if `id` has any other shape.
std::optional<uint64_t> ParseQueueId(std::string_view id);
// The shard encoded in an ID value.
uint32_t QueueIdShard(uint64_t value);

}  // namespace moat::queue
