// core/reactor/shard_group.cc
//
// See shard_group.h.
#include "core/reactor/shard_group.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "core/log/assert.h"
#include "core/log/log.h"
#include "core/reactor/buffer_ring.h"

namespace moat::reactor {
namespace {

constexpr uint16_t kRecvBufferGroup = 0;

std::vector<int> AllowedCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
      if (CPU_ISSET(cpu, &set)) {
        cpus.push_back(cpu);
      }
    }
  }
  if (cpus.empty()) {
    cpus.push_back(0);
  }
  return cpus;
}

void ShutdownSignals(sigset_t* set) {
  sigemptyset(set);
  sigaddset(set, SIGTERM);
  sigaddset(set, SIGINT);
  sigaddset(set, SIGHUP);
}

// Shared by a control-thread request and the shards answering it; shared_ptr so that a
// late answer after the wait timed out writes into live memory.
template <typename T>
struct Gather {
  absl::Mutex mutex;
  int remaining ABSL_GUARDED_BY(mutex) = 0;
  std::vector<T> results ABSL_GUARDED_BY(mutex);
};

}  // namespace

void ShardGroup::BlockSignals() {
  sigset_t set;
  ShutdownSignals(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

ShardGroup::ShardGroup(ShardGroupOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<ShardGroup>> ShardGroup::Start(ShardGroupOptions options) {
  const std::vector<int> cpus = AllowedCpus();
  int shards = options.shards > 0 ? options.shards : static_cast<int>(cpus.size());
  std::unique_ptr<ShardGroup> group(new ShardGroup(std::move(options)));
  group->control_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (group->control_fd_ < 0) {
    return absl::UnavailableError(absl::StrFormat("eventfd: %s", strerror(errno)));
  }
  absl::StatusOr<ListenerSet> listeners =
      ListenerSet::Open(group->options_.listen, shards, group->options_.listen_backlog);
  if (!listeners.ok()) {
    return listeners.status();
  }
  group->addresses_ = listeners->addresses();
  group->steering_ = listeners->steering();
  for (int i = 0; i < shards; ++i) {
    auto slot = std::make_unique<Slot>();
    slot->listen_fds = listeners->TakeShardSockets(i);
    group->slots_.push_back(std::move(slot));
  }
  for (int i = 0; i < shards; ++i) {
    const int cpu = cpus[static_cast<size_t>(i) % cpus.size()];
    group->slots_[i]->thread = std::thread([g = group.get(), i, cpu] { g->ThreadMain(i, cpu); });
  }
  absl::Status status;
  {
    absl::MutexLock lock(&group->mutex_);
    ShardGroup* g = group.get();
    auto all_reported = [g, shards]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g->mutex_) {
      return g->started_ + g->failed_ == shards;
    };
    group->mutex_.Await(absl::Condition(&all_reported));
    status = group->start_status_;
  }
  if (!status.ok()) {
    group->BeginShutdown(absl::ZeroDuration());
    group->Join(absl::Seconds(30));
    return status;
  }
  log::Info("reactor: %d shards started on %d CPUs, %s steering", shards,
            static_cast<int>(cpus.size()), group->steering_ ? "client-IP" : "NO");
  return group;
}

ShardGroup::~ShardGroup() {
  if (running() > 0) {
    BeginShutdown(absl::ZeroDuration());
  }
  const absl::Duration bound = options_.shard.close_linger + options_.shard.barrier_wait_max +
                               absl::Seconds(10);
  if (!Join(bound)) {
    log::Error("reactor: shard threads did not exit within %s", absl::FormatDuration(bound));
    MOAT_CHECK(false);
  }
  for (auto& slot : slots_) {
    for (int fd : slot->listen_fds) {
      close(fd);
    }
  }
  if (control_fd_ >= 0) {
    close(control_fd_);
  }
}

void ShardGroup::ThreadMain(int index, int cpu) {
  Slot& slot = *slots_[index];
  sigset_t set;
  ShutdownSignals(&set);
  sigaddset(&set, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (options_.pin_threads) {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(cpu, &cpus);
    int rc = pthread_setaffinity_np(pthread_self(), sizeof(cpus), &cpus);
    if (rc != 0) {
      log::Warning("shard %d: pinning to CPU %d: %s", index, cpu, strerror(rc));
    }
  }
  auto fail = [&](const absl::Status& status) {
    absl::MutexLock lock(&mutex_);
    ++failed_;
    if (start_status_.ok()) {
      start_status_ = absl::Status(status.code(), absl::StrFormat("shard %d: %s", index,
                                                                  status.message()));
    }
    slot.exited.store(true);
  };
  absl::StatusOr<std::unique_ptr<Reactor>> reactor = Reactor::Create(options_.reactor);
  if (!reactor.ok()) {
    fail(reactor.status());
    return;
  }
  absl::StatusOr<std::unique_ptr<BufferRing>> buffers =
      BufferRing::Create((*reactor)->ring(), kRecvBufferGroup, options_.shard.recv_buffers,
                         options_.shard.recv_buffer_bytes);
  if (!buffers.ok()) {
    fail(buffers.status());
    return;
  }
  slot.owned_reactor = std::move(*reactor);
  Reactor* loop = slot.owned_reactor.get();
  {
    Shard shard(index, this, loop, std::move(*buffers), options_.shard,
                std::exchange(slot.listen_fds, {}));
    slot.shard = &shard;
    if (options_.on_start) {
      options_.on_start(shard);
    }
    shard.StartAccepting();
    slot.reactor.store(loop, std::memory_order_release);
    {
      absl::MutexLock lock(&mutex_);
      ++started_;
      ++running_;
    }
    loop->Run();
    if (options_.on_stop) {
      options_.on_stop(shard);
    }
    slot.shard = nullptr;
  }
  slot.exited.store(true);
  {
    absl::MutexLock lock(&mutex_);
    --running_;
  }
  WakeControl();
}

int ShardGroup::running() const {
  absl::MutexLock lock(&mutex_);
  return running_;
}

void ShardGroup::WakeControl() {
  const uint64_t one = 1;
  ssize_t n = write(control_fd_, &one, sizeof(one));
  (void)n;  // EAGAIN only when the counter is saturated: a wake-up is pending anyway
}

bool ShardGroup::Post(int shard, absl::AnyInvocable<void(Shard&)> fn) {
  MOAT_CHECK(shard >= 0 && shard < shards());
  Slot* slot = slots_[shard].get();
  Reactor* reactor = slot->reactor.load(std::memory_order_acquire);
  if (reactor == nullptr || slot->exited.load()) {
    return false;
  }
  return reactor->Post([slot, fn = std::move(fn)]() mutable {
    if (slot->shard != nullptr) {
      fn(*slot->shard);
    }
  });
}

bool ShardGroup::Reload(std::shared_ptr<const void> snapshot, absl::Duration timeout) {
  auto gather = std::make_shared<Gather<int>>();
  {
    absl::MutexLock lock(&gather->mutex);
    gather->remaining = shards();
  }
  for (int i = 0; i < shards(); ++i) {
    bool posted = Post(i, [gather, snapshot](Shard& shard) {
      shard.ApplyReload(snapshot);
      absl::MutexLock lock(&gather->mutex);
      --gather->remaining;
    });
    if (!posted) {
      absl::MutexLock lock(&gather->mutex);
      --gather->remaining;
      gather->results.push_back(i);  // not reached
    }
  }
  absl::MutexLock lock(&gather->mutex);
  Gather<int>* g = gather.get();
  auto done = [g]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g->mutex) { return g->remaining == 0; };
  bool all = gather->mutex.AwaitWithTimeout(absl::Condition(&done), timeout);
  return all && gather->results.empty();
}

std::vector<ShardStats> ShardGroup::CollectStats(absl::Duration timeout) {
  auto gather = std::make_shared<Gather<ShardStats>>();
  int posted = 0;
  {
    absl::MutexLock lock(&gather->mutex);
    gather->remaining = shards();
  }
  for (int i = 0; i < shards(); ++i) {
    if (Post(i, [gather](Shard& shard) {
          ShardStats stats = shard.stats();
          absl::MutexLock lock(&gather->mutex);
          gather->results.push_back(stats);
          --gather->remaining;
        })) {
      ++posted;
    } else {
      absl::MutexLock lock(&gather->mutex);
      --gather->remaining;
    }
  }
  absl::MutexLock lock(&gather->mutex);
  Gather<ShardStats>* g = gather.get();
  auto done = [g]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g->mutex) { return g->remaining == 0; };
  gather->mutex.AwaitWithTimeout(absl::Condition(&done), timeout);
  std::vector<ShardStats> results = gather->results;
  std::sort(results.begin(), results.end(),
            [](const ShardStats& a, const ShardStats& b) { return a.shard < b.shard; });
  return results;
}

void ShardGroup::BeginShutdown(absl::Duration grace) {
  shutdown_begun_.store(true);
  for (int i = 0; i < shards(); ++i) {
    Post(i, [grace](Shard& shard) { shard.BeginShutdown(grace); });
  }
  WakeControl();
}

bool ShardGroup::Join(absl::Duration timeout) {
  if (joined_) {
    return true;
  }
  {
    absl::MutexLock lock(&mutex_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) { return running_ == 0; };
    if (!mutex_.AwaitWithTimeout(absl::Condition(&done), timeout)) {
      return false;
    }
  }
  for (auto& slot : slots_) {
    if (slot->thread.joinable()) {
      slot->thread.join();
    }
  }
  joined_ = true;
  return true;
}

int ShardGroup::RunUntilShutdown(absl::Duration grace, const std::function<void()>& on_reload) {
  sigset_t set;
  ShutdownSignals(&set);
  const int signal_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) {
    log::Error("reactor: signalfd: %s", strerror(errno));
    return 1;
  }
  while (running() > 0) {
    pollfd fds[2] = {{signal_fd, POLLIN, 0}, {control_fd_, POLLIN, 0}};
    int n = poll(fds, 2, -1);
    if (n < 0 && errno != EINTR) {
      log::Error("reactor: poll: %s", strerror(errno));
      break;
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info{};
      while (read(signal_fd, &info, sizeof(info)) == sizeof(info)) {
        if (info.ssi_signo == SIGHUP) {
          log::Info("reactor: SIGHUP: reloading");
          if (on_reload) {
            on_reload();
          }
        } else if (!shutdown_begun_.load()) {
          log::Info("reactor: %s: graceful shutdown, grace %s",
                    info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT",
                    absl::FormatDuration(grace));
          BeginShutdown(grace);
        } else {
          log::Info("reactor: %s again: ending the grace period now",
                    info.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
          BeginShutdown(absl::ZeroDuration());
        }
      }
    }
    if (fds[1].revents & POLLIN) {
      uint64_t value = 0;
      ssize_t r = read(control_fd_, &value, sizeof(value));
      (void)r;
    }
  }
  close(signal_fd);
  const bool joined = Join(absl::Seconds(10));
  int failed = 0;
  {
    absl::MutexLock lock(&mutex_);
    failed = failed_;
  }
  return joined && failed == 0 ? 0 : 1;
}

}  // namespace moat::reactor
