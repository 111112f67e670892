// Unit tests of moat-loadgen's TLS: the client side it uses (tls::TlsTransform's client role
// with a tls::ClientSessionCache for --tls-resume) handshaking in memory against moat's own
// server side, records both ways, ticket resumption, garbage from the server; and the STARTTLS
// steps of the client and sink SMTP state machines (offered, not offered, refused, plaintext
// injected after the 220 dropped on both sides, EHLO again after the handshake). No sockets.
// Owner: "tlsbench".
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

#include "bench/loadgen/smtp_client.h"
#include "bench/loadgen/smtp_sink.h"
#include "tests/testing/testing.h"
#include "tests/tls/test_certs.h"
#include "tls/client_context.h"
#include "tls/server_context.h"
#include "tls/session_cache.h"
#include "tls/tls_transform.h"

namespace moat::loadgen {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;

class TlsClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = tls_testing::MakeTestCerts(dir_);
    tls::ServerOptions options;
    options.level = tls::SecurityLevel::kMay;
    options.cert_file = certs_.server_cert;
    options.key_file = certs_.server_key;
    auto server = tls::ServerContext::Create(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_context_ = *server;
    tls::ClientOptions client;  // as moat-loadgen's: opportunistic, nothing verified
    client.level = tls::ClientLevel::kMay;
    auto context = tls::ClientContext::Create(std::move(client));
    ASSERT_TRUE(context.ok()) << context.status();
    client_context_ = *context;
  }

  struct Pair {
    std::unique_ptr<tls::TlsTransform> client;
    std::unique_ptr<tls::TlsTransform> server;
    tls::HandshakeInfo server_info;
    int client_handshakes = 0;
    int server_handshakes = 0;
    std::string client_plain;
    std::string server_plain;
  };

  // Runs a handshake between a new client and a new server transform, exchanging the bytes
  // in memory for at most 10 round trips. Returns the pair (check handshake_done()).
  std::unique_ptr<Pair> Handshake(tls::ClientSessionCache* sessions = nullptr) {
    auto p = std::make_unique<Pair>();
    Pair* raw = p.get();
    p->client = std::make_unique<tls::TlsTransform>(
        client_context_, "", [raw](const tls::HandshakeInfo&) { ++raw->client_handshakes; },
        sessions, "127.0.0.1:2525");
    p->server = std::make_unique<tls::TlsTransform>(
        server_context_, [raw](const tls::HandshakeInfo& info) {
          raw->server_info = info;
          ++raw->server_handshakes;
        });
    std::string to_server;
    EXPECT_TRUE(p->client->Decode({}, &p->client_plain, &to_server));
    EXPECT_FALSE(to_server.empty());  // the ClientHello
    for (int i = 0; i < 10 && !(p->client->handshake_done() && p->server->handshake_done()); ++i) {
      std::string to_client;
      EXPECT_TRUE(p->server->Decode(to_server, &p->server_plain, &to_client));
      to_server.clear();
      EXPECT_TRUE(p->client->Decode(to_client, &p->client_plain, &to_server));
    }
    // The last client flight (Finished) still has to reach the server; the server's reply
    // (TLS 1.3: the session ticket) goes back to the client.
    std::string to_client;
    EXPECT_TRUE(p->server->Decode(to_server, &p->server_plain, &to_client));
    EXPECT_TRUE(p->client->Decode(to_client, &p->client_plain, &to_server));
    return p;
  }

  testing::TempDir dir_;
  tls_testing::TestCerts certs_;
  std::shared_ptr<const tls::ServerContext> server_context_;
  std::shared_ptr<const tls::ClientContext> client_context_;
};

TEST_F(TlsClientTest, HandshakeThenRecordsBothWays) {
  auto p = Handshake();
  ASSERT_TRUE(p->client->handshake_done());
  ASSERT_TRUE(p->server->handshake_done());
  EXPECT_EQ(p->server_handshakes, 1);
  EXPECT_EQ(p->client_handshakes, 1);  // reported once
  EXPECT_EQ(p->client->info().protocol, "TLSv1.3");
  EXPECT_FALSE(p->client->info().cipher.empty());
  EXPECT_FALSE(p->client->info().resumed);

  std::string wire;
  ASSERT_TRUE(p->client->Encode(std::string_view("EHLO client.test\r\n"), &wire));
  EXPECT_EQ(wire.find("EHLO"), std::string::npos);  // sealed
  std::string reply_wire;
  ASSERT_TRUE(p->server->Decode(wire, &p->server_plain, &reply_wire));
  EXPECT_EQ(p->server_plain, "EHLO client.test\r\n");
  const std::string big(40000, 'x');  // several records
  ASSERT_TRUE(p->server->Encode(big, &reply_wire));
  // Delivered in pieces of 1000 bytes: records split across reads reassemble.
  std::string ignored;
  for (size_t i = 0; i < reply_wire.size(); i += 1000) {
    ASSERT_TRUE(p->client->Decode(std::string_view(reply_wire).substr(i, 1000), &p->client_plain,
                                  &ignored));
  }
  EXPECT_EQ(p->client_plain, big);
}

