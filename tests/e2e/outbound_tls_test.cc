// tests/e2e/outbound_tls_test.cc
//
// Outbound STARTTLS end to end: the real `moat serve` relays to a downstream nobody on the
// project wrote (Python's aiosmtpd with STARTTLS from Python's ssl module, i.e. OpenSSL:
// tests/e2e/peers/aiosmtpd_sink.py --tls-cert) over loopback, at every
// smtp_tls_security_level: may (TLS downstream, plaintext-only downstream), encrypt (TLS,
// several messages over one cached TLS connection, a downstream without STARTTLS defers, a
// failed handshake defers at encrypt and is retried in plaintext at may),
// verify (good CA and matching name delivers; wrong CA and wrong name defer with "Server
// certificate not verified"; a new CA file applies after `moat reload`). The sink records
// the protocol and cipher each message arrived with. Certificates are made at test time.
// Owner: "outbound-tls".
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/smtp_client.h"
#include "tests/testing/testing.h"
#include "tests/tls/test_certs.h"

namespace moat {
namespace {

using testing::ReplyCode;
using testing::SmtpClient;

class OutboundTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    certs_dir_ = new testing::TempDir();
    certs_ = new tls_testing::TestCerts(tls_testing::MakeTestCerts(*certs_dir_));
    // A certificate from the same CA for another name only (no IP address): "wrong name".
    const std::string d = certs_dir_->path() + "/";
    certs_dir_->Write("wrong.ext", "subjectAltName=DNS:wrong.example\n");
    tls_testing::RunOpenssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                             "-nodes", "-keyout", d + "wrong.key", "-out", d + "wrong.csr",
                             "-subj", "/CN=wrong.example"});
    tls_testing::RunOpenssl({"x509", "-req", "-in", d + "wrong.csr", "-CA", certs_->ca, "-CAkey",
                             d + "ca.key", "-CAcreateserial", "-out", d + "wrong.pem", "-days",
                             "2", "-extfile", d + "wrong.ext"});
  }
  static void TearDownTestSuite() {
    delete certs_;
    delete certs_dir_;
  }

  void SetUp() override {
    port_ = testing::FreePort();
    sink_port_ = testing::FreePort();
    sink_dir_ = dir_.path() + "/sink";
  }

  void Configure(const std::string& tls) {
    dir_.Write("transport", absl::StrCat("example.com smtp:[127.0.0.1]:", sink_port_, "\n"));
    auto r = testing::RunMoat({"postmap", "hash:" + dir_.path() + "/transport"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    dir_.Write("main.cf", absl::StrCat("myhostname = mx.example.net\n"
                                       "mydestination =\n"
                                       "mynetworks = 127.0.0.1/32\n"
                                       "relay_domains = example.com\n"
                                       "transport_maps = hash:",
                                       dir_.path(),
                                       "/transport\n"
                                       "queue_directory = ",
                                       dir_.path(),
                                       "/queue\n"
                                       "moat_listen = 127.0.0.1:",
                                       port_,
                                       "\n"
                                       "moat_shards = 1\n"
                                       "default_destination_concurrency_limit = 1\n"
                                       "smtp_connection_cache_time_limit = 20s\n"
                                       "minimal_backoff_time = 300s\n"
                                       "maximal_backoff_time = 600s\n",
                                       tls));
  }

  std::unique_ptr<testing::Process> StartMoat() {
    auto p = std::make_unique<testing::Process>(
        std::vector<std::string>{testing::MoatBinary(), "serve", "-c", dir_.path()});
    EXPECT_TRUE(testing::WaitForPort(port_)) << p->Stderr();
    return p;
  }

  // The sink; with `cert` it offers STARTTLS with that certificate (key: `key`).
  std::unique_ptr<testing::Process> StartSink(const std::string& cert = "",
                                              const std::string& key = "",
                                              bool tls13_only = false) {
    std::vector<std::string> argv = {MOAT_PYTHON,
                                     testing::SourceDir() + "/tests/e2e/peers/aiosmtpd_sink.py",
                                     "--port", std::to_string(sink_port_), "--dir", sink_dir_,
                                     "--duration", "120"};
    if (!cert.empty()) {
      argv.insert(argv.end(), {"--tls-cert", cert, "--tls-key", key});
    }
    if (tls13_only) {
      argv.push_back("--tls13-only");
    }
    auto p = std::make_unique<testing::Process>(argv);
    EXPECT_TRUE(testing::WaitForPort(sink_port_)) << p->Stderr();
    return p;
  }

  std::unique_ptr<testing::Process> StartTlsSink() {
    return StartSink(certs_->server_cert, certs_->server_key);
  }

  std::unique_ptr<testing::Process> StartSinkTls13Only() {
    return StartSink(certs_->server_cert, certs_->server_key, /*tls13_only=*/true);
  }

  // Messages the sink wrote, in arrival order.
  std::vector<std::string> Received() {
    std::map<int, std::string> by_number;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(sink_dir_, ec)) {
      if (e.path().extension() == ".eml") {
        by_number[std::stoi(e.path().stem().string())] = testing::ReadFile(e.path().string());
      }
    }
    std::vector<std::string> out;
    for (auto& [n, text] : by_number) {
      out.push_back(std::move(text));
    }
    return out;
  }

  bool WaitForReceived(size_t count) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (Received().size() >= count) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  static bool WaitForLog(testing::Process& p, const std::string& text) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      if (p.Stderr().find(text) != std::string::npos) {
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  static size_t Count(const std::string& text, const std::string& what) {
    size_t n = 0;
    for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) {
      ++n;
    }
    return n;
  }

  // Sends `count` messages to user<i>@example.com in one SMTP session.
  void SendMessages(int count) {
    SmtpClient c;
    ASSERT_TRUE(c.Connect(port_));
    ASSERT_EQ(ReplyCode(c.ReadReply()), 220);
    ASSERT_EQ(ReplyCode(c.Command("EHLO client.example.org")), 250);
    for (int i = 0; i < count; ++i) {
      std::string reply = c.SendMail(
          "a@sender.example", absl::StrCat("user", i, "@example.com"),
          absl::StrCat("From: a@sender.example\r\nSubject: tls ", i, "\r\n\r\nbody ", i, "\r\n"));
      ASSERT_EQ(ReplyCode(reply), 250) << reply;
    }
  }

  std::string Relay() const { return absl::StrCat("127.0.0.1[127.0.0.1]:", sink_port_); }

  static testing::TempDir* certs_dir_;
  static tls_testing::TestCerts* certs_;
  testing::TempDir dir_;
  int port_ = 0;
  int sink_port_ = 0;
  std::string sink_dir_;
};

