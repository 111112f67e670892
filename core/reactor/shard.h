// core/reactor/shard.h
//
// The per-shard runtime: the shard's Reactor, its provided-buffer ring, its listening
// sockets (multishot accept each), its live connections, its per-client-IP connection
// counts, its statistics and its part of graceful shutdown. The ShardGroup makes one per
// thread; the integration (`moat serve`) plugs in through SetHandlerFactory() (one
// StreamHandler per connection), Reactor::AddTurnHook() (the spool's group commit),
// SetReloadHandler() and SetShutdownBarrier() (called from ShardGroupOptions::on_start).
//
// Graceful shutdown (BeginShutdown): the acceptors are cancelled and the listening sockets
// closed; every handler gets OnShutdown(kDraining); when the grace period ends, every
// handler still open gets OnShutdown(kGraceExpired) (default: CloseAfterFlush); after the
// linger time on top, what is left is closed. The shard is finished when no connection is
// left, the listeners are closed and the shutdown barrier (e.g. "no spool write in
// flight") returns true; the reactor then stops.
//
// Owner: its shard thread; not thread-safe (other threads reach it only through
// Reactor::Post / ShardGroup::Post). Parses no untrusted input itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "core/reactor/buffer_ring.h"
#include "core/reactor/connection.h"
#include "core/reactor/reactor.h"
#include "core/reactor/socket_address.h"

namespace moat::reactor {

class ShardGroup;

struct ShardOptions {
  // Receive buffers: count (power of two) x bytes, per shard, whatever the connection
  // count. 1024 x 16 KiB = 16 MiB of address space, touched as used.
  uint32_t recv_buffers = 1024;
  uint32_t recv_buffer_bytes = 16384;
  // Connections per shard; the ones over it get overload_reply (if any) and are closed.
  size_t connections_max = 50000;
  std::string overload_reply;
  size_t output_bytes_max = size_t{1} << 20;         // per connection
  size_t pending_input_bytes_max = size_t{1} << 20;  // per connection
  // How long CloseAfterFlush may take (flush + wait for the peer's EOF).
  absl::Duration close_linger = absl::Seconds(5);
  // Upper bound for the shutdown barrier after the connections are gone.
  absl::Duration barrier_wait_max = absl::Seconds(30);
};

// What a handler factory learns about a new connection.
struct ClientInfo {
  const SocketAddress& peer;
  uint32_t listener_index;
  int shard;
  size_t shard_connections;   // on this shard, this one included
  size_t client_connections;  // from this client IP on this shard, this one included
};

struct ShardStats {
  int shard = 0;
  uint64_t connections = 0;
  uint64_t accepted = 0;
  uint64_t refused = 0;       // over connections_max, no handler, or during shutdown
  uint64_t closed = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t recv_no_buffers = 0;  // multishot recv stopped by an empty buffer ring
  uint32_t buffers_total = 0;
  uint32_t buffers_available = 0;
  uint64_t timers = 0;
  ReactorStats reactor;
};

class Shard {
 public:
  // Returns a handler for the connection, or nullptr to refuse it (closed at once).
  using HandlerFactory =
      absl::AnyInvocable<std::unique_ptr<StreamHandler>(Connection&, const ClientInfo&)>;

  Shard(int index, ShardGroup* group, Reactor* reactor, std::unique_ptr<BufferRing> buffers,
        const ShardOptions& options, std::vector<int> listen_fds);
  ~Shard();
  Shard(const Shard&) = delete;
  Shard& operator=(const Shard&) = delete;

  int index() const { return index_; }
  Reactor& reactor() const { return *reactor_; }
  BufferRing& buffers() const { return *buffers_; }
  const ShardOptions& options() const { return options_; }
  // The group it belongs to (nullptr in tests that build a Shard by hand).
  ShardGroup* group() const { return group_; }

  void SetHandlerFactory(HandlerFactory factory) { factory_ = std::move(factory); }
  // Called on this shard with every snapshot passed to ShardGroup::Reload.
  void SetReloadHandler(absl::AnyInvocable<void(std::shared_ptr<const void>)> handler) {
    reload_handler_ = std::move(handler);
  }
  // Shutdown waits (after the connections are gone) until this returns true.
  void SetShutdownBarrier(absl::AnyInvocable<bool()> barrier) { barrier_ = std::move(barrier); }

  // Arms the multishot accepts. Call once on the shard thread.
  void StartAccepting();
  // Begins graceful shutdown with the given grace period. Called again while draining
  // with a zero grace, it ends the grace period at once; otherwise idempotent.
  void BeginShutdown(absl::Duration grace);
  bool draining() const { return draining_; }
  bool finished() const { return finished_; }

  void ApplyReload(std::shared_ptr<const void> snapshot);

  size_t connections() const { return connection_count_; }
  size_t ClientConnections(const IpKey& ip) const;
  ShardStats stats() const;
  // Calls fn(Connection&) for every live connection (closing ones included).
  template <typename Fn>
  void ForEachConnection(Fn&& fn) {
    for (Connection* c = list_head_; c != nullptr;) {
      Connection* next = c->list_next_;
      fn(*c);
      c = next;
    }
  }

 private:
  friend class Connection;
  class Acceptor;

  void OnAccepted(int fd, uint32_t listener_index);
  void OnAcceptorClosed();
  void QueueFlush(Connection* connection);
  void Release(Connection* connection);  // fd closed: tell the handler, free at turn end
  void EndOfTurn();
  void MaybeFinish();
  void OnShutdownTimer();

  const int index_;
  ShardGroup* const group_;
  Reactor* const reactor_;
  std::unique_ptr<BufferRing> buffers_;
  const ShardOptions options_;
  std::vector<std::unique_ptr<Acceptor>> acceptors_;
  size_t acceptors_open_ = 0;
  HandlerFactory factory_;
  absl::AnyInvocable<void(std::shared_ptr<const void>)> reload_handler_;
  absl::AnyInvocable<bool()> barrier_;
  Reactor::HookId hook_id_ = 0;

  Connection* list_head_ = nullptr;
  size_t connection_count_ = 0;
  uint64_t next_connection_id_ = 1;
  absl::flat_hash_map<IpKey, uint32_t> per_client_;
  std::vector<Connection*> flush_list_;
  std::vector<Connection*> graveyard_;

  bool draining_ = false;
  bool grace_expired_ = false;
  bool finished_ = false;
  int64_t barrier_deadline_ns_ = 0;
  Timer shutdown_timer_;
  Timer barrier_timer_;
  ShardStats stats_;

};

}  // namespace moat::reactor
