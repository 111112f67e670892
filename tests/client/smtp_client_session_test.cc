// tests/client/smtp_client_session_test.cc: the outbound SMTP client machine against
// scripted server replies (net/client/smtp_client_session.h). Owned by: outbound.
#include "net/client/smtp_client_session.h"

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace moat::client {
namespace {

constexpr char kEhloFull[] =
    "250-mx.internal Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
    "250-DSN\r\n250-SMTPUTF8\r\n250 STARTTLS\r\n";
constexpr char kEhloPlain[] = "250-mx.internal\r\n250 8BITMIME\r\n";  // no PIPELINING

ServerIdentity Server() {
  return ServerIdentity{"relay.example", "mx.internal", "10.0.0.5", 2525};
}

ClientTransaction Tx(std::vector<std::string> rcpts, uint64_t size = 100) {
  ClientTransaction t;
  t.sender = "alice@example.org";
  for (auto& r : rcpts) {
    t.recipients.push_back(ClientRecipient{r, "", ""});
  }
  t.size_bytes = size;
  return t;
}

// Feeds `bytes` one chunk of `split` bytes at a time; returns everything the machine sent.
std::string Feed(SmtpClientSession& s, std::string_view bytes, size_t split = 0) {
  std::string out;
  if (split == 0) {
    split = bytes.size() == 0 ? 1 : bytes.size();
  }
  for (size_t i = 0; i < bytes.size(); i += split) {
    s.OnData(bytes.substr(i, split));
    out += s.TakeOutput();
  }
  return out;
}

// Connects and runs greeting + EHLO; returns what was sent after the EHLO reply.
std::string Handshake(SmtpClientSession& s, ClientTransaction t, std::string_view ehlo) {
  s.Start(std::move(t));
  s.OnConnected();
  EXPECT_EQ(s.phase(), Phase::kGreeting);
  EXPECT_EQ(Feed(s, "220 mx.internal ESMTP\r\n"), "EHLO relay.example\r\n");
  EXPECT_EQ(s.phase(), Phase::kHelo);
  return Feed(s, ehlo);
}

TEST(SmtpClientSessionTest, PipelinedTransactionWithMixedRecipientResults) {
  SmtpClientSession s(Server());
  ClientTransaction t = Tx({"a@d.example", "b@d.example", "c@d.example"}, 1234);
  t.eight_bit = true;
  EXPECT_EQ(Handshake(s, t, kEhloFull),
            "MAIL FROM:<alice@example.org> SIZE=1234 BODY=8BITMIME\r\n"
            "RCPT TO:<a@d.example>\r\nRCPT TO:<b@d.example>\r\nRCPT TO:<c@d.example>\r\n"
            "DATA\r\n");
  EXPECT_TRUE(s.features().pipelining);
  EXPECT_EQ(s.features().size_limit, 10240000u);
  EXPECT_TRUE(s.features().starttls);
  EXPECT_EQ(s.phase(), Phase::kMail);
  EXPECT_EQ(Feed(s,
                 "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550 5.1.1 <b@d.example>: Recipient "
                 "address rejected: User unknown\r\n450 4.2.0 <c@d.example>: greylisted\r\n"
                 "354 End data with <CR><LF>.<CR><LF>\r\n",
                 1),
            "");
  ASSERT_TRUE(s.WantsBody());
  EXPECT_EQ(s.phase(), Phase::kDataXfer);
  s.AddBody("Subject: x\r\n\r\n.leading dot\r\nmid");
  s.AddBody("dle.\r\n");
  s.AddBody(".");  // a chunk that is only the first byte of a line: "...two dots" stuffed
  s.AddBody("..two dots\r\n.\r\nlast line without CRLF");
  s.EndBody();
  EXPECT_EQ(s.TakeOutput(),
            "Subject: x\r\n\r\n..leading dot\r\nmiddle.\r\n....two dots\r\n..\r\n"
            "last line without CRLF\r\n.\r\n");
  EXPECT_EQ(s.phase(), Phase::kDataDone);
  EXPECT_FALSE(s.TransactionDone());
  EXPECT_EQ(Feed(s, "250 2.0.0 Ok: queued as 4XyZ\r\n"), "");
  ASSERT_TRUE(s.TransactionDone());
  const auto& r = s.results();
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r[0].outcome, Outcome::kSent);
  EXPECT_EQ(r[0].dsn, "2.0.0");
  EXPECT_EQ(r[0].reason, "250 2.0.0 Ok: queued as 4XyZ");
  EXPECT_EQ(r[1].outcome, Outcome::kBounced);
  EXPECT_EQ(r[1].dsn, "5.1.1");
  EXPECT_EQ(r[1].reason,
            "host mx.internal[10.0.0.5] said: 550 5.1.1 <b@d.example>: Recipient address "
            "rejected: User unknown (in reply to RCPT TO command)");
  EXPECT_EQ(r[1].reply, "550 5.1.1 <b@d.example>: Recipient address rejected: User unknown");
  EXPECT_FALSE(r[1].site_failure);
  EXPECT_EQ(r[2].outcome, Outcome::kDeferred);
  EXPECT_EQ(r[2].dsn, "4.2.0");
  EXPECT_TRUE(s.CanReuse());
  EXPECT_EQ(s.phase(), Phase::kIdle);
}

TEST(SmtpClientSessionTest, EveryByteSplitOfTheServerTranscriptGivesTheSameResult) {
  const std::string greeting = "220-mx.internal ESMTP\r\n220 welcome\r\n";
  const std::string replies =
      "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550-5.1.1 first line\r\n550 5.1.1 second line\r\n"
      "354 go\r\n";
  for (size_t split = 1; split <= replies.size() + 1; ++split) {
    SmtpClientSession s(Server());
    s.Start(Tx({"a@d", "b@d"}));
    s.OnConnected();
    ASSERT_EQ(Feed(s, greeting, split), "EHLO relay.example\r\n") << split;
    ASSERT_EQ(Feed(s, kEhloFull, split).substr(0, 10), "MAIL FROM:") << split;
    Feed(s, replies, split);
    ASSERT_TRUE(s.WantsBody()) << split;
    s.AddBody("hi\r\n");
    s.EndBody();
    EXPECT_EQ(s.TakeOutput(), "hi\r\n.\r\n");
    Feed(s, "250 2.0.0 Ok\r\n", split);
    ASSERT_TRUE(s.TransactionDone()) << split;
    EXPECT_EQ(s.results()[0].outcome, Outcome::kSent);
    EXPECT_EQ(s.results()[1].outcome, Outcome::kBounced);
    EXPECT_EQ(s.results()[1].reply, "550-5.1.1 first line 550 5.1.1 second line");
  }
}

TEST(SmtpClientSessionTest, LockStepWithoutPipelining) {
  SmtpClientSession s(Server());
  EXPECT_EQ(Handshake(s, Tx({"a@d", "b@d"}), kEhloPlain), "MAIL FROM:<alice@example.org>\r\n");
  EXPECT_EQ(s.phase(), Phase::kMail);
  EXPECT_EQ(Feed(s, "250 ok\r\n"), "RCPT TO:<a@d>\r\n");
  EXPECT_EQ(s.phase(), Phase::kRcpt);
  EXPECT_EQ(Feed(s, "250 ok\r\n"), "RCPT TO:<b@d>\r\n");
  EXPECT_EQ(Feed(s, "250 ok\r\n"), "DATA\r\n");
  EXPECT_EQ(s.phase(), Phase::kData);
  EXPECT_EQ(Feed(s, "354 go\r\n"), "");
  ASSERT_TRUE(s.WantsBody());
  s.AddBody("x\r\n");
  s.EndBody();
  EXPECT_EQ(s.TakeOutput(), "x\r\n.\r\n");
  Feed(s, "250 queued\r\n");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kSent);
  EXPECT_EQ(s.results()[0].dsn, "2.0.0");  // no enhanced code: the class default
  EXPECT_EQ(s.results()[1].outcome, Outcome::kSent);
}

