// tests/client/smtp_client_starttls_test.cc: STARTTLS in the outbound SMTP client machine
// (net/client/smtp_client_session.h) against scripted server replies, at every
// smtp_tls_security_level: none, may (offered, not offered, refused), encrypt (not offered,
// refused, HELO fallback), verify (verified, not verified), handshake failure, plaintext
// injected after the 220, timeouts. The TLS layer itself is the driver's (tested in
// tests/tls/client_transform_test.cc); here "the handshake" is OnTlsEstablished/Failed.
// Owner: outbound-tls.
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"

#include "net/client/smtp_client_session.h"

namespace moat::client {
namespace {

constexpr char kEhloTls[] =
    "250-mx.internal Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n";
constexpr char kEhloNoTls[] = "250-mx.internal Hello\r\n250 PIPELINING\r\n";
constexpr char kEhloAfterTls[] = "250-mx.internal Hello\r\n250-PIPELINING\r\n250 SIZE 10240000\r\n";
constexpr char kTransaction[] =
    "MAIL FROM:<alice@example.org> SIZE=100\r\nRCPT TO:<a@d.example>\r\nDATA\r\n";

SmtpClientSession Session(TlsLevel level) {
  return SmtpClientSession(ServerIdentity{"relay.example", "mx.internal", "10.0.0.5", 2525, level});
}

ClientTransaction Tx() {
  ClientTransaction t;
  t.sender = "alice@example.org";
  t.recipients.push_back(ClientRecipient{"a@d.example", "", ""});
  t.size_bytes = 100;
  return t;
}

std::string Feed(SmtpClientSession& s, std::string_view bytes) {
  s.OnData(bytes);
  return s.TakeOutput();
}

// Greeting, EHLO; returns what the machine sent after the EHLO reply `ehlo`.
std::string Greet(SmtpClientSession& s, std::string_view ehlo) {
  s.Start(Tx());
  s.OnConnected();
  EXPECT_EQ(Feed(s, "220 mx.internal ESMTP\r\n"), "EHLO relay.example\r\n");
  return Feed(s, ehlo);
}

// Runs a whole transaction from MAIL (already sent) to the idle connection.
void FinishTransaction(SmtpClientSession& s) {
  EXPECT_EQ(Feed(s, "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n"), "");
  ASSERT_TRUE(s.WantsBody());
  s.AddBody("Subject: x\r\n\r\nhi\r\n");
  s.EndBody();
  EXPECT_EQ(s.TakeOutput(), "Subject: x\r\n\r\nhi\r\n.\r\n");
  Feed(s, "250 2.0.0 Ok: queued as X\r\n");
  ASSERT_TRUE(s.TransactionDone());
  EXPECT_EQ(s.results()[0].outcome, Outcome::kSent);
  EXPECT_EQ(s.phase(), Phase::kIdle);
}

TEST(SmtpClientStarttlsTest, NoneNeverAsks) {
  SmtpClientSession s = Session(TlsLevel::kNone);
  EXPECT_EQ(Greet(s, kEhloTls), kTransaction);
  EXPECT_FALSE(s.tls_active());
}

TEST(SmtpClientStarttlsTest, MayUpgradesThenSaysEhloAgain) {
  SmtpClientSession s = Session(TlsLevel::kMay);
  EXPECT_EQ(Greet(s, kEhloTls), "STARTTLS\r\n");
  EXPECT_EQ(s.phase(), Phase::kStartTls);
  EXPECT_EQ(Feed(s, "220 2.0.0 Ready to start TLS\r\n"), "");
  EXPECT_TRUE(s.WantsTlsHandshake());
  EXPECT_EQ(s.phase(), Phase::kTlsHandshake);
  s.OnTlsEstablished(/*verified=*/false);  // may: the certificate does not matter
  EXPECT_TRUE(s.tls_active());
  EXPECT_FALSE(s.features().starttls);  // forgotten until the new EHLO reply
  EXPECT_EQ(s.TakeOutput(), "EHLO relay.example\r\n");
  EXPECT_EQ(s.phase(), Phase::kHelo);
  EXPECT_EQ(Feed(s, kEhloAfterTls), kTransaction);  // no second STARTTLS
  FinishTransaction(s);
  // The next message over the cached connection stays on TLS, without a new STARTTLS.
  s.NextTransaction(Tx());
  EXPECT_EQ(s.TakeOutput(), std::string("RSET\r\n") + kTransaction);
  EXPECT_TRUE(s.tls_active());
}

TEST(SmtpClientStarttlsTest, MayWithoutOfferGoesOnInPlaintext) {
  SmtpClientSession s = Session(TlsLevel::kMay);
  EXPECT_EQ(Greet(s, kEhloNoTls),
            "MAIL FROM:<alice@example.org>\r\nRCPT TO:<a@d.example>\r\nDATA\r\n");
  EXPECT_FALSE(s.tls_active());
}

TEST(SmtpClientStarttlsTest, MayRefusedGoesOnInPlaintext) {
  SmtpClientSession s = Session(TlsLevel::kMay);
  EXPECT_EQ(Greet(s, kEhloTls), "STARTTLS\r\n");
  EXPECT_EQ(Feed(s, "454 4.7.0 TLS not available due to temporary reason\r\n"), kTransaction);
  FinishTransaction(s);
  EXPECT_FALSE(s.tls_active());
}

TEST(SmtpClientStarttlsTest, EncryptNotOfferedDefersAndQuits) {
  SmtpClientSession s = Session(TlsLevel::kEncrypt);
  EXPECT_EQ(Greet(s, kEhloNoTls), "QUIT\r\n");
  ASSERT_TRUE(s.TransactionDone());
  const RecipientResult& r = s.results()[0];
  EXPECT_EQ(r.outcome, Outcome::kDeferred);
  EXPECT_EQ(r.dsn, "4.7.4");
  EXPECT_EQ(r.reason, "TLS is required, but was not offered by host mx.internal[10.0.0.5]");
  EXPECT_EQ(s.phase(), Phase::kQuit);
  Feed(s, "221 bye\r\n");
  EXPECT_EQ(s.phase(), Phase::kClosed);
  EXPECT_FALSE(s.CanReuse());
}

TEST(SmtpClientStarttlsTest, EncryptRefusedDefers) {
  SmtpClientSession s = Session(TlsLevel::kEncrypt);
  EXPECT_EQ(Greet(s, kEhloTls), "STARTTLS\r\n");
  EXPECT_EQ(Feed(s, "554 5.5.1 no TLS for you\r\n"), "QUIT\r\n");
  const RecipientResult& r = s.results()[0];
  EXPECT_EQ(r.outcome, Outcome::kDeferred);  // never a bounce: TLS is our requirement
  EXPECT_EQ(r.dsn, "4.7.4");
  EXPECT_EQ(r.reason,
            "TLS is required, but host mx.internal[10.0.0.5] refused to start TLS: 554 5.5.1 "
            "no TLS for you");
}

TEST(SmtpClientStarttlsTest, EncryptWithHeloFallbackDefers) {
  SmtpClientSession s = Session(TlsLevel::kEncrypt);
  EXPECT_EQ(Greet(s, "502 5.5.2 EHLO not implemented\r\n"), "HELO relay.example\r\n");
  EXPECT_EQ(Feed(s, "250 mx.internal\r\n"), "QUIT\r\n");
  EXPECT_EQ(s.results()[0].dsn, "4.7.4");
  EXPECT_EQ(s.results()[0].outcome, Outcome::kDeferred);
}

TEST(SmtpClientStarttlsTest, EncryptDeliversOverTls) {
  SmtpClientSession s = Session(TlsLevel::kEncrypt);
  EXPECT_EQ(Greet(s, kEhloTls), "STARTTLS\r\n");
  Feed(s, "220 go ahead\r\n");
  s.OnTlsEstablished(/*verified=*/false);  // encrypt: not checked
  EXPECT_EQ(s.TakeOutput(), "EHLO relay.example\r\n");
  EXPECT_EQ(Feed(s, kEhloAfterTls), kTransaction);
  FinishTransaction(s);
}

TEST(SmtpClientStarttlsTest, VerifyDeliversWhenVerified) {
  SmtpClientSession s = Session(TlsLevel::kVerify);
  EXPECT_EQ(Greet(s, kEhloTls), "STARTTLS\r\n");
  Feed(s, "220 go ahead\r\n");
  s.OnTlsEstablished(/*verified=*/true);
  EXPECT_EQ(s.TakeOutput(), "EHLO relay.example\r\n");
  EXPECT_EQ(Feed(s, kEhloAfterTls), kTransaction);
  FinishTransaction(s);
}

TEST(SmtpClientStarttlsTest, VerifyDefersAnUnverifiedServerWithoutSendingTheEnvelope) {
  SmtpClientSession s = Session(TlsLevel::kVerify);
  EXPECT_EQ(Greet(s, kEhloTls), "STARTTLS\r\n");
  Feed(s, "220 go ahead\r\n");
  s.OnTlsEstablished(/*verified=*/false);
  EXPECT_EQ(s.TakeOutput(), "QUIT\r\n");  // over TLS; no EHLO, no MAIL
  ASSERT_TRUE(s.TransactionDone());
  const RecipientResult& r = s.results()[0];
  EXPECT_EQ(r.outcome, Outcome::kDeferred);
  EXPECT_EQ(r.dsn, "4.7.5");
  EXPECT_EQ(r.reason, "Server certificate not verified");
  EXPECT_TRUE(r.site_failure);
}

TEST(SmtpClientStarttlsTest, HandshakeFailureDefersAndCloses) {
  SmtpClientSession s = Session(TlsLevel::kMay);
  EXPECT_EQ(Greet(s, kEhloTls), "STARTTLS\r\n");
  Feed(s, "220 go ahead\r\n");
  s.OnTlsFailed("TLS handshake failed: bad record");
  EXPECT_EQ(s.phase(), Phase::kClosed);
  EXPECT_EQ(s.TakeOutput(), "");
  EXPECT_EQ(s.results()[0].outcome, Outcome::kDeferred);
  EXPECT_EQ(s.results()[0].dsn, "4.7.5");
  EXPECT_EQ(s.results()[0].reason, "Cannot start TLS: handshake failure");
}

TEST(SmtpClientStarttlsTest, PlaintextAfterThe220IsNeverReadAsAReply) {
  SmtpClientSession s = Session(TlsLevel::kMay);
  EXPECT_EQ(Greet(s, kEhloTls), "STARTTLS\r\n");
  // An attacker's pipelined plaintext behind the 220 (CVE-2011-0411 on the client side).
  EXPECT_EQ(Feed(s, "220 go ahead\r\n250-injected\r\n250 AUTH\r\n"), "");
  EXPECT_EQ(s.phase(), Phase::kTlsHandshake);
  s.OnData("250 more plaintext during the handshake\r\n");  // ignored
  s.OnTlsEstablished(false);
  EXPECT_EQ(s.TakeOutput(), "EHLO relay.example\r\n");
  // The first reply read is the real one to the new EHLO.
  EXPECT_EQ(Feed(s, kEhloAfterTls), kTransaction);
  EXPECT_TRUE(s.features().size);
}

TEST(SmtpClientStarttlsTest, HandshakeTimeoutDefers) {
  ClientTimeouts timeouts;
  timeouts.starttls = absl::Seconds(7);
  SmtpClientSession s(ServerIdentity{"relay.example", "mx.internal", "10.0.0.5", 2525,
                                     TlsLevel::kEncrypt},
                      timeouts);
  EXPECT_EQ(Greet(s, kEhloTls), "STARTTLS\r\n");
  EXPECT_EQ(TimeoutFor(s.phase(), timeouts), absl::Seconds(7));
  Feed(s, "220 go ahead\r\n");
  EXPECT_EQ(TimeoutFor(s.phase(), timeouts), absl::Seconds(7));
  EXPECT_TRUE(s.OnTimeout(Phase::kTlsHandshake));
  EXPECT_EQ(s.phase(), Phase::kClosed);
  EXPECT_EQ(s.results()[0].reason,
            "conversation with mx.internal[10.0.0.5] timed out while performing the TLS "
            "handshake");
}

}  // namespace
}  // namespace moat::client
