// End-to-end tests of the inbound path: the real `moat serve` binary on a loopback port,
// driven by real SMTP clients (a raw socket client here, Python's smtplib and swaks), with
// a configuration like seed 001's gateway (relay example.com, reject unknown recipients at
// RCPT from relay_recipient_maps). What they check: the replies an operator sees, the 250
// only for a message that is in the spool, and that nothing acknowledged is lost when the
// daemon is killed with SIGKILL under load.
#include <signal.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "queue/spool.h"
#include "tests/testing/smtp_client.h"
#include "tests/testing/testing.h"

namespace moat {
namespace {

using testing::ReplyCode;
using testing::SmtpClient;

class ServeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = testing::FreePort();
    dir_.Write("relay_recipients",
               "# valid recipients of the relayed domain\n"
               "alice@example.com   OK\n"
               "bob@example.com     x\n");
    dir_.Write("transport", "example.com   smtp:[127.0.0.1]:2\n");
    dir_.Write("virtual", "postmaster   alice@example.com\n");
    WriteConfig("");
    for (const char* table : {"relay_recipients", "transport", "virtual"}) {
      auto r = testing::RunMoat({"postmap", "hash:" + dir_.path() + "/" + table});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
  }

  void WriteConfig(const std::string& extra) {
    dir_.Write("main.cf", absl::StrCat(
        "myhostname = mx.example.net\n"
        "mydestination =\n"
        "local_recipient_maps =\n"
        "local_transport = error:local mail delivery is disabled\n"
        "mynetworks = 127.0.0.1/32\n"
        "relay_domains = example.com\n"
        "parent_domain_matches_subdomains = debug_peer_list smtpd_access_maps\n"
        "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
        "relay_recipient_maps = hash:", dir_.path(), "/relay_recipients\n"
        "transport_maps = hash:", dir_.path(), "/transport\n"
        "virtual_alias_maps = hash:", dir_.path(), "/virtual\n"
        "queue_directory = ", dir_.path(), "/queue\n"
        "moat_listen = 127.0.0.1:", port_, "\n"
        "moat_shards = 2\n", extra));
  }

  std::unique_ptr<testing::Process> StartServer() {
    auto p = std::make_unique<testing::Process>(
        std::vector<std::string>{testing::MoatBinary(), "serve", "-c", dir_.path()});
    EXPECT_TRUE(testing::WaitForPort(port_)) << p->Stderr();
    return p;
  }

  // Connects from `source` (a 127.0.0.x address outside mynetworks unless 127.0.0.1).
  void Connect(SmtpClient& c, const std::string& source = "127.0.0.2") {
    ASSERT_TRUE(c.Connect(port_, "127.0.0.1", source));
    std::string greeting = c.ReadReply();
    ASSERT_EQ(ReplyCode(greeting), 220) << greeting;
    ASSERT_EQ(ReplyCode(c.Command("EHLO client.example.org")), 250);
  }

  // Every message in the spool (the daemon must be stopped), by queue ID.
  std::set<std::string> SpooledQueueIds() {
    std::set<std::string> ids;
    for (int shard = 0; shard < 2; ++shard) {
      queue::SpoolOptions options;
      options.directory = absl::StrCat(dir_.path(), "/queue/spool/", shard);
      options.shard = static_cast<uint32_t>(shard);
      queue::LogReporter reporter;
      auto spool = queue::Spool::Open(options, reporter);
      EXPECT_TRUE(spool.ok()) << spool.status();
      if (!spool.ok()) {
        continue;
      }
      (*spool)->index().ForEachPending(
          [&](const queue::QueuedMessage& m) { ids.insert(m.envelope.queue_id); });
    }
    return ids;
  }

