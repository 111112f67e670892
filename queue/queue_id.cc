// queue/queue_id.cc: see queue_id.h. Not thread-safe (one generator per shard).
#include "queue/queue_id.h"

#include "absl/strings/str_format.h"

#include "core/log/assert.h"

namespace moat::queue {
namespace {

constexpr int kCounterBits = 24;
constexpr int kShardBits = 8;
constexpr uint64_t kCounterMask = (uint64_t{1} << kCounterBits) - 1;
static_assert(kShardsMax == (1u << kShardBits));

}  // namespace

QueueIdGenerator::QueueIdGenerator(uint32_t shard) : shard_(shard) {
  MOAT_CHECK(shard < kShardsMax);
}

uint64_t QueueIdGenerator::NextValue(int64_t unix_seconds) {
  uint64_t seconds = unix_seconds < 0 ? 0 : static_cast<uint64_t>(unix_seconds) & 0xFFFFFFFFu;
  uint64_t last_seconds = last_ >> (kCounterBits + kShardBits);
  uint64_t counter = 0;
  if (last_ != 0 && seconds <= last_seconds) {
    // Same second (or the clock stepped back): continue after the last ID.
    seconds = last_seconds;
    counter = (last_ & kCounterMask) + 1;
    if (counter > kCounterMask) {
      seconds += 1;
      counter = 0;
    }
  }
  last_ = (seconds << (kCounterBits + kShardBits)) | (uint64_t{shard_} << kCounterBits) | counter;
  return last_;
}

void QueueIdGenerator::RaiseFloor(uint64_t id) {
  // Our own shard bits with the floor's time and counter. Shard bits rank above the counter, so
  // when the floor came from a higher shard (a renumbered spool) only the next second is above it.
  constexpr int kSecondsShift = kCounterBits + kShardBits;
  uint64_t shard_bits = uint64_t{shard_} << kCounterBits;
  uint64_t floor = (id & ~(uint64_t{kShardsMax - 1} << kCounterBits)) | shard_bits;
  if (floor < id) {
    floor = (((id >> kSecondsShift) + 1) << kSecondsShift) | shard_bits;
  }
  if (floor > last_) {
    last_ = floor;
  }
}

std::string FormatQueueId(uint64_t value) {
  return absl::StrFormat("%016X", value);
}

std::optional<uint64_t> ParseQueueId(std::string_view id) {
  if (id.size() != kQueueIdChars) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (char c : id) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return v;
}

uint32_t QueueIdShard(uint64_t value) {
  return static_cast<uint32_t>((value >> kCounterBits) & (kShardsMax - 1));
}

}  // namespace moat::queue