TEST(SmtpClientSessionTest, EhloRejectedFallsBackToHelo) {
  SmtpClientSession s(Server());
  s.Start(Tx({"a@d"}, 50));
  s.OnConnected();
  EXPECT_EQ(Feed(s, "220 old server\r\n"), "EHLO relay.example\r\n");
  EXPECT_EQ(Feed(s, "502 5.5.2 command not recognized\r\n"), "HELO relay.example\r\n");
  EXPECT_EQ(s.phase(), Phase::kHelo);
  // No SIZE=, no BODY=, lock-step.
  EXPECT_EQ(Feed(s, "250 old server\r\n"), "MAIL FROM:<alice@example.org>\r\n");
  EXPECT_FALSE(s.features().esmtp);
  EXPECT_FALSE(s.features().pipelining);
}

TEST(SmtpClientSessionTest, HeloRejectedBouncesAsSiteFailure) {
  SmtpClientSession s(Server());
  s.Start(Tx({"a@d"}));
  s.OnConnected();
  Feed(s, "220 x\r\n");
  Feed(s, "500 no\r\n");
  EXPECT_EQ(Feed(s, "550 go away\r\n"), "QUIT\r\n");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kBounced);
  EXPECT_EQ(s.results()[0].reason, "host mx.internal[10.0.0.5] refused to talk to me: 550 go away");
  EXPECT_TRUE(s.results()[0].site_failure);
}

