// tests/testing/smtp_client.h
//
// A small blocking SMTP client for end-to-end tests: connect to a loopback port, send raw
// bytes or commands, read complete (multi-line) replies. Every read is bounded by a
// timeout; nothing here asserts a time.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace moat::testing {

class SmtpClient {
 public:
  SmtpClient() = default;
  ~SmtpClient();
  SmtpClient(const SmtpClient&) = delete;
  SmtpClient& operator=(const SmtpClient&) = delete;

  // Connects to host:port (IPv4 literal), optionally from `source_ip`. False on failure.
  bool Connect(int port, const std::string& host = "127.0.0.1",
               const std::string& source_ip = "");
  // Sends bytes as they are.
  bool Send(std::string_view bytes);
  // Reads one complete reply (all its lines, CRLF included); "" on timeout or EOF.
  std::string ReadReply(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  // Sends `line` + CRLF and reads the reply.
  std::string Command(std::string_view line);
  // True when the server closed the connection (reads EOF within the timeout).
  bool WaitClosed(std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  void Close();
  int fd() const { return fd_; }

  // One complete transaction with DATA; returns the final reply ("250 2.0.0 Ok: queued as
  // ID") or the first failing reply. `body` lines must end in CRLF; it is dot-stuffed here.
  std::string SendMail(std::string_view from, std::string_view to, std::string_view body);

 private:
  int fd_ = -1;
  std::string buffer_;
};

// The three-digit code of a reply ("" -> 0).
int ReplyCode(std::string_view reply);
// The queue ID from "250 2.0.0 Ok: queued as ID", or "".
std::string QueuedId(std::string_view reply);

}  // namespace moat::testing
