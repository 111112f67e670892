// End-to-end tests of table reloads without a configuration reload (issue 3, item 5): the
// real `moat serve` with a relay_recipient_maps table and moat_table_check_interval = 1s.
// `moat postmap` of a changed source is picked up by the daemon on its own (RCPT for a new
// address turns from 550 to 250 without `moat reload`); a corrupt .moat file swapped in is
// logged and the previous table stays in use; and sessions doing RCPTs see no error while
// the table is swapped 50 times (each swap published by SIGHUP, so the test does not wait
// for the check interval 50 times).
#include <signal.h>
#include <stdio.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/smtp_client.h"
#include "tests/testing/testing.h"

namespace moat {
namespace {

using testing::ReplyCode;
using testing::SmtpClient;

constexpr auto kWaitMax = std::chrono::seconds(30);

class TableReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = testing::FreePort();
    table_ = dir_.path() + "/relay_recipients";
    dir_.Write("main.cf", absl::StrCat(
        "myhostname = mx.example.net\n"
        "mydestination =\n"
        "local_recipient_maps =\n"
        "mynetworks = 127.0.0.1/32\n"
        "relay_domains = example.com\n"
        "relayhost = [127.0.0.1]:2\n"
        "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
        "relay_recipient_maps = hash:", table_, "\n"
        "queue_directory = ", dir_.path(), "/queue\n"
        "moat_listen = 127.0.0.1:", port_, "\n"
        "moat_shards = 2\n"
        "moat_table_check_interval = 1s\n"));
    Postmap("alice@example.com OK\n");
  }