TEST(SmtpClientSessionTest, GreetingTempFailureDefersEverythingAndQuits) {
  SmtpClientSession s(Server());
  s.Start(Tx({"a@d", "b@d"}));
  s.OnConnected();
  EXPECT_EQ(Feed(s, "421 4.3.2 mx.internal busy, try later\r\n"), "QUIT\r\n");
  EXPECT_EQ(s.phase(), Phase::kQuit);
  ASSERT_TRUE(s.TransactionDone());
  for (const auto& r : s.results()) {
    EXPECT_EQ(r.outcome, Outcome::kDeferred);
    EXPECT_EQ(r.dsn, "4.3.2");
    EXPECT_EQ(r.reason,
              "host mx.internal[10.0.0.5] refused to talk to me: 421 4.3.2 mx.internal busy, "
              "try later");
    EXPECT_TRUE(r.site_failure);
  }
  EXPECT_FALSE(s.CanReuse());
  s.OnEof();
  EXPECT_EQ(s.phase(), Phase::kClosed);
}

TEST(SmtpClientSessionTest, GreetingPermanentFailureBounces) {
  SmtpClientSession s(Server());
  s.Start(Tx({"a@d"}));
  s.OnConnected();
  EXPECT_EQ(Feed(s, "554 5.7.1 no mail from you\r\n"), "QUIT\r\n");
  EXPECT_EQ(s.results()[0].outcome, Outcome::kBounced);
  EXPECT_EQ(s.results()[0].dsn, "5.7.1");
  Feed(s, "221 bye\r\n");
  EXPECT_EQ(s.phase(), Phase::kClosed);
}

TEST(SmtpClientSessionTest, MailRejectionAppliesToAllRecipients) {
  for (const auto& [reply, outcome] : std::vector<std::pair<std::string, Outcome>>{
           {"452 4.3.1 full", Outcome::kDeferred}, {"553 5.7.1 sender bad", Outcome::kBounced}}) {
    SmtpClientSession s(Server());
    Handshake(s, Tx({"a@d", "b@d"}), kEhloFull);
    // Pipelined: the RCPT and DATA replies still come and must be consumed in order.
    Feed(s, reply + "\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n");
    ASSERT_TRUE(s.TransactionDone());
    for (const auto& r : s.results()) {
      EXPECT_EQ(r.outcome, outcome);
      EXPECT_EQ(r.reason,
                "host mx.internal[10.0.0.5] said: " + reply + " (in reply to MAIL FROM command)");
    }
    EXPECT_TRUE(s.CanReuse());
  }
}

TEST(SmtpClientSessionTest, MailRejectionInLockStepSendsNoRcpt) {
  SmtpClientSession s(Server());
  Handshake(s, Tx({"a@d"}), kEhloPlain);
  EXPECT_EQ(Feed(s, "451 4.3.0 later\r\n"), "");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kDeferred);
  EXPECT_TRUE(s.CanReuse());
}

TEST(SmtpClientSessionTest, DataRejectionAppliesToAcceptedRecipients) {
  SmtpClientSession s(Server());
  Handshake(s, Tx({"a@d", "b@d"}), kEhloFull);
  Feed(s, "250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n554 5.6.0 no data for you\r\n");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kBounced);
  EXPECT_EQ(s.results()[0].reason,
            "host mx.internal[10.0.0.5] said: 554 5.6.0 no data for you (in reply to DATA "
            "command)");
  EXPECT_EQ(s.results()[1].reason,
            "host mx.internal[10.0.0.5] said: 550 5.1.1 unknown (in reply to RCPT TO command)");
}

TEST(SmtpClientSessionTest, EndOfDataTempFailureDefers) {
  SmtpClientSession s(Server());
  Handshake(s, Tx({"a@d"}), kEhloFull);
  Feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  s.AddBody("x\r\n");
  s.EndBody();
  s.TakeOutput();
  Feed(s, "451 4.3.0 Error: queue file write error\r\n");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kDeferred);
  EXPECT_EQ(s.results()[0].dsn, "4.3.0");
  EXPECT_EQ(s.results()[0].reason,
            "host mx.internal[10.0.0.5] said: 451 4.3.0 Error: queue file write error (in reply "
            "to end of DATA command)");
  EXPECT_FALSE(s.results()[0].site_failure);
}

TEST(SmtpClientSessionTest, AllRecipientsRejectedInLockStepSendsNoDataThenRsetOnReuse) {
  SmtpClientSession s(Server());
  Handshake(s, Tx({"a@d", "b@d"}), kEhloPlain);
  EXPECT_EQ(Feed(s, "250 ok\r\n"), "RCPT TO:<a@d>\r\n");
  EXPECT_EQ(Feed(s, "550 5.1.1 no\r\n"), "RCPT TO:<b@d>\r\n");
  EXPECT_EQ(Feed(s, "550 5.1.1 no\r\n"), "");  // no DATA
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kBounced);
  EXPECT_EQ(s.results()[1].outcome, Outcome::kBounced);
  ASSERT_TRUE(s.CanReuse());
  s.NextTransaction(Tx({"c@d"}));
  EXPECT_EQ(s.TakeOutput(), "RSET\r\n");
  EXPECT_EQ(s.phase(), Phase::kRset);
  EXPECT_EQ(Feed(s, "250 2.0.0 Ok\r\n"), "MAIL FROM:<alice@example.org>\r\n");
}

