// End-to-end tests of the outbound side: the real `moat serve` relaying to a downstream
// mail server nobody on the project wrote (Python's aiosmtpd, tests/e2e/peers/
// aiosmtpd_sink.py) over loopback. They check what an operator relies on: every accepted
// message arrives once and byte-exact, several ride one connection, a downstream outage
// defers and `moat queue flush` delivers, 4xx is retried, 5xx bounces to the sender (RFC
// 3464 from the null sender), and kill -9 during delivery loses nothing. One test puts a
// private Postfix between moat and the sink: a downstream that offers CHUNKING, so moat's
// BDAT client meets the real thing.
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
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

class DeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    port_ = testing::FreePort();
    sink_port_ = testing::FreePort();
    sink_dir_ = dir_.path() + "/sink";
    next_hop_port_ = sink_port_;
  }

  void Configure(const std::string& extra = "") {
    dir_.Write("transport", absl::StrCat("example.com smtp:[127.0.0.1]:", next_hop_port_, "\n",
                                         "sender.example smtp:[127.0.0.1]:", next_hop_port_,
                                         "\n"));
    auto r = testing::RunMoat({"postmap", "hash:" + dir_.path() + "/transport"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    dir_.Write("main.cf", absl::StrCat(
        "myhostname = mx.example.net\n"
        "mydestination =\n"
        "mynetworks = 127.0.0.1/32\n"
        "relay_domains = example.com\n"
        "transport_maps = hash:", dir_.path(), "/transport\n"
        "queue_directory = ", dir_.path(), "/queue\n"
        "moat_listen = 127.0.0.1:", port_, "\n"
        "moat_shards = 2\n"
        "minimal_backoff_time = 1s\n"
        "maximal_backoff_time = 2s\n"
        "queue_run_delay = 1s\n", extra));
  }

  std::unique_ptr<testing::Process> StartMoat() {
    auto p = std::make_unique<testing::Process>(
        std::vector<std::string>{testing::MoatBinary(), "serve", "-c", dir_.path()});
    EXPECT_TRUE(testing::WaitForPort(port_)) << p->Stderr();
    return p;
  }

  std::unique_ptr<testing::Process> StartSink(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> argv = {MOAT_PYTHON,
                                     testing::SourceDir() + "/tests/e2e/peers/aiosmtpd_sink.py",
                                     "--port", std::to_string(sink_port_), "--dir", sink_dir_,
                                     "--duration", "120"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto p = std::make_unique<testing::Process>(argv);
    EXPECT_TRUE(testing::WaitForPort(sink_port_)) << p->Stderr();
    return p;
  }

  // Messages the sink wrote, by file name.
  std::map<std::string, std::string> Received() {
    std::map<std::string, std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(sink_dir_, ec)) {
      if (e.path().extension() == ".eml") {
        out[e.path().filename().string()] = testing::ReadFile(e.path().string());
      }
    }
    return out;
  }

  bool WaitForReceived(size_t count, std::chrono::seconds timeout = std::chrono::seconds(30)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Received().size() >= count) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  bool WaitForLog(testing::Process& p, const std::string& text,
                  std::chrono::seconds timeout = std::chrono::seconds(30)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (p.Stderr().find(text) != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  // The content after the sink's envelope lines and after moat's Received: header.
  static std::string BodyAfterReceived(const std::string& file) {
    size_t start = file.find("\r\n\r\n");
    if (start == std::string::npos) {
      return "";
    }
    std::string content = file.substr(start + 4);
    if (content.rfind("Received: ", 0) != 0) {
      return content;
    }
    size_t pos = content.find("\r\n");
    while (pos != std::string::npos && pos + 2 < content.size() &&
           (content[pos + 2] == ' ' || content[pos + 2] == '\t')) {
      pos = content.find("\r\n", pos + 2);
    }
    return pos == std::string::npos ? "" : content.substr(pos + 2);
  }

  static std::string Message(int n) {
    return absl::StrCat("From: a@sender.example\r\nTo: user", n, "@example.com\r\n",
                        "Message-ID: <", n, "@test>\r\nSubject: message ", n, "\r\n\r\n",
                        "line one of ", n, "\r\n.a line that starts with a dot\r\n",
                        "\xc3\xa9t\xc3\xa9 8-bit text\r\nlast line\r\n");
  }

  // Connects from 127.0.0.2 (outside mynetworks), reads the greeting and says EHLO.
  void Greet(SmtpClient& c) {
    ASSERT_TRUE(c.Connect(port_, "127.0.0.1", "127.0.0.2"));
    ASSERT_EQ(ReplyCode(c.ReadReply()), 220);
    ASSERT_EQ(ReplyCode(c.Command("EHLO client.example.org")), 250);
  }

  // Messages 0..count-1 from a@sender.example to user<i>@example.com, each accepted (250).
  static void SendNumbered(SmtpClient& c, int count) {
    for (int i = 0; i < count; ++i) {
      std::string reply =
          c.SendMail("a@sender.example", absl::StrCat("user", i, "@example.com"), Message(i));
      ASSERT_EQ(ReplyCode(reply), 250) << reply;
    }
  }

  int Connections() {
    std::string text = testing::ReadFile(sink_dir_ + "/connections");
    return text.empty() ? 0 : std::stoi(text);
  }

  testing::TempDir dir_;
  int port_ = 0;
  int sink_port_ = 0;
  int next_hop_port_ = 0;  // where moat's transport sends example.com and sender.example
  std::string sink_dir_;
};

// A private Postfix instance (Debian's package) on a loopback port: an MX relay for
// example.com and sender.example that knows only `recipients` and forwards to the sink. It
// offers PIPELINING and CHUNKING. Stopped by `postfix stop`, then by its master's PID.
class PrivatePostfix {
 public:
  PrivatePostfix(const std::string& base, int port, int sink_port,
                 const std::vector<std::string>& recipients)
      : base_(base), port_(port) {
    conf_ = base + "/conf";
    const std::string queue = base + "/queue";
    const std::string data = base + "/data";
    for (const std::string& d : {conf_, queue, data}) {
      std::filesystem::create_directories(d);
    }
    if (const passwd* pw = getpwnam("postfix"); pw != nullptr) {
      EXPECT_EQ(chown(data.c_str(), pw->pw_uid, pw->pw_gid), 0);
    }
    std::string rcpt;
    for (const std::string& r : recipients) {
      absl::StrAppend(&rcpt, r, " ok\n");
    }
    Write("relay_recipients", rcpt);
    Write("transport", absl::StrCat("example.com smtp:[127.0.0.1]:", sink_port, "\n",
                                    "sender.example smtp:[127.0.0.1]:", sink_port, "\n"));
    Write("main.cf", absl::StrCat(
        "compatibility_level = 3.6\nqueue_directory = ", queue, "\ndata_directory = ", data,
        "\nmail_owner = postfix\nsetgid_group = postdrop\nmyhostname = postfix.example\n"
        "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\nmydestination =\n"
        "mynetworks = 127.0.0.0/8\nrelay_domains = example.com, sender.example\n"
        "relay_recipient_maps = hash:", conf_, "/relay_recipients\n"
        "transport_maps = hash:", conf_, "/transport\n"
        "smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination\n"
        "smtpd_peername_lookup = no\nlocal_header_rewrite_clients =\n"
        "smtp_tls_security_level = none\n"
        "smtpd_tls_security_level = none\nmaillog_file_prefixes = ", base,
        "\nmaillog_file = ", base, "/maillog\nnotify_classes =\n"));
    std::string master = absl::StrCat("127.0.0.1:", port, " inet n - n - - smtpd\n");
    for (const char* service :
         {"cleanup unix n - n - 0 cleanup", "qmgr unix n - n 300 1 qmgr",
          "rewrite unix - - n - - trivial-rewrite", "bounce unix - - n - 0 bounce",
          "defer unix - - n - 0 bounce", "trace unix - - n - 0 bounce",
          "verify unix - - n - 1 verify", "proxymap unix - - n - - proxymap",
          "smtp unix - - n - - smtp", "relay unix - - n - - smtp",
          "showq unix n - n - - showq", "error unix - - n - - error",
          "retry unix - - n - - error", "discard unix - - n - - discard",
          "anvil unix - - n - 1 anvil", "scache unix - - n - 1 scache",
          "postlog unix-dgram n - n - 1 postlogd", "pickup unix n - n 60 1 pickup",
          "flush unix n - n 1000? 0 flush"}) {
      absl::StrAppend(&master, service, "\n");
    }
    Write("master.cf", master);
    for (const char* table : {"relay_recipients", "transport"}) {
      auto r = testing::Run({"postmap", "-c", conf_, absl::StrCat("hash:", conf_, "/", table)});
      EXPECT_EQ(r.exit_code, 0) << r.err;
    }
  }
  ~PrivatePostfix() {
    if (master_pid_ <= 0) {
      return;
    }
    testing::Run({"postfix", "-c", conf_, "stop"}, "", std::chrono::seconds(30));
    for (int i = 0; i < 100 && kill(master_pid_, 0) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (kill(master_pid_, 0) == 0) {
      kill(master_pid_, SIGKILL);
    }
  }

  bool Start() {
    auto r = testing::Run({"postfix", "-c", conf_, "start"}, "", std::chrono::seconds(60));
    const std::string pidfile = base_ + "/queue/pid/master.pid";
    for (int i = 0; i < 100 && !std::filesystem::exists(pidfile); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const std::string pid = testing::ReadFile(pidfile);
    if (r.exit_code != 0 || pid.empty()) {
      ADD_FAILURE() << "postfix start: " << r.exit_code << " " << r.out << r.err << Log();
      return false;
    }
    master_pid_ = std::stoi(pid);
    return testing::WaitForPort(port_);
  }

  std::string Log() const { return testing::ReadFile(base_ + "/maillog"); }

 private:
  void Write(const std::string& name, const std::string& text) {
    std::ofstream(conf_ + "/" + name) << text;
  }

  std::string base_;
  std::string conf_;
  int port_;
  pid_t master_pid_ = -1;
};

TEST_F(DeliveryTest, EveryMessageArrivesOnceByteExactAndConnectionsAreReused) {
  // One connection per shard to the destination: every further message must reuse it.
  Configure("default_destination_concurrency_limit = 1\n");
  auto sink = StartSink();
  auto moat = StartMoat();
  constexpr int kMessages = 30;
  SmtpClient c;
  ASSERT_NO_FATAL_FAILURE(Greet(c));
  ASSERT_NO_FATAL_FAILURE(SendNumbered(c, kMessages));
  ASSERT_TRUE(WaitForReceived(kMessages)) << moat->Stderr();
  // A moment for any duplicate to show up.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto received = Received();
  ASSERT_EQ(received.size(), static_cast<size_t>(kMessages)) << "duplicates arrived";
  std::set<std::string> bodies;
  for (const auto& [name, file] : received) {
    bodies.insert(BodyAfterReceived(file));
    EXPECT_NE(file.find("X-Envelope-From: <a@sender.example>"), std::string::npos) << file;
  }
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(bodies.count(Message(i)), 1u) << "message " << i << " not byte-exact";
  }
  // At most one connection per shard at a time; the cache carried the rest (a connection
  // idle for smtp_connection_cache_time_limit may be replaced, hence some slack).
  EXPECT_LE(Connections(), 4) << moat->Stderr();
  EXPECT_NE(moat->Stderr().find("conn_use="), std::string::npos);
  EXPECT_NE(moat->Stderr().find("status=sent"), std::string::npos);
}

TEST_F(DeliveryTest, DownstreamDownDefersAndQueueFlushDeliversWhenItIsBack) {
  // Long backoff: only the flush can bring the messages out in this test's time.
  Configure("minimal_backoff_time = 1h\nmaximal_backoff_time = 2h\nqueue_run_delay = 1h\n");
  auto moat = StartMoat();
  SmtpClient c;
  ASSERT_NO_FATAL_FAILURE(Greet(c));
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(ReplyCode(c.SendMail("a@sender.example", "user@example.com", Message(i))), 250);
  }
  ASSERT_TRUE(WaitForLog(*moat, "status=deferred")) << moat->Stderr();
  auto list = testing::RunMoat({"queue", "-c", dir_.path(), "list"});
  EXPECT_EQ(list.exit_code, 0) << list.err;
  EXPECT_NE(list.out.find("Connection refused"), std::string::npos) << list.out;
  EXPECT_NE(list.out.find("-- "), std::string::npos) << list.out;

  auto sink = StartSink();
  auto flush = testing::RunMoat({"queue", "-c", dir_.path(), "flush"});
  EXPECT_EQ(flush.exit_code, 0) << flush.err;
  EXPECT_TRUE(WaitForReceived(3)) << moat->Stderr();
  auto empty = testing::RunMoat({"queue", "-c", dir_.path(), "list"});
  EXPECT_TRUE(WaitForLog(*moat, "removed"));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (empty.out != "Mail queue is empty\n" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    empty = testing::RunMoat({"queue", "-c", dir_.path(), "list"});
  }
  EXPECT_EQ(empty.out, "Mail queue is empty\n");
}

TEST_F(DeliveryTest, TemporaryFailureIsRetriedUntilItSucceeds) {
  Configure();
  auto sink = StartSink({"--tempfail-first", "1"});
  auto moat = StartMoat();
  SmtpClient c;
  ASSERT_NO_FATAL_FAILURE(Greet(c));
  ASSERT_EQ(ReplyCode(c.SendMail("a@sender.example", "user@example.com", Message(7))), 250);
  ASSERT_TRUE(WaitForReceived(1)) << moat->Stderr();
  // The sink writes the message before it answers 250, and moat logs status=sent only after it
  // read that reply: wait for the line rather than race it.
  ASSERT_TRUE(WaitForLog(*moat, "status=sent")) << moat->Stderr();
  std::string log = moat->Stderr();
  size_t deferred = log.find("status=deferred");
  size_t sent = log.find("status=sent");
  ASSERT_NE(deferred, std::string::npos) << log;
  ASSERT_NE(sent, std::string::npos) << log;
  EXPECT_LT(deferred, sent);
  EXPECT_NE(log.find("451 4.3.0 Try again later"), std::string::npos) << log;
}

TEST_F(DeliveryTest, PermanentFailureBouncesToTheSenderFromTheNullSender) {
  Configure();
  auto sink = StartSink({"--reject-rcpt", "nobody"});
  auto moat = StartMoat();
  SmtpClient c;
  ASSERT_NO_FATAL_FAILURE(Greet(c));
  ASSERT_EQ(ReplyCode(c.SendMail("owner@sender.example", "nobody@example.com", Message(9))), 250);
  ASSERT_TRUE(WaitForReceived(1)) << moat->Stderr();
  auto received = Received();
  const std::string& dsn = received.begin()->second;
  EXPECT_NE(dsn.find("X-Envelope-From: <>"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("X-Envelope-To: <owner@sender.example>"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("multipart/report"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("report-type=delivery-status"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("Status: 5.1.1"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("Message-ID: <9@test>"), std::string::npos) << "original headers";
  EXPECT_TRUE(WaitForLog(*moat, "status=bounced")) << moat->Stderr();
  // A bounce is never bounced: the null sender gets no notification.
}

// RFC 3461 NOTIFY=SUCCESS to a next hop that does not offer DSN (the sink): moat reports the
// recipient as "relayed" to the sender, as Postfix does.
TEST_F(DeliveryTest, NotifySuccessGetsARelayedNotification) {
  Configure();
  auto sink = StartSink();
  auto moat = StartMoat();
  SmtpClient c;
  ASSERT_NO_FATAL_FAILURE(Greet(c));
  ASSERT_EQ(ReplyCode(c.Command("MAIL FROM:<owner@sender.example> ENVID=env-42")), 250);
  ASSERT_EQ(ReplyCode(c.Command("RCPT TO:<user@example.com> NOTIFY=SUCCESS,FAILURE "
                                "ORCPT=rfc822;user@example.com")),
            250);
  ASSERT_EQ(ReplyCode(c.Command("DATA")), 354);
  ASSERT_TRUE(c.Send("Message-ID: <notify-success@test>\r\nSubject: s\r\n\r\nbody\r\n.\r\n"));
  ASSERT_EQ(ReplyCode(c.ReadReply()), 250);
  ASSERT_TRUE(WaitForReceived(2)) << moat->Stderr();
  std::string dsn;
  for (const auto& [name, file] : Received()) {
    if (file.find("X-Envelope-From: <>") != std::string::npos) {
      dsn = file;
    }
  }
  ASSERT_FALSE(dsn.empty()) << moat->Stderr();
  EXPECT_NE(dsn.find("X-Envelope-To: <owner@sender.example>"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("Action: relayed"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("Original-Envelope-Id: env-42"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("Message-ID: <notify-success@test>"), std::string::npos) << dsn;
  EXPECT_TRUE(WaitForLog(*moat, "sender delivery status notification: ")) << moat->Stderr();

  // Without NOTIFY=SUCCESS nothing is sent on success.
  ASSERT_EQ(ReplyCode(c.SendMail("owner@sender.example", "user@example.com", Message(3))), 250);
  ASSERT_TRUE(WaitForReceived(3)) << moat->Stderr();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(Received().size(), 3u) << "a notification nobody asked for";
}

// delay_warning_time: a message still deferred after it gets one "delayed" notification to its
// sender (the recipient's next hop is down; the sender's route works).
TEST_F(DeliveryTest, DelayWarningTimeSendsADelayedNotification) {
  const int down_port = testing::FreePort();  // nothing listens there
  Configure("relay_domains = example.com, slow.example\ndelay_warning_time = 1s\n");
  dir_.Write("transport", absl::StrCat("example.com smtp:[127.0.0.1]:", sink_port_, "\n",
                                       "sender.example smtp:[127.0.0.1]:", sink_port_, "\n",
                                       "slow.example smtp:[127.0.0.1]:", down_port, "\n"));
  auto r = testing::RunMoat({"postmap", "hash:" + dir_.path() + "/transport"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto sink = StartSink();
  auto moat = StartMoat();
  SmtpClient c;
  ASSERT_NO_FATAL_FAILURE(Greet(c));
  ASSERT_EQ(ReplyCode(c.SendMail("owner@sender.example", "user@slow.example", Message(5))), 250);
  ASSERT_TRUE(WaitForReceived(1)) << moat->Stderr();
  const std::string dsn = Received().begin()->second;
  EXPECT_NE(dsn.find("X-Envelope-From: <>"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("X-Envelope-To: <owner@sender.example>"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("Action: delayed"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("Final-Recipient: rfc822; user@slow.example"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("Message-ID: <5@test>"), std::string::npos) << "original headers\n" << dsn;
  EXPECT_TRUE(WaitForLog(*moat, "sender delay notification: ")) << moat->Stderr();
  // One warning per message, not one per retry.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_EQ(Received().size(), 1u) << moat->Stderr();
}

// A queue beyond moat_queue_content_memory keeps its content on disk only: every delivery
// attempt and every bounce reads the message back from the spool (budget 0: always), and what
// arrives is still byte-exact.
TEST_F(DeliveryTest, ContentBeyondTheMemoryBudgetIsReadBackFromTheSpool) {
  Configure("moat_queue_content_memory = 0\n"
            "minimal_backoff_time = 1h\nmaximal_backoff_time = 2h\nqueue_run_delay = 1h\n");
  auto moat = StartMoat();
  SmtpClient c;
  ASSERT_NO_FATAL_FAILURE(Greet(c));
  constexpr int kMessages = 5;
  ASSERT_NO_FATAL_FAILURE(SendNumbered(c, kMessages));
  ASSERT_EQ(ReplyCode(c.SendMail("owner@sender.example", "nobody@example.com", Message(9))), 250);
  // Downstream down: the first attempts (read back from the spool) fail, the destination is
  // throttled and every message deferred.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    std::string log = moat->Stderr();
    size_t n = 0;
    for (size_t at = log.find("status=deferred"); at != std::string::npos;
         at = log.find("status=deferred", at + 1)) {
      ++n;
    }
    if (n >= kMessages + 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }

  auto sink = StartSink({"--reject-rcpt", "nobody"});
  auto flush = testing::RunMoat({"queue", "-c", dir_.path(), "flush"});
  EXPECT_EQ(flush.exit_code, 0) << flush.err;
  // The five messages and the bounce of the sixth (to sender.example, the same sink).
  ASSERT_TRUE(WaitForReceived(kMessages + 1)) << moat->Stderr();
  std::set<std::string> bodies;
  std::string dsn;
  for (const auto& [name, file] : Received()) {
    if (file.find("X-Envelope-From: <>") != std::string::npos) {
      dsn = file;
    } else {
      bodies.insert(BodyAfterReceived(file));
    }
  }
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(bodies.count(Message(i)), 1u) << "message " << i << " not byte-exact";
  }
  EXPECT_NE(dsn.find("Message-ID: <9@test>"), std::string::npos)
      << "the bounce carries the original headers, read back from the spool\n" << dsn;
  auto stats = testing::RunMoat({"stats", "-c", dir_.path()});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  const std::string key = "queue_content_reads: ";
  size_t at = stats.out.find(key);
  ASSERT_NE(at, std::string::npos) << stats.out;
  // At least once per delivered message, once for the refused one, once for its bounce.
  EXPECT_GE(std::stoi(stats.out.substr(at + key.size())), kMessages + 2) << stats.out;
  EXPECT_EQ(moat->Stderr().find("cannot read the queued message"), std::string::npos)
      << moat->Stderr();
}

// Issue 5: once every message is delivered and the relay is idle, the spool gives its disk back
// (the current segment too), to a few KiB in all, without a restart.
TEST_F(DeliveryTest, SpoolDiskUsageReturnsToNearZeroWhenEverythingIsDelivered) {
  Configure();
  auto sink = StartSink();
  auto moat = StartMoat();
  constexpr int kMessages = 20;
  SmtpClient c;
  ASSERT_NO_FATAL_FAILURE(Greet(c));
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_EQ(ReplyCode(c.SendMail("a@sender.example", "user@example.com", Message(i))), 250);
  }
  const std::string spool_dir = dir_.path() + "/queue/spool";
  // st_blocks (512-byte units) of every file under the spool: what the disk really holds.
  auto spool_bytes = [&] {
    uint64_t bytes = 0;
    std::error_code ec;
    for (const auto& e : std::filesystem::recursive_directory_iterator(spool_dir, ec)) {
      struct stat st;
      if (e.is_regular_file() && stat(e.path().c_str(), &st) == 0) {
        bytes += static_cast<uint64_t>(st.st_blocks) * 512;
      }
    }
    return bytes;
  };
  EXPECT_GT(spool_bytes(), 0u) << "the accepted messages are on disk";
  ASSERT_TRUE(WaitForReceived(kMessages)) << moat->Stderr();
  auto list = testing::RunMoat({"queue", "-c", dir_.path(), "list"});
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (list.out != "Mail queue is empty\n" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    list = testing::RunMoat({"queue", "-c", dir_.path(), "list"});
  }
  ASSERT_EQ(list.out, "Mail queue is empty\n");
  // Reclaim runs every ~5 s on each shard once messages became final: a generous bounded wait.
  constexpr uint64_t kBoundBytes = 16 * 1024;  // a few KiB per shard (2 shards)
  deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  uint64_t bytes = spool_bytes();
  while (bytes > kBoundBytes && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    bytes = spool_bytes();
  }
  EXPECT_LE(bytes, kBoundBytes) << moat->Stderr();
}

// kill -9 while deliveries journal outcomes, then a restart: every acknowledged message arrives.
// It once lost messages whose records were whole on disk but carried a wrong checksum (an
// uninitialised XXH3 state in Spool::PrepareCommit; SpoolTest.RecordChecksumsDoNotDependOnStack-
// Contents is the deterministic test of that cause). The kill only made recovery read them.
TEST_F(DeliveryTest, KillDashNineDuringDeliveryLosesNothing) {
  Configure();
  auto sink = StartSink();
  constexpr int kMessages = 60;
  {
    auto moat = StartMoat();
    SmtpClient c;
    ASSERT_NO_FATAL_FAILURE(Greet(c));
    for (int i = 0; i < kMessages; ++i) {
      ASSERT_EQ(ReplyCode(c.SendMail("a@sender.example", "user@example.com", Message(i))), 250);
    }
    moat->Stop(SIGKILL);
  }
  auto moat = StartMoat();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::set<std::string> seen;
  while (std::chrono::steady_clock::now() < deadline) {
    seen.clear();
    for (const auto& [name, file] : Received()) {
      seen.insert(BodyAfterReceived(file));
    }
    if (seen.size() >= static_cast<size_t>(kMessages)) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(seen.count(Message(i)), 1u) << "message " << i << " lost" << moat->Stderr();
  }
}

}  // namespace
}  // namespace moat

namespace moat {
namespace {

// Everything after the sink's envelope lines and after every Received: header (Postfix's and
// moat's).
std::string ContentAfterReceivedHeaders(const std::string& file) {
  size_t start = file.find("\r\n\r\n");
  if (start == std::string::npos) {
    return "";
  }
  std::string content = file.substr(start + 4);
  while (content.rfind("Received: ", 0) == 0) {
    size_t pos = content.find("\r\n");
    while (pos != std::string::npos && pos + 2 < content.size() &&
           (content[pos + 2] == ' ' || content[pos + 2] == '\t')) {
      pos = content.find("\r\n", pos + 2);
    }
    if (pos == std::string::npos) {
      return "";
    }
    content = content.substr(pos + 2);
  }
  return content;
}

// moat -> Postfix (CHUNKING) -> sink: moat sends every message with BDAT on reused
// connections, the content arrives byte-exact (a leading dot is not stuffed inside a chunk),
// and a recipient Postfix refuses bounces with Postfix's reply while the connection goes on.
TEST_F(DeliveryTest, PostfixDownstreamGetsBdatByteExactAndRefusalsBounce) {
  if (geteuid() != 0) {
    GTEST_SKIP() << "a private Postfix instance needs root to start (postfix start)";
  }
  const int postfix_port = testing::FreePort();
  constexpr int kMessages = 12;
  std::vector<std::string> known = {"owner@sender.example"};
  for (int i = 0; i < kMessages; ++i) {
    known.push_back(absl::StrCat("user", i, "@example.com"));
  }
  ASSERT_EQ(chmod(dir_.path().c_str(), 0755), 0);  // Postfix's daemons must reach their queue
  PrivatePostfix postfix(dir_.path() + "/postfix", postfix_port, sink_port_, known);
  auto sink = StartSink();
  ASSERT_TRUE(postfix.Start());
  next_hop_port_ = postfix_port;
  Configure("default_destination_concurrency_limit = 1\n");
  auto moat = StartMoat();
  SmtpClient c;
  ASSERT_NO_FATAL_FAILURE(Greet(c));
  ASSERT_NO_FATAL_FAILURE(SendNumbered(c, kMessages));
  ASSERT_EQ(ReplyCode(c.SendMail("owner@sender.example", "nobody@example.com", Message(99))),
            250);
  // The messages and the bounce of the last one (to owner@sender.example, through Postfix).
  ASSERT_TRUE(WaitForReceived(kMessages + 1, std::chrono::seconds(60)))
      << moat->Stderr() << postfix.Log();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto received = Received();
  ASSERT_EQ(received.size(), static_cast<size_t>(kMessages + 1)) << "duplicates arrived";
  std::multiset<std::string> bodies;
  std::string dsn;
  for (const auto& [name, file] : received) {
    if (file.find("X-Envelope-From: <>") != std::string::npos) {
      dsn = file;
      continue;
    }
    bodies.insert(ContentAfterReceivedHeaders(file));
  }
  for (int i = 0; i < kMessages; ++i) {
    EXPECT_EQ(bodies.count(Message(i)), 1u) << "message " << i << " not byte-exact: " << *bodies.begin();
  }
  EXPECT_NE(dsn.find("X-Envelope-To: <owner@sender.example>"), std::string::npos) << dsn;
  EXPECT_NE(dsn.find("Status: 5.1.1"), std::string::npos) << dsn;
  ASSERT_TRUE(WaitForLog(*moat, "status=bounced")) << moat->Stderr();
  EXPECT_NE(moat->Stderr().find("User unknown in relay recipient table (in reply to RCPT TO "
                                "command)"),
            std::string::npos)
      << moat->Stderr();
  // Postfix's smtpd counts the commands of each connection when it ends ("bdat=12 ...").
  // moat's cached connections close after smtp_connection_cache_time_limit (2 s).
  int bdat = 0;
  int data = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string log = postfix.Log();
    bdat = 0;
    data = 0;
    for (size_t at = log.find("disconnect from"); at != std::string::npos;
         at = log.find("disconnect from", at + 1)) {
      const std::string line = log.substr(at, log.find('\n', at) - at);
      if (size_t b = line.find(" bdat="); b != std::string::npos) {
        bdat += std::stoi(line.substr(b + 6));
      }
      if (line.find(" data=") != std::string::npos) {
        ++data;
      }
    }
    if (bdat >= kMessages + 1) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // Every transaction of moat's went as BDAT (the refused one too: its chunk was read and
  // refused), none with DATA, over fewer connections than messages.
  EXPECT_EQ(bdat, kMessages + 1) << postfix.Log();
  EXPECT_EQ(data, 0) << postfix.Log();
  const std::string log = postfix.Log();
  size_t connects = 0;
  for (size_t at = log.find("connect from"); at != std::string::npos;
       at = log.find("connect from", at + 1)) {
    connects += log.compare(at > 3 ? at - 3 : at, 3, "dis") != 0 ? 1 : 0;
  }
  EXPECT_LE(connects, 4u) << log;
}

}  // namespace
}  // namespace moat
