// core/server/control.cc: see control.h.
#include "core/server/control.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "core/log/log.h"

namespace moat::server {
namespace {

constexpr size_t kRequestBytesMax = 4096;
constexpr int kIoTimeoutMs = 10000;

bool FillAddress(const std::string& path, sockaddr_un* address) {
  if (path.size() >= sizeof address->sun_path) {
    return false;
  }
  *address = sockaddr_un{};
  address->sun_family = AF_UNIX;
  std::memcpy(address->sun_path, path.c_str(), path.size() + 1);
  return true;
}

bool WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void SetTimeouts(int fd) {
  timeval tv{kIoTimeoutMs / 1000, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

}  // namespace

absl::StatusOr<std::unique_ptr<ControlServer>> ControlServer::Start(const std::string& path,
                                                                    Handler handler) {
  sockaddr_un address;
  if (!FillAddress(path, &address)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": control socket path too long"));
  }
  // A live daemon answers on it: refuse to steal its socket. A dead one's file is stale.
  if (access(path.c_str(), F_OK) == 0) {
    if (ControlRequest(path, "ping").ok()) {
      return absl::AlreadyExistsError(
          absl::StrCat(path, ": another moat daemon is running on this control socket"));
    }
    unlink(path.c_str());
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  }
  mode_t old_mask = umask(0177);
  int r = bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  umask(old_mask);
  if (r != 0 || listen(fd, 64) != 0) {
    int e = errno;
    close(fd);
    return absl::InternalError(absl::StrCat(path, ": cannot listen: ", strerror(e)));
  }
  int stop_fd = eventfd(0, EFD_CLOEXEC);
  if (stop_fd < 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  }
  return std::unique_ptr<ControlServer>(
      new ControlServer(path, fd, stop_fd, std::move(handler)));
}

ControlServer::ControlServer(std::string path, int listen_fd, int stop_fd, Handler handler)
    : path_(std::move(path)),
      listen_fd_(listen_fd),
      stop_fd_(stop_fd),
      handler_(std::move(handler)),
      thread_([this] { Run(); }) {}

ControlServer::~ControlServer() {
  uint64_t one = 1;
  ssize_t n = write(stop_fd_, &one, sizeof one);
  (void)n;
  thread_.join();
  close(listen_fd_);
  close(stop_fd_);
  unlink(path_.c_str());
}

void ControlServer::Run() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    int r = poll(fds, 2, -1);
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r < 0 || (fds[1].revents & POLLIN) != 0) {
      return;
    }
    if ((fds[0].revents & POLLIN) != 0) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        Serve(fd);
        close(fd);
      }
    }
  }
}

void ControlServer::Serve(int fd) {
  SetTimeouts(fd);
  std::string request;
  char buf[512];
  while (request.find('\n') == std::string::npos && request.size() <= kRequestBytesMax) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    request.append(buf, static_cast<size_t>(n));
  }
  size_t eol = request.find('\n');
  if (eol == std::string::npos) {
    WriteAll(fd, "error: request too long or incomplete\n");
    return;
  }
  request.resize(eol);
  if (!request.empty() && request.back() == '\r') {
    request.pop_back();
  }
  ControlReply reply;
  if (request == "ping") {
    reply.text = "pong\n";
  } else {
    reply = handler_(request);
  }
  if (reply.ok) {
    WriteAll(fd, "ok\n");
    WriteAll(fd, reply.text);
  } else {
    WriteAll(fd, absl::StrCat("error: ", reply.text, "\n"));
  }
}

absl::StatusOr<ControlReply> ControlRequest(const std::string& path, std::string_view request) {
  sockaddr_un address;
  if (!FillAddress(path, &address)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": control socket path too long"));
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  }
  SetTimeouts(fd);
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    int e = errno;
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", path, ": ", strerror(e), " (is moat serve running?)"));
  }
  std::string line(request);
  line += "\n";
  std::string response;
  if (WriteAll(fd, line)) {
    char buf[65536];
    for (;;) {
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        break;
      }
      response.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  ControlReply reply;
  if (response.rfind("ok\n", 0) == 0) {
    reply.text = response.substr(3);
    return reply;
  }
  if (response.rfind("error: ", 0) == 0) {
    reply.ok = false;
    reply.text = response.substr(7);
    while (!reply.text.empty() && reply.text.back() == '\n') {
      reply.text.pop_back();
    }
    return reply;
  }
  return absl::UnavailableError(absl::StrCat(path, ": no answer from the daemon"));
}

}  // namespace moat::server