TEST(SmtpClientSessionTest, AllRecipientsRejectedPipelinedServerSays354AnywayEndsEmptyData) {
  SmtpClientSession s(Server());
  Handshake(s, Tx({"a@d"}), kEhloFull);
  EXPECT_EQ(Feed(s, "250 ok\r\n550 5.1.1 no\r\n354 go\r\n"), ".\r\n");
  EXPECT_FALSE(s.WantsBody());
  Feed(s, "554 5.5.1 no valid recipients\r\n");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kBounced);
  EXPECT_EQ(s.results()[0].dsn, "5.1.1");
  EXPECT_TRUE(s.CanReuse());
}

TEST(SmtpClientSessionTest, ConnectionReuseSendsRsetThenTheNextMessage) {
  SmtpClientSession s(Server());
  Handshake(s, Tx({"a@d"}), kEhloFull);
  Feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  s.AddBody("one\r\n");
  s.EndBody();
  s.TakeOutput();
  Feed(s, "250 2.0.0 Ok: queued as 1\r\n");
  ASSERT_TRUE(s.CanReuse());
  EXPECT_EQ(s.transactions(), 1);
  ClientTransaction next = Tx({"x@d", "y@d"}, 77);
  next.sender = "bob@example.org";
  s.NextTransaction(next);
  EXPECT_FALSE(s.TransactionDone());
  EXPECT_EQ(s.TakeOutput(),
            "RSET\r\nMAIL FROM:<bob@example.org> SIZE=77\r\nRCPT TO:<x@d>\r\nRCPT TO:<y@d>\r\n"
            "DATA\r\n");
  EXPECT_EQ(s.transactions(), 2);
  Feed(s, "250 2.0.0 Ok\r\n250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
  ASSERT_TRUE(s.WantsBody());
  s.AddBody("two\r\n");
  s.EndBody();
  EXPECT_EQ(s.TakeOutput(), "two\r\n.\r\n");
  Feed(s, "250 2.0.0 Ok: queued as 2\r\n");
  ASSERT_TRUE(s.TransactionDone());
  ASSERT_EQ(s.results().size(), 2u);
  EXPECT_EQ(s.results()[1].reason, "250 2.0.0 Ok: queued as 2");
  // The cache's idle timer: QUIT, then closed.
  EXPECT_TRUE(s.OnTimeout(Phase::kIdle));
  EXPECT_EQ(s.TakeOutput(), "QUIT\r\n");
  Feed(s, "221 2.0.0 Bye\r\n");
  EXPECT_EQ(s.phase(), Phase::kClosed);
}

constexpr char kEhloChunking[] =
    "250-mx.internal\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-8BITMIME\r\n"
    "250 CHUNKING\r\n";

TEST(SmtpClientSessionTest, ChunkingWithPipeliningSendsTheTransactionInOneWrite) {
  SmtpClientSession s(Server());
  const std::string body = "Subject: x\r\n\r\n.leading dot\r\n.\r\nend\r\n";
  // MAIL, the RCPTs and the BDAT command at once; nothing waits for a 354.
  EXPECT_EQ(Handshake(s, Tx({"a@d", "b@d"}, body.size()), kEhloChunking),
            absl::StrCat("MAIL FROM:<alice@example.org> SIZE=", body.size(),
                         "\r\nRCPT TO:<a@d>\r\nRCPT TO:<b@d>\r\nBDAT ", body.size(),
                         " LAST\r\n"));
  EXPECT_TRUE(s.features().chunking);
  ASSERT_TRUE(s.WantsBody());
  s.AddBody(body.substr(0, 20));
  s.AddBody(body.substr(20));
  s.EndBody();
  EXPECT_EQ(s.TakeOutput(), body);  // as it is: no dot-stuffing, no "." line
  EXPECT_FALSE(s.WantsBody());
  EXPECT_EQ(s.phase(), Phase::kMail);  // the replies still come in order
  EXPECT_EQ(Feed(s, "250 2.1.0 Ok\r\n"), "");
  EXPECT_EQ(s.phase(), Phase::kRcpt);
  Feed(s, "250 2.1.5 Ok\r\n550 5.1.1 <b@d>: unknown\r\n");
  EXPECT_EQ(s.phase(), Phase::kDataDone);
  EXPECT_EQ(TimeoutFor(s.phase(), ClientTimeouts{}), absl::Seconds(600));
  EXPECT_FALSE(s.TransactionDone());
  Feed(s, "250 2.0.0 Ok: 58 bytes queued as 9A\r\n");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kSent);
  EXPECT_EQ(s.results()[0].reason, "250 2.0.0 Ok: 58 bytes queued as 9A");
  EXPECT_EQ(s.results()[1].outcome, Outcome::kBounced);
  EXPECT_EQ(s.results()[1].reason,
            "host mx.internal[10.0.0.5] said: 550 5.1.1 <b@d>: unknown (in reply to RCPT TO "
            "command)");
  ASSERT_TRUE(s.CanReuse());
  // The next message on the connection: RSET in the same write.
  s.NextTransaction(Tx({"c@d"}, 5));
  EXPECT_EQ(s.TakeOutput(),
            "RSET\r\nMAIL FROM:<alice@example.org> SIZE=5\r\nRCPT TO:<c@d>\r\nBDAT 5 LAST\r\n");
  ASSERT_TRUE(s.WantsBody());
  s.AddBody("two\r\n");
  s.EndBody();
  EXPECT_EQ(s.TakeOutput(), "two\r\n");
  EXPECT_EQ(s.phase(), Phase::kRset);
  Feed(s, "250 2.0.0 Ok\r\n250 ok\r\n250 ok\r\n250 2.0.0 Ok: queued as 9B\r\n");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kSent);
  EXPECT_TRUE(s.CanReuse());
}

