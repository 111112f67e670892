// core/reactor/reactor.cc
//
// See reactor.h. Owner: one shard thread; Post() is the only cross-thread entry.
#include "core/reactor/reactor.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "core/log/assert.h"
#include "core/log/log.h"

namespace moat::reactor {
namespace {

int64_t MonotonicNowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

uint64_t ThisThreadId() { return static_cast<uint64_t>(pthread_self()); }

}  // namespace

// Reads the inbox eventfd; re-armed after every completion. The read targets a blocking
// eventfd, so io_uring parks it on the file's poll queue instead of failing with EAGAIN.
class Reactor::InboxWakeOp final : public Operation {
 public:
  explicit InboxWakeOp(Reactor* reactor) : reactor_(reactor) {}
  void Complete(int32_t res, uint32_t /*flags*/) override {
    if (res < 0 && res != -EINTR && res != -ECANCELED) {
      log::Warning("reactor: inbox eventfd read failed: %s", strerror(-res));
    }
    reactor_->ArmInboxRead();
  }

 private:
  Reactor* reactor_;
};

absl::StatusOr<std::unique_ptr<Reactor>> Reactor::Create(const ReactorOptions& options) {
  std::unique_ptr<Reactor> reactor(new Reactor(options, MonotonicNowNs()));
  io_uring_params params{};
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                 IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
  params.cq_entries = options.cq_entries;
  int rc = io_uring_queue_init_params(options.sq_entries, &reactor->ring_, &params);
  if (rc < 0) {
    return absl::UnavailableError(absl::StrFormat(
        "io_uring_queue_init_params(SINGLE_ISSUER|DEFER_TASKRUN): %s (kernel 6.1+ needed; "
        "check sysctl kernel.io_uring_disabled and seccomp)",
        strerror(-rc)));
  }
  reactor->ring_ready_ = true;
  if (!(params.features & IORING_FEAT_EXT_ARG)) {
    return absl::UnavailableError("io_uring lacks IORING_FEAT_EXT_ARG (timed waits)");
  }
  reactor->wake_fd_ = eventfd(0, EFD_CLOEXEC);
  if (reactor->wake_fd_ < 0) {
    return absl::UnavailableError(absl::StrFormat("eventfd: %s", strerror(errno)));
  }
  reactor->wake_op_ = std::make_unique<InboxWakeOp>(reactor.get());
  reactor->ArmInboxRead();
  return reactor;
}

Reactor::Reactor(const ReactorOptions& options, int64_t now_ns)
    : options_(options),
      now_ns_(now_ns),
      timers_(absl::ToInt64Nanoseconds(options.timer_tick), options.timer_slots, now_ns),
      thread_id_(ThisThreadId()) {}

Reactor::~Reactor() {
  // Closures still queued are destroyed unrun (their owners are going away too).
  InboxNode* node = inbox_head_.exchange(nullptr, std::memory_order_acquire);
  while (node != nullptr) {
    InboxNode* next = node->next;
    delete node;
    node = next;
  }
  if (ring_ready_) {
    // Exiting the ring cancels what is still in flight; the kernel stops touching our
    // buffers once io_uring_queue_exit returns.
    io_uring_queue_exit(&ring_);
  }
  if (wake_fd_ >= 0) {
    close(wake_fd_);
  }
}

bool Reactor::OnReactorThread() const { return ThisThreadId() == thread_id_; }

bool Reactor::Post(Closure closure) {
  if (inbox_size_.fetch_add(1, std::memory_order_relaxed) >= options_.inbox_messages_max) {
    inbox_size_.fetch_sub(1, std::memory_order_relaxed);
    return false;
  }
  // alloc: one node per control message, bounded by inbox_messages_max.
  auto* node = new InboxNode{nullptr, std::move(closure)};
  InboxNode* head = inbox_head_.load(std::memory_order_relaxed);
  do {
    node->next = head;
  } while (!inbox_head_.compare_exchange_weak(head, node, std::memory_order_release,
                                              std::memory_order_relaxed));
  if (head == nullptr) {
    // The inbox went from empty to non-empty: wake the loop. A drain racing with this
    // push only causes one spurious wake-up.
    const uint64_t one = 1;
    ssize_t n = write(wake_fd_, &one, sizeof(one));
    MOAT_CHECK(n == sizeof(one));
  }
  return true;
}

void Reactor::ArmInboxRead() {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_read(sqe, wake_fd_, &wake_value_, sizeof(wake_value_), 0);
  io_uring_sqe_set_data(sqe, wake_op_.get());
}

void Reactor::DrainInbox() {
  InboxNode* list = inbox_head_.exchange(nullptr, std::memory_order_acquire);
  // The stack is newest-first; reverse it to run closures in posting order.
  InboxNode* ordered = nullptr;
  while (list != nullptr) {
    InboxNode* next = list->next;
    list->next = ordered;
    ordered = list;
    list = next;
  }
  while (ordered != nullptr) {
    InboxNode* next = ordered->next;
    inbox_size_.fetch_sub(1, std::memory_order_relaxed);
    ++stats_.inbox_messages;
    ordered->closure();
    delete ordered;
    ordered = next;
  }
}

void Reactor::ReapCompletions() {
  // Bounded: at most one CQ ring's worth per turn, so timers and hooks still run under a
  // flood of completions.
  const unsigned budget = ring_.cq.ring_entries;
  unsigned reaped = 0;
  io_uring_cqe* cqe = nullptr;
  while (reaped < budget && io_uring_peek_cqe(&ring_, &cqe) == 0) {
    const uint64_t user_data = cqe->user_data;
    const int32_t res = cqe->res;
    const uint32_t flags = cqe->flags;
    // Mark it seen before dispatch: the handler may submit and even wait.
    io_uring_cqe_seen(&ring_, cqe);
    ++reaped;
    if (user_data != 0) {
      reinterpret_cast<Operation*>(user_data)->Complete(res, flags);
    }
  }
  stats_.completions += reaped;
}

Reactor::HookId Reactor::AddTurnHook(Closure hook) {
  const HookId id = next_hook_id_++;
  // While hooks run, new ones wait in added_hooks_ so hooks_ never reallocates under a
  // running closure.
  (running_hooks_ ? added_hooks_ : hooks_).push_back(Hook{id, std::move(hook)});
  return id;
}

void Reactor::RemoveTurnHook(HookId id) {
  for (std::vector<Hook>* list : {&hooks_, &added_hooks_}) {
    for (Hook& hook : *list) {
      if (hook.id == id) {
        hook.id = 0;  // compacted after the hooks ran (a hook may remove itself)
      }
    }
  }
}

void Reactor::RunHooks() {
  running_hooks_ = true;
  for (Hook& hook : hooks_) {
    if (hook.id != 0) {
      hook.hook();
    }
  }
  running_hooks_ = false;
  std::erase_if(hooks_, [](const Hook& hook) { return hook.id == 0; });
  for (Hook& hook : added_hooks_) {
    if (hook.id != 0) {
      hooks_.push_back(std::move(hook));
    }
  }
  added_hooks_.clear();
}

int64_t Reactor::RefreshNow() {
  now_ns_ = MonotonicNowNs();
  return now_ns_;
}

void Reactor::RunOnce(absl::Duration wait_max) {
  const int64_t turn_start_ns = RefreshNow();
  ++stats_.turns;
  // 1. Drain the cross-shard inbox.
  DrainInbox();
  // 2. Reap ready CQEs and dispatch them.
  ReapCompletions();
  // 3. End-of-turn hooks: flush staged output, group commit.
  RunHooks();
  // 4. Expire timers.
  RefreshNow();
  timers_.Expire(now_ns_);
  const int64_t busy_ns = RefreshNow() - turn_start_ns;
  if (busy_ns > stats_.turn_ns_max) {
    stats_.turn_ns_max = busy_ns;
  }
  if (busy_ns > absl::ToInt64Nanoseconds(options_.stall_threshold)) {
    ++stats_.stalls;
    log::Warning("reactor: loop turn took %d ms (stall threshold %d ms)", busy_ns / 1'000'000,
                 absl::ToInt64Milliseconds(options_.stall_threshold));
  }
  // 5. This turn's log lines in as few write(2) calls as possible (core/log/log.h), then
  // submit, and wait until a CQE or the next timer deadline.
  log::FlushThreadBatch();
  SubmitAndWait(wait_max);
}

void Reactor::Run() {
  log::BeginThreadBatching();
  while (!stop_) {
    RunOnce();
  }
  log::EndThreadBatching();
}

void Reactor::Stop() {
  stop_ = true;
  turn_requested_ = true;
}

void Reactor::SubmitAndWait(absl::Duration wait_max) {
  const bool no_wait = turn_requested_ || stop_ ||
                       inbox_head_.load(std::memory_order_relaxed) != nullptr;
  turn_requested_ = false;
  int rc = 0;
  if (no_wait) {
    rc = io_uring_submit_and_get_events(&ring_);
  } else {
    std::optional<int64_t> wake_ns = timers_.NextWakeNs();
    if (wait_max != absl::InfiniteDuration()) {
      const int64_t bound_ns = now_ns_ + absl::ToInt64Nanoseconds(wait_max);
      wake_ns = wake_ns.has_value() ? std::min(*wake_ns, bound_ns) : bound_ns;
    }
    io_uring_cqe* cqe = nullptr;
    if (wake_ns.has_value()) {
      int64_t wait_ns = *wake_ns - now_ns_;
      if (wait_ns < 0) {
        wait_ns = 0;
      }
      __kernel_timespec ts{};
      ts.tv_sec = wait_ns / 1'000'000'000;
      ts.tv_nsec = wait_ns % 1'000'000'000;
      rc = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
    } else {
      rc = io_uring_submit_and_wait(&ring_, 1);
    }
  }
  if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
    log::Error("reactor: io_uring_enter: %s", strerror(-rc));
  }
}

