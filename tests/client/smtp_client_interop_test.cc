// tests/client/smtp_client_interop_test.cc: the client machine against a real SMTP
// server, Postfix's smtp-sink on 127.0.0.1 (a free port), driven by a small blocking
// socket loop standing in for the shard's ring. Every wait is bounded; smtp-sink is
// stopped by its PID. Owned by: outbound.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

#include "net/client/smtp_client_session.h"
#include "tests/testing/testing.h"

namespace moat::client {
namespace {

constexpr char kSink[] = "/usr/sbin/smtp-sink";

struct Message {
  ClientTransaction transaction;
  std::string body;
};

class SinkTest : public ::testing::Test {
 protected:
  // Starts smtp-sink with extra options; its dump file collects what it received.
  void StartSink(std::vector<std::string> options) {
    if (access(kSink, X_OK) != 0) {
      GTEST_SKIP() << kSink << " is not installed (deploy/install-deps.sh installs postfix)";
    }
    ASSERT_EQ(chmod(dir_.path().c_str(), 0777), 0);  // smtp-sink runs as nobody when root
    port_ = testing::FreePort();
    std::vector<std::string> argv = {kSink};
    if (geteuid() == 0) {
      argv.insert(argv.end(), {"-u", "nobody"});
    }
    argv.insert(argv.end(), {"-D", dump_path()});
    argv.insert(argv.end(), options.begin(), options.end());
    argv.push_back(absl::StrCat("127.0.0.1:", port_));
    argv.push_back("10");
    sink_ = std::make_unique<testing::Process>(argv);
    ASSERT_TRUE(testing::WaitForPort(port_)) << sink_->Stderr();
  }

  std::string dump_path() const { return dir_.path() + "/dump"; }

  std::string Dump() const {
    std::ifstream in(dump_path());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // Runs the messages over one connection (NextTransaction between them while the
  // connection is reusable), then QUIT. Returns one result vector per finished
  // transaction. At most 10 s.
  std::vector<std::vector<RecipientResult>> Deliver(SmtpClientSession& s,
                                                    std::vector<Message> messages) {
    std::vector<std::vector<RecipientResult>> results;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    s.Start(messages[0].transaction);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      s.OnConnectFailed(strerror(errno));
      close(fd);
      results.push_back(s.results());
      return results;
    }
    s.OnConnected();
    size_t current = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string out = s.TakeOutput();
      size_t sent = 0;
      while (sent < out.size()) {
        const ssize_t n = send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) {
          break;
        }
        sent += static_cast<size_t>(n);
      }
      if (s.WantsBody()) {
        // Odd-sized chunks: dot-stuffing must work across chunk edges.
        const std::string& body = messages[current].body;
        for (size_t i = 0; i < body.size(); i += 7) {
          s.AddBody(std::string_view(body).substr(i, 7));
        }
        s.EndBody();
        continue;
      }
      if (s.TransactionDone() && results.size() == current) {
        results.push_back(s.results());
        if (current + 1 < messages.size() && s.CanReuse()) {
          ++current;
          s.NextTransaction(messages[current].transaction);
          continue;
        }
        if (s.CanReuse()) {
          s.Quit();
          continue;
        }
      }
      if (s.phase() == Phase::kClosed) {
        break;
      }
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) {
        continue;
      }
      char buf[4096];
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) {
        s.OnEof();
      } else {
        s.OnData(std::string_view(buf, static_cast<size_t>(n)));
      }
    }
    close(fd);
    EXPECT_EQ(s.phase(), Phase::kClosed) << "the conversation did not end in time";
    return results;
  }

  ServerIdentity Server() const {
    return ServerIdentity{"relay.example", "127.0.0.1", "127.0.0.1", static_cast<uint16_t>(port_)};
  }

  testing::TempDir dir_;
  int port_ = 0;
  std::unique_ptr<testing::Process> sink_;
};

Message Make(std::string sender, std::vector<std::string> rcpts, std::string body) {
  Message m;
  m.transaction.sender = std::move(sender);
  for (auto& r : rcpts) {
    m.transaction.recipients.push_back(ClientRecipient{r, "", ""});
  }
  m.transaction.size_bytes = body.size();
  m.body = std::move(body);
  return m;
}