  testing::TempDir dir_;
  int port_ = 0;
};

TEST_F(ServeTest, KnownRecipientIsQueuedAfterItIsDurable) {
  auto server = StartServer();
  SmtpClient c;
  Connect(c);
  std::string reply = c.SendMail("sender@example.org", "alice@example.com",
                                 "Subject: hello\r\nMessage-ID: <m1@example.org>\r\n\r\nHi.\r\n");
  EXPECT_EQ(ReplyCode(reply), 250) << reply;
  EXPECT_NE(reply.find("2.0.0 Ok: queued as "), std::string::npos) << reply;
  std::string id = testing::QueuedId(reply);
  EXPECT_EQ(ReplyCode(c.Command("QUIT")), 221);
  ASSERT_EQ(server->Stop(SIGTERM), 0) << server->Stderr();
  std::set<std::string> ids = SpooledQueueIds();
  EXPECT_EQ(ids.count(id), 1u) << "queued as " << id << " but not in the spool";
  EXPECT_NE(server->Stderr().find(id + ": from=<sender@example.org>"), std::string::npos)
      << server->Stderr();
}

TEST_F(ServeTest, UnknownRecipientIsRejectedAtRcptWithPostfixsReply) {
  auto server = StartServer();
  SmtpClient c;
  Connect(c);
  ASSERT_EQ(ReplyCode(c.Command("MAIL FROM:<sender@example.org>")), 250);
  std::string reply = c.Command("RCPT TO:<nobody@example.com>");
  EXPECT_EQ(reply,
            "550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown in relay "
            "recipient table\r\n");
  server->Stop(SIGTERM);
  EXPECT_NE(server->Stderr().find("NOQUEUE: reject: RCPT from unknown[127.0.0.2]: 550 5.1.1 "
                                  "<nobody@example.com>"),
            std::string::npos)
      << server->Stderr();
}

TEST_F(ServeTest, OtherDomainsAndSubdomainsAreRelayAccessDenied) {
  auto server = StartServer();
  SmtpClient c;
  Connect(c);
  ASSERT_EQ(ReplyCode(c.Command("MAIL FROM:<sender@example.org>")), 250);
  // As Postfix 3.x: smtpd_relay_restrictions (default permit_mynetworks,
  // permit_sasl_authenticated, defer_unauth_destination) runs before the recipient
  // restrictions, so seed 001's configuration answers 454, not 554.
  EXPECT_EQ(c.Command("RCPT TO:<someone@elsewhere.org>"),
            "454 4.7.1 <someone@elsewhere.org>: Relay access denied\r\n");
  // Seed 001's point: relay_domains = example.com must not relay anything.example.com.
  EXPECT_EQ(c.Command("RCPT TO:<alice@anything.example.com>"),
            "454 4.7.1 <alice@anything.example.com>: Relay access denied\r\n");
}

TEST_F(ServeTest, RejectUnauthDestinationInRelayRestrictionsAnswers554) {
  WriteConfig("smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n");
  auto server = StartServer();
  SmtpClient c;
  Connect(c);
  ASSERT_EQ(ReplyCode(c.Command("MAIL FROM:<sender@example.org>")), 250);
  EXPECT_EQ(c.Command("RCPT TO:<someone@elsewhere.org>"),
            "554 5.7.1 <someone@elsewhere.org>: Relay access denied\r\n");
}

TEST_F(ServeTest, MynetworksMayRelayAnywhere) {
  auto server = StartServer();
  SmtpClient c;
  Connect(c, "127.0.0.1");
  ASSERT_EQ(ReplyCode(c.Command("MAIL FROM:<app@example.com>")), 250);
  EXPECT_EQ(ReplyCode(c.Command("RCPT TO:<someone@elsewhere.org>")), 250);
}

TEST_F(ServeTest, PythonSmtplibSendsThroughTheRelay) {
  auto server = StartServer();
  const std::string script = absl::StrCat(
      "import smtplib, sys\n"
      "s = smtplib.SMTP('127.0.0.1', ", port_, ", source_address=('127.0.0.3', 0))\n"
      "s.ehlo('client.example.org')\n"
      "assert s.has_extn('pipelining') and s.has_extn('size') and s.has_extn('8bitmime')\n"
      "refused = s.sendmail('a@example.org', ['alice@example.com', 'bob@example.com'],\n"
      "                     b'Subject: t\\r\\n\\r\\nbody\\r\\n')\n"
      "assert refused == {}, refused\n"
      "try:\n"
      "    s.sendmail('a@example.org', ['ghost@example.com'], b'x\\r\\n')\n"
      "    print('accepted an unknown recipient')\n"
      "    sys.exit(1)\n"
      "except smtplib.SMTPRecipientsRefused as e:\n"
      "    code, text = e.recipients['ghost@example.com']\n"
      "    assert code == 550, code\n"
      "    assert b'5.1.1' in text, text\n"
      "s.quit()\n"
      "print('ok')\n");
  auto r = testing::Run({MOAT_PYTHON, "-c", script});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << server->Stderr();
  EXPECT_EQ(r.out, "ok\n");
}

TEST_F(ServeTest, SwaksSessionGetsQueued) {
  auto server = StartServer();
  auto r = testing::Run({"swaks", "--server", "127.0.0.1", "--port", std::to_string(port_),
                         "--from", "sender@example.org", "--to", "bob@example.com",
                         "--helo", "swaks.example.org", "--pipeline"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("250 2.0.0 Ok: queued as"), std::string::npos) << r.out;
}

TEST_F(ServeTest, PostmasterAtOurAddressLiteralWorksThroughVirtualAliases) {
  auto server = StartServer();
  SmtpClient c;
  Connect(c);
  ASSERT_EQ(ReplyCode(c.Command("MAIL FROM:<sender@example.org>")), 250);
  std::string reply = c.Command("RCPT TO:<postmaster@[127.0.0.1]>");
  EXPECT_EQ(ReplyCode(reply), 250) << reply;
}

TEST_F(ServeTest, SigtermFinishesAndRestartRecoversTheSpool) {
  std::string id;
  {
    auto server = StartServer();
    SmtpClient c;
    Connect(c);
    std::string reply = c.SendMail("s@example.org", "alice@example.com", "Subject: x\r\n\r\nx\r\n");
    ASSERT_EQ(ReplyCode(reply), 250) << reply;
    id = testing::QueuedId(reply);
    // A session still open at SIGTERM is told 421 and the daemon exits 0.
    kill(server->pid(), SIGTERM);
    std::string bye = c.ReadReply();
    EXPECT_EQ(ReplyCode(bye), 421) << bye;
    EXPECT_EQ(server->Wait(std::chrono::seconds(30)), 0) << server->Stderr();
  }
  auto server = StartServer();
  server->Stop(SIGTERM);
  EXPECT_NE(server->Stderr().find("spool recovery: 1 messages"), std::string::npos)
      << server->Stderr();
  EXPECT_EQ(SpooledQueueIds().count(id), 1u);
}

// A second daemon on the same queue directory (same config: it would even share the port
// through SO_REUSEPORT) refuses to start, names the first one, and leaves it serving.
TEST_F(ServeTest, SecondDaemonOnTheSameQueueDirectoryRefusesToStart) {
  auto server = StartServer();
  testing::Process second({testing::MoatBinary(), "serve", "-c", dir_.path()});
  EXPECT_EQ(second.Wait(std::chrono::seconds(30)), 1) << second.Stderr();
  EXPECT_NE(second.Stderr().find(absl::StrCat("in use by another moat (pid ", server->pid())),
            std::string::npos)
      << second.Stderr();
  SmtpClient c;
  Connect(c);
  std::string reply = c.SendMail("s@example.org", "alice@example.com", "Subject: x\r\n\r\nx\r\n");
  EXPECT_EQ(ReplyCode(reply), 250) << reply;
  server->Stop(SIGTERM);
}

// kill -9 under load: every message that got its 250 must be in the spool afterwards.
TEST_F(ServeTest, KillDashNineUnderLoadLosesNoAcknowledgedMessage) {
  auto server = StartServer();
  constexpr int kClients = 8;
  constexpr int kMessagesMax = 400;  // per client; the kill comes long before
  std::atomic<int> acknowledged{0};
  std::vector<std::vector<std::string>> ids(kClients);
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      SmtpClient c;
      if (!c.Connect(port_, "127.0.0.1", absl::StrCat("127.0.0.", 10 + i))) {
        return;
      }
      if (ReplyCode(c.ReadReply()) != 220 || ReplyCode(c.Command("EHLO load.example")) != 250) {
        return;
      }
      for (int m = 0; m < kMessagesMax; ++m) {
        std::string reply = c.SendMail(
            "load@example.org", "alice@example.com",
            absl::StrCat("Message-ID: <", i, ".", m, "@load>\r\n\r\n", std::string(70, 'x'),
                         "\r\n", std::string(70, 'y'), "\r\n"));
        if (ReplyCode(reply) != 250) {
          return;  // the server died
        }
        ids[i].push_back(testing::QueuedId(reply));
        acknowledged.fetch_add(1);
      }
    });
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (acknowledged.load() < 200 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  server->Stop(SIGKILL);
  for (auto& t : clients) {
    t.join();
  }
  ASSERT_GE(acknowledged.load(), 200) << "the load never got going: " << server->Stderr();
  std::set<std::string> spooled = SpooledQueueIds();
  int missing = 0;
  for (const auto& list : ids) {
    for (const std::string& id : list) {
      missing += spooled.count(id) == 0 ? 1 : 0;
    }
  }
  EXPECT_EQ(missing, 0) << "of " << acknowledged.load() << " acknowledged messages";
}

}  // namespace
}  // namespace moat

