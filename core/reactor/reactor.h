// core/reactor/reactor.h
//
// One io_uring event loop per shard thread (STYLE.md 8.7). The ring is created with
// SINGLE_ISSUER | DEFER_TASKRUN | SUBMIT_ALL on the thread that runs it (Create() must be
// called there). Work is described by caller-owned Operations (operation.h) whose
// user_data is the Operation*; nothing is allocated per operation. GetSqe() never fails:
// when the submission queue is full it submits and retries.
//
// A loop turn (RunOnce) is, in this order:
//   1. drain the cross-shard inbox (closures posted by other threads);
//   2. reap the CQEs that are ready and dispatch each to its Operation;
//   3. run the end-of-turn hooks in registration order (connections flush staged output,
//      one send per connection per turn; the spool stages its write + fdatasync);
//   4. expire timers (one hashed wheel; see timer_wheel.h);
//   5. submit, and wait for at least one CQE until the wheel's next deadline (no kernel
//      timer per timer: the wait itself carries the one timeout). The wait is skipped
//      when work was staged after phase 3 (RequestTurn) or the loop is stopping.
// A turn whose phases 1-4 take longer than the stall threshold is logged (stall detector).
//
// Thread safety: everything is shard-thread-only except Post(), which any thread may call.
// Parses no untrusted input.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/reactor/operation.h"
#include "core/reactor/timer_wheel.h"

namespace moat::reactor {

struct ReactorOptions {
  uint32_t sq_entries = 1024;         // SQEs per submission batch before a forced submit
  uint32_t cq_entries = 16384;        // room for bursts of multishot completions
  absl::Duration timer_tick = absl::Milliseconds(5);
  uint32_t timer_slots = 4096;        // power of two; 4096 x 5 ms = one 20 s revolution
  absl::Duration stall_threshold = absl::Milliseconds(50);
  uint32_t inbox_messages_max = 65536;  // Post() refuses beyond this many undrained
};

struct ReactorStats {
  uint64_t turns = 0;
  uint64_t completions = 0;
  uint64_t stalls = 0;            // turns over the stall threshold
  int64_t turn_ns_max = 0;        // longest phases 1-4 seen
  uint64_t inbox_messages = 0;    // closures run from the inbox
  uint64_t sq_full = 0;           // times GetSqe had to submit to make room
};

class Reactor {
 public:
  using Closure = absl::AnyInvocable<void()>;
  using HookId = uint64_t;

  // Creates the ring and the inbox eventfd. Call on the thread that will run the loop.
  static absl::StatusOr<std::unique_ptr<Reactor>> Create(const ReactorOptions& options = {});
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // ---- Cross-shard inbox (any thread) ----
  // Queues `closure` to run on this reactor's thread in phase 1 of a coming turn and wakes
  // the loop. Returns false (and drops nothing: `closure` is destroyed unrun) when
  // inbox_messages_max closures are already waiting. Closures run in posting order per
  // posting thread. alloc: one node per message (control plane only, bounded).
  bool Post(Closure closure);

  // ---- The loop (shard thread) ----
  // One turn. Phase 5 waits at most `wait_max` (tests use a short bound so they can check
  // a condition between turns; the shard loop waits for the next event or deadline).
  void RunOnce(absl::Duration wait_max = absl::InfiniteDuration());
  // Runs turns until Stop().
  void Run();
  // Makes Run() return after the current turn; the turn's wait is skipped.
  void Stop();
  bool stopped() const { return stop_; }
  // Skip the wait of this turn's phase 5 (something was staged that a hook must flush).
  void RequestTurn() { turn_requested_ = true; }

  // End-of-turn hooks (phase 3), run in registration order. A hook may add or remove
  // hooks; changes apply from the next turn.
  HookId AddTurnHook(Closure hook);
  void RemoveTurnHook(HookId id);

