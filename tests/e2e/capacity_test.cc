// End-to-end capacity test of the inbound path (owner: "inbound-bench"): the real `moat serve`
// (two shards) holds 2,000 SMTP sessions open at once. Every client gets its greeting, all
// say EHLO before any reply is read (2,000 sessions active in the same instant), a random
// subset (fixed seed) completes a transaction that is queued, every session ends with QUIT or
// an abrupt close, and the daemon's `moat stats` shows connections_open back at 0. Clients
// come from eight loopback addresses so both shards and the client-IP steering take part.
// Under AddressSanitizer the same test runs with 1,000 sessions to stay within CI's budget.
#include <signal.h>

#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

#include "tests/reactor/loopback.h"  // RaiseFdLimit()
#include "tests/testing/smtp_client.h"
#include "tests/testing/testing.h"

namespace moat {
namespace {

using testing::ReplyCode;
using testing::SmtpClient;

#if defined(__SANITIZE_ADDRESS__)
constexpr int kSessions = 1000;
#else
constexpr int kSessions = 2000;
#endif
constexpr int kSourceAddresses = 8;
constexpr int kTransactionOneIn = 10;  // share of sessions that send a message

// A counter from `moat stats` ("name: value" lines); -1 if absent or unreadable.
int64_t StatsCounter(const std::string& config_dir, const std::string& name) {
  testing::RunResult r = testing::RunMoat({"stats", "-c", config_dir});
  if (r.exit_code != 0) {
    return -1;
  }
  std::string key = name + ": ";
  size_t at = r.out.find(key);
  if (at == std::string::npos || (at > 0 && r.out[at - 1] != '\n')) {
    return -1;
  }
  size_t end = r.out.find('\n', at);
  int64_t value = -1;
  if (!absl::SimpleAtoi(r.out.substr(at + key.size(), end - at - key.size()), &value)) {
    return -1;
  }
  return value;
}

// Polls `moat stats` until `name` equals `want`, at most ~30 s. Returns the last value.
int64_t WaitForCounter(const std::string& config_dir, const std::string& name, int64_t want) {
  int64_t value = -1;
  for (int i = 0; i < 300; ++i) {
    value = StatsCounter(config_dir, name);
    if (value == want) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return value;
}

TEST(CapacityTest, TwoThousandConcurrentSessionsAgainstServe) {
  // The test holds kSessions sockets, the daemon as many plus its own.
  if (!reactor::testing::RaiseFdLimit(2 * kSessions + 512)) {
    GTEST_SKIP() << "RLIMIT_NOFILE hard limit is below " << 2 * kSessions + 512;
  }
  testing::TempDir dir;
  int port = testing::FreePort();
  dir.Write("relay_recipients", "alice@example.com OK\nbob@example.com OK\n");
  dir.Write("transport", "example.com smtp:[127.0.0.1]:2\n");  // nothing listens: deferred
  for (const char* table : {"relay_recipients", "transport"}) {
    auto r = testing::RunMoat({"postmap", "hash:" + dir.path() + "/" + table});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  dir.Write("main.cf",
            absl::StrCat("myhostname = mx.example.net\n"
                         "mydestination =\n"
                         "local_recipient_maps =\n"
                         "mynetworks = 127.0.0.1/32\n"
                         "relay_domains = example.com\n"
                         "relay_recipient_maps = hash:",
                         dir.path(), "/relay_recipients\n", "transport_maps = hash:", dir.path(),
                         "/transport\n", "queue_directory = ", dir.path(), "/queue\n",
                         "moat_listen = 127.0.0.1:", port, "\n",
                         "moat_shards = 2\n"
                         // 2,000 sessions from 8 addresses: 250 per client, over the default 50.
                         "smtpd_client_connection_count_limit = 0\n"));
  testing::Process server({testing::MoatBinary(), "serve", "-c", dir.path()});
  ASSERT_TRUE(testing::WaitForPort(port)) << server.Stderr();

  // 1. Open every session and read its greeting; all stay open.
  std::vector<std::unique_ptr<SmtpClient>> clients;
  clients.reserve(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    auto c = std::make_unique<SmtpClient>();
    std::string source = absl::StrCat("127.0.0.", 2 + i % kSourceAddresses);
    ASSERT_TRUE(c->Connect(port, "127.0.0.1", source)) << "session " << i;
    std::string greeting = c->ReadReply();
    ASSERT_EQ(ReplyCode(greeting), 220) << "session " << i << ": " << greeting << server.Stderr();
    clients.push_back(std::move(c));
  }
  EXPECT_EQ(WaitForCounter(dir.path(), "connections_open", kSessions), kSessions);

  // 2. EHLO on every session before reading any reply: all are busy at once.
  for (int i = 0; i < kSessions; ++i) {
    ASSERT_TRUE(clients[i]->Send("EHLO client.example.org\r\n")) << "session " << i;
  }
  for (int i = 0; i < kSessions; ++i) {
    std::string ehlo = clients[i]->ReadReply();
    ASSERT_EQ(ReplyCode(ehlo), 250) << "session " << i << ": " << ehlo;
  }

  // 3. A random subset completes a transaction.
  std::mt19937 random(20261123);
  std::vector<bool> sends(kSessions, false);
  int expected_messages = 0;
  for (int i = 0; i < kSessions; ++i) {
    sends[i] = random() % kTransactionOneIn == 0;
    if (!sends[i]) {
      continue;
    }
    std::string reply = clients[i]->SendMail(
        "sender@example.org", i % 2 == 0 ? "alice@example.com" : "bob@example.com",
        absl::StrCat("Subject: capacity ", i, "\r\n\r\nsession ", i, "\r\n"));
    ASSERT_FALSE(testing::QueuedId(reply).empty()) << "session " << i << ": " << reply;
    ++expected_messages;
  }
  ASSERT_GT(expected_messages, 0);

  // 4. Every session ends: most say QUIT, every seventh just closes its socket.
  for (int i = 0; i < kSessions; ++i) {
    if (i % 7 == 0) {
      clients[i]->Close();
      continue;
    }
    ASSERT_EQ(clients[i]->Command("QUIT"), "221 2.0.0 Bye\r\n") << "session " << i;
    EXPECT_TRUE(clients[i]->WaitClosed()) << "session " << i;
    clients[i]->Close();
  }
  EXPECT_EQ(WaitForCounter(dir.path(), "connections_open", 0), 0) << server.Stderr();
  EXPECT_EQ(StatsCounter(dir.path(), "messages_accepted"), expected_messages);
  EXPECT_GE(StatsCounter(dir.path(), "connections_total"), kSessions);
  EXPECT_EQ(StatsCounter(dir.path(), "connections_refused"), 0);
  EXPECT_EQ(server.Stop(SIGTERM), 0) << server.Stderr();
}

}  // namespace
}  // namespace moat