TEST_F(TlsClientTest, TicketFromAnEndedConnectionResumesTheNext) {
  tls::ClientSessionCache sessions;
  {
    auto first = Handshake(&sessions);
    ASSERT_TRUE(first->client->handshake_done());
    EXPECT_FALSE(first->client->info().resumed);
    EXPECT_EQ(sessions.size(), 0u) << "kept when the connection ends (the ticket comes late)";
  }
  ASSERT_EQ(sessions.size(), 1u);
  void* kept = sessions.Find("127.0.0.1:2525");
  ASSERT_NE(kept, nullptr);
  {
    auto second = Handshake(&sessions);
    ASSERT_TRUE(second->client->handshake_done());
    EXPECT_TRUE(second->client->info().resumed);
    EXPECT_TRUE(second->server_info.resumed);
  }
  EXPECT_EQ(sessions.Find("127.0.0.1:2525"), kept)
      << "a resumed connection's session is not kept (Postfix refuses it)";
  auto third = Handshake(&sessions);
  EXPECT_TRUE(third->client->info().resumed) << "the first ticket is offered again";

  // Without a cache (no --tls-resume) every handshake is full.
  { auto a = Handshake(); }
  auto b = Handshake();
  EXPECT_FALSE(b->client->info().resumed);
}

TEST_F(TlsClientTest, GarbageFromTheServerIsAnErrorValue) {
  tls::TlsTransform client(client_context_, "", nullptr);
  std::string out;
  std::string plain;
  ASSERT_TRUE(client.Decode({}, &plain, &out));
  EXPECT_FALSE(out.empty());
  EXPECT_FALSE(client.Decode(std::string_view("250 this is not TLS at all\r\n"), &plain, &out));
  EXPECT_FALSE(client.error().empty());
  EXPECT_FALSE(client.handshake_done());
  EXPECT_TRUE(plain.empty());
}

// ---- STARTTLS in the SMTP state machines ----

class Recorder : public ClientListener {
 public:
  void OnReply(Stage, int) override {}
  void OnReady() override { ++ready; }
  void OnTransactionDone(const TransactionResult&) override {}
  int ready = 0;
};

std::string Feed(ClientSession& s, const std::string& bytes) {
  s.OnBytes(bytes.data(), bytes.size());
  std::string out;
  out.swap(s.out());
  return out;
}

TEST(ClientStartTlsTest, StartTlsThenEhloAgain) {
  Recorder listener;
  ClientSession s("helo.test", "a@b.test", /*want_pipelining=*/true, &listener,
                  /*want_starttls=*/true);
  EXPECT_EQ(Feed(s, "220 mx.test ESMTP\r\n"), "EHLO helo.test\r\n");
  EXPECT_EQ(Feed(s, "250-mx.test\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 8BITMIME\r\n"),
            "STARTTLS\r\n");
  EXPECT_EQ(listener.ready, 0);  // not before TLS
  // A reply injected in plaintext behind the 220 is dropped, not taken as the EHLO reply.
  EXPECT_EQ(Feed(s, "220 2.0.0 Ready\r\n250 injected\r\n"), "");
  EXPECT_EQ(s.state(), ClientSession::State::kTlsHandshake);
  EXPECT_FALSE(s.tls_active());
  s.OnTlsEstablished();
  EXPECT_TRUE(s.tls_active());
  std::string out;
  out.swap(s.out());
  EXPECT_EQ(out, "EHLO helo.test\r\n");
  // The EHLO reply over TLS decides PIPELINING afresh (here: not offered).
  EXPECT_EQ(Feed(s, "250-mx.test\r\n250 8BITMIME\r\n"), "");
  EXPECT_EQ(s.state(), ClientSession::State::kReady);
  EXPECT_FALSE(s.pipelining());
  EXPECT_EQ(listener.ready, 1);
}

