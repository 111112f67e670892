// core/reactor/timer_wheel.cc
//
// See timer_wheel.h. Owner: one shard thread; not thread-safe.
#include "core/reactor/timer_wheel.h"

#include <algorithm>
#include <bit>

#include "core/log/assert.h"

namespace moat::reactor {

Timer::~Timer() {
  if (wheel_ != nullptr) {
    wheel_->Cancel(*this);
  }
}

TimerWheel::TimerWheel(int64_t tick_ns, uint32_t slots, int64_t now_ns)
    : tick_ns_(tick_ns),
      mask_(slots - 1),
      current_tick_(now_ns / tick_ns),
      slots_(slots),
      bitmap_(slots / 64, 0) {
  MOAT_CHECK(tick_ns > 0);
  MOAT_CHECK(slots >= 64);
  MOAT_CHECK(std::has_single_bit(slots));
}

TimerWheel::~TimerWheel() {
  // Orphan whatever is still armed so their destructors do not touch a dead wheel.
  for (TimerLink& sentinel : slots_) {
    while (sentinel.next != &sentinel) {
      Timer& timer = static_cast<Timer&>(*sentinel.next);
      Unlink(timer);
    }
  }
}

void TimerWheel::Arm(Timer& timer, int64_t deadline_ns) {
  if (timer.wheel_ != nullptr) {
    Unlink(timer);
  }
  // Round up: a timer never fires before its deadline.
  int64_t tick = (deadline_ns + tick_ns_ - 1) / tick_ns_;
  if (tick <= current_tick_) {
    tick = current_tick_ + 1;
  }
  timer.deadline_ns_ = deadline_ns;
  Link(timer, tick);
}

void TimerWheel::Cancel(Timer& timer) {
  if (timer.wheel_ == nullptr) {
    return;
  }
  MOAT_DCHECK(timer.wheel_ == this);
  Unlink(timer);
}

void TimerWheel::Link(Timer& timer, int64_t tick) {
  const uint32_t slot = static_cast<uint32_t>(tick) & mask_;
  TimerLink& sentinel = slots_[slot];
  TimerLink* link = &timer;
  link->next = &sentinel;
  link->prev = sentinel.prev;
  sentinel.prev->next = link;
  sentinel.prev = link;
  timer.wheel_ = this;
  timer.deadline_tick_ = tick;
  timer.slot_ = slot;
  SetBit(slot);
  ++size_;
}

void TimerWheel::Unlink(Timer& timer) {
  TimerLink* link = &timer;
  link->prev->next = link->next;
  link->next->prev = link->prev;
  link->prev = link;
  link->next = link;
  timer.wheel_ = nullptr;
  if (SlotEmpty(timer.slot_)) {
    ClearBit(timer.slot_);
  }
  MOAT_DCHECK(size_ > 0);
  --size_;
}

size_t TimerWheel::Expire(int64_t now_ns) {
  const int64_t now_tick = now_ns / tick_ns_;
  if (now_tick <= current_tick_ || size_ == 0) {
    if (now_tick > current_tick_) {
      current_tick_ = now_tick;
    }
    return 0;
  }
  // Visit each slot whose tick passed, at most one revolution.
  const int64_t steps = std::min<int64_t>(now_tick - current_tick_, int64_t{mask_} + 1);
  TimerLink due;  // local list of timers to fire, so callbacks can re-arm freely
  for (int64_t step = 1; step <= steps; ++step) {
    const uint32_t slot = static_cast<uint32_t>(current_tick_ + step) & mask_;
    TimerLink& sentinel = slots_[slot];
    TimerLink* link = sentinel.next;
    while (link != &sentinel) {
      TimerLink* next = link->next;
      Timer& timer = static_cast<Timer&>(*link);
      if (timer.deadline_tick_ <= now_tick) {
        link->prev->next = link->next;
        link->next->prev = link->prev;
        link->next = &due;
        link->prev = due.prev;
        due.prev->next = link;
        due.prev = link;
      }
      link = next;
    }
    if (SlotEmpty(slot)) {
      ClearBit(slot);
    }
  }
  current_tick_ = now_tick;
  size_t fired = 0;
  while (due.next != &due) {
    Timer& timer = static_cast<Timer&>(*due.next);
    Unlink(timer);
    ++fired;
    timer.on_fire_();  // may destroy `timer`; not touched after this line
  }
  return fired;
}

std::optional<int64_t> TimerWheel::NextWakeNs() const {
  if (size_ == 0) {
    return std::nullopt;
  }
  const uint32_t start = static_cast<uint32_t>(current_tick_ + 1) & mask_;
  const uint32_t words = static_cast<uint32_t>(bitmap_.size());
  const uint32_t first_word = start / 64;
  const uint32_t start_bit = start % 64;
  // Visit the words from `start` on, wrapping once; the first word is visited twice: its
  // bits at and after `start` first, the ones before `start` last.
  for (uint32_t i = 0; i <= words; ++i) {
    const uint32_t word_index = (first_word + i) % words;
    uint64_t word = bitmap_[word_index];
    if (i == 0) {
      word &= ~uint64_t{0} << start_bit;
    } else if (i == words) {
      word &= start_bit == 0 ? 0 : (uint64_t{1} << start_bit) - 1;
    }
    if (word != 0) {
      const uint32_t slot = word_index * 64 + static_cast<uint32_t>(std::countr_zero(word));
      const uint32_t distance = (slot - start) & mask_;
      return (current_tick_ + 1 + distance) * tick_ns_;
    }
  }
  // size_ > 0 but no bit set cannot happen.
  MOAT_UNREACHABLE();
  return std::nullopt;
}

}  // namespace moat::reactor