TEST(SmtpClientSessionTest, ChunkingAnnouncesTheCrlfAddedToAnUnterminatedLastLine) {
  SmtpClientSession s(Server());
  ClientTransaction t = Tx({"a@d"}, 8);
  t.ends_in_newline = false;
  EXPECT_EQ(Handshake(s, t, kEhloChunking),
            "MAIL FROM:<alice@example.org> SIZE=8\r\nRCPT TO:<a@d>\r\nBDAT 10 LAST\r\n");
  s.AddBody("a\r\nb\r\nno");
  s.EndBody();
  EXPECT_EQ(s.TakeOutput(), "a\r\nb\r\nno\r\n");
}

// Handshake with a CHUNKING server; one recipient; the 3-byte content sent as one chunk.
void SendOneChunk(SmtpClientSession& s) {
  Handshake(s, Tx({"a@d"}, 3), kEhloChunking);
  s.AddBody("x\r\n");
  s.EndBody();
  s.TakeOutput();
}

TEST(SmtpClientSessionTest, ChunkingFailuresNameTheCommandAndKeepTheConnection) {
  {  // every recipient refused: the server still reads the chunk and refuses it
    SmtpClientSession s(Server());
    SendOneChunk(s);
    Feed(s, "250 ok\r\n550 5.1.1 no\r\n554 5.5.1 Error: no valid recipients\r\n");
    ASSERT_TRUE(s.TransactionDone());
    EXPECT_EQ(s.results()[0].outcome, Outcome::kBounced);
    EXPECT_EQ(s.results()[0].dsn, "5.1.1");
    EXPECT_TRUE(s.CanReuse());
  }
  {  // MAIL refused: RCPT and BDAT get 503s; the MAIL reply is what the recipient hears
    SmtpClientSession s(Server());
    SendOneChunk(s);
    Feed(s, "452 4.3.1 full\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n");
    ASSERT_TRUE(s.TransactionDone());
    EXPECT_EQ(s.results()[0].outcome, Outcome::kDeferred);
    EXPECT_EQ(s.results()[0].reason,
              "host mx.internal[10.0.0.5] said: 452 4.3.1 full (in reply to MAIL FROM command)");
    EXPECT_TRUE(s.CanReuse());
  }
  {  // the end-of-data reply to BDAT
    SmtpClientSession s(Server());
    SendOneChunk(s);
    Feed(s, "250 ok\r\n250 ok\r\n451 4.3.0 Error: queue file write error\r\n");
    ASSERT_TRUE(s.TransactionDone());
    EXPECT_EQ(s.results()[0].outcome, Outcome::kDeferred);
    EXPECT_EQ(s.results()[0].reason,
              "host mx.internal[10.0.0.5] said: 451 4.3.0 Error: queue file write error (in "
              "reply to BDAT command)");
  }
  {  // the connection lost while the replies are owed
    SmtpClientSession s(Server());
    SendOneChunk(s);
    Feed(s, "250 ok\r\n250 ok\r\n");
    s.OnEof();
    ASSERT_TRUE(s.TransactionDone());
    EXPECT_EQ(s.results()[0].outcome, Outcome::kDeferred);
    EXPECT_EQ(s.results()[0].reason,
              "lost connection with mx.internal[10.0.0.5] while sending end of data -- message "
              "may be sent more than once");
  }
}

