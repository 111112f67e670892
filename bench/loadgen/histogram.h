// bench/loadgen/histogram.h
//
// A log-bucketed latency histogram in the manner of HdrHistogram: values (nanoseconds) below
// 2^kSubBucketBits are counted exactly; above, each power of two is split into
// 2^(kSubBucketBits-1) equal buckets, so a reported percentile is within a relative error of
// 2^-(kSubBucketBits-1) (0.8%, a little better than two significant digits) of a recorded
// value. Values over kMaxValueNs (about 68 s) land in the top bucket; the exact maximum is kept
// separately. Histograms merge by adding counts.
//
// Owned by one thread; not thread-safe. Parses no untrusted input.
#pragma once

#include <cstdint>
#include <vector>

namespace moat::loadgen {

class Histogram {
 public:
  static constexpr int kSubBucketBits = 8;
  static constexpr uint64_t kMaxValueNs = (uint64_t{1} << 36) - 1;  // ~68.7 s
  // Relative error bound of Percentile() against the exact order statistic.
  static constexpr double kRelativeError = 1.0 / (1 << (kSubBucketBits - 1));

  Histogram();

  void Record(uint64_t value_ns);
  void Merge(const Histogram& other);
  void Reset();

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ == 0 ? 0 : min_; }
  uint64_t max() const { return max_; }
  double mean() const { return count_ == 0 ? 0.0 : static_cast<double>(sum_) / count_; }

  // The value at quantile q in [0, 1]: the highest value equivalent to the bucket holding the
  // ceil(q * count)-th smallest recording (at least the first), capped at max(). 0 when empty.
  uint64_t Percentile(double q) const;

  // Bucket arithmetic, exposed for tests.
  static int BucketIndex(uint64_t value);
  static uint64_t BucketLowest(int index);
  static uint64_t BucketHighest(int index);
  static int BucketCount();

 private:
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
  uint64_t sum_ = 0;
};

}  // namespace moat::loadgen
