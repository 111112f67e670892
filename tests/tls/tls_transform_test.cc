// tests/tls/tls_transform_test.cc
//
// TlsTransform and ServerContext against a wolfSSL client over memory buffers: handshakes
// (TLS 1.3 and 1.2), the server's cipher order, protocol floors, refused weak suites,
// session tickets shared between contexts (shards) and rotated, the client certificate
// fingerprint, plaintext staged before or during the handshake, and garbage input.
// Owner: "tls".

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
// clang-format on

#include "tls/tls_transform.h"

#include <cstring>
#include <memory>
#include <string>

#include "gtest/gtest.h"

#include "tests/testing/testing.h"
#include "tests/tls/test_certs.h"
#include "tls/server_context.h"
#include "tls/ticket_keys.h"

namespace moat::tls {
namespace {

using tls_testing::MakeTestCerts;
using tls_testing::TestCerts;

// A wolfSSL client whose "network" is two strings.
class MemoryClient {
 public:
  struct Options {
    WOLFSSL_METHOD* (*method)() = wolfSSLv23_client_method;
    std::string ciphers;  // empty = library default
    std::string ca_file;  // verify the server against it when set
    std::string cert_file, key_file;
    WOLFSSL_SESSION* session = nullptr;  // resume this session
  };
  explicit MemoryClient(const Options& o) {
    ctx_ = wolfSSL_CTX_new(o.method());
    if (!o.ciphers.empty()) {
      EXPECT_EQ(wolfSSL_CTX_set_cipher_list(ctx_, o.ciphers.c_str()), WOLFSSL_SUCCESS);
    }
    if (!o.ca_file.empty()) {
      EXPECT_EQ(wolfSSL_CTX_load_verify_locations(ctx_, o.ca_file.c_str(), nullptr),
                WOLFSSL_SUCCESS);
      wolfSSL_CTX_set_verify(ctx_, WOLFSSL_VERIFY_PEER, nullptr);
    } else {
      wolfSSL_CTX_set_verify(ctx_, WOLFSSL_VERIFY_NONE, nullptr);
    }
    if (!o.cert_file.empty()) {
      EXPECT_EQ(wolfSSL_CTX_use_certificate_chain_file(ctx_, o.cert_file.c_str()), WOLFSSL_SUCCESS);
      EXPECT_EQ(wolfSSL_CTX_use_PrivateKey_file(ctx_, o.key_file.c_str(), WOLFSSL_FILETYPE_PEM),
                WOLFSSL_SUCCESS);
    }
    wolfSSL_CTX_SetIORecv(ctx_, [](WOLFSSL*, char* buf, int size, void* user) {
      auto* self = static_cast<MemoryClient*>(user);
      if (self->from_server_.empty()) {
        return static_cast<int>(WOLFSSL_CBIO_ERR_WANT_READ);
      }
      const int n = std::min<int>(size, static_cast<int>(self->from_server_.size()));
      std::memcpy(buf, self->from_server_.data(), static_cast<size_t>(n));
      self->from_server_.erase(0, static_cast<size_t>(n));
      return n;
    });
    wolfSSL_CTX_SetIOSend(ctx_, [](WOLFSSL*, char* buf, int size, void* user) {
      static_cast<MemoryClient*>(user)->to_server_.append(buf, static_cast<size_t>(size));
      return size;
    });
    ssl_ = wolfSSL_new(ctx_);
    wolfSSL_SetIOReadCtx(ssl_, this);
    wolfSSL_SetIOWriteCtx(ssl_, this);
    wolfSSL_UseSNI(ssl_, WOLFSSL_SNI_HOST_NAME, "localhost", 9);
    if (o.session != nullptr) {
      EXPECT_EQ(wolfSSL_set_session(ssl_, o.session), WOLFSSL_SUCCESS);
    }
  }
  ~MemoryClient() {
    wolfSSL_free(ssl_);
    wolfSSL_CTX_free(ctx_);
  }

  // Runs the handshake against `server`, moving bytes both ways (bounded rounds). Returns
  // true when the client's handshake completed and the server did not fail.
  bool Handshake(TlsTransform& server, std::string* server_plain) {
    for (int round = 0; round < 20; ++round) {
      const int r = wolfSSL_connect(ssl_);
      const bool done = r == WOLFSSL_SUCCESS;
      if (!done) {
        const int e = wolfSSL_get_error(ssl_, r);
        if (e != WOLFSSL_ERROR_WANT_READ) {
          last_error_ = e;
          return false;
        }
      }
      std::string raw = std::move(to_server_);
      to_server_.clear();
      if (!raw.empty() || done) {
        std::string out;
        if (!server.Decode({raw.data(), raw.size()}, server_plain, &out)) {
          return false;
        }
        from_server_ += out;
      }
      if (done && server.handshake_done()) {
        return true;
      }
    }
    return false;
  }

