// core/reactor/timer_wheel.h
//
// A hashed timer wheel driven by the reactor's clock. Timers are caller-owned intrusive
// nodes, so arming, re-arming and cancelling allocate nothing and cost O(1); the reactor
// waits in io_uring_enter with ONE timeout, the wheel's next deadline, instead of one
// kernel timer per connection. Resolution is one tick: a timer never fires early, and
// fires at most one tick (plus the loop turn) late. A deadline further away than one
// revolution stays in its slot and is skipped until its round comes.
//
// Owner: one shard thread (the Reactor's); not thread-safe. Parses no untrusted input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/functional/any_invocable.h"

namespace moat::reactor {

class TimerWheel;

// The link shared by timers and slot sentinels (circular doubly-linked lists, so a timer
// unlinks itself without knowing which list holds it).
struct TimerLink {
  TimerLink* prev = this;
  TimerLink* next = this;
};

class Timer : private TimerLink {
 public:
  // `on_fire` runs on the shard thread when the timer expires; it may re-arm this timer,
  // arm or cancel others, or destroy the timer's owner (after the callback returns the
  // wheel does not touch this Timer again).
  explicit Timer(absl::AnyInvocable<void()> on_fire) : on_fire_(std::move(on_fire)) {}
  // Cancels the timer if armed.
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  bool armed() const { return wheel_ != nullptr; }
  // The deadline it is armed for, in the reactor clock's nanoseconds.
  int64_t deadline_ns() const { return deadline_ns_; }

 private:
  friend class TimerWheel;
  TimerWheel* wheel_ = nullptr;
  int64_t deadline_ns_ = 0;
  int64_t deadline_tick_ = 0;
  uint32_t slot_ = 0;
  absl::AnyInvocable<void()> on_fire_;
};

class TimerWheel {
 public:
  // REQUIRES: tick_ns > 0, slots a power of two >= 64.
  TimerWheel(int64_t tick_ns, uint32_t slots, int64_t now_ns);
  ~TimerWheel();
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Arms (or re-arms) `timer` to fire at `deadline_ns`. A deadline in the past fires at
  // the next Expire() that reaches the next tick.
  void Arm(Timer& timer, int64_t deadline_ns);
  void Cancel(Timer& timer);

  // Fires every timer whose deadline tick is <= now's tick. Returns how many fired.
  size_t Expire(int64_t now_ns);

  // A time at or before the earliest armed deadline (the start of the first non-empty
  // slot's tick; possibly early by whole revolutions for far deadlines, which costs one
  // empty wake-up per revolution). nullopt when nothing is armed.
  std::optional<int64_t> NextWakeNs() const;

  size_t size() const { return size_; }
  int64_t tick_ns() const { return tick_ns_; }

 private:
  void Link(Timer& timer, int64_t tick);
  void Unlink(Timer& timer);
  void SetBit(uint32_t slot) { bitmap_[slot / 64] |= uint64_t{1} << (slot % 64); }
  void ClearBit(uint32_t slot) { bitmap_[slot / 64] &= ~(uint64_t{1} << (slot % 64)); }
  bool SlotEmpty(uint32_t slot) const { return slots_[slot].next == &slots_[slot]; }

  const int64_t tick_ns_;
  const uint32_t mask_;
  int64_t current_tick_;  // every tick <= current_tick_ has been processed
  size_t size_ = 0;
  std::vector<TimerLink> slots_;    // sentinels
  std::vector<uint64_t> bitmap_;    // one bit per non-empty slot
};

}  // namespace moat::reactor
