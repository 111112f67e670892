// tests/net/smtp_session_interop_test.cc: real SMTP clients (Postfix's smtp-source, swaks,
// Python's smtplib) against SmtpSession over loopback TCP. The server here is a small
// poll() loop written for the test (the real I/O layer is the reactor's): it plays the
// I/O layer's contract from smtp_session.h, so the test checks that the state machine
// speaks SMTP the way deployed clients expect, pipelining included. 127.0.0.1, port 0,
// every wait bounded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/log/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/smtp_session.h"
#include "tests/testing/testing.h"

namespace moat::net {
namespace {

using ::testing::HasSubstr;

class RelayExampleCom : public Policy {
 public:
  PolicyDecision Check(const PolicyRequest& request) override {
    if (request.stage == PolicyStage::kRcpt) {
      std::string rcpt(request.recipient);
      if (rcpt.size() < 12 || rcpt.compare(rcpt.size() - 12, 12, "@example.com") != 0) {
        return {PolicyAction::kReject, 554, "5.7.1", "<" + rcpt + ">: Relay access denied"};
      }
    }
    return {};
  }
  std::vector<ResolvedRecipient> Resolve(std::string_view recipient,
                                         PolicyDecision* failure) override {
    (void)failure;
    return {{std::string(recipient), "smtp:[127.0.0.1]:2526"}};
  }
};

class CollectingSink : public MessageSink {
 public:
  std::string NewQueueId() override { return "Q" + std::to_string(++ids_); }
  void Submit(AcceptedMessage message, SmtpSession& session) override {
    std::string id = message.queue_id;
    messages.push_back(std::move(message));
    session.OnQueued(id);
  }
  std::vector<AcceptedMessage> messages;

 private:
  int ids_ = 0;
};

// A single-threaded server: accept, read, feed the session, write its output, close
// when it says so. Runs until Stop() (bounded: poll timeout 50 ms).
class LoopbackServer {
 public:
  LoopbackServer() {
    settings_.myhostname = "mx.example";
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listen_fd_, 64), 0);
    socklen_t len = sizeof(addr);
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~LoopbackServer() {
    Stop();
    close(listen_fd_);
  }

  void Start() {
    thread_ = std::thread([this] {
      log::CaptureForTest(&log_);
      Loop();
      connections_.clear();  // sessions log their disconnect into the capture
      log::CaptureForTest(nullptr);
    });
  }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
  }

  int port() const { return port_; }
  SessionSettings& settings() { return settings_; }
  const std::vector<AcceptedMessage>& messages() const { return sink_.messages; }
  const std::string& log() const { return log_; }

 private:
  struct Connection {
    int fd = -1;
    std::unique_ptr<SmtpSession> session;
    ~Connection() {
      session.reset();
      if (fd >= 0) {
        close(fd);
      }
    }
  };

  // Sends everything the session staged (blocking; replies are small), then closes if
  // the session asked to. Returns false when the connection is finished.
  bool Flush(Connection& c) {
    for (int round = 0; round < 100 && c.session->PendingDelay() > absl::ZeroDuration();
         ++round) {
      c.session->OnDelayDone();  // the test does not wait out error sleeps
    }
    std::string out = c.session->TakeOutput();
    size_t sent = 0;
    while (sent < out.size()) {
      ssize_t n = send(c.fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        c.session->OnEof();
        return false;
      }
      sent += static_cast<size_t>(n);
    }
    return !c.session->WantsClose();
  }

  void Loop() {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (!stop_ && std::chrono::steady_clock::now() < deadline) {
      std::vector<pollfd> fds;
      fds.push_back({listen_fd_, POLLIN, 0});
      for (auto& c : connections_) {
        fds.push_back({c->fd, POLLIN, 0});
      }
      if (poll(fds.data(), fds.size(), 50) <= 0) {
        continue;
      }
      std::vector<std::unique_ptr<Connection>> keep;
      for (size_t i = 1; i < fds.size(); ++i) {
        std::unique_ptr<Connection>& c = connections_[i - 1];
        bool open = true;
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
          char buffer[16384];
          ssize_t n = recv(c->fd, buffer, sizeof(buffer), 0);
          if (n <= 0) {
            c->session->OnEof();
            open = false;
          } else {
            c->session->OnData(std::string_view(buffer, static_cast<size_t>(n)));
            open = Flush(*c);
          }
        }
        if (open) {
          keep.push_back(std::move(c));
        }
      }
      connections_ = std::move(keep);
      if ((fds[0].revents & POLLIN) != 0) {
        sockaddr_in peer{};
        socklen_t len = sizeof(peer);
        int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
        if (fd >= 0) {
          auto c = std::make_unique<Connection>();
          c->fd = fd;
          ConnectionInfo info;
          char ip[INET_ADDRSTRLEN] = {};
          inet_ntop(AF_INET, &peer.sin_addr, ip, sizeof(ip));
          info.client_ip = ip;
          info.client_port = ntohs(peer.sin_port);
          info.server_ip = "127.0.0.1";
          info.client_connection_count = static_cast<int>(connections_.size()) + 1;
          c->session = std::make_unique<SmtpSession>(settings_, policy_, sink_, info);
          c->session->Start();
          if (Flush(*c)) {
            connections_.push_back(std::move(c));
          }
        }
      }
    }
  }

  SessionSettings settings_;
  RelayExampleCom policy_;
  CollectingSink sink_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::vector<std::unique_ptr<Connection>> connections_;
  std::string log_;
};