  // Reads whatever plaintext the server's records in from_server_ carry.
  std::string ReadAll() {
    std::string plain;
    char buf[4096];
    for (int i = 0; i < 1000; ++i) {
      const int n = wolfSSL_read(ssl_, buf, sizeof(buf));
      if (n <= 0) {
        break;
      }
      plain.append(buf, static_cast<size_t>(n));
    }
    return plain;
  }
  // Encrypts `text` and returns the records for the server.
  std::string Write(const std::string& text) {
    EXPECT_EQ(wolfSSL_write(ssl_, text.data(), static_cast<int>(text.size())),
              static_cast<int>(text.size()));
    std::string raw = std::move(to_server_);
    to_server_.clear();
    return raw;
  }

  void FeedFromServer(const std::string& raw) { from_server_ += raw; }
  WOLFSSL* ssl() { return ssl_; }
  int last_error() const { return last_error_; }

 private:
  WOLFSSL_CTX* ctx_ = nullptr;
  WOLFSSL* ssl_ = nullptr;
  std::string to_server_;
  std::string from_server_;
  int last_error_ = 0;
};

class TlsTransformTest : public ::testing::Test {
 protected:
  // The certificates are made once for the suite (openssl takes ~1 s for them).
  static void SetUpTestSuite() {
    wolfSSL_Init();
    shared_dir_ = new testing::TempDir();
    shared_certs_ = new TestCerts(MakeTestCerts(*shared_dir_));
  }
  static void TearDownTestSuite() {
    delete shared_certs_;
    delete shared_dir_;
  }
  void SetUp() override { certs_ = *shared_certs_; }
  std::shared_ptr<const ServerContext> MakeContext(ServerOptions o = {}) {
    o.level = SecurityLevel::kMay;
    if (o.cert_file.empty() && o.chain_files.empty()) {
      o.cert_file = certs_.server_cert;
      o.key_file = certs_.server_key;
    }
    if (o.ticket_keys == nullptr) {
      o.ticket_keys = keys_;
    }
    absl::StatusOr<std::shared_ptr<const ServerContext>> c = ServerContext::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }
  static testing::TempDir* shared_dir_;
  static TestCerts* shared_certs_;
  testing::TempDir dir_;
  TestCerts certs_;
  std::shared_ptr<TicketKeys> keys_ = std::make_shared<TicketKeys>();
};

testing::TempDir* TlsTransformTest::shared_dir_ = nullptr;
TestCerts* TlsTransformTest::shared_certs_ = nullptr;

TEST_F(TlsTransformTest, Tls13HandshakeAndDataBothWays) {
  auto context = MakeContext();
  ASSERT_NE(context, nullptr);
  int calls = 0;
  HandshakeInfo seen;
  TlsTransform server(context, [&](const HandshakeInfo& info) {
    ++calls;
    seen = info;
  });
  MemoryClient::Options o;
  o.ca_file = certs_.ca;  // the chain verifies against the test CA
  MemoryClient client(o);
  std::string plain;
  ASSERT_TRUE(client.Handshake(server, &plain)) << server.error() << " " << client.last_error();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen.protocol, "TLSv1.3");
  // Server preference: ChaCha20 first even though the client lists AES-GCM first.
  EXPECT_EQ(seen.cipher, "TLS_CHACHA20_POLY1305_SHA256");
  EXPECT_EQ(seen.cipher_bits, 256);
  EXPECT_FALSE(seen.resumed);
  EXPECT_TRUE(seen.peer_fingerprint.empty());