TEST(SmtpClientSessionTest, ChunkingNeedsPipeliningAndCanBeDiscarded) {
  {  // CHUNKING without PIPELINING: lock-step DATA
    SmtpClientSession s(Server());
    EXPECT_EQ(Handshake(s, Tx({"a@d"}), "250-mx.internal\r\n250 CHUNKING\r\n"),
              "MAIL FROM:<alice@example.org>\r\n");
    EXPECT_EQ(Feed(s, "250 ok\r\n"), "RCPT TO:<a@d>\r\n");
    EXPECT_EQ(Feed(s, "250 ok\r\n"), "DATA\r\n");
  }
  {  // smtp_discard_ehlo_keywords = chunking: DATA, pipelined
    SmtpClientSession s(Server(), ClientTimeouts{}, ClientOptions{{"silent-discard", "Chunking"}});
    EXPECT_EQ(Handshake(s, Tx({"a@d"}), kEhloChunking),
              "MAIL FROM:<alice@example.org> SIZE=100\r\nRCPT TO:<a@d>\r\nDATA\r\n");
    EXPECT_FALSE(s.features().chunking);
    EXPECT_TRUE(s.features().pipelining);
  }
  {  // smtp_discard_ehlo_keywords = pipelining, size: lock-step, no SIZE=
    SmtpClientSession s(Server(), ClientTimeouts{}, ClientOptions{{"PIPELINING", "size"}});
    EXPECT_EQ(Handshake(s, Tx({"a@d"}), kEhloChunking), "MAIL FROM:<alice@example.org>\r\n");
    EXPECT_FALSE(s.features().pipelining);
  }
}

TEST(SmtpClientSessionTest, RsetFailureDefersAndCloses) {
  SmtpClientSession s(Server());
  Handshake(s, Tx({"a@d"}), kEhloFull);
  Feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  s.EndBody();
  s.TakeOutput();
  Feed(s, "250 ok\r\n");
  s.NextTransaction(Tx({"b@d"}));
  s.TakeOutput();
  EXPECT_EQ(Feed(s, "421 4.4.2 closing\r\n"), "QUIT\r\n");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kDeferred);
  EXPECT_FALSE(s.CanReuse());
}

TEST(SmtpClientSessionTest, MessageOverServerSizeLimitBouncesLocally) {
  SmtpClientSession s(Server());
  EXPECT_EQ(Handshake(s, Tx({"a@d"}, 20000000), kEhloFull), "");  // no MAIL
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kBounced);
  EXPECT_EQ(s.results()[0].dsn, "5.3.4");
  EXPECT_EQ(s.results()[0].reason,
            "message size 20000000 exceeds size limit 10240000 of server "
            "mx.internal[10.0.0.5]");
  EXPECT_TRUE(s.CanReuse());
}

TEST(SmtpClientSessionTest, Smtputf8RequiredButNotOfferedBounces) {
  SmtpClientSession s(Server());
  ClientTransaction t = Tx({"a@d"});
  t.smtputf8 = true;
  EXPECT_EQ(Handshake(s, t, kEhloPlain), "");
  EXPECT_EQ(s.results()[0].outcome, Outcome::kBounced);
  EXPECT_EQ(s.results()[0].dsn, "5.6.7");
}

TEST(SmtpClientSessionTest, EightBitBodyWithout8BitMimeIsSentAsIsWithoutBodyParameter) {
  SmtpClientSession s(Server());
  ClientTransaction t = Tx({"a@d"});
  t.eight_bit = true;
  EXPECT_EQ(Handshake(s, t, "250-mx\r\n250 PIPELINING\r\n"),
            "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@d>\r\nDATA\r\n");
  Feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  s.AddBody("caf\xc3\xa9\r\n");
  s.EndBody();
  EXPECT_EQ(s.TakeOutput(), "caf\xc3\xa9\r\n.\r\n");
}

TEST(SmtpClientSessionTest, DsnParametersForwardedOnlyWhenOffered) {
  ClientTransaction t = Tx({"a@d"});
  t.recipients[0].notify = "SUCCESS,FAILURE";
  t.recipients[0].orcpt = "rfc822;a@d";
  t.dsn_ret = "HDRS";
  t.dsn_envid = "QQ314159";
  t.smtputf8 = false;
  {
    SmtpClientSession s(Server());
    EXPECT_EQ(Handshake(s, t, kEhloFull),
              "MAIL FROM:<alice@example.org> SIZE=100 RET=HDRS ENVID=QQ314159\r\n"
              "RCPT TO:<a@d> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@d\r\nDATA\r\n");
  }
  {
    SmtpClientSession s(Server());
    EXPECT_EQ(Handshake(s, t, "250-mx\r\n250 PIPELINING\r\n"),
              "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@d>\r\nDATA\r\n");
  }
}

TEST(SmtpClientSessionTest, ConnectFailureDefersWithPostfixText) {
  SmtpClientSession s(Server());
  s.Start(Tx({"a@d"}));
  EXPECT_EQ(s.phase(), Phase::kConnecting);
  s.OnConnectFailed("Connection refused");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kDeferred);
  EXPECT_EQ(s.results()[0].dsn, "4.4.1");
  EXPECT_EQ(s.results()[0].reason, "connect to mx.internal[10.0.0.5]:2525: Connection refused");
  EXPECT_TRUE(s.results()[0].site_failure);
  EXPECT_EQ(s.phase(), Phase::kClosed);
}