TEST(ClientStartTlsTest, NotOfferedFailsTheSession) {
  Recorder listener;
  ClientSession s("helo.test", "a@b.test", false, &listener, /*want_starttls=*/true);
  Feed(s, "220 mx.test ESMTP\r\n");
  EXPECT_EQ(Feed(s, "250-mx.test\r\n250 PIPELINING\r\n"), "");
  EXPECT_EQ(s.state(), ClientSession::State::kFailed);
  EXPECT_TRUE(s.starttls_not_offered());
  EXPECT_THAT(s.error(), HasSubstr("STARTTLS not offered"));
  EXPECT_EQ(listener.ready, 0);
}

TEST(ClientStartTlsTest, RefusedFailsTheSession) {
  Recorder listener;
  ClientSession s("helo.test", "a@b.test", false, &listener, /*want_starttls=*/true);
  Feed(s, "220 mx.test ESMTP\r\n");
  EXPECT_EQ(Feed(s, "250-mx.test\r\n250 STARTTLS\r\n"), "STARTTLS\r\n");
  Feed(s, "454 4.7.0 TLS not available due to local problem\r\n");
  EXPECT_EQ(s.state(), ClientSession::State::kFailed);
  EXPECT_TRUE(s.starttls_not_offered());
  EXPECT_THAT(s.error(), HasSubstr("454"));
}

TEST(ClientStartTlsTest, WithoutStartTlsWantedTheOfferIsIgnored) {
  Recorder listener;
  ClientSession s("helo.test", "a@b.test", false, &listener);
  Feed(s, "220 mx.test ESMTP\r\n");
  EXPECT_EQ(Feed(s, "250-mx.test\r\n250 STARTTLS\r\n"), "");
  EXPECT_EQ(s.state(), ClientSession::State::kReady);
}

class NullSinkListener : public SinkListener {
 public:
  int RcptReply() override { return 250; }
  void OnMessage(std::string&, uint32_t) override {}
};

std::string Feed(SinkSession& s, const std::string& bytes) {
  s.OnBytes(bytes.data(), bytes.size());
  std::string out;
  out.swap(s.out());
  return out;
}

TEST(SinkStartTlsTest, OfferedAcceptedThenFreshSession) {
  NullSinkListener listener;
  SinkSession s("sink.test", &listener);
  s.OfferStartTls();
  s.Greet();
  s.out().clear();
  EXPECT_THAT(Feed(s, "EHLO c.test\r\n"), HasSubstr("250-STARTTLS\r\n"));
  // MAIL pipelined in plaintext behind STARTTLS is never answered.
  EXPECT_EQ(Feed(s, "STARTTLS\r\nMAIL FROM:<a@b.test>\r\n"), "220 2.0.0 Ready to start TLS\r\n");
  EXPECT_TRUE(s.TakeStartTls());
  EXPECT_FALSE(s.TakeStartTls());  // once
  EXPECT_EQ(Feed(s, "MAIL FROM:<a@b.test>\r\n"), "");  // ignored until the handshake is done
  s.OnTlsStarted();
  EXPECT_TRUE(s.tls_active());
  // RFC 3207: the client must EHLO again; STARTTLS is no longer offered.
  EXPECT_THAT(Feed(s, "MAIL FROM:<a@b.test>\r\n"), HasSubstr("503"));
  const std::string ehlo = Feed(s, "EHLO c.test\r\n");
  EXPECT_THAT(ehlo, Not(HasSubstr("STARTTLS")));
  EXPECT_THAT(ehlo, EndsWith("250 ENHANCEDSTATUSCODES\r\n"));
  EXPECT_THAT(Feed(s, "STARTTLS\r\n"), HasSubstr("554 5.5.1"));
  EXPECT_EQ(Feed(s, "MAIL FROM:<a@b.test>\r\n"), "250 2.1.0 Ok\r\n");
}

TEST(SinkStartTlsTest, NotOfferedWithoutACertificate) {
  NullSinkListener listener;
  SinkSession s("sink.test", &listener);
  EXPECT_THAT(Feed(s, "EHLO c.test\r\n"), Not(HasSubstr("STARTTLS")));
  EXPECT_THAT(Feed(s, "STARTTLS\r\n"), HasSubstr("502 5.5.1"));
  EXPECT_FALSE(s.TakeStartTls());
  EXPECT_EQ(Feed(s, "NOOP\r\n"), "250 2.0.0 Ok\r\n");
}

}  // namespace
}  // namespace moat::loadgen
