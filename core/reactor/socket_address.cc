// core/reactor/socket_address.cc
//
// See socket_address.h.
#include "core/reactor/socket_address.h"

#include <arpa/inet.h>
#include <string.h>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace moat::reactor {
namespace {

bool ParsePort(std::string_view text, uint16_t* port) {
  if (text.empty() || text.size() > 5) {
    return false;
  }
  uint32_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') {
      return false;
    }
    value = value * 10 + static_cast<uint32_t>(c - '0');
  }
  if (value > 65535) {
    return false;
  }
  *port = static_cast<uint16_t>(value);
  return true;
}

}  // namespace

absl::StatusOr<SocketAddress> SocketAddress::Parse(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad listen address \"%s\": %s", text, why));
  };
  SocketAddress address;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return bad("expected [IPv6]:port");
    }
    std::string host(text.substr(1, close - 1));
    uint16_t port = 0;
    if (!ParsePort(text.substr(close + 2), &port)) {
      return bad("bad port");
    }
    sockaddr_in6 v6{};
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    if (inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr) != 1) {
      return bad("bad IPv6 address");
    }
    address.storage_.v6 = v6;
    return address;
  }
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return bad("expected host:port");
  }
  std::string host(text.substr(0, colon));
  uint16_t port = 0;
  if (!ParsePort(text.substr(colon + 1), &port)) {
    return bad("bad port");
  }
  if (host == "*") {
    host = "0.0.0.0";
  }
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_port = htons(port);
  if (inet_pton(AF_INET, host.c_str(), &v4.sin_addr) != 1) {
    return bad(host.find(':') != std::string::npos ? "IPv6 addresses need [brackets]"
                                                    : "bad IPv4 address");
  }
  address.storage_.v4 = v4;
  return address;
}

SocketAddress SocketAddress::FromSockaddr(const sockaddr* address, socklen_t length) {
  SocketAddress result;
  if (address->sa_family == AF_INET && length >= sizeof(sockaddr_in)) {
    memcpy(&result.storage_.v4, address, sizeof(sockaddr_in));
  } else if (address->sa_family == AF_INET6 && length >= sizeof(sockaddr_in6)) {
    memcpy(&result.storage_.v6, address, sizeof(sockaddr_in6));
  } else {
    result.storage_.v4.sin_family = AF_UNSPEC;
  }
  return result;
}

uint16_t SocketAddress::port() const {
  return ntohs(family() == AF_INET6 ? storage_.v6.sin6_port : storage_.v4.sin_port);
}

void SocketAddress::set_port(uint16_t port) {
  if (family() == AF_INET6) {
    storage_.v6.sin6_port = htons(port);
  } else {
    storage_.v4.sin_port = htons(port);
  }
}

socklen_t SocketAddress::length() const {
  return family() == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
}

std::string SocketAddress::HostString() const {
  char buffer[INET6_ADDRSTRLEN] = {};
  if (family() == AF_INET) {
    inet_ntop(AF_INET, &storage_.v4.sin_addr, buffer, sizeof(buffer));
  } else if (family() == AF_INET6) {
    if (IN6_IS_ADDR_V4MAPPED(&storage_.v6.sin6_addr)) {
      inet_ntop(AF_INET, &storage_.v6.sin6_addr.s6_addr[12], buffer, sizeof(buffer));
    } else {
      inet_ntop(AF_INET6, &storage_.v6.sin6_addr, buffer, sizeof(buffer));
    }
  } else {
    return "unknown";
  }
  return buffer;
}

std::string SocketAddress::ToString() const {
  if (family() == AF_INET6 && !IN6_IS_ADDR_V4MAPPED(&storage_.v6.sin6_addr)) {
    return absl::StrFormat("[%s]:%d", HostString(), port());
  }
  return absl::StrFormat("%s:%d", HostString(), port());
}

IpKey SocketAddress::ip_key() const {
  uint8_t bytes[16] = {};
  if (family() == AF_INET) {
    bytes[10] = 0xff;
    bytes[11] = 0xff;
    memcpy(&bytes[12], &storage_.v4.sin_addr, 4);
  } else if (family() == AF_INET6) {
    memcpy(bytes, &storage_.v6.sin6_addr, 16);
  }
  IpKey key;
  memcpy(&key.high, bytes, 8);
  memcpy(&key.low, bytes + 8, 8);
  return key;
}

uint32_t SocketAddress::SteeringKey() const {
  uint32_t word = 0;
  if (family() == AF_INET) {
    memcpy(&word, &storage_.v4.sin_addr, 4);
  } else if (family() == AF_INET6) {
    memcpy(&word, &storage_.v6.sin6_addr.s6_addr[12], 4);
  }
  return ntohl(word);
}

}  // namespace moat::reactor
