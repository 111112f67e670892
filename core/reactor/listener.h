// core/reactor/listener.h
//
// The listening sockets of a shard group. For every moat_listen address it opens one
// socket per shard with SO_REUSEPORT, listen()s them in shard order (socket index in the
// reuseport group = shard index), and only then attaches a classic-BPF program that picks
// the socket from the client's source address:
//
//   IPv4:  ld [SKF_NET_OFF + 12]   ; source address
//          A %= shards ; ret A
//   IPv6:  ld [SKF_NET_OFF + 20]   ; last 32 bits of the source address
//          A %= shards ; ret A
//
// so every connection from one client IP lands on one shard and per-client limits are
// exact shard-locally. Attaching before listen() does not work (DEPENDENCIES.md section
// 11). IPv6 sockets are V6ONLY, so "0.0.0.0:25" and "[::]:25" form two groups.
//
// Runs on the control thread before the shard threads start (blocking socket calls are
// fine there). Not thread-safe. Parses no untrusted input.
#pragma once

#include <vector>

#include "absl/status/statusor.h"
#include "core/reactor/socket_address.h"

namespace moat::reactor {

class ListenerSet {
 public:
  // Opens addresses x shards sockets. A port 0 address is bound by shard 0's socket and
  // the port it got is reused for the others. REQUIRES: shards >= 1.
  static absl::StatusOr<ListenerSet> Open(const std::vector<SocketAddress>& addresses,
                                          int shards, int backlog);
  ListenerSet() = default;
  ~ListenerSet();
  ListenerSet(ListenerSet&& other) noexcept;
  ListenerSet& operator=(ListenerSet&& other) noexcept;
  ListenerSet(const ListenerSet&) = delete;
  ListenerSet& operator=(const ListenerSet&) = delete;

  // The bound addresses (port 0 resolved), in the order given.
  const std::vector<SocketAddress>& addresses() const { return addresses_; }
  int shards() const { return shards_; }
  // True when the steering program is attached to every group (false only if the kernel
  // refused it; connections are then spread by the kernel's hash).
  bool steering() const { return steering_; }
  // Gives shard `shard` its sockets, one per address in address order. The caller closes
  // them. May be called once per shard.
  std::vector<int> TakeShardSockets(int shard);

  // The program the kernel runs, exposed for tests: which shard a client goes to.
  static int ShardForClient(const SocketAddress& client, int shards) {
    return static_cast<int>(client.SteeringKey() % static_cast<uint32_t>(shards));
  }

 private:
  void CloseAll();

  std::vector<SocketAddress> addresses_;
  int shards_ = 0;
  bool steering_ = false;
  std::vector<std::vector<int>> fds_;  // [address][shard], -1 once taken
};

}  // namespace moat::reactor