TEST(SmtpInteropTest, SmtpSourceParallelSessions) {
  LoopbackServer server;
  server.Start();
  testing::RunResult r = testing::Run(
      {"/usr/sbin/smtp-source", "-s", "4", "-m", "40", "-l", "5000", "-f", "sender@example.org",
       "-t", "rcpt@example.com", absl::StrFormat("127.0.0.1:%d", server.port())},
      "", std::chrono::seconds(60));
  server.Stop();
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  ASSERT_EQ(server.messages().size(), 40u) << server.log();
  for (const AcceptedMessage& m : server.messages()) {
    EXPECT_EQ(m.sender, "sender@example.org");
    ASSERT_EQ(m.recipients.size(), 1u);
    EXPECT_EQ(m.recipients[0].address, "rcpt@example.com");
    EXPECT_GE(m.content.size(), 5000u);
    EXPECT_THAT(m.content, HasSubstr("Received: from "));
  }
  EXPECT_THAT(server.log(), HasSubstr("disconnect from unknown[127.0.0.1]"));
}

TEST(SmtpInteropTest, SwaksPipeliningAndDotStuffing) {
  LoopbackServer server;
  server.Start();
  testing::TempDir dir;
  std::string data_file = dir.Write(
      "data.txt", "Subject: dots\r\n\r\nline one\r\n.\r\n..two dots\r\nlast\r\n");
  testing::RunResult r = testing::Run(
      {"/usr/bin/swaks", "--server", "127.0.0.1", "--port", std::to_string(server.port()),
       "--from", "s@example.org", "--to", "a@example.com,b@example.com", "--pipeline",
       "--helo", "client.test", "--data", data_file, "--timeout", "20"},
      "", std::chrono::seconds(60));
  server.Stop();
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("<-  250 2.0.0 Ok: queued as Q1"));
  ASSERT_EQ(server.messages().size(), 1u) << r.out;
  const AcceptedMessage& m = server.messages()[0];
  EXPECT_EQ(m.recipients.size(), 2u);
  EXPECT_EQ(m.helo_name, "client.test");
  // The "." and ".." lines came through dot-stuffing and back unchanged.
  EXPECT_THAT(m.content, HasSubstr("\r\nline one\r\n.\r\n..two dots\r\nlast\r\n"));
  EXPECT_THAT(server.log(), ::testing::Not(HasSubstr("improper command pipelining")));
}

TEST(SmtpInteropTest, SwaksRelayDeniedIsRejectedAtRcpt) {
  LoopbackServer server;
  server.Start();
  testing::RunResult r = testing::Run(
      {"/usr/bin/swaks", "--server", "127.0.0.1", "--port", std::to_string(server.port()),
       "--from", "s@example.org", "--to", "x@elsewhere.test", "--timeout", "20"},
      "", std::chrono::seconds(60));
  server.Stop();
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("<** 554 5.7.1 <x@elsewhere.test>: Relay access denied"));
  EXPECT_TRUE(server.messages().empty());
  EXPECT_THAT(server.log(), HasSubstr("NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 "
                                      "<x@elsewhere.test>: Relay access denied;"));
}

TEST(SmtpInteropTest, PythonSmtplibSmtputf8) {
  LoopbackServer server;
  server.Start();
  std::string script = absl::StrFormat(R"PY(
import smtplib, sys
s = smtplib.SMTP('127.0.0.1', %d, timeout=20)
s.ehlo('py.test')
assert s.has_extn('smtputf8') and s.has_extn('chunking') and s.has_extn('dsn')
msg = 'Subject: utf8\r\n\r\nh\u00e9llo\r\n'.encode('utf-8')
refused = s.sendmail('j\u00f6rg@example.org', ['\u7528\u6237@example.com'], msg,
                     mail_options=['SMTPUTF8', 'BODY=8BITMIME'], rcpt_options=['NOTIFY=FAILURE'])
assert refused == {}, refused
code, text = s.docmd('VRFY', '<a@example.com>')
print(code, text.decode())
s.quit()
)PY",
                                       server.port());
  testing::RunResult r = testing::Run({"/usr/bin/python3", "-c", script}, "",
                                      std::chrono::seconds(60));
  server.Stop();
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("252 2.0.0 <a@example.com>"));
  ASSERT_EQ(server.messages().size(), 1u);
  const AcceptedMessage& m = server.messages()[0];
  EXPECT_TRUE(m.smtputf8);
  EXPECT_EQ(m.body, BodyType::k8BitMime);
  EXPECT_EQ(m.sender, "j\xC3\xB6rg@example.org");
  EXPECT_EQ(m.recipients[0].dsn_notify, kDsnNotifyFailure);
  EXPECT_THAT(m.content, HasSubstr("with UTF8SMTP id Q1"));
  EXPECT_THAT(m.content, HasSubstr("h\xC3\xA9llo\r\n"));
}

}  // namespace
}  // namespace moat::net
