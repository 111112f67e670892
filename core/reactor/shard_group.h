// core/reactor/shard_group.h
//
// The shard engine: N shard threads (default one per CPU in the process's affinity mask),
// each pinned to a CPU and running its own Reactor and Shard over its own SO_REUSEPORT
// listening sockets (steered by client IP, see listener.h). The control thread (the one
// that called Start, normally main) talks to the shards only through each reactor's
// inbox: Post(), Reload(), CollectStats(), BeginShutdown(). RunUntilShutdown() is the
// main thread's loop: SIGTERM/SIGINT begin a graceful shutdown, SIGHUP calls the reload
// callback, and it returns the process exit status once every shard has finished.
//
// Thread safety: every public method may be called from any thread except
// RunUntilShutdown (one thread, normally main) and the destructor (the owner). Shards run
// the callbacks in ShardGroupOptions on their own threads, concurrently.
// Parses no untrusted input.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/reactor/listener.h"
#include "core/reactor/reactor.h"
#include "core/reactor/shard.h"
#include "core/reactor/socket_address.h"

namespace moat::reactor {

struct ShardGroupOptions {
  // Shard threads; 0 = one per CPU the process may run on (sched_getaffinity).
  int shards = 0;
  // Pin shard i to the i-th CPU of the affinity mask (modulo its size).
  bool pin_threads = true;
  // moat_listen: every address gets one SO_REUSEPORT socket per shard.
  std::vector<SocketAddress> listen;
  int listen_backlog = 4096;
  ReactorOptions reactor;
  ShardOptions shard;
  // Runs on each shard thread once its Shard exists, before it accepts: install the
  // handler factory, turn hooks (spool), reload handler and shutdown barrier there.
  // Called from all shard threads concurrently.
  std::function<void(Shard&)> on_start;
  // Runs on each shard thread after its loop ended, before the Shard is destroyed.
  std::function<void(Shard&)> on_stop;
};

class ShardGroup {
 public:
  // Opens the listeners (control thread), starts the shard threads and waits until each
  // has its ring and accepts. On any failure nothing keeps running.
  static absl::StatusOr<std::unique_ptr<ShardGroup>> Start(ShardGroupOptions options);
  // If shards still run: BeginShutdown(zero grace) and Join (bounded by the close linger).
  ~ShardGroup();
  ShardGroup(const ShardGroup&) = delete;
  ShardGroup& operator=(const ShardGroup&) = delete;

  int shards() const { return static_cast<int>(slots_.size()); }
  // The bound listen addresses (port 0 resolved), in moat_listen order.
  const std::vector<SocketAddress>& listen_addresses() const { return addresses_; }
  // False if the kernel refused the steering program (see listener.h).
  bool steering() const { return steering_; }

  // Runs fn on `shard`'s thread (phase 1 of a coming turn). False if the inbox is full
  // or the shard has exited (fn is then destroyed unrun). Shards may post to each other.
  bool Post(int shard, absl::AnyInvocable<void(Shard&)> fn);
  // Sends `snapshot` to every shard's reload handler; true once all applied it within
  // `timeout` (after which the previous snapshot is no longer in use by the handlers
  // that swap pointers).
  bool Reload(std::shared_ptr<const void> snapshot, absl::Duration timeout);
  // Stats of every running shard, collected through the inboxes (bounded wait; a shard
  // that did not answer in time is missing from the result).
  std::vector<ShardStats> CollectStats(absl::Duration timeout);
  // Begins graceful shutdown on every shard (non-blocking). Again with a zero grace: the
  // grace period ends now.
  void BeginShutdown(absl::Duration grace);
  // Waits until every shard thread has exited; true if they did within `timeout`.
  bool Join(absl::Duration timeout);
  // Number of shard threads still running.
  int running() const;

  // The main thread's loop. SIGTERM/SIGINT: BeginShutdown(grace), a second one ends the
  // grace period at once; SIGHUP: on_reload().
  // Returns 0 when every shard finished cleanly after a shutdown (signal or
  // BeginShutdown from anywhere), 1 if a shard failed. REQUIRES: BlockSignals() was
  // called in the main thread before any thread started.
  int RunUntilShutdown(absl::Duration grace, const std::function<void()>& on_reload);
  // Blocks SIGTERM, SIGINT, SIGHUP and SIGPIPE in the calling thread; threads created
  // afterwards inherit the mask. Call first thing in main().
  static void BlockSignals();

 private:
  struct Slot {
    std::atomic<Reactor*> reactor{nullptr};
    std::unique_ptr<Reactor> owned_reactor;  // outlives the thread, so late Posts are safe
    Shard* shard = nullptr;                  // shard thread only
    std::vector<int> listen_fds;
    std::atomic<bool> exited{false};
    std::thread thread;
  };

  explicit ShardGroup(ShardGroupOptions options);
  void ThreadMain(int index, int cpu);
  void WakeControl();

  const ShardGroupOptions options_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<SocketAddress> addresses_;
  bool steering_ = false;
  int control_fd_ = -1;  // eventfd: a shard exited or shutdown was requested

  mutable absl::Mutex mutex_;
  absl::CondVar changed_;
  int started_ ABSL_GUARDED_BY(mutex_) = 0;
  int running_ ABSL_GUARDED_BY(mutex_) = 0;
  int failed_ ABSL_GUARDED_BY(mutex_) = 0;
  absl::Status start_status_ ABSL_GUARDED_BY(mutex_);
  std::atomic<bool> shutdown_begun_{false};
  bool joined_ = false;
};

}  // namespace moat::reactor