  // ---- Time and timers ----
  // The loop's clock (CLOCK_MONOTONIC, ns), read once per turn; NowNs() is the cached
  // value, RefreshNow() reads the clock again (vDSO, no syscall).
  int64_t NowNs() const { return now_ns_; }
  int64_t RefreshNow();
  void ArmTimer(Timer& timer, absl::Duration after) {
    timers_.Arm(timer, now_ns_ + absl::ToInt64Nanoseconds(after));
  }
  void CancelTimer(Timer& timer) { timers_.Cancel(timer); }
  TimerWheel& timers() { return timers_; }

  // ---- Submission ----
  // Never fails: a full SQ is submitted and the call retried. user_data is left 0
  // (a completion nobody waits for); the helpers below set it to the Operation.
  io_uring_sqe* GetSqe();
  io_uring* ring() { return &ring_; }

  // Each helper prepares one SQE with user_data = op and returns it (so the caller may add
  // IOSQE_* flags, e.g. IOSQE_IO_LINK). Buffers and paths must stay valid until the
  // completion; `op` until its last completion.
  io_uring_sqe* AcceptMultishot(Operation* op, int listen_fd);
  io_uring_sqe* RecvMultishot(Operation* op, int fd, uint16_t buffer_group);
  io_uring_sqe* Recv(Operation* op, int fd, void* data, size_t size);
  io_uring_sqe* Send(Operation* op, int fd, const void* data, size_t size);
  io_uring_sqe* Write(Operation* op, int fd, const void* data, uint32_t size, uint64_t offset);
  io_uring_sqe* Writev(Operation* op, int fd, const iovec* iov, uint32_t count,
                       uint64_t offset);
  io_uring_sqe* Read(Operation* op, int fd, void* data, uint32_t size, uint64_t offset);
  // fdatasync. To make it follow a write, set IOSQE_IO_LINK on the write's SQE (or use
  // WriteThenDatasync): a failed write then completes the fsync with -ECANCELED.
  io_uring_sqe* Datasync(Operation* op, int fd);
  // write + fdatasync linked; `write_op` and `sync_op` each get one completion.
  void WriteThenDatasync(Operation* write_op, Operation* sync_op, int fd, const void* data,
                         uint32_t size, uint64_t offset);
  // connect linked to a timeout: on expiry the connect completes with -ECANCELED.
  // `timeout` must stay valid until the connect completes (the link timeout's own
  // completion is ignored).
  void ConnectWithTimeout(Operation* op, int fd, const sockaddr* address, socklen_t length,
                          __kernel_timespec* timeout);
  io_uring_sqe* Openat(Operation* op, int dir_fd, const char* path, int flags, mode_t mode);
  io_uring_sqe* Close(Operation* op, int fd);
  // Cancels every operation whose user_data is `target`; its completions still arrive
  // (-ECANCELED). The cancel's own completion is ignored.
  void Cancel(Operation* target);

  const ReactorStats& stats() const { return stats_; }
  // Thread id check for DCHECKs: true on the thread that created the reactor.
  bool OnReactorThread() const;

 private:
  class InboxWakeOp;
  struct InboxNode {
    InboxNode* next;
    Closure closure;
  };

  Reactor(const ReactorOptions& options, int64_t now_ns);
  void DrainInbox();
  void ReapCompletions();
  void RunHooks();
  void SubmitAndWait(absl::Duration wait_max);
  void ArmInboxRead();
  io_uring_sqe* Prepare(Operation* op);

  const ReactorOptions options_;
  io_uring ring_{};
  bool ring_ready_ = false;
  int wake_fd_ = -1;
  std::unique_ptr<InboxWakeOp> wake_op_;
  uint64_t wake_value_ = 0;
  std::atomic<InboxNode*> inbox_head_{nullptr};
  std::atomic<uint32_t> inbox_size_{0};
  int64_t now_ns_;
  TimerWheel timers_;
  struct Hook {
    HookId id;
    Closure hook;
  };
  std::vector<Hook> hooks_;
  std::vector<Hook> added_hooks_;
  bool running_hooks_ = false;
  HookId next_hook_id_ = 1;
  bool turn_requested_ = false;
  bool stop_ = false;
  uint64_t thread_id_ = 0;
  ReactorStats stats_;
};

}  // namespace moat::reactor