io_uring_sqe* Reactor::GetSqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  // Bounded: each round submits the whole SQ; the kernel consumes submitted SQEs at once
  // (SUBMIT_ALL), so the second attempt finds room unless the kernel refuses to enter.
  for (int attempt = 0; sqe == nullptr && attempt < 1000; ++attempt) {
    ++stats_.sq_full;
    int rc = io_uring_submit(&ring_);
    if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
      log::Error("reactor: submit to make SQ room: %s", strerror(-rc));
    }
    sqe = io_uring_get_sqe(&ring_);
  }
  MOAT_CHECK(sqe != nullptr);
  io_uring_sqe_set_data64(sqe, 0);
  return sqe;
}

io_uring_sqe* Reactor::Prepare(Operation* op) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_sqe_set_data(sqe, op);
  return sqe;
}

io_uring_sqe* Reactor::AcceptMultishot(Operation* op, int listen_fd) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_multishot_accept(sqe, listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data(sqe, op);
  return sqe;
}

io_uring_sqe* Reactor::RecvMultishot(Operation* op, int fd, uint16_t buffer_group) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_recv_multishot(sqe, fd, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = buffer_group;
  io_uring_sqe_set_data(sqe, op);
  return sqe;
}

io_uring_sqe* Reactor::Recv(Operation* op, int fd, void* data, size_t size) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_recv(sqe, fd, data, size, 0);
  io_uring_sqe_set_data(sqe, op);
  return sqe;
}

