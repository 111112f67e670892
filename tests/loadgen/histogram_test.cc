// Unit tests for moat::loadgen::Histogram: bucket arithmetic, percentiles against the exact
// order statistics of known distributions (within the documented relative error), merging.
#include "bench/loadgen/histogram.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace moat::loadgen {
namespace {

// The exact order statistic Percentile() approximates: the ceil(q*n)-th smallest value.
uint64_t ExactPercentile(std::vector<uint64_t> values, double q) {
  std::sort(values.begin(), values.end());
  size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
  rank = std::clamp<size_t>(rank, 1, values.size());
  return values[rank - 1];
}

void ExpectWithinBound(const Histogram& h, const std::vector<uint64_t>& values) {
  for (double q : {0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0}) {
    const uint64_t exact = ExactPercentile(values, q);
    const uint64_t got = h.Percentile(q);
    EXPECT_GE(got, exact) << "q=" << q;  // the highest equivalent value: never below
    EXPECT_LE(static_cast<double>(got - exact),
              static_cast<double>(exact) * Histogram::kRelativeError + 1.0)
        << "q=" << q << " exact=" << exact << " got=" << got;
  }
}

TEST(HistogramTest, EmptyReportsZero) {
  Histogram h;
  EXPECT_EQ(h.count(), 0u);
  EXPECT_EQ(h.Percentile(0.5), 0u);
  EXPECT_EQ(h.Percentile(0.99), 0u);
  EXPECT_EQ(h.max(), 0u);
  EXPECT_EQ(h.min(), 0u);
}

TEST(HistogramTest, SmallValuesAreExact) {
  Histogram h;
  for (uint64_t v = 0; v < 256; ++v) {
    EXPECT_EQ(Histogram::BucketIndex(v), static_cast<int>(v));
    h.Record(v);
  }
  EXPECT_EQ(h.Percentile(0.5), 127u);
  EXPECT_EQ(h.Percentile(1.0), 255u);
  EXPECT_EQ(h.min(), 0u);
}

TEST(HistogramTest, EveryValueFallsInsideItsBucketWithinTheErrorBound) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 200000; ++i) {
    const int bits = static_cast<int>(rng() % 37);
    const uint64_t v = bits == 0 ? 0 : rng() >> (64 - bits);
    if (v > Histogram::kMaxValueNs) {
      continue;
    }
    const int index = Histogram::BucketIndex(v);
    ASSERT_GE(index, 0);
    ASSERT_LT(index, Histogram::BucketCount());
    const uint64_t lo = Histogram::BucketLowest(index);
    const uint64_t hi = Histogram::BucketHighest(index);
    ASSERT_LE(lo, v);
    ASSERT_GE(hi, v);
    ASSERT_LE(static_cast<double>(hi - lo), static_cast<double>(lo) * Histogram::kRelativeError)
        << v;
  }
  // Buckets tile the range: each one starts right after the previous one ends.
  for (int i = 1; i < Histogram::BucketCount(); ++i) {
    ASSERT_EQ(Histogram::BucketLowest(i), Histogram::BucketHighest(i - 1) + 1) << i;
  }
}

TEST(HistogramTest, UniformDistributionPercentiles) {
  Histogram h;
  std::vector<uint64_t> values;
  for (uint64_t v = 1; v <= 100000; ++v) {
    values.push_back(v * 1000);  // 1 us .. 100 ms
    h.Record(v * 1000);
  }
  ExpectWithinBound(h, values);
  EXPECT_EQ(h.count(), 100000u);
  EXPECT_EQ(h.max(), 100000000u);
  EXPECT_EQ(h.min(), 1000u);
  EXPECT_NEAR(h.mean(), 50000500.0, 1.0);
}

TEST(HistogramTest, LogNormalDistributionPercentiles) {
  std::mt19937_64 rng(7);
  std::lognormal_distribution<double> dist(std::log(500000.0), 1.5);  // ~0.5 ms median
  Histogram h;
  std::vector<uint64_t> values;
  for (int i = 0; i < 50000; ++i) {
    const uint64_t v = std::min<uint64_t>(static_cast<uint64_t>(dist(rng)) + 1,
                                          Histogram::kMaxValueNs);
    values.push_back(v);
    h.Record(v);
  }
  ExpectWithinBound(h, values);
}

TEST(HistogramTest, BimodalTailIsVisibleAtP99) {
  // 98% fast (100 us), 2% stalled (2 s): p50 must be fast, p99 must show the stall.
  Histogram h;
  std::vector<uint64_t> values;
  for (int i = 0; i < 10000; ++i) {
    const uint64_t v = (i % 50 == 0) ? 2'000'000'000 : 100'000;
    values.push_back(v);
    h.Record(v);
  }
  ExpectWithinBound(h, values);
  EXPECT_LT(h.Percentile(0.5), 200'000u);
  EXPECT_GT(h.Percentile(0.99), 1'000'000'000u);
}

TEST(HistogramTest, ValuesAboveTheRangeKeepTheExactMax) {
  Histogram h;
  h.Record(1000);
  h.Record(Histogram::kMaxValueNs * 4);
  EXPECT_EQ(h.max(), Histogram::kMaxValueNs * 4);
  EXPECT_LE(h.Percentile(1.0), h.max());
  EXPECT_GE(h.Percentile(1.0), Histogram::BucketLowest(Histogram::BucketCount() - 1));
}

TEST(HistogramTest, MergeEqualsRecordingEverythingInOne) {
  std::mt19937_64 rng(99);
  Histogram a, b, all;
  for (int i = 0; i < 20000; ++i) {
    const uint64_t v = rng() % 50'000'000;
    (i % 3 == 0 ? a : b).Record(v);
    all.Record(v);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_EQ(a.min(), all.min());
  EXPECT_EQ(a.max(), all.max());
  EXPECT_DOUBLE_EQ(a.mean(), all.mean());
  for (double q : {0.01, 0.5, 0.9, 0.99, 0.999}) {
    EXPECT_EQ(a.Percentile(q), all.Percentile(q)) << q;
  }
  a.Reset();
  EXPECT_EQ(a.count(), 0u);
  EXPECT_EQ(a.Percentile(0.5), 0u);
}

}  // namespace
}  // namespace moat::loadgen
