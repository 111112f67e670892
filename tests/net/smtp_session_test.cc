// tests/net/smtp_session_test.cc: the SMTP server state machine (net/smtp_session.h),
// driven without sockets: a fake Policy (relay only example.com), a fake MessageSink, and
// the session's output compared to Postfix smtpd's replies. Covers every-byte splits of a
// pipelined session, BDAT, smuggling, limits, error counting, logs and the sink protocol.
#include "net/smtp_session.h"

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "core/log/log.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moat::net {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Relays example.com only; "unknown@example.com" is not a user; "loop@example.com" fails
// alias expansion. Records what it was asked.
class FakePolicy : public Policy {
 public:
  struct Seen {
    PolicyStage stage;
    std::string sender;
    std::string recipient;
    std::string helo;
    bool unauth_pipelining;
  };

  PolicyDecision Check(const PolicyRequest& request) override {
    seen.push_back({request.stage, std::string(request.sender), std::string(request.recipient),
                    std::string(request.helo_name), request.unauth_pipelining});
    if (request.tls) {  // the client certificate as the policy sees it (inbound-tls)
      certificates.push_back(absl::StrFormat("%s|%s|%s", request.client_cert_fingerprint,
                                             request.client_pkey_fingerprint,
                                             request.client_cert_verified ? "trusted" : "untrusted"));
    }
    PolicyDecision d;
    if (request.stage == PolicyStage::kConnect && reject_connect) {
      return {PolicyAction::kReject, 554, "5.7.1",
              absl::StrFormat("<%s>: Client host rejected: Access denied",
                              std::string(request.client_ip))};
    }
    if (request.stage == PolicyStage::kData && reject_data) {
      return {PolicyAction::kReject, 554, "5.5.1", "Error: no valid recipients"};
    }
    if (request.stage == PolicyStage::kEndOfData && defer_end_of_data) {
      return {PolicyAction::kDefer, 450, "4.7.1", "Message deferred"};
    }
    if (request.stage == PolicyStage::kRcpt) {
      std::string rcpt(request.recipient);
      size_t at = rcpt.rfind('@');
      std::string domain = at == std::string::npos ? "" : rcpt.substr(at + 1);
      if (domain != "example.com") {
        return {PolicyAction::kReject, 554, "5.7.1", "<" + rcpt + ">: Relay access denied"};
      }
      if (rcpt == "unknown@example.com") {
        return {PolicyAction::kReject, 550, "5.1.1",
                "<" + rcpt +
                    ">: Recipient address rejected: User unknown in relay recipient table"};
      }
    }
    return d;
  }

  std::vector<ResolvedRecipient> Resolve(std::string_view recipient,
                                         PolicyDecision* failure) override {
    if (recipient == "loop@example.com") {
      *failure = {PolicyAction::kDefer, 451, "4.3.0",
                  "<loop@example.com>: Temporary lookup failure"};
      return {};
    }
    return {{std::string(recipient), "smtp:[10.0.0.5]:25"}};
  }

  std::vector<Seen> seen;
  std::vector<std::string> certificates;  // "fp|pkey|trusted" of each request under TLS
  bool reject_connect = false;
  bool reject_data = false;
  bool defer_end_of_data = false;
};

class FakeSink : public MessageSink {
 public:
  enum class Mode { kQueueNow, kHold, kFailNoSpace, kFailWrite };

  std::string NewQueueId() override { return absl::StrFormat("QID%d", ++ids); }
  void Submit(AcceptedMessage message, SmtpSession& session) override {
    messages.push_back(std::move(message));
    switch (mode) {
      case Mode::kQueueNow:
        session.OnQueued(messages.back().queue_id);
        break;
      case Mode::kHold:
        held = &session;
        break;
      case Mode::kFailNoSpace:
        session.OnQueueFailed(QueueError::kNoSpace);
        break;
      case Mode::kFailWrite:
        session.OnQueueFailed(QueueError::kWriteError);
        break;
    }
  }
  void Abandon(std::string_view queue_id) override { abandoned.emplace_back(queue_id); }
  absl::Time Now() override { return absl::FromUnixSeconds(1795456800); }  // 2026-11-23 18:00 UTC

  Mode mode = Mode::kQueueNow;
  int ids = 0;
  SmtpSession* held = nullptr;
  std::vector<AcceptedMessage> messages;
  std::vector<std::string> abandoned;
};

ConnectionInfo Client() {
  ConnectionInfo c;
  c.client_ip = "192.0.2.1";
  c.client_port = 40000;
  c.server_ip = "198.51.100.25";
  c.server_port = 25;
  return c;
}

class SessionTest : public ::testing::Test {
 protected:
  SessionTest() {
    settings_.myhostname = "mx.example";
    log::CaptureForTest(&log_);
  }
  ~SessionTest() override {
    session_.reset();
    log::CaptureForTest(nullptr);
  }

  // Starts a session and returns the greeting.
  std::string Open(ConnectionInfo connection = Client()) {
    session_ = std::make_unique<SmtpSession>(settings_, policy_, sink_, std::move(connection));
    session_->Start();
    return session_->TakeOutput();
  }

  // Feeds bytes, plays the I/O layer's part for error sleeps (recording them), and returns
  // what the session staged.
  std::string Send(std::string_view bytes) {
    session_->OnData(bytes);
    Pump();
    return session_->TakeOutput();
  }

  void Pump() {
    for (int i = 0; i < 10000 && session_->PendingDelay() > absl::ZeroDuration(); ++i) {
      delays_.push_back(session_->PendingDelay());
      session_->OnDelayDone();
    }
  }

  // Opens a session and says EHLO (one read per command, as a non-pipelining client).
  void OpenEhlo() {
    Open();
    Send("EHLO client.example\r\n");
  }