  std::string raw = client.Write("EHLO client.test\r\n");
  std::string out;
  ASSERT_TRUE(server.Decode({raw.data(), raw.size()}, &plain, &out));
  EXPECT_EQ(plain, "EHLO client.test\r\n");
  std::string reply_raw;
  ASSERT_TRUE(server.Encode({"250 ok\r\n", 8}, &reply_raw));
  EXPECT_EQ(reply_raw.find("250 ok"), std::string::npos);  // encrypted on the wire
  client.FeedFromServer(out + reply_raw);
  EXPECT_EQ(client.ReadAll(), "250 ok\r\n");
  EXPECT_EQ(calls, 1);
}

TEST_F(TlsTransformTest, Tls12ClientGetsChachaEcdhe) {
  auto context = MakeContext();
  ASSERT_NE(context, nullptr);
  TlsTransform server(context, nullptr);
  MemoryClient::Options o;
  o.method = wolfTLSv1_2_client_method;
  MemoryClient client(o);
  std::string plain;
  ASSERT_TRUE(client.Handshake(server, &plain)) << server.error();
  EXPECT_EQ(server.info().protocol, "TLSv1.2");
  EXPECT_EQ(server.info().cipher, "ECDHE-ECDSA-CHACHA20-POLY1305");
  EXPECT_EQ(server.info().algorithm_bits, 256);
}

TEST_F(TlsTransformTest, LargeWritesSplitIntoRecords) {
  auto context = MakeContext();
  ASSERT_NE(context, nullptr);
  TlsTransform server(context, nullptr);
  MemoryClient client({});
  std::string plain;
  ASSERT_TRUE(client.Handshake(server, &plain)) << server.error();
  std::string big(100000, 'x');
  for (size_t i = 0; i < big.size(); i += 7) {
    big[i] = static_cast<char>('a' + i % 26);
  }
  std::string raw;
  ASSERT_TRUE(server.Encode({big.data(), big.size()}, &raw));
  client.FeedFromServer(raw);
  EXPECT_EQ(client.ReadAll(), big);
}

TEST_F(TlsTransformTest, MinimumTls13RefusesTls12Client) {
  ServerOptions options;
  options.min_version = 3;
  auto context = MakeContext(options);
  ASSERT_NE(context, nullptr);
  TlsTransform server(context, nullptr);
  MemoryClient::Options o;
  o.method = wolfTLSv1_2_client_method;
  MemoryClient client(o);
  std::string plain;
  EXPECT_FALSE(client.Handshake(server, &plain));
  EXPECT_FALSE(server.handshake_done());
}

TEST_F(TlsTransformTest, MaximumTls12NegotiatesTls12) {
  ServerOptions options;
  options.max_version = 2;
  auto context = MakeContext(options);
  ASSERT_NE(context, nullptr);
  TlsTransform server(context, nullptr);
  MemoryClient client({});
  std::string plain;
  ASSERT_TRUE(client.Handshake(server, &plain)) << server.error();
  EXPECT_EQ(server.info().protocol, "TLSv1.2");
}

TEST_F(TlsTransformTest, IntegrityOnlyAndWeakSuitesAreRefused) {
  auto context = MakeContext();
  ASSERT_NE(context, nullptr);
  for (const char* suite : {"TLS13-SHA256-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-NULL-SHA",
                            "ECDHE-ECDSA-DES-CBC3-SHA", "ECDHE-ECDSA-RC4-SHA"}) {
    TlsTransform server(context, nullptr);
    MemoryClient::Options o;
    o.ciphers = suite;
    if (std::strncmp(suite, "TLS13", 5) != 0) {
      o.method = wolfTLSv1_2_client_method;
    }
    MemoryClient client(o);
    std::string plain;
    EXPECT_FALSE(client.Handshake(server, &plain)) << suite;
    EXPECT_FALSE(server.handshake_done()) << suite;
  }
}

TEST_F(TlsTransformTest, GarbageFailsTheHandshake) {
  auto context = MakeContext();
  ASSERT_NE(context, nullptr);
  TlsTransform server(context, nullptr);
  std::string plain;
  std::string out;
  // Plaintext SMTP pipelined after STARTTLS must never be taken as TLS.
  const std::string garbage = "MAIL FROM:<attacker@example.test>\r\nRCPT TO:<x@y>\r\n";
  EXPECT_FALSE(server.Decode({garbage.data(), garbage.size()}, &plain, &out));
  EXPECT_TRUE(plain.empty());
  EXPECT_FALSE(server.error().empty());
}

TEST_F(TlsTransformTest, PlaintextBeforeHandshakeIsSentAfterIt) {
  // Implicit TLS: the greeting is staged before the client's hello arrived.
  auto context = MakeContext();
  ASSERT_NE(context, nullptr);
  TlsTransform server(context, nullptr);
  std::string early;
  ASSERT_TRUE(server.Encode({"220 greeting\r\n", 14}, &early));
  EXPECT_TRUE(early.empty());
  MemoryClient client({});
  std::string plain;
  ASSERT_TRUE(client.Handshake(server, &plain)) << server.error();
  EXPECT_EQ(client.ReadAll(), "220 greeting\r\n");
}

TEST_F(TlsTransformTest, EncodeFromTheHandshakeCallbackKeepsRecordOrder) {
  auto context = MakeContext();
  ASSERT_NE(context, nullptr);
  TlsTransform* self = nullptr;
  std::string nested_out;
  TlsTransform server(context, [&](const HandshakeInfo&) {
    EXPECT_TRUE(self->Encode({"hello\r\n", 7}, &nested_out));
  });
  self = &server;
  MemoryClient client({});
  std::string plain;
  ASSERT_TRUE(client.Handshake(server, &plain)) << server.error();
  EXPECT_TRUE(nested_out.empty());  // deferred into Decode's own output, after the tickets
  EXPECT_EQ(client.ReadAll(), "hello\r\n");
}

// Completes a handshake on `context` and returns the client's session (for resumption).
WOLFSSL_SESSION* HandshakeAndKeepSession(std::shared_ptr<const ServerContext> context,
                                         WOLFSSL_SESSION* resume, bool* resumed) {
  TlsTransform server(std::move(context), nullptr);
  MemoryClient::Options o;
  o.session = resume;
  MemoryClient client(o);
  std::string plain;
  if (!client.Handshake(server, &plain)) {
    ADD_FAILURE() << server.error();
    return nullptr;
  }
  // TLS 1.3: the ticket arrives after the handshake; let the client read it.
  client.ReadAll();
  *resumed = server.info().resumed;
  return wolfSSL_get1_session(client.ssl());
}

TEST_F(TlsTransformTest, TicketFromOneShardResumesOnAnother) {
  auto shard_a = MakeContext();
  auto shard_b = MakeContext();  // a different WOLFSSL_CTX, same TicketKeys
  ASSERT_NE(shard_a, nullptr);
  ASSERT_NE(shard_b, nullptr);
  bool resumed = true;
  WOLFSSL_SESSION* session = HandshakeAndKeepSession(shard_a, nullptr, &resumed);
  ASSERT_NE(session, nullptr);
  EXPECT_FALSE(resumed);
  WOLFSSL_SESSION* again = HandshakeAndKeepSession(shard_b, session, &resumed);
  EXPECT_TRUE(resumed);
  wolfSSL_SESSION_free(again);

  // A context with other ticket keys cannot open it: full handshake, not a failure.
  ServerOptions foreign;
  foreign.ticket_keys = std::make_shared<TicketKeys>();
  auto other = MakeContext(foreign);
  WOLFSSL_SESSION* fresh = HandshakeAndKeepSession(other, session, &resumed);
  EXPECT_FALSE(resumed);
  wolfSSL_SESSION_free(fresh);
  wolfSSL_SESSION_free(session);
}

TEST_F(TlsTransformTest, RotatedKeysStillResumeOnceThenExpire) {
  auto context = MakeContext();
  ASSERT_NE(context, nullptr);
  bool resumed = true;
  WOLFSSL_SESSION* session = HandshakeAndKeepSession(context, nullptr, &resumed);
  ASSERT_NE(session, nullptr);
  const auto before = keys_->CurrentNameForTest();
  keys_->Rotate();
  EXPECT_NE(keys_->CurrentNameForTest(), before);
  WOLFSSL_SESSION* after_one = HandshakeAndKeepSession(context, session, &resumed);
  EXPECT_TRUE(resumed);  // the previous key still opens it
  keys_->Rotate();
  keys_->Rotate();
  WOLFSSL_SESSION* after_three = HandshakeAndKeepSession(context, session, &resumed);
  EXPECT_FALSE(resumed);  // two rotations later: full handshake
  wolfSSL_SESSION_free(after_three);
  wolfSSL_SESSION_free(after_one);
  wolfSSL_SESSION_free(session);
}

// smtpd_tls_ask_ccert = yes (and smtpd_tls_CAfile = the test CA unless `ca_file` is false).
ServerOptions AskCcert(const TestCerts& certs, bool ca_file = true) {
  ServerOptions options;
  options.ask_client_cert = true;
  options.ca_file = ca_file ? certs.ca : "";
  return options;
}

// One handshake against `context` of a client presenting `cert`/`key` (none when empty),
// resuming `resume` if set. Returns the server's facts; `*keep` (if given) gets the
// client's session for a later resumption (free it with wolfSSL_SESSION_free).
HandshakeInfo ClientCertHandshake(std::shared_ptr<const ServerContext> context,
                                  const std::string& cert, const std::string& key,
                                  WOLFSSL_SESSION* resume = nullptr,
                                  WOLFSSL_SESSION** keep = nullptr) {
  TlsTransform server(std::move(context), nullptr);
  MemoryClient::Options o;
  o.cert_file = cert;
  o.key_file = key;
  o.session = resume;
  MemoryClient client(o);
  std::string plain;
  EXPECT_TRUE(client.Handshake(server, &plain)) << server.error();
  if (keep != nullptr) {
    client.ReadAll();  // the TLS 1.3 ticket
    *keep = wolfSSL_get1_session(client.ssl());
  }
  return server.info();
}

TEST_F(TlsTransformTest, ClientCertificateFingerprintMatchesOpenssl) {
  auto context = MakeContext(AskCcert(certs_));
  ASSERT_NE(context, nullptr);
  HandshakeInfo info = ClientCertHandshake(context, certs_.client_cert, certs_.client_key);
  ASSERT_FALSE(certs_.client_fingerprint.empty());
  EXPECT_EQ(info.peer_fingerprint, certs_.client_fingerprint);
  ASSERT_FALSE(certs_.client_pkey_fingerprint.empty());
  EXPECT_EQ(info.peer_pkey_fingerprint, certs_.client_pkey_fingerprint);
  EXPECT_NE(info.peer_pkey_fingerprint, info.peer_fingerprint);
  EXPECT_TRUE(info.client_cert_requested);
  EXPECT_TRUE(info.peer_verified);  // signed by smtpd_tls_CAfile
  EXPECT_EQ(info.peer_cn, "client.test");
  EXPECT_EQ(info.issuer_cn, "moat test CA");

  // Asked, not required: a client without a certificate still gets TLS.
  HandshakeInfo anonymous = ClientCertHandshake(context, "", "");
  EXPECT_TRUE(anonymous.peer_fingerprint.empty());
  EXPECT_TRUE(anonymous.peer_pkey_fingerprint.empty());
  EXPECT_FALSE(anonymous.peer_verified);
  EXPECT_TRUE(anonymous.client_cert_requested);
}

// A ticket-resumed session with a client certificate: wolfSSL restores the certificate
// from the ticket (the fingerprints stay) but runs no verification, so nothing resumed is
// "trusted" (fail closed: an untrusted certificate must never become trusted by resuming).
TEST_F(TlsTransformTest, ResumedSessionKeepsFingerprintsButIsNeverTrusted) {
  auto context = MakeContext(AskCcert(certs_));
  ASSERT_NE(context, nullptr);
  struct Case {
    std::string cert, key;
    bool first_verified;
  };
  for (const Case& c : {Case{certs_.client_cert, certs_.client_key, true},
                        Case{certs_.other_cert, certs_.other_key, false}}) {
    WOLFSSL_SESSION* session = nullptr;
    HandshakeInfo first = ClientCertHandshake(context, c.cert, c.key, nullptr, &session);
    EXPECT_FALSE(first.resumed);
    EXPECT_EQ(first.peer_verified, c.first_verified) << c.cert;
    ASSERT_NE(session, nullptr);
    HandshakeInfo again = ClientCertHandshake(context, c.cert, c.key, session);
    EXPECT_TRUE(again.resumed);
    EXPECT_EQ(again.peer_fingerprint, tls_testing::OpensslFingerprint(c.cert, "sha256", false));
    EXPECT_EQ(again.peer_pkey_fingerprint,
              tls_testing::OpensslFingerprint(c.cert, "sha256", true));
    EXPECT_FALSE(again.peer_verified) << c.cert;
    wolfSSL_SESSION_free(session);
  }
}

TEST_F(TlsTransformTest, SelfSignedClientCertificateIsAcceptedButUntrusted) {
  auto context = MakeContext(AskCcert(certs_));
  ASSERT_NE(context, nullptr);
  // Self-signed, not from the CA.
  HandshakeInfo info = ClientCertHandshake(context, certs_.other_cert, certs_.other_key);
  EXPECT_EQ(info.peer_fingerprint,
            tls_testing::OpensslFingerprint(certs_.other_cert, "sha256", false));
  EXPECT_FALSE(info.peer_verified);
  EXPECT_EQ(info.peer_cn, "other.test");
}

TEST_F(TlsTransformTest, WithoutCaFileNoCertificateIsTrusted) {
  ServerOptions options = AskCcert(certs_, /*ca_file=*/false);
  options.fingerprint_digest = "sha1";
  auto context = MakeContext(options);
  ASSERT_NE(context, nullptr);
  HandshakeInfo info = ClientCertHandshake(context, certs_.client_cert, certs_.client_key);
  EXPECT_FALSE(info.peer_verified);
  // smtpd_tls_fingerprint_digest = sha1: 20 bytes, as openssl computes them.
  EXPECT_EQ(info.peer_fingerprint,
            tls_testing::OpensslFingerprint(certs_.client_cert, "sha1", false));
  EXPECT_EQ(info.peer_pkey_fingerprint,
            tls_testing::OpensslFingerprint(certs_.client_cert, "sha1", true));
  EXPECT_EQ(info.peer_fingerprint.size(), 20u * 3 - 1);
}

TEST_F(TlsTransformTest, NoCertificateRequestedByDefault) {
  auto context = MakeContext();
  ASSERT_NE(context, nullptr);
  HandshakeInfo info = ClientCertHandshake(context, certs_.client_cert, certs_.client_key);
  EXPECT_FALSE(info.client_cert_requested);
  EXPECT_TRUE(info.peer_fingerprint.empty());  // never sent: not asked
}

TEST(FingerprintTest, PostfixFormat) {
  const unsigned char abc[] = {'a', 'b', 'c'};
  // SHA-256("abc") and MD5("abc"), the FIPS / RFC 1321 test vectors.
  EXPECT_EQ(Fingerprint("sha256", abc, 3),
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:"
            "61:F2:00:15:AD");
  EXPECT_EQ(Fingerprint("md5", abc, 3), "90:01:50:98:3C:D2:4F:B0:D6:96:3F:7D:28:E1:7F:72");
  EXPECT_EQ(Fingerprint("sha384", abc, 3), "");  // not a Postfix digest name
}

TEST_F(TlsTransformTest, ChainFileWithKeyFirst) {
  ServerOptions options;
  options.chain_files = {certs_.server_combined};
  auto context = MakeContext(options);
  ASSERT_NE(context, nullptr);
  TlsTransform server(context, nullptr);
  MemoryClient::Options o;
  o.ca_file = certs_.ca;
  MemoryClient client(o);
  std::string plain;
  EXPECT_TRUE(client.Handshake(server, &plain)) << server.error();
}

TEST_F(TlsTransformTest, BadFilesAreErrorsWithTheName) {
  ServerOptions o;
  o.level = SecurityLevel::kMay;
  o.cert_file = dir_.path() + "/missing.pem";
  absl::StatusOr<std::shared_ptr<const ServerContext>> c = ServerContext::Create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(std::string(c.status().message()).find("missing.pem"), std::string::npos);

  // A key that does not belong to the certificate.
  o.cert_file = certs_.server_cert;
  o.key_file = certs_.other_key;
  c = ServerContext::Create(o);
  EXPECT_FALSE(c.ok());
}

TEST(ParseProtocolsTest, PostfixSyntaxes) {
  int lo = 0;
  int hi = 0;
  ASSERT_TRUE(ParseProtocols({">=TLSv1"}, &lo, &hi).ok());
  EXPECT_EQ(lo, 2);  // clamped: never below TLS 1.2
  EXPECT_EQ(hi, 3);
  ASSERT_TRUE(ParseProtocols({"!SSLv2", "!SSLv3", "!TLSv1", "!TLSv1.1"}, &lo, &hi).ok());
  EXPECT_EQ(lo, 2);
  EXPECT_EQ(hi, 3);
  ASSERT_TRUE(ParseProtocols({">=TLSv1.3"}, &lo, &hi).ok());
  EXPECT_EQ(lo, 3);
  EXPECT_EQ(hi, 3);
  ASSERT_TRUE(ParseProtocols({"<=TLSv1.2"}, &lo, &hi).ok());
  EXPECT_EQ(lo, 2);
  EXPECT_EQ(hi, 2);
  ASSERT_TRUE(ParseProtocols({"!TLSv1.3"}, &lo, &hi).ok());
  EXPECT_EQ(hi, 2);
  ASSERT_TRUE(ParseProtocols({"TLSv1.2:TLSv1.3"}, &lo, &hi).ok());
  EXPECT_EQ(lo, 2);
  EXPECT_EQ(hi, 3);
  EXPECT_FALSE(ParseProtocols({"TLSv1.1"}, &lo, &hi).ok());
  EXPECT_FALSE(ParseProtocols({"<=TLSv1.1"}, &lo, &hi).ok());
  EXPECT_FALSE(ParseProtocols({"TLSv9"}, &lo, &hi).ok());
}

}  // namespace
}  // namespace moat::tls
