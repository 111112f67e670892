// core/reactor/socket_address.h
//
// An IPv4 or IPv6 socket address (28 bytes, no allocation): parsing of the moat_listen
// forms "127.0.0.1:2525", "0.0.0.0:25", "[::1]:2525", "[::]:25", "*:25" (IPv4 any), and
// formatting back. Also the keys used for per-client counting (IpKey) and for reuseport
// steering (SteeringKey).
//
// Thread safety: a value type; const methods may be called from any thread. Parse() takes
// configuration text (moat_listen), not network input.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace moat::reactor {

// A client IP as 16 bytes (IPv4 as ::ffff:a.b.c.d), for hash maps.
struct IpKey {
  uint64_t high = 0;
  uint64_t low = 0;
  friend bool operator==(const IpKey&, const IpKey&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const IpKey& key) {
    return H::combine(std::move(h), key.high, key.low);
  }
};

class SocketAddress {
 public:
  SocketAddress() { storage_.v4 = sockaddr_in{}; }
  // "host:port" with host an IPv4 literal or "*", or "[IPv6]:port". Port 0 is allowed
  // (bind picks one).
  static absl::StatusOr<SocketAddress> Parse(std::string_view text);
  // From a kernel-filled sockaddr (accept, getpeername). Unknown families give AF_UNSPEC.
  static SocketAddress FromSockaddr(const sockaddr* address, socklen_t length);

  int family() const { return storage_.v4.sin_family; }
  uint16_t port() const;
  void set_port(uint16_t port);
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage_); }
  socklen_t length() const;

  // "127.0.0.1:25", "[::1]:25".
  std::string ToString() const;
  // The address without port: "127.0.0.1", "::1" (an IPv4-mapped IPv6 address prints as
  // IPv4, as Postfix logs it).
  std::string HostString() const;
  IpKey ip_key() const;
  // The 32-bit word the reuseport program reads: the IPv4 source address in host order,
  // or the last 32 bits of the IPv6 source address. shard = SteeringKey() % shards.
  uint32_t SteeringKey() const;

 private:
  union {
    sockaddr_in v4;
    sockaddr_in6 v6;
  } storage_;
};

}  // namespace moat::reactor