  void Postmap(const std::string& rows) {
    dir_.Write("relay_recipients", rows);
    testing::RunResult r = testing::RunMoat({"postmap", "hash:" + table_});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  std::unique_ptr<testing::Process> StartServer() {
    auto p = std::make_unique<testing::Process>(
        std::vector<std::string>{testing::MoatBinary(), "serve", "-c", dir_.path()});
    EXPECT_TRUE(testing::WaitForPort(port_)) << p->Stderr();
    return p;
  }

  // A session from 127.0.0.2 (outside mynetworks) with MAIL FROM given.
  void Open(SmtpClient& c) {
    ASSERT_TRUE(c.Connect(port_, "127.0.0.1", "127.0.0.2"));
    ASSERT_EQ(ReplyCode(c.ReadReply()), 220);
    ASSERT_EQ(ReplyCode(c.Command("EHLO client.example.org")), 250);
    ASSERT_EQ(ReplyCode(c.Command("MAIL FROM:<s@example.org>")), 250);
  }

  // Waits (bounded) until `text` appears in the daemon's log.
  static bool WaitForLog(testing::Process& server, const std::string& text) {
    auto deadline = std::chrono::steady_clock::now() + kWaitMax;
    while (server.Stderr().find(text) == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) {
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  }

  testing::TempDir dir_;
  std::string table_;
  int port_ = 0;
};

TEST_F(TableReloadTest, PostmapAloneChangesTheAnswerAndACorruptFileKeepsTheOldTable) {
  auto server = StartServer();
  SmtpClient c;
  Open(c);
  std::string reply = c.Command("RCPT TO:<bob@example.com>");
  EXPECT_EQ(ReplyCode(reply), 550) << reply;
  EXPECT_NE(reply.find("5.1.1"), std::string::npos) << reply;
  EXPECT_EQ(ReplyCode(c.Command("RCPT TO:<alice@example.com>")), 250);

  Postmap("alice@example.com OK\nbob@example.com OK\n");
  // No `moat reload`: the daemon notices the new file by itself. Poll, one session per try
  // (so that 550s do not add up to smtpd_soft_error_limit).
  auto deadline = std::chrono::steady_clock::now() + kWaitMax;
  int code = 0;
  for (;;) {
    SmtpClient poll;
    Open(poll);
    code = ReplyCode(poll.Command("RCPT TO:<bob@example.com>"));
    if (code != 550 || std::chrono::steady_clock::now() > deadline) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_EQ(code, 250) << server->Stderr();
  // The session opened before the change sees the new table too.
  EXPECT_EQ(ReplyCode(c.Command("RCPT TO:<bob@example.com>")), 250);
  EXPECT_NE(server->Stderr().find(absl::StrCat("table hash:", table_, " reloaded (2 rows)")),
            std::string::npos)
      << server->Stderr();
  EXPECT_EQ(server->Stderr().find("reload: configuration generation"), std::string::npos)
      << "no configuration reload happened";

  // A corrupt file swapped in (atomically, as an operator's copy would be): logged, and
  // the table in use stays.
  std::string bad = dir_.Write("relay_recipients.moat.bad", std::string(8192, 'x'));
  ASSERT_EQ(rename(bad.c_str(), (table_ + ".moat").c_str()), 0);
  EXPECT_TRUE(WaitForLog(*server, absl::StrCat("table hash:", table_, ": ")))
      << server->Stderr();
  EXPECT_NE(server->Stderr().find("not a moat table"), std::string::npos) << server->Stderr();
  EXPECT_NE(server->Stderr().find("the previous version stays in use"), std::string::npos);
  EXPECT_EQ(ReplyCode(c.Command("RCPT TO:<bob@example.com>")), 250);
  EXPECT_EQ(ReplyCode(c.Command("RCPT TO:<carol@example.com>")), 550);
  SmtpClient later;
  Open(later);
  EXPECT_EQ(ReplyCode(later.Command("RCPT TO:<bob@example.com>")), 250);
  EXPECT_EQ(server->Stop(SIGTERM), 0) << server->Stderr();
}

TEST_F(TableReloadTest, FiftySwapsUnderRcptLoadGiveNoErrors) {
  auto server = StartServer();
  constexpr int kSessions = 3;
  constexpr int kSwaps = 50;
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::atomic<int> rcpts{0};
  std::vector<std::thread> sessions;
  std::vector<std::string> first_error(kSessions);
  for (int s = 0; s < kSessions; ++s) {
    sessions.emplace_back([&, s] {
      // Bounded: at most 20,000 transactions, and the main thread stops it. A new session
      // every 8 transactions stays under smtpd_soft_error_limit (one 550 each) and the RSET
      // junk-command limit.
      std::unique_ptr<SmtpClient> c;
      for (int i = 0; i < 20000 && !stop.load(); ++i) {
        if (i % 8 == 0) {
          c = std::make_unique<SmtpClient>();
          if (!c->Connect(port_, "127.0.0.1", "127.0.0.2") ||
              ReplyCode(c->ReadReply()) != 220 ||
              ReplyCode(c->Command("EHLO load.example.org")) != 250) {
            errors.fetch_add(1);
            return;
          }
        }
        int mail = ReplyCode(c->Command("MAIL FROM:<s@example.org>"));
        int known = ReplyCode(c->Command("RCPT TO:<alice@example.com>"));
        int unknown = ReplyCode(c->Command("RCPT TO:<nobody@example.com>"));
        int rset = ReplyCode(c->Command("RSET"));
        if (mail != 250 || known != 250 || unknown != 550 || rset != 250) {
          if (errors.fetch_add(1) == 0) {
            first_error[s] = absl::StrCat(mail, " ", known, " ", unknown, " ", rset);
          }
          return;
        }
        rcpts.fetch_add(2);
      }
    });
  }
  for (int v = 1; v <= kSwaps && errors.load() == 0; ++v) {
    Postmap(absl::StrCat("alice@example.com OK\nv", v, "@example.com OK\n"));
    kill(server->pid(), SIGHUP);
    ASSERT_TRUE(WaitForLog(*server, absl::StrCat("reload: configuration generation ", v + 1,
                                                 " in use")))
        << server->Stderr();
  }
  stop.store(true);
  for (std::thread& t : sessions) {
    t.join();
  }
  EXPECT_EQ(errors.load(), 0) << absl::StrCat(first_error[0], "|", first_error[1], "|",
                                              first_error[2]);
  EXPECT_GT(rcpts.load(), 0);
  SmtpClient c;
  Open(c);
  EXPECT_EQ(ReplyCode(c.Command(absl::StrCat("RCPT TO:<v", kSwaps, "@example.com>"))), 250);
  EXPECT_EQ(ReplyCode(c.Command("RCPT TO:<v1@example.com>")), 550);
  EXPECT_EQ(server->Stop(SIGTERM), 0) << server->Stderr();
  EXPECT_EQ(server->Stderr().find("stays in use"), std::string::npos) << server->Stderr();
  EXPECT_NE(server->Stderr().find(absl::StrCat("table hash:", table_, " reloaded (2 rows)")),
            std::string::npos);
}

}  // namespace
}  // namespace moat
