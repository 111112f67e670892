// Unit tests for the sink's SMTP state machine: the dialogue, pipelined groups, dot-unstuffing
// across every possible split of the input, holding replies until FinishMessage, and the
// timestamp header. No sockets: bytes in, replies out.
#include "bench/loadgen/smtp_sink.h"

#include <string>
#include <vector>

#include "bench/loadgen/message.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moat::loadgen {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

class Recorder : public SinkListener {
 public:
  int RcptReply() override { return rcpt_codes.empty() ? 250 : Next(); }
  void OnMessage(std::string& data, uint32_t rcpts) override {
    messages.push_back(data);
    rcpt_counts.push_back(rcpts);
  }
  int Next() {
    int c = rcpt_codes.front();
    rcpt_codes.erase(rcpt_codes.begin());
    return c;
  }
  std::vector<int> rcpt_codes;
  std::vector<std::string> messages;
  std::vector<uint32_t> rcpt_counts;
};

class SinkSessionTest : public ::testing::Test {
 protected:
  std::string Feed(const std::string& bytes) {
    session_.OnBytes(bytes.data(), bytes.size());
    std::string out;
    out.swap(session_.out());
    return out;
  }
  Recorder listener_;
  SinkSession session_{"sink.test", &listener_};
};

TEST_F(SinkSessionTest, BannerAndEhloAdvertiseTheExtensions) {
  session_.Greet();
  EXPECT_EQ(session_.out(), "220 sink.test ESMTP moat-loadgen sink\r\n");
  session_.out().clear();
  const std::string ehlo = Feed("EHLO client.test\r\n");
  EXPECT_THAT(ehlo, StartsWith("250-sink.test\r\n"));
  for (const char* ext : {"PIPELINING", "SIZE ", "8BITMIME", "CHUNKING", "ENHANCEDSTATUSCODES"}) {
    EXPECT_THAT(ehlo, HasSubstr(ext));
  }
  EXPECT_THAT(ehlo, HasSubstr("\r\n250 ENHANCEDSTATUSCODES\r\n"));
}

