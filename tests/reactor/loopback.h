// tests/reactor/loopback.h
//
// Helpers for the reactor's loopback tests: blocking client sockets with timeouts (every
// read and write bounded), and a line-oriented toy protocol handler whose behaviour the
// tests switch with a few verbs. Test-only; not thread-safe unless stated.
#pragma once

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>
#include <thread>

#include "core/reactor/connection.h"
#include "core/reactor/socket_address.h"

namespace moat::reactor::testing {

// A connected client socket with 10 s send/receive timeouts. `source_ip` binds the
// client side first (for steering tests). Returns -1 on failure.
inline int Connect(const SocketAddress& server, const char* source_ip = nullptr) {
  int fd = socket(server.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  if (source_ip != nullptr) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    inet_pton(AF_INET, source_ip, &local.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
      close(fd);
      return -1;
    }
  }
  if (connect(fd, server.get(), server.length()) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

inline bool WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) {
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads one "\n"-terminated line (without "\r\n"); "" on EOF, error or timeout (10 s).
// Byte by byte: simple and exact (never reads past the line).
inline std::string ReadLine(int fd) {
  std::string line;
  for (size_t i = 0; i < 65536; ++i) {
    char c = 0;
    ssize_t n = recv(fd, &c, 1, 0);
    if (n <= 0) {
      return "";
    }
    if (c == '\n') {
      if (!line.empty() && line.back() == '\r') {
        line.pop_back();
      }
      return line;
    }
    line.push_back(c);
  }
  return line;
}

// After the last expected line: what the end of the stream looks like. 0 = clean EOF
// (FIN), otherwise the errno (ECONNRESET = the server reset us), or -1 if more data came.
inline int ReadEnd(int fd) {
  char c = 0;
  ssize_t n = recv(fd, &c, 1, 0);
  if (n == 0) {
    return 0;
  }
  if (n < 0) {
    return errno;
  }
  return -1;
}

// Raises RLIMIT_NOFILE's soft limit to at least `wanted` if the hard limit allows.
inline bool RaiseFdLimit(rlim_t wanted) {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return false;
  }
  if (limit.rlim_cur >= wanted) {
    return true;
  }
  if (limit.rlim_max < wanted) {
    return false;
  }
  limit.rlim_cur = wanted;
  return setrlimit(RLIMIT_NOFILE, &limit) == 0;
}

// Waits (bounded) until pred() holds, polling every few ms. For conditions observed
// from outside the shard threads (stats), not for timing.
template <typename Pred>
bool WaitFor(Pred pred, std::chrono::milliseconds timeout = std::chrono::milliseconds(10000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

}  // namespace moat::reactor::testing
