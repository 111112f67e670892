// core/server/control.h
//
// The control socket (moat_control_socket): a unix stream socket on which `moat queue`,
// `moat stats` and `moat reload` talk to the running daemon. Control plane: it runs on its
// own thread, which may block (accept, read, and waiting for the shards' answers); shards
// are reached only through their inboxes (ShardGroup::Post), never touched directly.
//
// Protocol: one request per connection. The client sends one line ("list", "show ID",
// "flush", "delete ID", "delete ALL", "hold ID", "release ID", "stats", "reload"; at most
// 4096 bytes, CRLF or LF). The server answers "ok\n" or "error: TEXT\n", then the body, and
// closes. The socket is created mode 0600 (root or the moat user only): anyone who can
// connect can delete mail.
//
// Parses untrusted input only in the sense of local clients with access to the socket.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moat::server {

struct ControlReply {
  bool ok = true;
  std::string text;  // the body (ok) or the error message
};

class ControlServer {
 public:
  using Handler = std::function<ControlReply(std::string_view request)>;

  // Binds `path` (a stale socket file left by a dead daemon is replaced; a live one is an
  // error) and starts the control thread.
  static absl::StatusOr<std::unique_ptr<ControlServer>> Start(const std::string& path,
                                                              Handler handler);
  ~ControlServer();  // stops the thread and removes the socket file
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

 private:
  ControlServer(std::string path, int listen_fd, int stop_fd, Handler handler);
  void Run();
  void Serve(int fd);

  const std::string path_;
  const int listen_fd_;
  const int stop_fd_;
  Handler handler_;
  std::thread thread_;
};

// Client side: sends `request` to the daemon's socket at `path`, returns its reply, or an
// error status when no daemon answers.
absl::StatusOr<ControlReply> ControlRequest(const std::string& path, std::string_view request);

}  // namespace moat::server
