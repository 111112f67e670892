// Unit tests for the sending side's SMTP state machine and reply parser, driven by scripted
// server replies: lock-step and pipelined dialogues, expected and unexpected rejections,
// malformed replies and broken connections.
#include "bench/loadgen/smtp_client.h"

#include <string>
#include <vector>

#include "bench/loadgen/message.h"
#include "bench/loadgen/smtp_sink.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moat::loadgen {
namespace {

using ::testing::HasSubstr;

class Recorder : public ClientListener {
 public:
  void OnReply(Stage, int code) override { codes.push_back(code); }
  void OnReady() override { ++ready; }
  void OnTransactionDone(const TransactionResult& r) override { results.push_back(r); }
  int ready = 0;
  std::vector<int> codes;
  std::vector<TransactionResult> results;
};

class ClientSessionTest : public ::testing::Test {
 protected:
  // Feeds a server reply and returns (and clears) what the client sent in response.
  std::string Reply(ClientSession& s, const std::string& bytes) {
    s.OnBytes(bytes.data(), bytes.size());
    std::string out;
    out.swap(s.out());
    return out;
  }
  void Greet(ClientSession& s, bool advertise_pipelining) {
    EXPECT_EQ(Reply(s, "220 mx.test ESMTP\r\n"), "EHLO helo.test\r\n");
    EXPECT_EQ(Reply(s, std::string("250-mx.test\r\n") +
                           (advertise_pipelining ? "250-PIPELINING\r\n" : "") +
                           "250 8BITMIME\r\n"),
              "");
    EXPECT_EQ(s.state(), ClientSession::State::kReady);
  }
  ClientMessage Message(std::vector<std::string> rcpts, std::vector<bool> unknown) {
    ClientMessage m;
    m.rcpts = std::move(rcpts);
    m.unknown = std::move(unknown);
    m.payload = "Subject: t\r\n\r\nhello\r\n.\r\n";
    m.size = 21;
    return m;
  }
  Recorder listener_;
};

TEST_F(ClientSessionTest, LockStepTransaction) {
  ClientSession s("helo.test", "a@b.test", /*want_pipelining=*/false, &listener_);
  Greet(s, true);
  EXPECT_EQ(listener_.ready, 1);
  ClientMessage m = Message({"x@y.test", "z@y.test"}, {false, false});
  s.BeginMessage(&m);
  std::string out;
  out.swap(s.out());
  EXPECT_EQ(out, "MAIL FROM:<a@b.test> SIZE=21\r\n");
  EXPECT_EQ(Reply(s, "250 2.1.0 Ok\r\n"), "RCPT TO:<x@y.test>\r\n");
  EXPECT_EQ(Reply(s, "250 2.1.5 Ok\r\n"), "RCPT TO:<z@y.test>\r\n");
  EXPECT_EQ(Reply(s, "250 2.1.5 Ok\r\n"), "DATA\r\n");
  EXPECT_EQ(Reply(s, "354 go\r\n"), m.payload);
  EXPECT_TRUE(s.awaiting_reply());
  EXPECT_EQ(Reply(s, "250 2.0.0 Ok: queued\r\n"), "");
  ASSERT_EQ(listener_.results.size(), 1u);
  EXPECT_EQ(listener_.results[0].outcome, Outcome::kAccepted);
  EXPECT_EQ(listener_.results[0].rcpts_accepted, 2u);
  EXPECT_EQ(listener_.ready, 2);
  s.Quit();
  out.swap(s.out());
  EXPECT_EQ(out, "QUIT\r\n");
  Reply(s, "221 2.0.0 Bye\r\n");
  EXPECT_EQ(s.state(), ClientSession::State::kClosed);
}

TEST_F(ClientSessionTest, PipeliningSendsOneGroupOnlyWhenAdvertised) {
  ClientSession s("helo.test", "a@b.test", /*want_pipelining=*/true, &listener_);
  Greet(s, true);
  EXPECT_TRUE(s.pipelining());
  ClientMessage m = Message({"x@y.test", "z@y.test"}, {false, false});
  s.BeginMessage(&m);
  std::string out;
  out.swap(s.out());
  EXPECT_EQ(out, "MAIL FROM:<a@b.test> SIZE=21\r\nRCPT TO:<x@y.test>\r\nRCPT TO:<z@y.test>\r\n"
                 "DATA\r\n");
  // All four replies in one segment.
  EXPECT_EQ(Reply(s, "250 Ok\r\n250 Ok\r\n250 Ok\r\n354 go\r\n"), m.payload);
  Reply(s, "250 Ok\r\n");
  ASSERT_EQ(listener_.results.size(), 1u);
  EXPECT_EQ(listener_.results[0].outcome, Outcome::kAccepted);

  Recorder other;
  ClientSession plain("helo.test", "a@b.test", /*want_pipelining=*/true, &other);
  Reply(plain, "220 mx\r\n");
  Reply(plain, "250-mx\r\n250 SIZE 100\r\n");
  EXPECT_FALSE(plain.pipelining());
}

TEST_F(ClientSessionTest, UnknownRecipientRejectedIsExpectedAndTheMessageIsNotSent) {
  ClientSession s("helo.test", "a@b.test", false, &listener_);
  Greet(s, false);
  ClientMessage m = Message({"nobody@y.test"}, {true});
  s.BeginMessage(&m);
  s.out().clear();
  EXPECT_EQ(Reply(s, "250 Ok\r\n"), "RCPT TO:<nobody@y.test>\r\n");
  EXPECT_EQ(Reply(s, "550 5.1.1 <nobody@y.test>: Recipient address rejected\r\n"), "RSET\r\n");
  EXPECT_EQ(Reply(s, "250 Ok\r\n"), "");
  ASSERT_EQ(listener_.results.size(), 1u);
  EXPECT_EQ(listener_.results[0].outcome, Outcome::kRejected);
  EXPECT_EQ(listener_.results[0].rcpts_rejected_expected, 1u);
  EXPECT_EQ(s.state(), ClientSession::State::kReady);
}

TEST_F(ClientSessionTest, PipelinedAllRejectedWaitsForTheWholeGroupThenResets) {
  ClientSession s("helo.test", "a@b.test", true, &listener_);
  Greet(s, true);
  ClientMessage m = Message({"n1@y.test", "n2@y.test"}, {true, true});
  s.BeginMessage(&m);
  s.out().clear();
  EXPECT_EQ(Reply(s, "250 Ok\r\n550 no\r\n"), "");
  EXPECT_EQ(Reply(s, "550 no\r\n554 5.5.1 Error: no valid recipients\r\n"), "RSET\r\n");
  Reply(s, "250 Ok\r\n");
  ASSERT_EQ(listener_.results.size(), 1u);
  EXPECT_EQ(listener_.results[0].outcome, Outcome::kRejected);
  EXPECT_EQ(listener_.results[0].rcpts_rejected_expected, 2u);
}

TEST_F(ClientSessionTest, UnexpectedOutcomesAreErrors) {
  ClientSession s("helo.test", "a@b.test", false, &listener_);
  Greet(s, false);
  // A known recipient rejected.
  ClientMessage known = Message({"x@y.test"}, {false});
  s.BeginMessage(&known);
  s.out().clear();
  Reply(s, "250 Ok\r\n");
  EXPECT_EQ(Reply(s, "550 5.1.1 unknown\r\n"), "RSET\r\n");
  Reply(s, "250 Ok\r\n");
  // An unknown recipient accepted: the message goes through but counts as an error.
  ClientMessage unknown = Message({"nobody@y.test"}, {true});
  s.BeginMessage(&unknown);
  s.out().clear();
  Reply(s, "250 Ok\r\n");
  Reply(s, "250 Ok\r\n");
  Reply(s, "354 go\r\n");
  Reply(s, "250 Ok\r\n");
  // The final dot refused.
  s.BeginMessage(&known);
  s.out().clear();
  Reply(s, "250 Ok\r\n");
  Reply(s, "250 Ok\r\n");
  Reply(s, "354 go\r\n");
  Reply(s, "452 4.3.1 Insufficient system storage\r\n");
  ASSERT_EQ(listener_.results.size(), 3u);
  for (const auto& r : listener_.results) {
    EXPECT_EQ(r.outcome, Outcome::kError);
  }
  EXPECT_EQ(listener_.results[0].final_code, 550);
  EXPECT_EQ(listener_.results[1].rcpts_unexpected, 1u);
  EXPECT_EQ(listener_.results[2].final_code, 452);
  EXPECT_EQ(s.state(), ClientSession::State::kReady);
}

TEST_F(ClientSessionTest, MalformedReplyOrBrokenConnectionFailsTheTransaction) {
  ClientSession s("helo.test", "a@b.test", false, &listener_);
  Greet(s, false);
  ClientMessage m = Message({"x@y.test"}, {false});
  s.BeginMessage(&m);
  Reply(s, "2x0 what\r\n");
  EXPECT_EQ(s.state(), ClientSession::State::kFailed);
  ASSERT_EQ(listener_.results.size(), 1u);
  EXPECT_EQ(listener_.results[0].outcome, Outcome::kError);

  Recorder other;
  ClientSession t("helo.test", "a@b.test", false, &other);
  Greet(t, false);
  t.BeginMessage(&m);
  t.Abort("closed by the server");
  EXPECT_EQ(t.state(), ClientSession::State::kFailed);
  ASSERT_EQ(other.results.size(), 1u);
  EXPECT_EQ(other.results[0].outcome, Outcome::kError);

  Recorder third;
  ClientSession u("helo.test", "a@b.test", false, &third);
  Reply(u, "554 5.7.1 go away\r\n");
  EXPECT_EQ(u.state(), ClientSession::State::kFailed);
  EXPECT_THAT(u.error(), HasSubstr("greeting 554"));
}

TEST(ReplyParserTest, MultiLineAndSplitReplies) {
  ReplyParser p;
  ReplyParser::Reply r;
  const std::string bytes = "250-first\r\n250-second\r\n250 last\r\n";
  size_t used = 0;
  // Split in the middle of a line.
  EXPECT_EQ(p.Feed(bytes.data(), 15, &used, &r), ReplyParser::Result::kNeedMore);
  EXPECT_EQ(used, 15u);
  const char* rest = bytes.data() + 15;
  used = 0;
  EXPECT_EQ(p.Feed(rest, bytes.size() - 15, &used, &r), ReplyParser::Result::kReply);
  EXPECT_EQ(r.code, 250);
  EXPECT_EQ(r.lines, (std::vector<std::string>{"first", "second", "last"}));

  ReplyParser q;
  used = 0;
  const std::string mixed = "250-a\r\n251 b\r\n";
  EXPECT_EQ(q.Feed(mixed.data(), mixed.size(), &used, &r), ReplyParser::Result::kError);
  ReplyParser bare;
  used = 0;
  EXPECT_EQ(bare.Feed("220\n", 4, &used, &r), ReplyParser::Result::kReply);
  EXPECT_EQ(r.code, 220);
  ReplyParser longline;
  used = 0;
  const std::string huge(ReplyParser::kReplyLineMax + 1, '2');
  EXPECT_EQ(longline.Feed(huge.data(), huge.size(), &used, &r), ReplyParser::Result::kError);
}

TEST(MessageFactoryTest, PayloadUnstuffsToTheDeclaredSizeWithTimestamp) {
  for (uint64_t size : {1ull, 200ull, 5120ull, 102400ull}) {
    MessageFactory f(size, "a@b.test");
    ClientMessage m;
    f.Build(17, "x@y.test", 1234567890123456789ull, &m);
    EXPECT_THAT(m.payload, ::testing::EndsWith("\r\n.\r\n"));
    // Round trip through the sink's unstuffing.
    struct L : SinkListener {
      int RcptReply() override { return 250; }
      void OnMessage(std::string& d, uint32_t) override { data = d; }
      std::string data;
    } l;
    SinkSession sink("s", &l);
    const std::string head = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n";
    sink.OnBytes(head.data(), head.size());
    sink.OnBytes(m.payload.data(), m.payload.size());
    EXPECT_EQ(l.data.size(), m.size) << size;
    if (size >= 5120) {  // the header alone is longer than the small sizes
      EXPECT_NEAR(static_cast<double>(m.size), static_cast<double>(size), 2.0);
      EXPECT_THAT(m.payload, HasSubstr("\r\n.."));  // a stuffed line
      EXPECT_THAT(l.data, HasSubstr("\r\n.")) << "a line starting with a dot survives";
    }
    uint64_t ns = 0;
    EXPECT_TRUE(FindTimestampHeader(l.data, &ns));
    EXPECT_EQ(ns, 1234567890123456789ull);
    EXPECT_THAT(l.data, HasSubstr("Message-ID: <17."));
  }
}

}  // namespace
}  // namespace moat::loadgen