TEST(SmtpClientSessionTest, ConnectTimeout) {
  SmtpClientSession s(Server());
  s.Start(Tx({"a@d"}));
  EXPECT_TRUE(s.OnTimeout(Phase::kConnecting));
  EXPECT_EQ(s.results()[0].reason, "connect to mx.internal[10.0.0.5]:2525: Connection timed out");
}

TEST(SmtpClientSessionTest, LostConnectionTextsNameThePhase) {
  struct Case {
    int replies;  // how far to get before EOF
    std::string where;
  };
  const std::vector<Case> cases = {
      {0, "receiving the initial server greeting"},
      {1, "performing the EHLO handshake"},
      {2, "sending MAIL FROM"},
      {3, "sending RCPT TO"},
      {4, "sending DATA command"},
      {5, "sending message body"},
      {6, "sending end of data -- message may be sent more than once"},
  };
  for (const Case& c : cases) {
    SmtpClientSession s(Server());
    s.Start(Tx({"a@d"}));
    s.OnConnected();
    const std::vector<std::string> script = {"220 hi\r\n", kEhloPlain, "250 ok\r\n", "250 ok\r\n",
                                             "354 go\r\n"};
    for (int i = 0; i < c.replies && i < 5; ++i) {
      Feed(s, script[i]);
    }
    if (c.replies == 6) {
      s.EndBody();
    }
    s.OnEof();
    ASSERT_TRUE(s.TransactionDone()) << c.where;
    EXPECT_EQ(s.results()[0].outcome, Outcome::kDeferred);
    EXPECT_EQ(s.results()[0].dsn, "4.4.2");
    EXPECT_EQ(s.results()[0].reason, "lost connection with mx.internal[10.0.0.5] while " + c.where);
    EXPECT_TRUE(s.results()[0].site_failure);
    EXPECT_EQ(s.phase(), Phase::kClosed);
  }
}

TEST(SmtpClientSessionTest, TimeoutInEachPhasePicksThePostfixParameter) {
  ClientTimeouts t;
  t.data_done = absl::Seconds(601);
  EXPECT_EQ(TimeoutFor(Phase::kConnecting, t), absl::Seconds(30));
  EXPECT_EQ(TimeoutFor(Phase::kGreeting, t), absl::Seconds(300));
  EXPECT_EQ(TimeoutFor(Phase::kHelo, t), absl::Seconds(300));
  EXPECT_EQ(TimeoutFor(Phase::kMail, t), absl::Seconds(300));
  EXPECT_EQ(TimeoutFor(Phase::kRcpt, t), absl::Seconds(300));
  EXPECT_EQ(TimeoutFor(Phase::kData, t), absl::Seconds(120));
  EXPECT_EQ(TimeoutFor(Phase::kDataXfer, t), absl::Seconds(180));
  EXPECT_EQ(TimeoutFor(Phase::kDataDone, t), absl::Seconds(601));
  EXPECT_EQ(TimeoutFor(Phase::kRset, t), absl::Seconds(20));
  EXPECT_EQ(TimeoutFor(Phase::kQuit, t), absl::Seconds(300));
  EXPECT_EQ(TimeoutFor(Phase::kIdle, t), absl::Seconds(2));

  SmtpClientSession s(Server());
  Handshake(s, Tx({"a@d"}), kEhloFull);
  Feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  s.EndBody();
  // A timer left over from an earlier phase is stale: ignored.
  EXPECT_FALSE(s.OnTimeout(Phase::kRcpt));
  EXPECT_FALSE(s.TransactionDone());
  EXPECT_TRUE(s.OnTimeout(Phase::kDataDone));
  EXPECT_EQ(s.results()[0].reason,
            "conversation with mx.internal[10.0.0.5] timed out while sending end of data -- "
            "message may be sent more than once");
  EXPECT_EQ(s.phase(), Phase::kClosed);
}

TEST(SmtpClientSessionTest, GarbageRepliesDeferAndClose) {
  const std::vector<std::string> garbage = {
      "hello there\r\n",
      "2\r\n",
      "25\r\n",
      "250x\r\n",
      "999 what\r\n",
      "\r\n",
      "250-a\r\n251 b\r\n",                       // code changes inside a multi-line reply
      std::string(kReplyLineBytesMax + 10, 'x'),  // no newline at all
  };
  for (const std::string& g : garbage) {
    // As the greeting.
    SmtpClientSession s(Server());
    s.Start(Tx({"a@d"}));
    s.OnConnected();
    Feed(s, g);
    ASSERT_TRUE(s.TransactionDone()) << g;
    EXPECT_EQ(s.results()[0].outcome, Outcome::kDeferred) << g;
    EXPECT_EQ(s.results()[0].dsn, "4.5.0");
    EXPECT_TRUE(s.results()[0].site_failure);
    EXPECT_EQ(s.phase(), Phase::kClosed);
    // As a RCPT reply.
    SmtpClientSession t(Server());
    Handshake(t, Tx({"a@d", "b@d"}), kEhloFull);
    Feed(t, "250 ok\r\n250 ok\r\n" + g);
    ASSERT_TRUE(t.TransactionDone()) << g;
    EXPECT_EQ(t.results()[0].outcome, Outcome::kDeferred);
    EXPECT_EQ(t.results()[1].outcome, Outcome::kDeferred);
    EXPECT_EQ(t.phase(), Phase::kClosed);
  }
}