TEST_F(SinkTest, ThreeMessagesOnOneConnectionWithPipelining) {
  StartSink({});
  if (IsSkipped())
    return;
  SmtpClientSession s(Server());
  std::vector<Message> messages;
  for (int i = 0; i < 3; ++i) {
    messages.push_back(
        Make("alice@example.org",
             {absl::StrCat("r", i, "a@example.com"), absl::StrCat("r", i, "b@example.com")},
             absl::StrCat("Subject: m", i,
                          "\r\n\r\nfirst\r\n.leading dot\r\n..two dots\r\n.\r\n"
                          "last\r\n")));
  }
  auto results = Deliver(s, messages);
  ASSERT_EQ(results.size(), 3u);
  for (const auto& r : results) {
    ASSERT_EQ(r.size(), 2u);
    for (const auto& one : r) {
      EXPECT_EQ(one.outcome, Outcome::kSent) << one.reason;
      EXPECT_EQ(one.dsn, "2.0.0");
    }
  }
  EXPECT_TRUE(s.features().pipelining);
  EXPECT_EQ(s.transactions(), 3);
  ASSERT_TRUE(testing::WaitForText(dump_path(), "Subject: m2"));
  const std::string dump = Dump();
  for (int i = 0; i < 3; ++i) {
    EXPECT_NE(dump.find(absl::StrCat("X-Rcpt-Args: <r", i, "a@example.com>")), std::string::npos);
  }
  // The server un-stuffed exactly what we stuffed: the content arrives unchanged.
  EXPECT_NE(dump.find("\nfirst\n.leading dot\n..two dots\n.\nlast\n"), std::string::npos) << dump;
}

TEST_F(SinkTest, SoftRejectedRecipientsAreDeferredInLockStep) {
  StartSink({"-r", "RCPT"});  // implies no PIPELINING
  if (IsSkipped())
    return;
  SmtpClientSession s(Server());
  auto results = Deliver(s, {Make("a@example.org", {"x@example.com"}, "Subject: x\r\n\r\nx\r\n")});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_FALSE(s.features().pipelining);
  EXPECT_EQ(results[0][0].outcome, Outcome::kDeferred);
  EXPECT_EQ(results[0][0].dsn, "4.3.0");
  EXPECT_EQ(results[0][0].reason,
            "host 127.0.0.1[127.0.0.1] said: 450 4.3.0 Error: command failed (in reply to RCPT "
            "TO command)");
}

TEST_F(SinkTest, HardRejectedMailBouncesEveryRecipient) {
  StartSink({"-f", "MAIL"});
  if (IsSkipped())
    return;
  SmtpClientSession s(Server());
  auto results =
      Deliver(s, {Make("a@example.org", {"x@example.com", "y@example.com"}, "Subject: x\r\n\r\n")});
  ASSERT_EQ(results.size(), 1u);
  for (const auto& r : results[0]) {
    EXPECT_EQ(r.outcome, Outcome::kBounced);
    EXPECT_EQ(r.reason,
              "host 127.0.0.1[127.0.0.1] said: 500 5.3.0 Error: command failed (in reply to MAIL "
              "FROM command)");
  }
}

TEST_F(SinkTest, ServerWithoutEsmtpGetsHelo) {
  StartSink({"-e"});
  if (IsSkipped())
    return;
  SmtpClientSession s(Server());
  auto results =
      Deliver(s, {Make("a@example.org", {"x@example.com"}, "Subject: x\r\n\r\nbody\r\n")});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0][0].outcome, Outcome::kSent) << results[0][0].reason;
  EXPECT_FALSE(s.features().esmtp);
  ASSERT_TRUE(testing::WaitForText(dump_path(), "X-Client-Proto: SMTP"));
}

TEST_F(SinkTest, DisconnectDuringRcptDefersWithLostConnection) {
  StartSink({"-q", "RCPT"});
  if (IsSkipped())
    return;
  SmtpClientSession s(Server());
  auto results = Deliver(s, {Make("a@example.org", {"x@example.com"}, "Subject: x\r\n\r\n")});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0][0].outcome, Outcome::kDeferred);
  EXPECT_EQ(results[0][0].dsn, "4.4.2");
  EXPECT_EQ(results[0][0].reason,
            "lost connection with 127.0.0.1[127.0.0.1] while sending RCPT TO");
  EXPECT_TRUE(results[0][0].site_failure);
}

TEST_F(SinkTest, GoodbyeAtDataDefersAndCloses) {
  StartSink({"-Q", "DATA"});
  if (IsSkipped())
    return;
  SmtpClientSession s(Server());
  auto results = Deliver(s, {Make("a@example.org", {"x@example.com"}, "Subject: x\r\n\r\n")});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0][0].outcome, Outcome::kDeferred);
  EXPECT_EQ(results[0][0].reason.rfind("host 127.0.0.1[127.0.0.1] said: 421 ", 0), 0u)
      << results[0][0].reason;
  EXPECT_NE(results[0][0].reason.find("(in reply to DATA command)"), std::string::npos);
  EXPECT_FALSE(s.CanReuse());
}

TEST_F(SinkTest, ConnectionRefused) {
  port_ = testing::FreePort();  // nothing listens there
  SmtpClientSession s(Server());
  auto results = Deliver(s, {Make("a@example.org", {"x@example.com"}, "")});
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0][0].outcome, Outcome::kDeferred);
  EXPECT_EQ(results[0][0].reason,
            absl::StrCat("connect to 127.0.0.1[127.0.0.1]:", port_, ": Connection refused"));
}

}  // namespace
}  // namespace moat::client