testing::TempDir* OutboundTlsTest::certs_dir_ = nullptr;
tls_testing::TestCerts* OutboundTlsTest::certs_ = nullptr;

TEST_F(OutboundTlsTest, MayDeliversOverTlsAndLogsLikePostfix) {
  Configure("smtp_tls_security_level = may\n");
  auto sink = StartTlsSink();
  auto moat = StartMoat();
  SendMessages(1);
  ASSERT_TRUE(WaitForReceived(1)) << moat->Stderr();
  const std::string file = Received()[0];
  EXPECT_NE(file.find("X-Envelope-TLS: TLSv1.3 TLS_"), std::string::npos) << file;
  // No CA file: "Untrusted", with Postfix's shape of the line.
  ASSERT_TRUE(WaitForLog(*moat, "status=sent")) << moat->Stderr();
  const std::string log = moat->Stderr();
  EXPECT_NE(log.find("Untrusted TLS connection established to " + Relay() +
                     ": TLSv1.3 with cipher TLS_"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("/256 bits)"), std::string::npos) << log;
  EXPECT_NE(log.find("relay=" + Relay()), std::string::npos) << log;
  // The next hop is an address literal: no SNI.
  EXPECT_EQ(testing::ReadFile(sink_dir_ + "/sni"), "\n");
}

TEST_F(OutboundTlsTest, MayWithCaFileSaysTrusted) {
  Configure(absl::StrCat("smtp_tls_security_level = may\nsmtp_tls_CAfile = ", certs_->ca, "\n"));
  auto sink = StartTlsSink();
  auto moat = StartMoat();
  SendMessages(1);
  ASSERT_TRUE(WaitForReceived(1)) << moat->Stderr();
  EXPECT_TRUE(WaitForLog(*moat, "Trusted TLS connection established to " + Relay()))
      << moat->Stderr();
  EXPECT_EQ(moat->Stderr().find("Untrusted"), std::string::npos);
}

TEST_F(OutboundTlsTest, MayDeliversToAPlaintextOnlyDownstream) {
  Configure("smtp_tls_security_level = may\n");
  auto sink = StartSink();
  auto moat = StartMoat();
  SendMessages(1);
  ASSERT_TRUE(WaitForReceived(1)) << moat->Stderr();
  ASSERT_TRUE(WaitForLog(*moat, "status=sent")) << moat->Stderr();
  EXPECT_EQ(moat->Stderr().find("TLS connection established"), std::string::npos);
}

// Postfix's opportunistic TLS: a failed handshake is retried at once in plaintext on a
// new connection. Here the sink speaks TLS 1.3 only and moat at most TLS 1.2.
TEST_F(OutboundTlsTest, MayRetriesInPlaintextWhenTheHandshakeFails) {
  Configure("smtp_tls_security_level = may\nsmtp_tls_protocols = <=TLSv1.2\n");
  auto sink = StartSinkTls13Only();
  auto moat = StartMoat();
  SendMessages(1);
  ASSERT_TRUE(WaitForReceived(1)) << moat->Stderr();
  EXPECT_NE(Received()[0].find("X-Envelope-TLS: none"), std::string::npos) << Received()[0];
  ASSERT_TRUE(WaitForLog(*moat, "status=sent")) << moat->Stderr();
  const std::string log = moat->Stderr();
  EXPECT_NE(log.find("SSL_connect error to " + Relay()), std::string::npos) << log;
  EXPECT_NE(log.find("trying again without TLS"), std::string::npos) << log;
  EXPECT_EQ(log.find("status=deferred"), std::string::npos) << log;
}

TEST_F(OutboundTlsTest, EncryptDefersWhenTheHandshakeFails) {
  Configure("smtp_tls_security_level = encrypt\nsmtp_tls_mandatory_protocols = <=TLSv1.2\n");
  auto sink = StartSinkTls13Only();
  auto moat = StartMoat();
  SendMessages(1);
  ASSERT_TRUE(WaitForLog(*moat, "status=deferred")) << moat->Stderr();
  const std::string log = moat->Stderr();
  EXPECT_NE(log.find("dsn=4.7.5"), std::string::npos) << log;
  EXPECT_NE(log.find("(Cannot start TLS: handshake failure)"), std::string::npos) << log;
  EXPECT_EQ(log.find("trying again without TLS"), std::string::npos) << log;
  EXPECT_TRUE(Received().empty());
}

TEST_F(OutboundTlsTest, EncryptCarriesSeveralMessagesOverOneCachedTlsConnection) {
  Configure("smtp_tls_security_level = encrypt\n");
  auto sink = StartTlsSink();
  auto moat = StartMoat();
  constexpr int kMessages = 5;
  SendMessages(kMessages);
  ASSERT_TRUE(WaitForReceived(kMessages)) << moat->Stderr();
  for (const std::string& file : Received()) {
    EXPECT_NE(file.find("X-Envelope-TLS: TLSv1.3"), std::string::npos) << file;
  }
  ASSERT_TRUE(WaitForLog(*moat, "conn_use=2")) << moat->Stderr();
  // The TLS handshakes the sink saw (one line each in its sni file; its own start-up
  // probes do no TLS): fewer than the messages, and as many as moat logged.
  const size_t handshakes = Count(testing::ReadFile(sink_dir_ + "/sni"), "\n");
  EXPECT_GE(handshakes, 1u);
  EXPECT_LT(handshakes, static_cast<size_t>(kMessages)) << "the cache carried nothing";
  EXPECT_EQ(Count(moat->Stderr(), "TLS connection established"), handshakes) << moat->Stderr();
}

// A new connection to a destination resumes the TLS session an earlier one left behind (the
// shard's session cache): an abbreviated handshake, seen by the sink's OpenSSL.
TEST_F(OutboundTlsTest, MayResumesTheSessionOfAnEarlierConnection) {
  // One shard (Configure: one cache), and cached connections closed after a second, so the
  // second message needs a new connection.
  Configure("smtp_tls_security_level = may\nsmtp_connection_cache_time_limit = 1s\n");
  auto sink = StartTlsSink();
  auto moat = StartMoat();
  SendMessages(1);
  ASSERT_TRUE(WaitForReceived(1)) << moat->Stderr();
  // Bounded wait for the idle connection to be closed (the sink counts connections; its own
  // start-up probe is one of them).
  const std::string connections_file = sink_dir_ + "/connections";
  const int before = std::stoi("0" + testing::ReadFile(connections_file));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  SendMessages(1);
  ASSERT_TRUE(WaitForReceived(2)) << moat->Stderr();
  EXPECT_GT(std::stoi("0" + testing::ReadFile(connections_file)), before)
      << "the second message came on a new connection";
  size_t resumed = 0;
  for (const std::string& file : Received()) {
    resumed += file.find("X-Envelope-TLS: TLSv1.3 TLS_") != std::string::npos &&
               file.find(" resumed\r\n") != std::string::npos;
  }
  EXPECT_EQ(resumed, 1u) << moat->Stderr();
}

// At verify, every connection checks the certificate: no resumption.
TEST_F(OutboundTlsTest, VerifyNeverResumes) {
  Configure(absl::StrCat("smtp_tls_security_level = verify\n",
                         "smtp_connection_cache_time_limit = 1s\nsmtp_tls_CAfile = ", certs_->ca,
                         "\n"));
  auto sink = StartTlsSink();
  auto moat = StartMoat();
  SendMessages(1);
  ASSERT_TRUE(WaitForReceived(1)) << moat->Stderr();
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  SendMessages(1);
  ASSERT_TRUE(WaitForReceived(2)) << moat->Stderr();
  for (const std::string& file : Received()) {
    EXPECT_EQ(file.find(" resumed\r\n"), std::string::npos) << file;
  }
}

TEST_F(OutboundTlsTest, EncryptDefersWhenStarttlsIsNotOffered) {
  Configure("smtp_tls_security_level = encrypt\n");
  auto sink = StartSink();
  auto moat = StartMoat();
  SendMessages(1);
  ASSERT_TRUE(WaitForLog(*moat, "status=deferred")) << moat->Stderr();
  EXPECT_NE(moat->Stderr().find("dsn=4.7.4"), std::string::npos) << moat->Stderr();
  EXPECT_NE(moat->Stderr().find("TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]"),
            std::string::npos)
      << moat->Stderr();
  EXPECT_TRUE(Received().empty());
}

TEST_F(OutboundTlsTest, VerifyDeliversWithGoodCaAndMatchingName) {
  Configure(
      absl::StrCat("smtp_tls_security_level = verify\nsmtp_tls_CAfile = ", certs_->ca, "\n"));
  auto sink = StartTlsSink();
  auto moat = StartMoat();
  SendMessages(1);
  ASSERT_TRUE(WaitForReceived(1)) << moat->Stderr();
  EXPECT_TRUE(WaitForLog(*moat, "Verified TLS connection established to " + Relay()))
      << moat->Stderr();
}

TEST_F(OutboundTlsTest, VerifyDefersWithWrongCa) {
  Configure(absl::StrCat("smtp_tls_security_level = verify\nsmtp_tls_CAfile = ",
                         certs_->other_cert, "\n"));
  auto sink = StartTlsSink();
  auto moat = StartMoat();
  SendMessages(1);
  ASSERT_TRUE(WaitForLog(*moat, "status=deferred")) << moat->Stderr();
  const std::string log = moat->Stderr();
  EXPECT_NE(log.find("Untrusted TLS connection established to " + Relay()), std::string::npos)
      << log;
  EXPECT_NE(log.find("dsn=4.7.5"), std::string::npos) << log;
  EXPECT_NE(log.find("(Server certificate not verified)"), std::string::npos) << log;
  EXPECT_TRUE(Received().empty());
}

TEST_F(OutboundTlsTest, VerifyDefersWithWrongNameAndDeliversAtEncryptAfterReload) {
  // The certificate chains to the CA but names wrong.example only, not 127.0.0.1.
  Configure(
      absl::StrCat("smtp_tls_security_level = verify\nsmtp_tls_CAfile = ", certs_->ca, "\n"));
  auto sink = StartSink(certs_dir_->path() + "/wrong.pem", certs_dir_->path() + "/wrong.key");
  auto moat = StartMoat();
  SendMessages(1);
  ASSERT_TRUE(WaitForLog(*moat, "status=deferred")) << moat->Stderr();
  std::string log = moat->Stderr();
  EXPECT_NE(log.find("Trusted TLS connection established to " + Relay()), std::string::npos)
      << log;
  EXPECT_NE(log.find("subject name does not match 127.0.0.1"), std::string::npos) << log;
  EXPECT_NE(log.find("(Server certificate not verified)"), std::string::npos) << log;
  EXPECT_TRUE(Received().empty());
  // The operator lowers the level to encrypt (its certificate is not checked there): after
  // `moat reload` the next attempt delivers.
  Configure("smtp_tls_security_level = encrypt\n");
  auto reload = testing::RunMoat({"reload", "-c", dir_.path()});
  ASSERT_EQ(reload.exit_code, 0) << reload.err;
  ASSERT_TRUE(WaitForLog(*moat, "configuration generation 2")) << moat->Stderr();
  auto flush = testing::RunMoat({"queue", "-c", dir_.path(), "flush"});
  ASSERT_EQ(flush.exit_code, 0) << flush.err;
  ASSERT_TRUE(WaitForReceived(1)) << moat->Stderr();
  EXPECT_NE(Received()[0].find("X-Envelope-TLS: TLSv1.3"), std::string::npos);
}

TEST_F(OutboundTlsTest, ANewCaFileAppliesToNewConnectionsAfterReload) {
  Configure(absl::StrCat("smtp_tls_security_level = verify\nsmtp_tls_CAfile = ",
                         certs_->other_cert, "\n"));
  auto sink = StartTlsSink();
  auto moat = StartMoat();
  SendMessages(1);
  ASSERT_TRUE(WaitForLog(*moat, "(Server certificate not verified)")) << moat->Stderr();
  Configure(
      absl::StrCat("smtp_tls_security_level = verify\nsmtp_tls_CAfile = ", certs_->ca, "\n"));
  auto reload = testing::RunMoat({"reload", "-c", dir_.path()});
  ASSERT_EQ(reload.exit_code, 0) << reload.err;
  ASSERT_TRUE(WaitForLog(*moat, "configuration generation 2")) << moat->Stderr();
  auto flush = testing::RunMoat({"queue", "-c", dir_.path(), "flush"});
  ASSERT_EQ(flush.exit_code, 0) << flush.err;
  ASSERT_TRUE(WaitForReceived(1)) << moat->Stderr();
  EXPECT_TRUE(WaitForLog(*moat, "Verified TLS connection established to " + Relay()))
      << moat->Stderr();
}

}  // namespace
}  // namespace moat