namespace moat {
namespace {

// moat reload (and SIGHUP): a recompiled recipient table takes effect for new sessions; a
// session that was open before keeps working.
TEST_F(ServeTest, ReloadPicksUpARecompiledTableWithoutDroppingSessions) {
  auto server = StartServer();
  SmtpClient before;
  Connect(before);
  ASSERT_EQ(ReplyCode(before.Command("MAIL FROM:<s@example.org>")), 250);
  EXPECT_EQ(ReplyCode(before.Command("RCPT TO:<carol@example.com>")), 550);
  ASSERT_EQ(ReplyCode(before.Command("RSET")), 250);

  dir_.Write("relay_recipients", "alice@example.com OK\nbob@example.com x\ncarol@example.com OK\n");
  auto postmap = testing::RunMoat({"postmap", "hash:" + dir_.path() + "/relay_recipients"});
  ASSERT_EQ(postmap.exit_code, 0) << postmap.err;
  auto reload = testing::RunMoat({"reload", "-c", dir_.path()});
  ASSERT_EQ(reload.exit_code, 0) << reload.err << server->Stderr();

  SmtpClient after;
  Connect(after);
  ASSERT_EQ(ReplyCode(after.Command("MAIL FROM:<s@example.org>")), 250);
  EXPECT_EQ(ReplyCode(after.Command("RCPT TO:<carol@example.com>")), 250);

  // The session from before the reload goes on (with the rules it started with).
  std::string reply = before.SendMail("s@example.org", "alice@example.com", "Subject: x\r\n\r\nx\r\n");
  EXPECT_EQ(ReplyCode(reply), 250) << reply;

  // SIGHUP does the same.
  kill(server->pid(), SIGHUP);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server->Stderr().find("reload: configuration generation 3") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_NE(server->Stderr().find("reload: configuration generation 3"), std::string::npos)
      << server->Stderr();
}

TEST_F(ServeTest, QueueListShowsWhatIsSpooled) {
  auto server = StartServer();
  SmtpClient c;
  Connect(c);
  std::string reply = c.SendMail("sender@example.org", "bob@example.com", "Subject: q\r\n\r\nq\r\n");
  ASSERT_EQ(ReplyCode(reply), 250) << reply;
  std::string id = testing::QueuedId(reply);
  auto list = testing::RunMoat({"queue", "-c", dir_.path(), "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("-Queue ID-"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find(id), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("sender@example.org"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("bob@example.com"), std::string::npos) << list.out;
  auto show = testing::RunMoat({"queue", "-c", dir_.path(), "show", id});
  EXPECT_EQ(show.exit_code, 0) << show.err;
  EXPECT_NE(show.out.find("Subject: q"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("Received: from"), std::string::npos) << show.out;
  auto missing = testing::RunMoat({"queue", "-c", dir_.path(), "show", "NOSUCHID"});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no such message"), std::string::npos) << missing.err;
  auto stats = testing::RunMoat({"stats", "-c", dir_.path()});
  EXPECT_EQ(stats.exit_code, 0) << stats.err;
  EXPECT_NE(stats.out.find("messages_accepted: 1"), std::string::npos) << stats.out;
  // The one message went into a segment made for it; nothing was final, nothing reclaimed.
  EXPECT_NE(stats.out.find("spool_segments_created: 1\n"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("spool_segments_recycled: 0\n"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("spool_segments_reclaimed: 0\n"), std::string::npos) << stats.out;
  // One message from one session on an idle relay: its batch went at once (no commit delay).
  EXPECT_NE(stats.out.find("spool_delayed_commits: 0\n"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("spool_journal_commits: "), std::string::npos) << stats.out;
}

}  // namespace
}  // namespace moat