TEST(SmtpClientSessionTest, ServerTextIsMadePrintableBeforeItReachesResults) {
  SmtpClientSession s(Server());
  Handshake(s, Tx({"a@d"}), kEhloFull);
  Feed(s, "250 ok\r\n550 5.1.1 bad\rX-Injected: \x01\xff\r\n354 go\r\n");
  ASSERT_FALSE(s.WantsBody());
  Feed(s, "554 no valid recipients\r\n");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].reply, "550 5.1.1 bad?X-Injected: ??");
  EXPECT_EQ(s.results()[0].reason.find('\r'), std::string::npos);
}

TEST(SmtpClientSessionTest, UnsolicitedReplyDuringBodyDefersAndCloses) {
  SmtpClientSession s(Server());
  Handshake(s, Tx({"a@d"}), kEhloFull);
  Feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  Feed(s, "554 5.0.0 changed my mind\r\n");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kDeferred);
  EXPECT_EQ(s.phase(), Phase::kClosed);
}

TEST(SmtpClientSessionTest, IdleGoodbyeClosesWithoutTouchingResults) {
  SmtpClientSession s(Server());
  Handshake(s, Tx({"a@d"}), kEhloFull);
  Feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
  s.EndBody();
  Feed(s, "250 ok\r\n");
  ASSERT_TRUE(s.CanReuse());
  Feed(s, "421 4.4.2 idle timeout\r\n");
  EXPECT_FALSE(s.CanReuse());
  EXPECT_EQ(s.phase(), Phase::kClosed);
  EXPECT_EQ(s.results()[0].outcome, Outcome::kSent);
}

TEST(SmtpClientSessionTest, DotStuffingOfRandomContentAtRandomSplitsMatchesWholeStuffing) {
  std::mt19937 rng(777);
  const std::vector<std::string> lines = {".", "..", ".x", "x.", "", "a b", "...", ". ", "x"};
  for (int round = 0; round < 300; ++round) {
    std::string content;
    std::string expected;
    const int n = static_cast<int>(rng() % 12);
    for (int i = 0; i < n; ++i) {
      const std::string& line = lines[rng() % lines.size()];
      absl::StrAppend(&content, line, "\r\n");
      absl::StrAppend(&expected, line.empty() || line[0] != '.' ? "" : ".", line, "\r\n");
    }
    SmtpClientSession s(Server());
    Handshake(s, Tx({"a@d"}), kEhloFull);
    Feed(s, "250 ok\r\n250 ok\r\n354 go\r\n");
    ASSERT_TRUE(s.WantsBody());
    size_t i = 0;
    while (i < content.size()) {
      const size_t len = 1 + rng() % 5;
      s.AddBody(std::string_view(content).substr(i, len));
      i += len;
    }
    s.EndBody();
    EXPECT_EQ(s.TakeOutput(), expected + ".\r\n") << round;
  }
}

TEST(SmtpClientSessionTest, RandomServerBytesNeverCrashAndAlwaysSettle) {
  std::mt19937 rng(12345);
  const std::vector<std::string> pieces = {"220 ", "250", "-",           " ",   "354 go",
                                           "\r\n", "\n",  "550 5.1.1 x", "421", "PIPELINING",
                                           "\r",   "\0",  "xyz",         "9",   "2.0.0 "};
  for (int round = 0; round < 2000; ++round) {
    SmtpClientSession s(Server());
    s.Start(Tx({"a@d", "b@d"}));
    s.OnConnected();
    for (int step = 0; step < 40 && s.phase() != Phase::kClosed; ++step) {
      std::string bytes;
      const int n = 1 + static_cast<int>(rng() % 6);
      for (int i = 0; i < n; ++i) {
        bytes += pieces[rng() % pieces.size()];
      }
      s.OnData(bytes);
      s.TakeOutput();
      if (s.WantsBody()) {
        s.AddBody(".x\r\n");
        s.EndBody();
      }
    }
    if (!s.TransactionDone()) {
      s.OnEof();
    }
    ASSERT_TRUE(s.TransactionDone()) << round;
    for (const auto& r : s.results()) {
      EXPECT_NE(r.outcome, Outcome::kPending);
    }
  }
}

}  // namespace
}  // namespace moat::client
