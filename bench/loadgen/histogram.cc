// bench/loadgen/histogram.cc: see histogram.h.
#include "bench/loadgen/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace moat::loadgen {
namespace {

constexpr uint64_t kLinear = uint64_t{1} << Histogram::kSubBucketBits;  // exact below this
constexpr uint64_t kHalf = kLinear / 2;  // buckets per power of two above kLinear

}  // namespace

int Histogram::BucketIndex(uint64_t value) {
  value = std::min(value, kMaxValueNs);
  if (value < kLinear) {
    return static_cast<int>(value);
  }
  const int magnitude = 63 - std::countl_zero(value);  // >= kSubBucketBits
  const int shift = magnitude - (kSubBucketBits - 1);
  const uint64_t sub = value >> shift;  // in [kHalf, kLinear)
  return static_cast<int>(kLinear + static_cast<uint64_t>(magnitude - kSubBucketBits) * kHalf +
                          (sub - kHalf));
}

uint64_t Histogram::BucketLowest(int index) {
  const uint64_t i = static_cast<uint64_t>(index);
  if (i < kLinear) {
    return i;
  }
  const uint64_t group = (i - kLinear) / kHalf;  // magnitude - kSubBucketBits
  const uint64_t sub = kHalf + (i - kLinear) % kHalf;
  const int shift = static_cast<int>(group) + 1;
  return sub << shift;
}

uint64_t Histogram::BucketHighest(int index) {
  const uint64_t i = static_cast<uint64_t>(index);
  if (i < kLinear) {
    return i;
  }
  const int shift = static_cast<int>((i - kLinear) / kHalf) + 1;
  return BucketLowest(index) + (uint64_t{1} << shift) - 1;
}

int Histogram::BucketCount() { return BucketIndex(kMaxValueNs) + 1; }

Histogram::Histogram() : counts_(static_cast<size_t>(BucketCount()), 0) {}

void Histogram::Record(uint64_t value_ns) {
  ++counts_[static_cast<size_t>(BucketIndex(value_ns))];
  ++count_;
  min_ = std::min(min_, value_ns);
  max_ = std::max(max_, value_ns);
  sum_ += value_ns;
}

void Histogram::Merge(const Histogram& other) {
  for (size_t i = 0; i < counts_.size(); ++i) {
    counts_[i] += other.counts_[i];
  }
  count_ += other.count_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
  sum_ += other.sum_;
}

void Histogram::Reset() {
  std::fill(counts_.begin(), counts_.end(), 0);
  count_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
  sum_ = 0;
}

uint64_t Histogram::Percentile(double q) const {
  if (count_ == 0) {
    return 0;
  }
  q = std::clamp(q, 0.0, 1.0);
  uint64_t rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
  rank = std::clamp<uint64_t>(rank, 1, count_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) {
      return std::clamp(BucketHighest(static_cast<int>(i)), min(), max_);
    }
  }
  return max_;
}

}  // namespace moat::loadgen
