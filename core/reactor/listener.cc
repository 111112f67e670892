// core/reactor/listener.cc
//
// See listener.h. Control thread only.
#include "core/reactor/listener.h"

#include <errno.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "core/log/assert.h"
#include "core/log/log.h"

namespace moat::reactor {
namespace {

absl::Status Errno(std::string_view what, const SocketAddress& address) {
  return absl::UnavailableError(
      absl::StrFormat("listen %s: %s: %s", address.ToString(), what, strerror(errno)));
}

// The reuseport steering program: A = source-address word % shards.
bool AttachSteering(int fd, int family, int shards) {
  const uint32_t offset = family == AF_INET6 ? SKF_NET_OFF + 8 + 12 : SKF_NET_OFF + 12;
  sock_filter code[] = {
      {BPF_LD | BPF_W | BPF_ABS, 0, 0, offset},
      {BPF_ALU | BPF_MOD | BPF_K, 0, 0, static_cast<uint32_t>(shards)},
      {BPF_RET | BPF_A, 0, 0, 0},
  };
  sock_fprog program{};
  program.len = sizeof(code) / sizeof(code[0]);
  program.filter = code;
  return setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &program, sizeof(program)) == 0;
}

}  // namespace

absl::StatusOr<ListenerSet> ListenerSet::Open(const std::vector<SocketAddress>& addresses,
                                              int shards, int backlog) {
  MOAT_CHECK(shards >= 1);
  ListenerSet set;
  set.shards_ = shards;
  set.steering_ = true;
  for (const SocketAddress& requested : addresses) {
    SocketAddress address = requested;
    std::vector<int>& group = set.fds_.emplace_back();
    for (int shard = 0; shard < shards; ++shard) {
      int fd = socket(address.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        return Errno("socket", address);
      }
      group.push_back(fd);
      const int one = 1;
      if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
          setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0) {
        return Errno("setsockopt(SO_REUSEPORT)", address);
      }
      if (address.family() == AF_INET6 &&
          setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) {
        return Errno("setsockopt(IPV6_V6ONLY)", address);
      }
      if (bind(fd, address.get(), address.length()) != 0) {
        return Errno("bind", address);
      }
      if (address.port() == 0) {
        sockaddr_storage bound{};
        socklen_t length = sizeof(bound);
        if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
          return Errno("getsockname", address);
        }
        address.set_port(SocketAddress::FromSockaddr(reinterpret_cast<sockaddr*>(&bound),
                                                     length).port());
      }
    }
    // listen() in shard order: the reuseport group indexes sockets in that order.
    for (int shard = 0; shard < shards; ++shard) {
      if (listen(group[shard], backlog) != 0) {
        return Errno("listen", address);
      }
    }
    if (!AttachSteering(group[0], address.family(), shards)) {
      log::Warning("listen %s: SO_ATTACH_REUSEPORT_CBPF failed (%s): connections are spread "
                   "by the kernel's hash, per-client limits are per shard only",
                   address.ToString(), strerror(errno));
      set.steering_ = false;
    }
    set.addresses_.push_back(address);
  }
  return set;
}

ListenerSet::~ListenerSet() { CloseAll(); }

ListenerSet::ListenerSet(ListenerSet&& other) noexcept { *this = std::move(other); }

ListenerSet& ListenerSet::operator=(ListenerSet&& other) noexcept {
  if (this != &other) {
    CloseAll();
    addresses_ = std::move(other.addresses_);
    shards_ = other.shards_;
    steering_ = other.steering_;
    fds_ = std::move(other.fds_);
    other.fds_.clear();
  }
  return *this;
}

void ListenerSet::CloseAll() {
  for (std::vector<int>& group : fds_) {
    for (int& fd : group) {
      if (fd >= 0) {
        close(fd);
        fd = -1;
      }
    }
  }
}

std::vector<int> ListenerSet::TakeShardSockets(int shard) {
  MOAT_CHECK(shard >= 0 && shard < shards_);
  std::vector<int> result;
  for (std::vector<int>& group : fds_) {
    MOAT_CHECK(group[shard] >= 0);
    result.push_back(std::exchange(group[shard], -1));
  }
  return result;
}

}  // namespace moat::reactor