TEST_F(SinkSessionTest, PipelinedGroupGetsAllRepliesInOrder) {
  Feed("EHLO c\r\n");
  EXPECT_EQ(Feed("MAIL FROM:<a@b> SIZE=10\r\nRCPT TO:<x@y>\r\nRCPT TO:<z@y>\r\nDATA\r\n"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n354 End data with "
            "<CR><LF>.<CR><LF>\r\n");
  EXPECT_EQ(Feed("Subject: hi\r\n\r\nbody\r\n.\r\n"), "");  // held until FinishMessage
  ASSERT_EQ(listener_.messages.size(), 1u);
  EXPECT_EQ(listener_.messages[0], "Subject: hi\r\n\r\nbody\r\n");
  EXPECT_EQ(listener_.rcpt_counts[0], 2u);
  session_.FinishMessage(250, 7);
  EXPECT_EQ(session_.out(), "250 2.0.0 Ok: queued as 7\r\n");
}

TEST_F(SinkSessionTest, CommandsAfterTheFinalDotWaitForFinishMessage) {
  Feed("EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n");
  EXPECT_EQ(Feed("one\r\n.\r\nMAIL FROM:<a@b>\r\nQUIT\r\n"), "");
  EXPECT_TRUE(session_.waiting_for_finish());
  EXPECT_FALSE(session_.close_after_flush());
  session_.FinishMessage(451, 0);
  EXPECT_EQ(session_.out(),
            "451 4.3.0 Message deferred by sink\r\n250 2.1.0 Ok\r\n221 2.0.0 Bye\r\n");
  EXPECT_TRUE(session_.close_after_flush());
}

TEST_F(SinkSessionTest, DotUnstuffingSurvivesEverySplitOfTheInput) {
  const std::string original =
      "Subject: dots\r\n\r\n.leading\r\n..two\r\n.\rnot-final\r\nmid.dle\r\n"
      ". space\r\n...\r\nend\r\n";
  const std::string stuffed = MessageFactory::StuffForTest(original);
  for (size_t split = 0; split <= stuffed.size(); ++split) {
    Recorder listener;
    SinkSession s("sink.test", &listener);
    const std::string head = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n";
    s.OnBytes(head.data(), head.size());
    s.OnBytes(stuffed.data(), split);
    s.OnBytes(stuffed.data() + split, stuffed.size() - split);
    ASSERT_EQ(listener.messages.size(), 1u) << "split " << split;
    EXPECT_EQ(listener.messages[0], original) << "split " << split;
  }
}

TEST_F(SinkSessionTest, ByteAtATimeDelivery) {
  const std::string original = "A: b\r\n\r\n.x\r\n\r\n..\r\n";
  const std::string all = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nDATA\r\n" +
                          MessageFactory::StuffForTest(original) + "RSET\r\n";
  std::string out;
  for (char c : all) {
    session_.OnBytes(&c, 1);
  }
  ASSERT_EQ(listener_.messages.size(), 1u);
  EXPECT_EQ(listener_.messages[0], original);
  session_.FinishMessage(250, 1);
  EXPECT_THAT(session_.out(), HasSubstr("250 2.0.0 Ok: queued as 1\r\n250 2.0.0 Ok\r\n"));
}

TEST_F(SinkSessionTest, SequenceErrorsAndRejections) {
  EXPECT_EQ(Feed("MAIL FROM:<a@b>\r\n"), "503 5.5.1 Error: send HELO/EHLO first\r\n");
  EXPECT_EQ(Feed("HELO c\r\n"), "250 sink.test\r\n");
  EXPECT_EQ(Feed("RCPT TO:<x@y>\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  EXPECT_EQ(Feed("DATA\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  listener_.rcpt_codes = {554, 451};
  EXPECT_EQ(Feed("MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nRCPT TO:<z@y>\r\nDATA\r\n"),
            "250 2.1.0 Ok\r\n554 5.1.1 Recipient address rejected by sink\r\n"
            "451 4.3.0 Recipient address deferred by sink\r\n"
            "554 5.5.1 Error: no valid recipients\r\n");
  EXPECT_EQ(Feed("MAIL FROM:<a@b>\r\n"), "503 5.5.1 Error: nested MAIL command\r\n");
  EXPECT_EQ(Feed("RSET\r\nNOOP\r\nVRFY x\r\n"),
            "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n502 5.5.2 Error: command not recognized\r\n");
}

TEST_F(SinkSessionTest, OverlongCommandLineClosesTheConnection) {
  EXPECT_EQ(Feed(std::string(SinkSession::kCommandLineMax + 10, 'A')),
            "500 5.5.0 Error: line too long\r\n");
  EXPECT_TRUE(session_.close_after_flush());
  EXPECT_EQ(Feed("EHLO c\r\n"), "");  // nothing more is processed
}

TEST_F(SinkSessionTest, BdatChunksArriveAsTheyAreAcrossEverySplit) {
  // Two chunks (the second LAST) pipelined with the envelope and a second transaction; the
  // content has a leading dot and a CR LF split that DATA would treat specially.
  const std::string input =
      "MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nBDAT 9\r\n.dot\r\nab\rBDAT 6 LAST\r\n\n.\r\nz\n"
      "MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nBDAT 0 LAST\r\nQUIT\r\n";
  for (size_t split = 1; split <= input.size(); ++split) {
    Recorder listener;
    SinkSession session("sink.test", &listener);
    std::string out;
    auto feed = [&](std::string_view bytes) {
      for (size_t i = 0; i < bytes.size(); i += split) {
        const std::string_view piece = bytes.substr(i, split);
        session.OnBytes(piece.data(), piece.size());
        out += session.out();
        session.out().clear();
      }
    };
    feed("EHLO c\r\n");
    out.clear();
    feed(input);
    ASSERT_EQ(listener.messages.size(), 1u) << split;
    EXPECT_EQ(listener.messages[0], ".dot\r\nab\r\n.\r\nz\n") << split;
    EXPECT_EQ(out, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 9 bytes\r\n") << split;
    session.FinishMessage(250, 1);
    ASSERT_EQ(listener.messages.size(), 2u) << split;
    EXPECT_EQ(listener.messages[1], "") << split;
    session.FinishMessage(250, 2);
    EXPECT_EQ(session.out(),
              "250 2.0.0 Ok: queued as 1\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
              "250 2.0.0 Ok: queued as 2\r\n221 2.0.0 Bye\r\n")
        << split;
  }
}

TEST_F(SinkSessionTest, RefusedBdatChunksAreReadAndAnswered) {
  Feed("EHLO c\r\n");
  // No MAIL: the chunk is read (its bytes are not commands) and refused.
  EXPECT_EQ(Feed("BDAT 6 LAST\r\nRSET\r\n"), "503 5.5.1 Error: need MAIL command\r\n");
  // No accepted recipient.
  listener_.rcpt_codes = {550};
  EXPECT_EQ(Feed("MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nBDAT 4 LAST\r\nQUITNOOP\r\n"),
            "250 2.1.0 Ok\r\n550 5.1.1 Recipient address rejected by sink\r\n"
            "554 5.5.1 Error: no valid recipients\r\n250 2.0.0 Ok\r\n");
  EXPECT_TRUE(listener_.messages.empty());
  // DATA inside a BDAT transaction.
  EXPECT_EQ(Feed("MAIL FROM:<a@b>\r\nRCPT TO:<x@y>\r\nBDAT 2\r\nabDATA\r\n"),
            "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok: 2 bytes\r\n"
            "503 5.5.1 Error: DATA after BDAT\r\n");
  // A malformed size: the stream cannot be followed any further.
  EXPECT_EQ(Feed("BDAT 12x\r\n"), "521 5.5.4 Syntax: BDAT count [LAST]\r\n");
  EXPECT_TRUE(session_.close_after_flush());
}

TEST_F(SinkSessionTest, WithoutChunkingBdatIsUnknown) {
  session_.OfferChunking(false);
  EXPECT_THAT(Feed("EHLO c\r\n"), Not(HasSubstr("CHUNKING")));
  EXPECT_EQ(Feed("BDAT 1 LAST\r\n"), "502 5.5.2 Error: command not recognized\r\n");
}

TEST(TimestampHeaderTest, FoundOnlyInTheHeader) {
  uint64_t ns = 0;
  EXPECT_TRUE(FindTimestampHeader("From: a\r\nX-Loadgen-Timestamp: 1700000000123456789\r\n\r\nb",
                                  &ns));
  EXPECT_EQ(ns, 1700000000123456789u);
  EXPECT_TRUE(FindTimestampHeader("x-loadgen-timestamp:42\r\n\r\n", &ns));
  EXPECT_EQ(ns, 42u);
  EXPECT_FALSE(FindTimestampHeader("From: a\r\n\r\nX-Loadgen-Timestamp: 5\r\n", &ns));
  EXPECT_FALSE(FindTimestampHeader("X-Loadgen-Timestamp: 12ab\r\n\r\n", &ns));
  EXPECT_FALSE(FindTimestampHeader("X-Loadgen-Timestamp: \r\n\r\n", &ns));
  EXPECT_FALSE(FindTimestampHeader("X-Loadgen-Timestamp: 99999999999999999999999\r\n\r\n", &ns));
  EXPECT_FALSE(FindTimestampHeader("", &ns));
}

}  // namespace
}  // namespace moat::loadgen
