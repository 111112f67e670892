// tests/testing/smtp_client.cc: see smtp_client.h.
#include "tests/testing/smtp_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moat::testing {

SmtpClient::~SmtpClient() { Close(); }

bool SmtpClient::Connect(int port, const std::string& host, const std::string& source_ip) {
  Close();
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    return false;
  }
  if (!source_ip.empty()) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    inet_pton(AF_INET, source_ip.c_str(), &src.sin_addr);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      Close();
      return false;
    }
  }
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, host.c_str(), &a.sin_addr);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    Close();
    return false;
  }
  return true;
}

bool SmtpClient::Send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
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

std::string SmtpClient::ReadReply(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    // A complete reply: lines "NNN-..." then one "NNN ..." line.
    size_t start = 0;
    for (;;) {
      size_t eol = buffer_.find("\r\n", start);
      if (eol == std::string::npos) {
        break;
      }
      if (eol - start >= 4 && buffer_[start + 3] == ' ') {
        std::string reply = buffer_.substr(0, eol + 2);
        buffer_.erase(0, eol + 2);
        return reply;
      }
      if (eol - start == 3) {  // "NNN" alone
        std::string reply = buffer_.substr(0, eol + 2);
        buffer_.erase(0, eol + 2);
        return reply;
      }
      start = eol + 2;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || fd_ < 0) {
      return "";
    }
    pollfd p{fd_, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) {
      continue;
    }
    if (r <= 0) {
      return "";
    }
    char buf[16384];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      return "";
    }
    buffer_.append(buf, static_cast<size_t>(n));
  }
}

std::string SmtpClient::Command(std::string_view line) {
  std::string bytes(line);
  bytes += "\r\n";
  if (!Send(bytes)) {
    return "";
  }
  return ReadReply();
}

bool SmtpClient::WaitClosed(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (fd_ >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return false;
    }
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) {
      continue;
    }
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
      return true;
    }
    if (n > 0) {
      buffer_.append(buf, static_cast<size_t>(n));
    }
  }
  return true;
}

void SmtpClient::Close() {
  if (fd_ >= 0) {
    close(fd_);
    fd_ = -1;
  }
  buffer_.clear();
}

std::string SmtpClient::SendMail(std::string_view from, std::string_view to,
                                 std::string_view body) {
  std::string r = Command("MAIL FROM:<" + std::string(from) + ">");
  if (ReplyCode(r) != 250) {
    return r;
  }
  r = Command("RCPT TO:<" + std::string(to) + ">");
  if (ReplyCode(r) != 250) {
    Command("RSET");
    return r;
  }
  r = Command("DATA");
  if (ReplyCode(r) != 354) {
    return r;
  }
  std::string stuffed;
  size_t pos = 0;
  while (pos < body.size()) {
    size_t eol = body.find("\r\n", pos);
    size_t end = eol == std::string_view::npos ? body.size() : eol + 2;
    if (body[pos] == '.') {
      stuffed += '.';
    }
    stuffed.append(body.substr(pos, end - pos));
    pos = end;
  }
  stuffed += ".\r\n";
  if (!Send(stuffed)) {
    return "";
  }
  return ReadReply();
}

int ReplyCode(std::string_view reply) {
  if (reply.size() < 3) {
    return 0;
  }
  return (reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0');
}

std::string QueuedId(std::string_view reply) {
  constexpr std::string_view kMarker = "queued as ";
  size_t p = reply.find(kMarker);
  if (p == std::string_view::npos) {
    return "";
  }
  size_t start = p + kMarker.size();
  size_t end = start;
  while (end < reply.size() && reply[end] != '\r' && reply[end] != '\n' && reply[end] != ' ') {
    ++end;
  }
  return std::string(reply.substr(start, end - start));
}

}  // namespace moat::testing