io_uring_sqe* Reactor::Send(Operation* op, int fd, const void* data, size_t size) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_send(sqe, fd, data, size, MSG_NOSIGNAL);
  io_uring_sqe_set_data(sqe, op);
  return sqe;
}

io_uring_sqe* Reactor::Write(Operation* op, int fd, const void* data, uint32_t size,
                             uint64_t offset) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_write(sqe, fd, data, size, offset);
  io_uring_sqe_set_data(sqe, op);
  return sqe;
}

io_uring_sqe* Reactor::Writev(Operation* op, int fd, const iovec* iov, uint32_t count,
                              uint64_t offset) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_writev(sqe, fd, iov, count, offset);
  io_uring_sqe_set_data(sqe, op);
  return sqe;
}

io_uring_sqe* Reactor::Read(Operation* op, int fd, void* data, uint32_t size, uint64_t offset) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_read(sqe, fd, data, size, offset);
  io_uring_sqe_set_data(sqe, op);
  return sqe;
}

io_uring_sqe* Reactor::Datasync(Operation* op, int fd) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
  io_uring_sqe_set_data(sqe, op);
  return sqe;
}

void Reactor::WriteThenDatasync(Operation* write_op, Operation* sync_op, int fd,
                                const void* data, uint32_t size, uint64_t offset) {
  // Both SQEs must land in the same submission for the link to hold: make room first.
  if (io_uring_sq_space_left(&ring_) < 2) {
    io_uring_submit(&ring_);
  }
  io_uring_sqe* write = Write(write_op, fd, data, size, offset);
  write->flags |= IOSQE_IO_LINK;
  Datasync(sync_op, fd);
}

void Reactor::ConnectWithTimeout(Operation* op, int fd, const sockaddr* address,
                                 socklen_t length, __kernel_timespec* timeout) {
  if (io_uring_sq_space_left(&ring_) < 2) {
    io_uring_submit(&ring_);
  }
  io_uring_sqe* connect = GetSqe();
  io_uring_prep_connect(connect, fd, address, length);
  io_uring_sqe_set_data(connect, op);
  connect->flags |= IOSQE_IO_LINK;
  io_uring_sqe* timer = GetSqe();
  io_uring_prep_link_timeout(timer, timeout, 0);
}

io_uring_sqe* Reactor::Openat(Operation* op, int dir_fd, const char* path, int flags,
                              mode_t mode) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_openat(sqe, dir_fd, path, flags, mode);
  io_uring_sqe_set_data(sqe, op);
  return sqe;
}

io_uring_sqe* Reactor::Close(Operation* op, int fd) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_close(sqe, fd);
  io_uring_sqe_set_data(sqe, op);
  return sqe;
}

void Reactor::Cancel(Operation* target) {
  io_uring_sqe* sqe = GetSqe();
  io_uring_prep_cancel(sqe, target, IORING_ASYNC_CANCEL_ALL);
}

}  // namespace moat::reactor
