// tests/reactor/timer_wheel_test.cc
//
// The hashed timer wheel on a simulated clock: timers never fire early and at most one
// tick late, in deadline order across slots, far deadlines survive whole revolutions,
// callbacks may re-arm, cancel and destroy timers, and NextWakeNs never lies late.
#include "core/reactor/timer_wheel.h"

#include <memory>
#include <vector>

#include "gtest/gtest.h"

namespace moat::reactor {
namespace {

constexpr int64_t kTick = 1'000'000;  // 1 ms

TEST(TimerWheelTest, FiresNotBeforeDeadlineAndAtMostOneTickLate) {
  TimerWheel wheel(kTick, 64, 0);
  int64_t fired_at = -1;
  int64_t now = 0;
  Timer timer([&] { fired_at = now; });
  wheel.Arm(timer, 10 * kTick + 500);  // 10.0005 ms
  EXPECT_TRUE(timer.armed());
  for (now = 0; now <= 20 * kTick && fired_at < 0; now += kTick / 4) {
    wheel.Expire(now);
  }
  ASSERT_GE(fired_at, 10 * kTick + 500);
  EXPECT_LE(fired_at, 11 * kTick + kTick / 4);
  EXPECT_FALSE(timer.armed());
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimerWheelTest, FiresInDeadlineOrderAcrossSlots) {
  TimerWheel wheel(kTick, 64, 0);
  std::vector<int> order;
  std::vector<std::unique_ptr<Timer>> timers;
  const int64_t deadlines[] = {30, 5, 17, 63, 1};
  for (int i = 0; i < 5; ++i) {
    timers.push_back(std::make_unique<Timer>([&order, i] { order.push_back(i); }));
    wheel.Arm(*timers.back(), deadlines[i] * kTick);
  }
  for (int64_t now = 0; now <= 70 * kTick; now += kTick) {
    wheel.Expire(now);
  }
  EXPECT_EQ(order, (std::vector<int>{4, 1, 2, 0, 3}));
}

TEST(TimerWheelTest, DeadlineBeyondOneRevolutionWaitsItsRound) {
  TimerWheel wheel(kTick, 64, 0);
  bool fired = false;
  Timer timer([&] { fired = true; });
  wheel.Arm(timer, 200 * kTick);  // three revolutions and a bit
  int64_t now = 0;
  for (; now < 200 * kTick; now += kTick) {
    wheel.Expire(now);
    ASSERT_FALSE(fired) << "fired early at " << now / kTick << " ms";
  }
  wheel.Expire(200 * kTick);
  EXPECT_TRUE(fired);
}

TEST(TimerWheelTest, BigClockJumpFiresEverythingDue) {
  TimerWheel wheel(kTick, 64, 0);
  int fired = 0;
  std::vector<std::unique_ptr<Timer>> timers;
  for (int i = 1; i <= 100; ++i) {
    timers.push_back(std::make_unique<Timer>([&] { ++fired; }));
    wheel.Arm(*timers.back(), i * 3 * kTick);
  }
  wheel.Expire(1000 * kTick);  // one call, many revolutions later
  EXPECT_EQ(fired, 100);
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimerWheelTest, CallbackMayRearmCancelAndDestroy) {
  TimerWheel wheel(kTick, 64, 0);
  int rearmed_fires = 0;
  int victim_fires = 0;
  auto victim = std::make_unique<Timer>([&] { ++victim_fires; });
  std::unique_ptr<Timer> self_destroying;
  int64_t now = 0;
  Timer rearming([&] {
    if (++rearmed_fires < 3) {
      wheel.Arm(rearming, now + 2 * kTick);
    }
  });
  Timer killer([&] { victim.reset(); });  // destroying an armed timer cancels it
  self_destroying = std::make_unique<Timer>([&] { self_destroying.reset(); });
  wheel.Arm(rearming, 1 * kTick);
  wheel.Arm(killer, 4 * kTick);
  wheel.Arm(*victim, 4 * kTick);  // same slot as the killer, fires after it
  wheel.Arm(*self_destroying, 2 * kTick);
  for (now = 0; now <= 20 * kTick; now += kTick) {
    wheel.Expire(now);
  }
  EXPECT_EQ(rearmed_fires, 3);
  EXPECT_EQ(victim_fires, 0);
  EXPECT_EQ(victim, nullptr);
  EXPECT_EQ(self_destroying, nullptr);
  EXPECT_EQ(wheel.size(), 0u);
}

TEST(TimerWheelTest, CancelAndRearmMoveTheDeadline) {
  TimerWheel wheel(kTick, 64, 0);
  int fired = 0;
  Timer timer([&] { ++fired; });
  wheel.Arm(timer, 5 * kTick);
  wheel.Cancel(timer);
  EXPECT_FALSE(timer.armed());
  EXPECT_FALSE(wheel.NextWakeNs().has_value());
  wheel.Arm(timer, 5 * kTick);
  wheel.Arm(timer, 40 * kTick);  // re-arm replaces
  EXPECT_EQ(wheel.size(), 1u);
  for (int64_t now = 0; now < 40 * kTick; now += kTick) {
    wheel.Expire(now);
  }
  EXPECT_EQ(fired, 0);
  wheel.Expire(40 * kTick);
  EXPECT_EQ(fired, 1);
}

TEST(TimerWheelTest, NextWakeIsNeverAfterTheEarliestDeadline) {
  TimerWheel wheel(kTick, 128, 7 * kTick);
  EXPECT_FALSE(wheel.NextWakeNs().has_value());
  std::vector<std::unique_ptr<Timer>> timers;
  const int64_t deadlines_ms[] = {500, 90, 300, 127, 8};
  int64_t earliest = INT64_MAX;
  for (int64_t ms : deadlines_ms) {
    timers.push_back(std::make_unique<Timer>([] {}));
    wheel.Arm(*timers.back(), ms * kTick);
    earliest = std::min(earliest, ms * kTick);
    std::optional<int64_t> wake = wheel.NextWakeNs();
    ASSERT_TRUE(wake.has_value());
    EXPECT_LE(*wake, earliest);
    EXPECT_GE(*wake, 7 * kTick);
  }
  // Walk the clock by the wheel's own wake-ups: it must reach every deadline with a
  // bounded number of wake-ups (one per non-empty slot per revolution).
  int wakes = 0;
  while (wheel.size() > 0 && wakes < 100) {
    std::optional<int64_t> wake = wheel.NextWakeNs();
    ASSERT_TRUE(wake.has_value());
    wheel.Expire(*wake);
    ++wakes;
  }
  EXPECT_EQ(wheel.size(), 0u);
  EXPECT_LE(wakes, 20);
}

TEST(TimerWheelTest, PastDeadlineFiresOnTheNextTick) {
  TimerWheel wheel(kTick, 64, 100 * kTick);
  bool fired = false;
  Timer timer([&] { fired = true; });
  wheel.Arm(timer, 50 * kTick);
  wheel.Expire(100 * kTick);
  EXPECT_FALSE(fired);  // same tick as "now": next tick
  wheel.Expire(101 * kTick);
  EXPECT_TRUE(fired);
}

}  // namespace
}  // namespace moat::reactor
