// tests/tls/client_transform_test.cc
//
// The client role of TlsTransform (outbound STARTTLS) with tls::ClientContext, handshaking
// in memory (no sockets) against the server side (ServerContext + TlsTransform): TLS 1.3
// and 1.2, the certificate verified against a good CA, a wrong CA, a wrong host name, an
// address literal, SNI as the server sees it, a protocol the server refuses, and
// ClientOptionsFromConfig (smtp_tls_*). Owner: "outbound-tls".

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
// clang-format on

#include <memory>
#include <string>

#include "gtest/gtest.h"

#include "core/config/config.h"
#include "tests/testing/testing.h"
#include "tests/tls/test_certs.h"
#include "tls/client_context.h"
#include "tls/server_context.h"
#include "tls/tls_transform.h"

namespace moat::tls {
namespace {

using tls_testing::MakeTestCerts;
using tls_testing::TestCerts;

class ClientTransformTest : public ::testing::Test {
 protected:
  // The certificates are made once for the suite (openssl takes ~1 s).
  static void SetUpTestSuite() {
    dir_ = new testing::TempDir();
    certs_ = new TestCerts(MakeTestCerts(*dir_));
  }
  static void TearDownTestSuite() {
    delete certs_;
    delete dir_;
  }

  std::shared_ptr<const ServerContext> Server(int min_version = 2, int max_version = 3) {
    ServerOptions o;
    o.level = SecurityLevel::kMay;
    o.cert_file = certs_->server_cert;
    o.key_file = certs_->server_key;
    o.min_version = min_version;
    o.max_version = max_version;
    absl::StatusOr<std::shared_ptr<const ServerContext>> s = ServerContext::Create(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : nullptr;
  }

  std::shared_ptr<const ClientContext> Client(ClientLevel level, const std::string& ca_file,
                                              int max_version = 3) {
    ClientOptions o;
    o.level = level;
    o.ca_file = ca_file;
    o.max_version = max_version;
    absl::StatusOr<std::shared_ptr<const ClientContext>> c = ClientContext::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *c : nullptr;
  }

  // Moves records between the two sides until both finished the handshake or one failed
  // (bounded). Returns true when both completed.
  static bool Handshake(TlsTransform& client, TlsTransform& server) {
    std::string to_server, to_client, plain;
    if (!client.Decode({}, &plain, &to_server)) {
      return false;
    }
    for (int i = 0; i < 20 && !(client.handshake_done() && server.handshake_done()); ++i) {
      std::string raw = std::move(to_server);
      to_server.clear();
      if (!server.Decode({raw.data(), raw.size()}, &plain, &to_client)) {
        return false;
      }
      raw = std::move(to_client);
      to_client.clear();
      if (!client.Decode({raw.data(), raw.size()}, &plain, &to_server)) {
        return false;
      }
    }
    // The client's last flight (Finished) may still be on its way.
    if (!to_server.empty() && !server.Decode({to_server.data(), to_server.size()}, &plain,
                                              &to_client)) {
      return false;
    }
    EXPECT_TRUE(plain.empty());
    return client.handshake_done() && server.handshake_done();
  }

  static testing::TempDir* dir_;
  static TestCerts* certs_;
};

testing::TempDir* ClientTransformTest::dir_ = nullptr;
TestCerts* ClientTransformTest::certs_ = nullptr;

TEST_F(ClientTransformTest, Tls13VerifiedWithGoodCaAndDataFlowsBothWays) {
  auto server_context = Server();
  auto client_context = Client(ClientLevel::kVerify, certs_->ca);
  ASSERT_NE(server_context, nullptr);
  ASSERT_NE(client_context, nullptr);
  TlsTransform server(server_context, nullptr);
  int handshakes = 0;
  TlsTransform client(client_context, "localhost", [&](const HandshakeInfo&) { ++handshakes; });
  ASSERT_TRUE(Handshake(client, server)) << client.error() << server.error();
  EXPECT_EQ(handshakes, 1);
  const HandshakeInfo& info = client.info();
  EXPECT_EQ(info.protocol, "TLSv1.3");
  EXPECT_EQ(info.cipher, "TLS_CHACHA20_POLY1305_SHA256");
  EXPECT_EQ(info.cipher_bits, 256);
  EXPECT_TRUE(info.peer_verified);
  EXPECT_TRUE(info.peer_name_matched);
  EXPECT_EQ(info.peer_cn, "localhost");
  EXPECT_EQ(info.issuer_cn, "moat test CA");

  std::string raw, plain;
  ASSERT_TRUE(client.Encode({"EHLO client\r\n", 13}, &raw));
  EXPECT_EQ(raw.find("EHLO"), std::string::npos);  // encrypted
  ASSERT_TRUE(server.Decode({raw.data(), raw.size()}, &plain, &raw));
  EXPECT_EQ(plain, "EHLO client\r\n");
  std::string back;
  ASSERT_TRUE(server.Encode({"250 ok\r\n", 8}, &back));
  plain.clear();
  std::string unused;
  ASSERT_TRUE(client.Decode({back.data(), back.size()}, &plain, &unused));
  EXPECT_EQ(plain, "250 ok\r\n");
}

TEST_F(ClientTransformTest, Tls12WhenTheClientCapsIt) {
  auto server_context = Server();
  auto client_context = Client(ClientLevel::kEncrypt, "", /*max_version=*/2);
  ASSERT_NE(client_context, nullptr);
  TlsTransform server(server_context, nullptr);
  TlsTransform client(client_context, "localhost", nullptr);
  ASSERT_TRUE(Handshake(client, server)) << client.error() << server.error();
  EXPECT_EQ(client.info().protocol, "TLSv1.2");
  EXPECT_EQ(client.info().cipher, "ECDHE-ECDSA-CHACHA20-POLY1305");
  // No trust anchors: never trusted, whatever the certificate.
  EXPECT_FALSE(client.info().peer_verified);
}

TEST_F(ClientTransformTest, WrongCaCompletesButIsNotTrusted) {
  auto server_context = Server();
  auto client_context = Client(ClientLevel::kVerify, certs_->other_cert);
  TlsTransform server(server_context, nullptr);
  TlsTransform client(client_context, "localhost", nullptr);
  ASSERT_TRUE(Handshake(client, server)) << client.error() << server.error();
  EXPECT_FALSE(client.info().peer_verified);
  EXPECT_TRUE(client.info().peer_name_matched);
}

TEST_F(ClientTransformTest, SelfSignedServerIsNotTrusted) {
  ServerOptions o;
  o.level = SecurityLevel::kMay;
  o.cert_file = certs_->other_cert;
  o.key_file = certs_->other_key;
  auto server_context = ServerContext::Create(o);
  ASSERT_TRUE(server_context.ok()) << server_context.status();
  auto client_context = Client(ClientLevel::kVerify, certs_->ca);
  TlsTransform server(*server_context, nullptr);
  TlsTransform client(client_context, "other.test", nullptr);
  ASSERT_TRUE(Handshake(client, server)) << client.error() << server.error();
  EXPECT_FALSE(client.info().peer_verified);
  EXPECT_TRUE(client.info().peer_name_matched);
}

TEST_F(ClientTransformTest, WrongHostNameIsTrustedButDoesNotMatch) {
  auto server_context = Server();
  auto client_context = Client(ClientLevel::kVerify, certs_->ca);
  TlsTransform server(server_context, nullptr);
  TlsTransform client(client_context, "mx.example", nullptr);
  ASSERT_TRUE(Handshake(client, server)) << client.error() << server.error();
  EXPECT_TRUE(client.info().peer_verified);
  EXPECT_FALSE(client.info().peer_name_matched);
}

TEST_F(ClientTransformTest, AddressLiteralMatchesOnlyAnIpSubjectAltName) {
  auto server_context = Server();
  auto client_context = Client(ClientLevel::kVerify, certs_->ca);
  {
    TlsTransform server(server_context, nullptr);
    TlsTransform client(client_context, "127.0.0.1", nullptr);
    ASSERT_TRUE(Handshake(client, server)) << client.error() << server.error();
    EXPECT_TRUE(client.info().peer_name_matched);
  }
  {
    TlsTransform server(server_context, nullptr);
    TlsTransform client(client_context, "127.0.0.2", nullptr);
    ASSERT_TRUE(Handshake(client, server)) << client.error() << server.error();
    EXPECT_FALSE(client.info().peer_name_matched);
  }
}

// The SNI host name in a ClientHello, as a server parses it ("" if none).
std::string SniInClientHello(const std::string& hello) {
  unsigned char name[256] = {};
  unsigned int size = sizeof(name);
  const int r = wolfSSL_SNI_GetFromBuffer(reinterpret_cast<const unsigned char*>(hello.data()),
                                          static_cast<unsigned int>(hello.size()),
                                          WOLFSSL_SNI_HOST_NAME, name, &size);
  return r == WOLFSSL_SUCCESS ? std::string(reinterpret_cast<const char*>(name), size) : "";
}

TEST_F(ClientTransformTest, SniIsTheHostNameAndNeverAnAddressLiteral) {
  auto client_context = Client(ClientLevel::kMay, "");
  std::string plain;
  std::string hello;
  TlsTransform named(client_context, "mx.example", nullptr);
  ASSERT_TRUE(named.Decode({}, &plain, &hello));
  EXPECT_EQ(SniInClientHello(hello), "mx.example");
  hello.clear();
  TlsTransform literal(client_context, "127.0.0.1", nullptr);
  ASSERT_TRUE(literal.Decode({}, &plain, &hello));
  ASSERT_FALSE(hello.empty());
  EXPECT_EQ(SniInClientHello(hello), "");
  // And the server still completes a handshake with a named client.
  auto server_context = Server();
  TlsTransform server(server_context, nullptr);
  TlsTransform client(client_context, "mx.example", nullptr);
  EXPECT_TRUE(Handshake(client, server)) << client.error() << server.error();
}

TEST_F(ClientTransformTest, ProtocolTheServerRefusesFailsCleanly) {
  auto server_context = Server(/*min_version=*/3, /*max_version=*/3);
  auto client_context = Client(ClientLevel::kEncrypt, "", /*max_version=*/2);
  TlsTransform server(server_context, nullptr);
  TlsTransform client(client_context, "localhost", nullptr);
  EXPECT_FALSE(Handshake(client, server));
  EXPECT_FALSE(client.handshake_done());
  EXPECT_FALSE(client.error().empty() && server.error().empty());
}

TEST_F(ClientTransformTest, GarbageFromTheServerFailsTheHandshake) {
  auto client_context = Client(ClientLevel::kMay, "");
  TlsTransform client(client_context, "localhost", nullptr);
  std::string raw, plain;
  ASSERT_TRUE(client.Decode({}, &plain, &raw));
  EXPECT_FALSE(raw.empty());  // the ClientHello
  const std::string garbage = "220 this is not TLS at all\r\n";
  EXPECT_FALSE(client.Decode({garbage.data(), garbage.size()}, &plain, &raw));
  EXPECT_FALSE(client.error().empty());
}

TEST_F(ClientTransformTest, MissingCaFileIsAnErrorWithItsName) {
  ClientOptions o;
  o.level = ClientLevel::kVerify;
  o.ca_file = dir_->path() + "/missing.pem";
  absl::StatusOr<std::shared_ptr<const ClientContext>> c = ClientContext::Create(o);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("missing.pem"), absl::string_view::npos);
}

absl::StatusOr<ClientOptions> FromText(const std::string& text) {
  config::LoadResult loaded = config::Config::LoadText(text, "/etc/moat/main.cf");
  EXPECT_NE(loaded.config, nullptr) << text;
  if (loaded.config == nullptr) {
    return absl::InternalError("no config");
  }
  return ClientOptionsFromConfig(*loaded.config);
}

TEST_F(ClientTransformTest, OptionsFromConfig) {
  auto none = FromText("");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->level, ClientLevel::kNone);
  auto may = FromText("smtp_tls_security_level = may\n");
  ASSERT_TRUE(may.ok());
  EXPECT_EQ(may->level, ClientLevel::kMay);
  EXPECT_EQ(may->min_version, 2);  // Postfix's ">=TLSv1" clamped to TLS 1.2
  auto obsolete = FromText("smtp_use_tls = yes\n");
  ASSERT_TRUE(obsolete.ok());
  EXPECT_EQ(obsolete->level, ClientLevel::kMay);
  auto enforce = FromText("smtp_enforce_tls = yes\n");
  ASSERT_TRUE(enforce.ok());
  EXPECT_EQ(enforce->level, ClientLevel::kEncrypt);
  // Mandatory protocols apply at encrypt and verify, the others at may.
  auto encrypt = FromText(
      "smtp_tls_security_level = encrypt\nsmtp_tls_mandatory_protocols = >=TLSv1.3\n"
      "smtp_tls_protocols = TLSv1.2\n");
  ASSERT_TRUE(encrypt.ok());
  EXPECT_EQ(encrypt->min_version, 3);
  auto verify = FromText("smtp_tls_security_level = verify\nsmtp_tls_CAfile = " + certs_->ca +
                         "\n");
  ASSERT_TRUE(verify.ok()) << verify.status();
  EXPECT_EQ(verify->level, ClientLevel::kVerify);
  EXPECT_EQ(verify->ca_file, certs_->ca);
  auto verify_without_ca = FromText("smtp_tls_security_level = verify\n");
  EXPECT_FALSE(verify_without_ca.ok());
  auto dane = FromText("smtp_tls_security_level = dane\n");
  EXPECT_FALSE(dane.ok());
}

}  // namespace
}  // namespace moat::tls