  // A full transaction up to the 354 reply.
  void StartData(std::string_view rcpt = "<a@example.com>") {
    OpenEhlo();
    ASSERT_EQ(Send("MAIL FROM:<sender@example.org>\r\n"), "250 2.1.0 Ok\r\n");
    ASSERT_EQ(Send(absl::StrFormat("RCPT TO:%s\r\n", rcpt)), "250 2.1.5 Ok\r\n");
    ASSERT_EQ(Send("DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
  }

  SessionSettings settings_;
  FakePolicy policy_;
  FakeSink sink_;
  std::unique_ptr<SmtpSession> session_;
  std::string log_;
  std::vector<absl::Duration> delays_;
};

constexpr char kEhloReply[] =
    "250-mx.example\r\n"
    "250-PIPELINING\r\n"
    "250-SIZE 10240000\r\n"
    "250-VRFY\r\n"
    "250-ENHANCEDSTATUSCODES\r\n"
    "250-8BITMIME\r\n"
    "250-DSN\r\n"
    "250-SMTPUTF8\r\n"
    "250 CHUNKING\r\n";

TEST_F(SessionTest, GreetingAndEhlo) {
  EXPECT_EQ(Open(), "220 mx.example ESMTP moat\r\n");
  EXPECT_EQ(Send("EHLO client.example\r\n"), kEhloReply);
  EXPECT_EQ(Send("HELO client.example\r\n"), "250 mx.example\r\n");
  EXPECT_EQ(Send("QUIT\r\n"), "221 2.0.0 Bye\r\n");
  EXPECT_TRUE(session_->WantsClose());
  EXPECT_THAT(log_, HasSubstr("connect from unknown[192.0.2.1]\n"));
  EXPECT_THAT(log_, HasSubstr("disconnect from unknown[192.0.2.1] helo=1 ehlo=1 quit=1 "
                              "commands=3\n"));
}

TEST_F(SessionTest, BannerSettingAndDisconnectCounts) {
  settings_.banner = "mx.example ESMTP ready";
  EXPECT_EQ(Open(), "220 mx.example ESMTP ready\r\n");
  Send("EHLO c\r\n");
  Send("HELO c\r\n");
  Send("BOGUS\r\n");
  Send("QUIT\r\n");
  EXPECT_THAT(log_, HasSubstr("disconnect from unknown[192.0.2.1] helo=1 ehlo=1 quit=1 "
                              "unknown=0/1 commands=3/4\n"));
}

TEST_F(SessionTest, EhloAdvertisesPerSettings) {
  settings_.disable_vrfy = true;
  settings_.smtputf8_enable = false;
  settings_.message_size_limit = 0;
  settings_.starttls_available = true;
  Open();
  EXPECT_EQ(Send("EHLO c\r\n"),
            "250-mx.example\r\n250-PIPELINING\r\n250-SIZE\r\n250-STARTTLS\r\n"
            "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 CHUNKING\r\n");
}

TEST_F(SessionTest, HeloAndEhloNeedAnArgument) {
  Open();
  EXPECT_EQ(Send("HELO\r\n"), "501 Syntax: HELO hostname\r\n");
  EXPECT_EQ(Send("EHLO   \r\n"), "501 Syntax: EHLO hostname\r\n");
  EXPECT_EQ(session_->error_count(), 2);
}

TEST_F(SessionTest, OneMessageThroughDataWithLogs) {
  StartData();
  EXPECT_EQ(Send("Subject: hi\r\n\r\n..dot\r\n.\r\n"), "250 2.0.0 Ok: queued as QID1\r\n");
  ASSERT_EQ(sink_.messages.size(), 1u);
  const AcceptedMessage& m = sink_.messages[0];
  EXPECT_EQ(m.queue_id, "QID1");
  EXPECT_EQ(m.sender, "sender@example.org");
  ASSERT_EQ(m.recipients.size(), 1u);
  EXPECT_EQ(m.recipients[0].address, "a@example.com");
  ASSERT_EQ(m.recipients[0].resolved.size(), 1u);
  EXPECT_EQ(m.recipients[0].resolved[0].next_hop, "smtp:[10.0.0.5]:25");
  EXPECT_EQ(m.protocol, "ESMTP");
  EXPECT_EQ(m.helo_name, "client.example");
  EXPECT_EQ(m.content,
            "Received: from client.example (unknown [192.0.2.1])\r\n"
            "\tby mx.example (moat) with ESMTP id QID1\r\n"
            "\tfor <a@example.com>; Mon, 23 Nov 2026 18:00:00 +0000 (UTC)\r\n"
            "Subject: hi\r\n\r\n.dot\r\n");
  EXPECT_EQ(Send("QUIT\r\n"), "221 2.0.0 Bye\r\n");
  EXPECT_THAT(log_, HasSubstr("QID1: client=unknown[192.0.2.1]\n"));
  EXPECT_THAT(log_, HasSubstr("disconnect from unknown[192.0.2.1] ehlo=1 mail=1 rcpt=1 data=1 "
                              "quit=1 commands=5\n"));
  EXPECT_TRUE(sink_.abandoned.empty());
}

TEST_F(SessionTest, ReceivedHeaderWithSeveralRecipientsAndIpv6) {
  ConnectionInfo c = Client();
  c.client_ip = "2001:db8::7";
  c.client_name = "client.example.net";
  Open(c);
  Send("HELO helo.example\r\n");
  Send("MAIL FROM:<>\r\n");
  Send("RCPT TO:<a@example.com>\r\n");
  Send("RCPT TO:<b@example.com>\r\n");
  Send("DATA\r\n");
  EXPECT_EQ(Send("x\r\n.\r\n"), "250 2.0.0 Ok: queued as QID1\r\n");
  ASSERT_EQ(sink_.messages.size(), 1u);
  EXPECT_EQ(sink_.messages[0].content,
            "Received: from helo.example (client.example.net [IPv6:2001:db8::7])\r\n"
            "\tby mx.example (moat) with SMTP id QID1;\r\n"
            "\tMon, 23 Nov 2026 18:00:00 +0000 (UTC)\r\n"
            "x\r\n");
}

// The transcript of a whole pipelined session, fed in every possible split: the replies
// and the messages must not depend on how the bytes arrived.
const char kPipelinedTranscript[] =
    "EHLO client.example\r\n"
    "MAIL FROM:<sender@example.org> SIZE=100 BODY=8BITMIME\r\n"
    "RCPT TO:<a@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bx@example.com\r\n"
    "RCPT TO:<b@example.com>\r\n"
    "RCPT TO:<c@elsewhere.test>\r\n"
    "DATA\r\n"
    "Subject: hi\r\n"
    "\r\n"
    "..dot\r\n"
    "bare\nlf\r\n"
    ".\r\n"
    "MAIL FROM:<>\r\n"
    "RCPT TO:<a@example.com>\r\n"
    "BDAT 10\r\n"
    "0123456789"
    "BDAT 5 LAST\r\n"
    "abcde"
    "NOOP\r\n"
    "QUIT\r\n";

const char kPipelinedReplies[] =
    "220 mx.example ESMTP moat\r\n"
    "250-mx.example\r\n"
    "250-PIPELINING\r\n"
    "250-SIZE 10240000\r\n"
    "250-VRFY\r\n"
    "250-ENHANCEDSTATUSCODES\r\n"
    "250-8BITMIME\r\n"
    "250-DSN\r\n"
    "250-SMTPUTF8\r\n"
    "250 CHUNKING\r\n"
    "250 2.1.0 Ok\r\n"
    "250 2.1.5 Ok\r\n"
    "250 2.1.5 Ok\r\n"
    "554 5.7.1 <c@elsewhere.test>: Relay access denied\r\n"
    "354 End data with <CR><LF>.<CR><LF>\r\n"
    "250 2.0.0 Ok: queued as QID1\r\n"
    "250 2.1.0 Ok\r\n"
    "250 2.1.5 Ok\r\n"
    "250 2.0.0 Ok: 10 bytes\r\n"
    "250 2.0.0 Ok: 17 bytes queued as QID2\r\n"
    "250 2.0.0 Ok\r\n"
    "221 2.0.0 Bye\r\n";

struct RunResult {
  std::string output;
  std::vector<AcceptedMessage> messages;
  std::string log;
};

// Runs the transcript cut at the given positions.
RunResult RunSplit(const std::string& transcript, const std::vector<size_t>& cuts,
                   FakeSink::Mode mode = FakeSink::Mode::kQueueNow) {
  SessionSettings settings;
  settings.myhostname = "mx.example";
  settings.forbid_unauth_pipelining = false;  // DATA content is sent without waiting
  FakePolicy policy;
  FakeSink sink;
  sink.mode = mode;
  RunResult result;
  log::CaptureForTest(&result.log);
  {
    SmtpSession session(settings, policy, sink, Client());
    session.Start();
    result.output = session.TakeOutput();
    size_t pos = 0;
    std::vector<size_t> all = cuts;
    all.push_back(transcript.size());
    for (size_t cut : all) {
      session.OnData(std::string_view(transcript).substr(pos, cut - pos));
      pos = cut;
      // An asynchronous sink answers on a later loop turn.
      if (mode == FakeSink::Mode::kHold && sink.held != nullptr && session.AwaitingQueue()) {
        sink.held = nullptr;
        session.OnQueued(sink.messages.back().queue_id);
      }
      result.output += session.TakeOutput();
    }
    for (int i = 0; i < 10 && session.AwaitingQueue(); ++i) {
      session.OnQueued(sink.messages.back().queue_id);
      result.output += session.TakeOutput();
    }
  }
  log::CaptureForTest(nullptr);
  result.messages = std::move(sink.messages);
  return result;
}

void ExpectSameMessages(const RunResult& a, const RunResult& b, const std::string& where) {
  ASSERT_EQ(a.messages.size(), b.messages.size()) << where;
  for (size_t i = 0; i < a.messages.size(); ++i) {
    EXPECT_EQ(a.messages[i].content, b.messages[i].content) << where;
    EXPECT_EQ(a.messages[i].recipients.size(), b.messages[i].recipients.size()) << where;
  }
}

TEST(SessionSplitTest, WholeTranscriptAtOnce) {
  RunResult whole = RunSplit(kPipelinedTranscript, {});
  EXPECT_EQ(whole.output, kPipelinedReplies);
  ASSERT_EQ(whole.messages.size(), 2u);
  const AcceptedMessage& first = whole.messages[0];
  ASSERT_EQ(first.recipients.size(), 2u);
  EXPECT_EQ(first.recipients[0].dsn_notify, kDsnNotifySuccess | kDsnNotifyFailure);
  EXPECT_EQ(first.recipients[0].orcpt_type, "rfc822");
  EXPECT_EQ(first.recipients[0].orcpt, "a+x@example.com");
  EXPECT_EQ(first.body, BodyType::k8BitMime);
  EXPECT_EQ(first.declared_size, 100u);
  EXPECT_THAT(first.content, HasSubstr("\tby mx.example (moat) with ESMTP id QID1;\r\n"));
  EXPECT_THAT(first.content, testing::EndsWith("Subject: hi\r\n\r\n.dot\r\nbare\r\nlf\r\n"));
  EXPECT_THAT(whole.messages[1].content, testing::EndsWith("\r\n0123456789abcde\r\n"));
  EXPECT_EQ(whole.messages[1].sender, "");
  EXPECT_THAT(whole.log, HasSubstr("QID1: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 "
                                   "<c@elsewhere.test>: Relay access denied; "
                                   "from=<sender@example.org> to=<c@elsewhere.test> "
                                   "proto=ESMTP helo=<client.example>\n"));
  EXPECT_THAT(whole.log, HasSubstr("disconnect from unknown[192.0.2.1] ehlo=1 mail=2 rcpt=3/4 "
                                   "data=1 bdat=2 noop=1 quit=1 commands=11/12\n"));
}

TEST(SessionSplitTest, EveryTwoWaySplitGivesTheSameReplies) {
  const std::string transcript = kPipelinedTranscript;
  RunResult whole = RunSplit(transcript, {});
  for (size_t cut = 0; cut <= transcript.size(); ++cut) {
    RunResult split = RunSplit(transcript, {cut});
    EXPECT_EQ(split.output, whole.output) << "cut at " << cut;
    ExpectSameMessages(split, whole, absl::StrFormat("cut at %d", cut));
  }
}

TEST(SessionSplitTest, ByteAtATimeAndAsynchronousSink) {
  const std::string transcript = kPipelinedTranscript;
  RunResult whole = RunSplit(transcript, {});
  std::vector<size_t> every_byte;
  for (size_t i = 1; i < transcript.size(); ++i) {
    every_byte.push_back(i);
  }
  RunResult bytes = RunSplit(transcript, every_byte);
  EXPECT_EQ(bytes.output, whole.output);
  ExpectSameMessages(bytes, whole, "byte at a time");
  RunResult held = RunSplit(transcript, every_byte, FakeSink::Mode::kHold);
  EXPECT_EQ(held.output, whole.output);
  ExpectSameMessages(held, whole, "byte at a time, held sink");
}

TEST(SessionSplitTest, RandomMultiwaySplits) {
  const std::string transcript = kPipelinedTranscript;
  RunResult whole = RunSplit(transcript, {});
  std::mt19937 random(20261123);  // fixed seed: reproducible
  for (int round = 0; round < 300; ++round) {
    std::vector<size_t> cuts;
    size_t pos = 0;
    while (true) {
      pos += 1 + random() % 40;
      if (pos >= transcript.size()) {
        break;
      }
      cuts.push_back(pos);
    }
    RunResult split = RunSplit(transcript, cuts, round % 2 == 0 ? FakeSink::Mode::kQueueNow
                                                                : FakeSink::Mode::kHold);
    EXPECT_EQ(split.output, whole.output) << "round " << round;
    ExpectSameMessages(split, whole, absl::StrFormat("round %d", round));
  }
}

// Each smuggling variant inside DATA: one message, the smuggled commands are content,
// and the session answers exactly one 250 for it.
class SessionSmugglingTest : public SessionTest,
                             public ::testing::WithParamInterface<std::string> {};

TEST_P(SessionSmugglingTest, OneMessageNotTwo) {
  settings_.forbid_unauth_pipelining = false;
  StartData();
  std::string payload = "Subject: t\r\n\r\nbody" + GetParam() +
                        "MAIL FROM:<evil@example.org>\r\n"
                        "RCPT TO:<b@example.com>\r\n"
                        "DATA\r\n"
                        "smuggled\r\n"
                        ".\r\n";
  std::string out = Send(payload);
  EXPECT_EQ(out, "250 2.0.0 Ok: queued as QID1\r\n");
  ASSERT_EQ(sink_.messages.size(), 1u);
  EXPECT_THAT(sink_.messages[0].content, HasSubstr("MAIL FROM:<evil@example.org>\r\n"));
  EXPECT_THAT(sink_.messages[0].content, HasSubstr("smuggled\r\n"));
  EXPECT_EQ(sink_.messages[0].recipients.size(), 1u);
  EXPECT_EQ(Send("QUIT\r\n"), "221 2.0.0 Bye\r\n");
}

INSTANTIATE_TEST_SUITE_P(Variants, SessionSmugglingTest,
                         ::testing::Values("\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r",
                                           "\r\n.\r\r", std::string("\r\n.\0\r\n", 6),
                                           std::string("\r\n\0.\r\n", 6),
                                           std::string("\n.\0\n", 4),
                                           std::string("\r\0\n.\r\n", 6)));

TEST_F(SessionTest, BareLfRejectModeInData) {
  settings_.bare_newline = BareNewline::kReject;
  StartData();
  EXPECT_EQ(Send("a\nb\r\n.\r\n"), "550 5.5.2 mx.example Error: bare <LF> received\r\n");
  EXPECT_TRUE(sink_.messages.empty());
  EXPECT_FALSE(session_->WantsClose());
  EXPECT_EQ(sink_.abandoned, std::vector<std::string>{"QID1"});
  EXPECT_THAT(log_, HasSubstr("QID1: reject: END-OF-MESSAGE from unknown[192.0.2.1]: "
                              "bare <LF> received;"));
  EXPECT_EQ(Send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
}

TEST_F(SessionTest, BareLfRejectModeInCommandHangsUp) {
  settings_.bare_newline = BareNewline::kReject;
  Open();
  EXPECT_EQ(Send("EHLO c\n"), "550 5.5.2 mx.example Error: bare <LF> received\r\n");
  EXPECT_TRUE(session_->WantsClose());
}

TEST_F(SessionTest, BareLfNormalizeModeAcceptsCommands) {
  Open();
  EXPECT_EQ(Send("HELO c\n"), "250 mx.example\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@b.example>\n"), "250 2.1.0 Ok\r\n");
}

TEST_F(SessionTest, BareLfNoteModeLogs) {
  settings_.bare_newline = BareNewline::kNote;
  Open();
  EXPECT_EQ(Send("HELO c\n"), "250 mx.example\r\n");
  EXPECT_THAT(log_, HasSubstr("NOQUEUE: note: bare <LF> received from unknown[192.0.2.1]"));
}

// RFC 5321 4.5.3.1.4: 512 octets including CRLF.
TEST_F(SessionTest, CommandLine511And512And513Octets) {
  Open();
  for (size_t octets : {size_t{511}, size_t{512}}) {
    std::string line = "HELO " + std::string(octets - 7, 'h') + "\r\n";
    ASSERT_EQ(line.size(), octets);
    EXPECT_EQ(Send(line), "250 mx.example\r\n") << octets;
  }
  std::string line = "HELO " + std::string(513 - 7, 'h') + "\r\n";
  EXPECT_EQ(Send(line), "500 5.5.2 mx.example Error: command too long\r\n");
  EXPECT_EQ(Send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_THAT(log_, HasSubstr("warning: unknown[192.0.2.1]: request longer than 512"));
}

TEST_F(SessionTest, EndlessLineIsSkippedWithoutBuffering) {
  Open();
  std::string chunk(4096, 'x');
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(Send(chunk), "");
  }
  EXPECT_EQ(Send("\r\nNOOP\r\n"),
            "500 5.5.2 mx.example Error: command too long\r\n250 2.0.0 Ok\r\n");
}

TEST_F(SessionTest, MailAndRcptLinesMayCarryLongParameters) {
  OpenEhlo();
  std::string orcpt = "ORCPT=rfc822;" + std::string(480, 'o') + "@example.com";
  EXPECT_EQ(Send("MAIL FROM:<s@example.org> ENVID=" + std::string(100, 'e') + "\r\n"),
            "250 2.1.0 Ok\r\n");
  std::string rcpt = "RCPT TO:<a@example.com> NOTIFY=SUCCESS,FAILURE,DELAY " + orcpt + "\r\n";
  ASSERT_GT(rcpt.size(), 512u);
  EXPECT_EQ(Send(rcpt), "250 2.1.5 Ok\r\n");
}

TEST_F(SessionTest, DataLine999And1000And1001Octets) {
  for (size_t octets : {size_t{999}, size_t{1000}, size_t{1001}}) {
    StartData();
    std::string reply = Send(std::string(octets - 2, 'x') + "\r\n.\r\n");
    if (octets <= 1000) {
      EXPECT_EQ(reply, absl::StrFormat("250 2.0.0 Ok: queued as QID%d\r\n", sink_.ids))
          << octets;
    } else {
      EXPECT_EQ(reply, "554 5.6.0 Error: message line too long\r\n");
    }
  }
  EXPECT_EQ(sink_.messages.size(), 2u);
}

TEST_F(SessionTest, NulAndControlsInCommandsAreBadSyntax) {
  Open();
  EXPECT_EQ(Send(std::string("HELO a\0b\r\n", 10)), "500 5.5.2 Error: bad syntax\r\n");
  EXPECT_EQ(Send("HELO a\rb\r\n"), "500 5.5.2 Error: bad syntax\r\n");
  EXPECT_EQ(Send("\r\n"), "500 5.5.2 Error: bad syntax\r\n");
  EXPECT_EQ(Send("HELO \xff\r\n"), "500 5.5.2 Error: bad UTF-8 syntax\r\n");
  EXPECT_EQ(session_->error_count(), 4);
}

TEST_F(SessionTest, SequenceErrors) {
  Open();
  EXPECT_EQ(Send("RCPT TO:<a@example.com>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(Send("DATA\r\n"), "503 5.5.1 Error: need RCPT command\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@b.example>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@b.example>\r\n"), "503 5.5.1 Error: nested MAIL command\r\n");
  EXPECT_EQ(Send("DATA\r\n"), "554 5.5.1 Error: no valid recipients\r\n");
  EXPECT_EQ(Send("RCPT TO:<>\r\n"), "501 5.1.3 Bad recipient address syntax\r\n");
  EXPECT_EQ(Send("RCPT TO:<a@example.com>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(Send("DATA x\r\n"), "501 5.5.4 Syntax: DATA\r\n");
  EXPECT_EQ(Send("RSET x\r\n"), "501 5.5.4 Syntax: RSET\r\n");
  EXPECT_EQ(Send("NOOP x\r\n"), "501 5.5.4 Syntax: NOOP\r\n");
  EXPECT_EQ(Send("RSET\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(sink_.abandoned, std::vector<std::string>{"QID1"});
  EXPECT_EQ(Send("DATA\r\n"), "503 5.5.1 Error: need RCPT command\r\n");
  EXPECT_EQ(Send("XYZZY\r\n"), "500 5.5.2 Error: command not recognized\r\n");
  EXPECT_EQ(Send("AUTH PLAIN\r\n"), "502 5.5.1 Error: command not implemented\r\n");
  EXPECT_EQ(Send("STARTTLS\r\n"), "502 5.5.1 Error: command not implemented\r\n");
  EXPECT_EQ(Send("HELP\r\n"),
            "214 2.0.0 Commands: BDAT DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET VRFY\r\n");
}

TEST_F(SessionTest, HeloRequired) {
  settings_.helo_required = true;
  Open();
  EXPECT_EQ(Send("MAIL FROM:<a@b.example>\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
  Send("HELO c\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@b.example>\r\n"), "250 2.1.0 Ok\r\n");
}

TEST_F(SessionTest, Vrfy) {
  Open();
  EXPECT_EQ(Send("VRFY <a@example.com>\r\n"), "252 2.0.0 <a@example.com>\r\n");
  EXPECT_EQ(Send("VRFY\r\n"), "501 5.5.4 Syntax: VRFY address [SMTPUTF8]\r\n");
  EXPECT_EQ(Send("VRFY <a b>\r\n"), "501 5.1.3 Bad recipient address syntax\r\n");
  EXPECT_EQ(Send("VRFY x@elsewhere.test\r\n"),
            "554 5.7.1 <x@elsewhere.test>: Relay access denied\r\n");
  settings_.disable_vrfy = true;
  EXPECT_EQ(Send("VRFY a@example.com\r\n"), "502 5.5.1 VRFY command is disabled\r\n");
}

TEST_F(SessionTest, RecipientRejectsAndResolveFailures) {
  OpenEhlo();
  Send("MAIL FROM:<s@example.org>\r\n");
  EXPECT_EQ(Send("RCPT TO:<unknown@example.com>\r\n"),
            "550 5.1.1 <unknown@example.com>: Recipient address rejected: User unknown in "
            "relay recipient table\r\n");
  EXPECT_THAT(log_, HasSubstr("NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 "
                              "<unknown@example.com>: Recipient address rejected: User unknown "
                              "in relay recipient table; from=<s@example.org> "
                              "to=<unknown@example.com> proto=ESMTP helo=<client.example>\n"));
  EXPECT_EQ(Send("RCPT TO:<loop@example.com>\r\n"),
            "451 4.3.0 <loop@example.com>: Temporary lookup failure\r\n");
  EXPECT_EQ(Send("DATA\r\n"), "554 5.5.1 Error: no valid recipients\r\n");
}

TEST_F(SessionTest, RecipientLimitAndOvershoot) {
  settings_.recipient_limit = 2;
  settings_.recipient_overshoot_limit = 1;
  OpenEhlo();
  Send("MAIL FROM:<s@example.org>\r\n");
  EXPECT_EQ(Send("RCPT TO:<a@example.com>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(Send("RCPT TO:<b@example.com>\r\n"), "250 2.1.5 Ok\r\n");
  EXPECT_EQ(Send("RCPT TO:<c@example.com>\r\n"), "452 4.5.3 Error: too many recipients\r\n");
  EXPECT_EQ(session_->error_count(), 0);  // within the overshoot limit
  EXPECT_EQ(Send("RCPT TO:<d@example.com>\r\n"), "452 4.5.3 Error: too many recipients\r\n");
  EXPECT_EQ(session_->error_count(), 1);
  Send("DATA\r\n");
  Send("x\r\n.\r\n");
  ASSERT_EQ(sink_.messages.size(), 1u);
  EXPECT_EQ(sink_.messages[0].recipients.size(), 2u);
}

TEST_F(SessionTest, DeclaredSizeOverLimit) {
  settings_.message_size_limit = 1000;
  OpenEhlo();
  EXPECT_EQ(Send("MAIL FROM:<s@example.org> SIZE=1001\r\n"),
            "552 5.3.4 Message size exceeds fixed limit\r\n");
  EXPECT_THAT(log_, HasSubstr("NOQUEUE: reject: MAIL from unknown[192.0.2.1]: 552 5.3.4 Message "
                              "size exceeds fixed limit; from=<s@example.org> proto=ESMTP "
                              "helo=<client.example>\n"));
  EXPECT_EQ(Send("MAIL FROM:<s@example.org> SIZE=1000\r\n"), "250 2.1.0 Ok\r\n");
}

TEST_F(SessionTest, ActualSizeOverLimitKeepsReadingThenRejects) {
  settings_.message_size_limit = 1000;
  StartData();
  std::string big;
  for (int i = 0; i < 30; ++i) {
    big += std::string(70, 'x') + "\r\n";
  }
  EXPECT_EQ(Send(big), "");
  EXPECT_EQ(Send(".\r\nNOOP\r\n"), "552 5.3.4 Error: message file too big\r\n250 2.0.0 Ok\r\n");
  EXPECT_TRUE(sink_.messages.empty());
  EXPECT_EQ(sink_.abandoned, std::vector<std::string>{"QID1"});
  EXPECT_THAT(log_, HasSubstr("warning: QID1: queue file size limit exceeded"));
}

TEST_F(SessionTest, SmtpUtf8AndEightBitAddresses) {
  OpenEhlo();
  EXPECT_EQ(Send("MAIL FROM:<\xE7\x94\xA8\xE6\x88\xB7@\xE4\xBE\x8B\xE5\xAD\x90.example> "
                 "SMTPUTF8\r\n"),
            "250 2.1.0 Ok\r\n");
  EXPECT_EQ(Send("RCPT TO:<j\xC3\xB6rg@example.com>\r\n"), "250 2.1.5 Ok\r\n");
  Send("DATA\r\n");
  Send("x\r\n.\r\n");
  ASSERT_EQ(sink_.messages.size(), 1u);
  EXPECT_TRUE(sink_.messages[0].smtputf8);
  EXPECT_EQ(sink_.messages[0].protocol, "UTF8SMTP");
  EXPECT_THAT(sink_.messages[0].content, HasSubstr("with UTF8SMTP id QID1"));
  EXPECT_EQ(sink_.messages[0].recipients[0].address, "j\xC3\xB6rg@example.com");
  // 8-bit without SMTPUTF8 is accepted (Postfix with strict_smtputf8 = no).
  Send("MAIL FROM:<m\xC3\xBCller@example.org>\r\n");
  EXPECT_EQ(Send("RCPT TO:<a@example.com>\r\n"), "250 2.1.5 Ok\r\n");
}

TEST_F(SessionTest, DsnParametersAreCarried) {
  OpenEhlo();
  Send("MAIL FROM:<s@example.org> RET=HDRS ENVID=abc+2Bdef\r\n");
  Send("RCPT TO:<a@example.com> NOTIFY=NEVER\r\n");
  Send("RCPT TO:<b@example.com> NOTIFY=DELAY,FAILURE ORCPT=rfc822;orig@example.net\r\n");
  Send("DATA\r\n");
  Send("x\r\n.\r\n");
  ASSERT_EQ(sink_.messages.size(), 1u);
  const AcceptedMessage& m = sink_.messages[0];
  EXPECT_EQ(m.dsn_ret, DsnRet::kHdrs);
  EXPECT_EQ(m.dsn_envid, "abc+def");
  EXPECT_EQ(m.recipients[0].dsn_notify, kDsnNotifyNever);
  EXPECT_EQ(m.recipients[0].orcpt_type, "");
  EXPECT_EQ(m.recipients[1].dsn_notify, kDsnNotifyDelay | kDsnNotifyFailure);
  EXPECT_EQ(m.recipients[1].orcpt_type, "rfc822");
  EXPECT_EQ(m.recipients[1].orcpt, "orig@example.net");
}

TEST_F(SessionTest, BdatSequences) {
  OpenEhlo();
  EXPECT_EQ(Send("BDAT 3\r\nabc"), "503 5.5.1 Error: need RCPT command\r\n");
  EXPECT_EQ(Send("MAIL FROM:<s@example.org>\r\n"), "503 5.5.1 Error: MAIL after BDAT\r\n");
  EXPECT_EQ(Send("BDAT 2 LAST\r\nxy"), "551 5.0.0 Discarded 2 bytes after earlier error\r\n");
  EXPECT_EQ(Send("MAIL FROM:<s@example.org>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(Send("BDAT 3\r\nabc"), "554 5.5.1 Error: no valid recipients\r\n");
  EXPECT_EQ(Send("RSET\r\n"), "250 2.0.0 Ok\r\n");
  Send("MAIL FROM:<s@example.org>\r\n");
  Send("RCPT TO:<a@example.com>\r\n");
  EXPECT_EQ(Send("BDAT 0\r\n"), "551 5.7.1 Null BDAT request\r\n");
  EXPECT_EQ(Send("BDAT 4\r\nabcd"), "551 5.0.0 Discarded 4 bytes after earlier error\r\n");
  EXPECT_EQ(Send("RSET\r\n"), "250 2.0.0 Ok\r\n");
  Send("MAIL FROM:<s@example.org>\r\n");
  Send("RCPT TO:<a@example.com>\r\n");
  EXPECT_EQ(Send("BDAT 6\r\nline\r\n"), "250 2.0.0 Ok: 6 bytes\r\n");
  EXPECT_EQ(Send("DATA\r\n"), "503 5.5.1 Error: DATA after BDAT\r\n");
  EXPECT_EQ(Send("RCPT TO:<b@example.com>\r\n"), "503 5.5.1 Error: RCPT after BDAT\r\n");
  // A chunk may contain what looks like commands or an end of data: it is content.
  EXPECT_EQ(Send("BDAT 12\r\n.\r\nQUIT\r\n.\r\n"), "250 2.0.0 Ok: 12 bytes\r\n");
  EXPECT_EQ(Send("BDAT 0 LAST\r\n"), "250 2.0.0 Ok: 18 bytes queued as QID2\r\n");
  ASSERT_EQ(sink_.messages.size(), 1u);
  EXPECT_THAT(sink_.messages[0].content, testing::EndsWith("\r\nline\r\n.\r\nQUIT\r\n.\r\n"));
  EXPECT_FALSE(session_->WantsClose());
}

TEST_F(SessionTest, BdatChunkOverSizeLimit) {
  settings_.message_size_limit = 100;
  OpenEhlo();
  Send("MAIL FROM:<s@example.org>\r\n");
  Send("RCPT TO:<a@example.com>\r\n");
  EXPECT_EQ(Send("BDAT 60\r\n" + std::string(60, 'x')), "250 2.0.0 Ok: 60 bytes\r\n");
  EXPECT_EQ(Send("BDAT 41 LAST\r\n" + std::string(41, 'y')),
            "552 5.3.4 Chunk exceeds message size limit\r\n");
  EXPECT_TRUE(sink_.messages.empty());
  EXPECT_EQ(Send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
}

TEST_F(SessionTest, BdatBadSyntaxHangsUp) {
  OpenEhlo();
  EXPECT_EQ(Send("BDAT x\r\n"), "521 5.5.4 Syntax: BDAT count [LAST]\r\n");
  EXPECT_TRUE(session_->WantsClose());
  Open();
  Send("EHLO c\r\n");
  EXPECT_EQ(Send("BDAT 5 FIRST\r\n"), "521 5.5.4 Syntax: BDAT count [LAST]\r\n");
}

TEST_F(SessionTest, ErrorSleepAndHardLimit) {
  settings_.soft_error_limit = 2;
  settings_.hard_error_limit = 4;
  settings_.error_sleep = absl::Seconds(1);
  Open();
  EXPECT_EQ(Send("BOGUS\r\n"), "500 5.5.2 Error: command not recognized\r\n");
  EXPECT_EQ(Send("BOGUS\r\n"), "500 5.5.2 Error: command not recognized\r\n");
  EXPECT_TRUE(delays_.empty());
  // From the soft limit on every reply waits, and the wait is the I/O layer's.
  session_->OnData("BOGUS\r\n");
  EXPECT_EQ(session_->PendingDelay(), absl::Seconds(1));
  EXPECT_TRUE(session_->WantsPause());
  EXPECT_EQ(session_->TakeOutput(), "");
  session_->OnDelayDone();
  EXPECT_EQ(session_->TakeOutput(), "500 5.5.2 Error: command not recognized\r\n");
  EXPECT_EQ(Send("BOGUS\r\n"),
            "500 5.5.2 Error: command not recognized\r\n"
            "421 4.7.0 mx.example Error: too many errors\r\n");
  EXPECT_EQ(delays_.size(), 1u);
  EXPECT_TRUE(session_->WantsClose());
  EXPECT_THAT(log_, HasSubstr("too many errors after UNKNOWN from unknown[192.0.2.1]\n"));
}

TEST_F(SessionTest, SuccessfulMessageForgivesErrors) {
  settings_.soft_error_limit = 100;
  OpenEhlo();
  Send("BOGUS\r\n");
  Send("BOGUS\r\n");
  EXPECT_EQ(session_->error_count(), 2);
  Send("MAIL FROM:<s@example.org>\r\n");
  Send("RCPT TO:<a@example.com>\r\n");
  Send("DATA\r\n");
  Send(".\r\n");
  EXPECT_EQ(session_->error_count(), 0);
}

TEST_F(SessionTest, JunkCommandLimit) {
  settings_.junk_command_limit = 3;
  Open();
  for (int i = 0; i < 4; ++i) {
    Send("NOOP\r\n");
  }
  EXPECT_EQ(session_->error_count(), 0);
  Send("NOOP\r\n");
  EXPECT_EQ(session_->error_count(), 1);
}

TEST_F(SessionTest, UnauthPipeliningIsRefused) {
  Open();
  EXPECT_EQ(Send("EHLO c\r\nMAIL FROM:<a@b.example>\r\n"),
            "554 5.5.0 Error: SMTP protocol synchronization\r\n");
  EXPECT_TRUE(session_->WantsClose());
  EXPECT_THAT(log_, HasSubstr("improper command pipelining after EHLO from unknown[192.0.2.1]: "
                              "MAIL FROM:<a@b.example>\\r\\n"));
}

TEST_F(SessionTest, PipeliningWithoutEhloIsImproper) {
  Open();
  Send("HELO c\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@b.example>\r\nRCPT TO:<a@example.com>\r\n"),
            "554 5.5.0 Error: SMTP protocol synchronization\r\n");
}

TEST_F(SessionTest, UnauthPipeliningIsToldToPolicyWhenAllowed) {
  settings_.forbid_unauth_pipelining = false;
  Open();
  EXPECT_EQ(Send("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<a@example.com>\r\n"),
            std::string(kEhloReply) + "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
  ASSERT_FALSE(policy_.seen.empty());
  EXPECT_TRUE(policy_.seen.back().unauth_pipelining);
}

TEST_F(SessionTest, ProperPipeliningIsNotFlagged) {
  OpenEhlo();
  EXPECT_EQ(Send("MAIL FROM:<a@b.example>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_EQ(Send("x\r\n.\r\nQUIT\r\n"), "250 2.0.0 Ok: queued as QID1\r\n221 2.0.0 Bye\r\n");
  EXPECT_FALSE(policy_.seen.back().unauth_pipelining);
  EXPECT_THAT(log_, Not(HasSubstr("improper")));
}

TEST_F(SessionTest, TalkBeforeGreetingIsRejected) {
  session_ = std::make_unique<SmtpSession>(settings_, policy_, sink_, Client());
  session_->Start();
  session_->OnData("EHLO early\r\n");
  EXPECT_EQ(session_->TakeOutput(), "554 5.5.1 Error: no SMTP service\r\n");
  EXPECT_TRUE(session_->WantsClose());
  EXPECT_THAT(log_, HasSubstr("PREGREET 12 from unknown[192.0.2.1]: EHLO early\\r\\n"));
  EXPECT_THAT(log_, HasSubstr("disconnect from unknown[192.0.2.1] commands=0/0"));
}

TEST_F(SessionTest, HeaderAsCommandHangsUp) {
  Open();
  EXPECT_EQ(Send("Subject: hello\r\n"),
            "221 2.7.0 Error: I can break rules, too. Goodbye.\r\n");
  EXPECT_TRUE(session_->WantsClose());
  EXPECT_THAT(log_, HasSubstr("warning: non-SMTP command from unknown[192.0.2.1]: Subject: "
                              "hello"));
  Open();
  EXPECT_EQ(Send("GET / HTTP/1.0\r\n"), "221 2.7.0 Error: I can break rules, too. Goodbye.\r\n");
}

TEST_F(SessionTest, TimeoutLogsWhere) {
  OpenEhlo();
  Send("MAIL FROM:<s@example.org>\r\n");
  Send("RCPT TO:<a@example.com>\r\n");
  session_->OnTimeout();
  EXPECT_EQ(session_->TakeOutput(), "421 4.4.2 mx.example Error: timeout exceeded\r\n");
  EXPECT_TRUE(session_->WantsClose());
  EXPECT_THAT(log_, HasSubstr("timeout after RCPT from unknown[192.0.2.1]\n"));
  EXPECT_EQ(sink_.abandoned, std::vector<std::string>{"QID1"});
  EXPECT_EQ(session_->timeout(), absl::Seconds(300));
}

TEST_F(SessionTest, LostConnectionInData) {
  StartData();
  Send("partial content\r\n");
  session_->OnEof();
  EXPECT_TRUE(session_->WantsClose());
  EXPECT_THAT(log_, HasSubstr("lost connection after DATA (17 bytes) from unknown[192.0.2.1]\n"));
  EXPECT_THAT(log_, HasSubstr("disconnect from unknown[192.0.2.1] ehlo=1 mail=1 rcpt=1 data=0/1 "
                              "commands=3/4\n"));
  EXPECT_EQ(sink_.abandoned, std::vector<std::string>{"QID1"});
  EXPECT_TRUE(sink_.messages.empty());
}

TEST_F(SessionTest, ShutdownWhenIdleAndAfterTransfer) {
  OpenEhlo();
  session_->OnShutdown();
  EXPECT_EQ(session_->TakeOutput(), "421 4.3.2 Service shutting down\r\n");
  EXPECT_TRUE(session_->WantsClose());

  StartData();
  session_->OnShutdown();
  EXPECT_EQ(session_->TakeOutput(), "");
  EXPECT_EQ(Send("x\r\n.\r\nMAIL FROM:<a@b.example>\r\n"),
            "250 2.0.0 Ok: queued as QID1\r\n421 4.3.2 Service shutting down\r\n");
  EXPECT_TRUE(session_->WantsClose());
}

TEST_F(SessionTest, HeldSinkPausesAndCompletesLater) {
  sink_.mode = FakeSink::Mode::kHold;
  StartData();
  EXPECT_EQ(Send("x\r\n.\r\n"), "");
  EXPECT_TRUE(session_->WantsPause());
  EXPECT_TRUE(session_->AwaitingQueue());
  // Bytes that arrive meanwhile wait.
  EXPECT_EQ(Send("QUIT\r\n"), "");
  session_->OnQueued("QID1");
  EXPECT_EQ(session_->TakeOutput(), "250 2.0.0 Ok: queued as QID1\r\n221 2.0.0 Bye\r\n");
}

TEST_F(SessionTest, DestroyedWhileTheSinkHoldsTheMessage) {
  sink_.mode = FakeSink::Mode::kHold;
  StartData();
  EXPECT_EQ(Send("x\r\n.\r\n"), "");
  ASSERT_TRUE(session_->AwaitingQueue());
  session_->OnEof();
  EXPECT_TRUE(session_->WantsClose());
  session_.reset();  // the owner detached it from the sink first
  EXPECT_TRUE(sink_.abandoned.empty());  // the message is the sink's, not abandoned
  EXPECT_EQ(sink_.messages.size(), 1u);
  // As Postfix: no "lost connection after END-OF-MESSAGE" line, but the disconnect line.
  EXPECT_THAT(log_, Not(HasSubstr("lost connection after END-OF-MESSAGE")));
  EXPECT_THAT(log_, HasSubstr("disconnect from unknown[192.0.2.1] ehlo=1 mail=1 rcpt=1 "
                              "data=0/1 commands=3/4\n"));
}

TEST_F(SessionTest, QueueFailures) {
  sink_.mode = FakeSink::Mode::kFailNoSpace;
  StartData();
  EXPECT_EQ(Send("x\r\n.\r\n"), "452 4.3.1 Insufficient system storage\r\n");
  sink_.mode = FakeSink::Mode::kFailWrite;
  Send("MAIL FROM:<s@example.org>\r\n");
  Send("RCPT TO:<a@example.com>\r\n");
  Send("DATA\r\n");
  EXPECT_EQ(Send("x\r\n.\r\n"), "451 4.3.0 Error: queue file write error\r\n");
}

TEST_F(SessionTest, ConnectionCountLimit) {
  settings_.client_connection_count_limit = 2;
  ConnectionInfo c = Client();
  c.client_connection_count = 3;
  EXPECT_EQ(Open(c), "421 4.7.0 mx.example Error: too many connections from 192.0.2.1\r\n");
  EXPECT_TRUE(session_->WantsClose());
  c.exempt_from_limits = true;
  EXPECT_EQ(Open(c), "220 mx.example ESMTP moat\r\n");
  c.exempt_from_limits = false;
  c.client_connection_count = 2;
  EXPECT_EQ(Open(c), "220 mx.example ESMTP moat\r\n");
}

TEST_F(SessionTest, ConnectRejectWithoutDelayReject) {
  settings_.delay_reject = false;
  policy_.reject_connect = true;
  EXPECT_EQ(Open(), "554 5.7.1 <192.0.2.1>: Client host rejected: Access denied\r\n");
  EXPECT_EQ(Send("EHLO c\r\n"), "503 5.7.0 Error: access denied for unknown[192.0.2.1]\r\n");
  EXPECT_EQ(Send("QUIT\r\n"), "221 2.0.0 Bye\r\n");
  EXPECT_THAT(log_, HasSubstr("NOQUEUE: reject: CONNECT from unknown[192.0.2.1]: 554 5.7.1 "
                              "<192.0.2.1>: Client host rejected: Access denied; proto=SMTP\n"));
}

TEST_F(SessionTest, PolicyStagesWithAndWithoutDelayReject) {
  OpenEhlo();
  Send("MAIL FROM:<s@example.org>\r\n");
  Send("RCPT TO:<a@example.com>\r\n");
  Send("DATA\r\n");
  Send(".\r\n");
  std::vector<PolicyStage> stages;
  for (const auto& s : policy_.seen) {
    stages.push_back(s.stage);
  }
  EXPECT_EQ(stages, (std::vector<PolicyStage>{PolicyStage::kRcpt, PolicyStage::kData,
                                               PolicyStage::kEndOfData}));
  EXPECT_EQ(policy_.seen[0].sender, "s@example.org");
  EXPECT_EQ(policy_.seen[0].recipient, "a@example.com");
  EXPECT_EQ(policy_.seen[0].helo, "client.example");

  settings_.delay_reject = false;
  policy_.seen.clear();
  OpenEhlo();
  Send("MAIL FROM:<s@example.org>\r\n");
  stages.clear();
  for (const auto& s : policy_.seen) {
    stages.push_back(s.stage);
  }
  EXPECT_EQ(stages, (std::vector<PolicyStage>{PolicyStage::kConnect, PolicyStage::kHelo,
                                               PolicyStage::kMail}));
}

TEST_F(SessionTest, DataAndEndOfDataPolicy) {
  policy_.reject_data = true;
  OpenEhlo();
  Send("MAIL FROM:<s@example.org>\r\n");
  Send("RCPT TO:<a@example.com>\r\n");
  EXPECT_EQ(Send("DATA\r\n"), "554 5.5.1 Error: no valid recipients\r\n");
  policy_.reject_data = false;
  policy_.defer_end_of_data = true;
  EXPECT_EQ(Send("DATA\r\n"), "354 End data with <CR><LF>.<CR><LF>\r\n");
  EXPECT_EQ(Send("x\r\n.\r\n"), "450 4.7.1 Message deferred\r\n");
  EXPECT_TRUE(sink_.messages.empty());
  EXPECT_THAT(log_, HasSubstr("QID1: reject: END-OF-MESSAGE from unknown[192.0.2.1]: 450 4.7.1 "
                              "Message deferred;"));
}

TEST_F(SessionTest, StartTlsDiscardsPipelinedPlaintextAndResets) {
  settings_.starttls_available = true;
  OpenEhlo();
  EXPECT_EQ(Send("STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n"),
            "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_TRUE(session_->WantsStartTls());
  EXPECT_TRUE(session_->WantsPause());
  TlsInfo tls{"TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256", 256, 256};
  tls.received_header = true;  // smtpd_tls_received_header = yes
  session_->OnTlsStarted(tls);
  EXPECT_EQ(session_->TakeOutput(), "");
  EXPECT_EQ(Send("MAIL FROM:<a@b.example>\r\n"), "250 2.1.0 Ok\r\n");
  EXPECT_EQ(Send("RSET\r\n"), "250 2.0.0 Ok\r\n");
  std::string ehlo = Send("EHLO c\r\n");
  EXPECT_THAT(ehlo, Not(HasSubstr("STARTTLS")));
  EXPECT_EQ(Send("STARTTLS\r\n"), "554 5.5.1 Error: TLS already active\r\n");
  Send("MAIL FROM:<s@example.org>\r\n");
  Send("RCPT TO:<a@example.com>\r\n");
  Send("DATA\r\n");
  Send("x\r\n.\r\n");
  ASSERT_EQ(sink_.messages.size(), 1u);
  EXPECT_EQ(sink_.messages[0].protocol, "ESMTPS");
  EXPECT_THAT(sink_.messages[0].content,
              HasSubstr("Received: from c (unknown [192.0.2.1])\r\n"
                        "\t(using TLSv1.3 with cipher TLS_CHACHA20_POLY1305_SHA256 (256/256 "
                        "bits))\r\n\t(No client certificate requested)\r\n"
                        "\tby mx.example (moat) with ESMTPS id QID1\r\n"));
}

// ---- smtpd_tls_received_header, client certificates, implicit TLS (inbound-tls) ----

// Sends one message from "c" to a@example.com and returns its content.
std::string OneMessage(SmtpSession& session, FakeSink& sink) {
  session.OnData("MAIL FROM:<s@example.org>\r\nRCPT TO:<a@example.com>\r\nDATA\r\n");
  session.OnData("x\r\n.\r\n");
  session.TakeOutput();
  return sink.messages.empty() ? "" : sink.messages.back().content;
}

TEST_F(SessionTest, TlsReceivedHeaderOffByDefaultAddsNothingAboutTls) {
  settings_.starttls_available = true;
  OpenEhlo();
  Send("STARTTLS\r\n");
  session_->OnTlsStarted(TlsInfo{"TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, 128});
  Send("EHLO c\r\n");
  const std::string content = OneMessage(*session_, sink_);
  EXPECT_THAT(content, HasSubstr("Received: from c (unknown [192.0.2.1])\r\n"
                                 "\tby mx.example (moat) with ESMTPS id QID1\r\n"));
  EXPECT_THAT(content, Not(HasSubstr("using")));
  EXPECT_THAT(content, Not(HasSubstr("certificate")));
}

TEST_F(SessionTest, TlsReceivedHeaderNamesTheClientCertificate) {
  struct Case {
    TlsInfo tls;
    std::string clause;
  };
  TlsInfo base{"TLSv1.2", "ECDHE-ECDSA-AES256-GCM-SHA384", 256, 256};
  base.received_header = true;
  TlsInfo asked = base;
  asked.client_cert_requested = true;
  TlsInfo trusted = asked;
  trusted.peer_fingerprint = "AA:BB";
  trusted.peer_cn = "client.test";
  trusted.issuer_cn = "moat test CA";
  trusted.peer_verified = true;
  TlsInfo untrusted = trusted;
  untrusted.peer_verified = false;
  // CNs come from the client: no header injection, no broken comment.
  TlsInfo hostile = untrusted;
  hostile.peer_cn = "evil\r\nX-Injected: \"a\") (b\\";
  hostile.issuer_cn = "\xc3\xa9";
  for (const Case& c : std::vector<Case>{
           {asked, "\t(Client did not present a certificate)\r\n"},
           {trusted, "\t(Client CN \"client.test\", Issuer \"moat test CA\" (verified OK))\r\n"},
           {untrusted,
            "\t(Client CN \"client.test\", Issuer \"moat test CA\" (not verified))\r\n"},
           {hostile, "\t(Client CN \"evil??X-Injected: \\\"a\\\"\\) \\(b\\\\\", Issuer \"??\" "
                     "(not verified))\r\n"},
       }) {
    sink_.messages.clear();
    sink_.ids = 0;
    settings_.starttls_available = true;
    OpenEhlo();
    Send("STARTTLS\r\n");
    session_->OnTlsStarted(c.tls);
    Send("EHLO c\r\n");
    EXPECT_THAT(OneMessage(*session_, sink_),
                HasSubstr("Received: from c (unknown [192.0.2.1])\r\n"
                          "\t(using " +
                          c.tls.protocol + " with cipher " + c.tls.cipher +
                          " (256/256 bits))\r\n" + c.clause +
                          "\tby mx.example (moat) with ESMTPS id QID1\r\n"));
  }
}

TEST_F(SessionTest, ImplicitTlsSessionIsEsmtpsAndShowsTheCertificateToThePolicy) {
  settings_.starttls_available = false;  // a TLS listener offers no STARTTLS
  session_ = std::make_unique<SmtpSession>(settings_, policy_, sink_, Client());
  session_->Start();
  TlsInfo tls{"TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256", 256, 256};
  tls.client_cert_requested = true;
  tls.peer_fingerprint = "AA:BB";
  tls.peer_pkey_fingerprint = "CC:DD";
  tls.peer_cn = "client.test";
  session_->OnImplicitTls(tls);  // the handshake ended before the greeting left
  EXPECT_THAT(session_->TakeOutput(), HasSubstr("220 mx.example ESMTP"));
  std::string ehlo = Send("EHLO c\r\n");
  EXPECT_THAT(ehlo, HasSubstr("250 "));
  EXPECT_THAT(ehlo, Not(HasSubstr("STARTTLS")));
  EXPECT_EQ(Send("STARTTLS\r\n"), "554 5.5.1 Error: TLS already active\r\n");
  const std::string content = OneMessage(*session_, sink_);
  ASSERT_EQ(sink_.messages.size(), 1u);
  EXPECT_EQ(sink_.messages[0].protocol, "ESMTPS");
  EXPECT_THAT(content, HasSubstr("\tby mx.example (moat) with ESMTPS id QID1"));
  ASSERT_FALSE(policy_.certificates.empty());
  EXPECT_EQ(policy_.certificates.back(), "AA:BB|CC:DD|untrusted");
}

TEST_F(SessionTest, TlsRequiredRefusesMailUntilStartTls) {
  settings_.starttls_available = true;
  settings_.tls_required = true;
  OpenEhlo();
  EXPECT_EQ(Send("MAIL FROM:<a@b.example>\r\n"),
            "530 5.7.0 Must issue a STARTTLS command first\r\n");
  EXPECT_EQ(Send("NOOP\r\n"), "250 2.0.0 Ok\r\n");
  EXPECT_EQ(Send("STARTTLS\r\n"), "220 2.0.0 Ready to start TLS\r\n");
  session_->OnTlsStarted(TlsInfo{"TLSv1.3", "TLS_AES_128_GCM_SHA256", 128, 128});
  Send("EHLO c\r\n");
  EXPECT_EQ(Send("MAIL FROM:<a@b.example>\r\n"), "250 2.1.0 Ok\r\n");
}

TEST_F(SessionTest, DestructionWhileOpenLogsLostConnection) {
  OpenEhlo();
  session_.reset();
  EXPECT_THAT(log_, HasSubstr("lost connection after EHLO from unknown[192.0.2.1]\n"));
  EXPECT_THAT(log_, HasSubstr("disconnect from unknown[192.0.2.1] ehlo=1 commands=1\n"));
}

}  // namespace
}  // namespace moat::net
