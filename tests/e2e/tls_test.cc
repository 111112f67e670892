// tests/e2e/tls_test.cc
//
// STARTTLS end to end: the real `moat serve` with certificates made at test time, driven by
// openssl s_client (TLS 1.3, TLS 1.2, and a refused TLS 1.1), Python's smtplib and ssl
// modules, and swaks. Checks: mail relayed over TLS, Postfix's log line, the
// smtpd_tls_security_level = encrypt refusal, the CVE-2011-0411 defence (plaintext
// pipelined after STARTTLS is never answered inside TLS), certificate reload for new
// connections while an old TLS session goes on, session resumption across a reload (a new
// WOLFSSL_CTX: the shared ticket keys), and implicit TLS (smtpd_tls_wrappermode). Client
// certificates (relay_clientcerts + permit_tls_clientcerts), smtpd_tls_received_header, and
// "/tls" moat_listen entries next to plain ones (inbound-tls engineer).
// Owner: "tls".
#include <signal.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
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

// Python helpers shared by the scripts below (stdlib only).
constexpr char kPythonPrelude[] = R"PY(
import hashlib, smtplib, socket, ssl, sys, time

def read_reply(f):
    lines = []
    for _ in range(100):
        line = f.readline()
        if not line:
            break
        lines.append(line.decode())
        if len(line) < 4 or line[3:4] != b'-':
            break
    return lines

def tls_context(ca):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = True
    return ctx

def starttls(port, ctx, source='127.0.0.2', session=None):
    raw = socket.create_connection(('127.0.0.1', port), timeout=10, source_address=(source, 0))
    f = raw.makefile('rb')
    assert read_reply(f)[0].startswith('220'), 'greeting'
    raw.sendall(b'EHLO client.example.org\r\n')
    ehlo = read_reply(f)
    assert any('STARTTLS' in l for l in ehlo), ehlo
    raw.sendall(b'STARTTLS\r\n')
    assert read_reply(f)[0].startswith('220 2.0.0'), 'starttls'
    s = ctx.wrap_socket(raw, server_hostname='localhost', session=session)
    return s
)PY";

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = tls_testing::MakeTestCerts(certs_dir_);
    port_ = testing::FreePort();
    // The served certificate lives in files the reload test rewrites.
    dir_.Write("cert.pem", testing::ReadFile(certs_.server_cert));
    dir_.Write("key.pem", testing::ReadFile(certs_.server_key));
    WriteConfig("smtpd_tls_security_level = may\n");
  }

  void WriteConfig(const std::string& extra) {
    dir_.Write("main.cf", absl::StrCat("myhostname = mx.example.net\n"
                                       "mydestination =\n"
                                       "local_recipient_maps =\n"
                                       "mynetworks = 127.0.0.1/32\n"
                                       "relay_domains = example.com\n"
                                       "smtpd_recipient_restrictions = reject_unauth_destination\n"
                                       "queue_directory = ",
                                       dir_.path(),
                                       "/queue\n"
                                       "moat_listen = 127.0.0.1:",
                                       port_,
                                       "\n"
                                       "moat_shards = 2\n"
                                       "smtpd_tls_cert_file = ",
                                       dir_.path(),
                                       "/cert.pem\n"
                                       "smtpd_tls_key_file = ",
                                       dir_.path(), "/key.pem\n", extra));
  }

  std::unique_ptr<testing::Process> StartServer() {
    auto p = std::make_unique<testing::Process>(
        std::vector<std::string>{testing::MoatBinary(), "serve", "-c", dir_.path()});
    EXPECT_TRUE(testing::WaitForPort(port_)) << p->Stderr();
    return p;
  }

  testing::RunResult Python(const std::string& body) {
    return testing::Run(
        {MOAT_PYTHON, "-c", absl::StrCat(kPythonPrelude, body), certs_.ca, std::to_string(port_)},
        "", std::chrono::seconds(60));
  }

  testing::RunResult SClient(const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {"/usr/bin/openssl",
                                     "s_client",
                                     "-starttls",
                                     "smtp",
                                     "-connect",
                                     absl::StrCat("127.0.0.1:", port_),
                                     "-CAfile",
                                     certs_.ca,
                                     "-verify_hostname",
                                     "localhost",
                                     "-verify_return_error",
                                     "-brief",
                                     "-ign_eof"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return testing::Run(argv, "EHLO client.example.org\r\nQUIT\r\n", std::chrono::seconds(30));
  }

  // The aiosmtpd sink (tests/e2e/peers/aiosmtpd_sink.py) on `port`, writing into `dir`
  // (inbound-tls engineer's tests).
  std::unique_ptr<testing::Process> StartSink(int port, const std::string& dir) {
    std::filesystem::create_directories(dir);
    auto sink = std::make_unique<testing::Process>(std::vector<std::string>{
        MOAT_PYTHON, testing::SourceDir() + "/tests/e2e/peers/aiosmtpd_sink.py", "--port",
        std::to_string(port), "--dir", dir, "--duration", "120"});
    EXPECT_TRUE(testing::WaitForPort(port)) << sink->Stderr();
    return sink;
  }

  testing::TempDir certs_dir_;
  tls_testing::TestCerts certs_;
  testing::TempDir dir_;
  int port_ = 0;
};

TEST_F(TlsTest, OpensslStarttlsTls13AndTls12) {
  auto server = StartServer();
  testing::RunResult tls13 = SClient({"-tls1_3"});
  EXPECT_EQ(tls13.exit_code, 0) << tls13.err;
  EXPECT_NE(tls13.err.find("Protocol version: TLSv1.3"), std::string::npos) << tls13.err;
  EXPECT_NE(tls13.err.find("Ciphersuite: TLS_CHACHA20_POLY1305_SHA256"), std::string::npos)
      << tls13.err;
  EXPECT_NE(tls13.err.find("Verification: OK"), std::string::npos) << tls13.err;
  // The EHLO after the handshake is answered inside TLS, without STARTTLS in the list.
  EXPECT_NE(tls13.out.find("250-mx.example.net"), std::string::npos) << tls13.out;
  EXPECT_EQ(tls13.out.find("STARTTLS"), std::string::npos) << tls13.out;
  EXPECT_NE(tls13.out.find("221 2.0.0"), std::string::npos) << tls13.out;

  testing::RunResult tls12 = SClient({"-tls1_2"});
  EXPECT_EQ(tls12.exit_code, 0) << tls12.err;
  EXPECT_NE(tls12.err.find("Protocol version: TLSv1.2"), std::string::npos) << tls12.err;
  EXPECT_NE(tls12.err.find("Ciphersuite: ECDHE-ECDSA-CHACHA20-POLY1305"), std::string::npos)
      << tls12.err;

  // Nothing below TLS 1.2, even with the registry's default ">=TLSv1".
  testing::RunResult tls11 = SClient({"-tls1_1"});
  EXPECT_NE(tls11.exit_code, 0) << tls11.err;
  EXPECT_EQ(tls11.out.find("250-mx.example.net"), std::string::npos) << tls11.out;

  ASSERT_EQ(server->Stop(SIGTERM), 0) << server->Stderr();
  const std::string log = server->Stderr();
  EXPECT_NE(log.find("Anonymous TLS connection established from unknown[127.0.0.1]: TLSv1.3 "
                     "with cipher TLS_CHACHA20_POLY1305_SHA256 (256/256 bits)"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("SSL_accept error from unknown[127.0.0.1]"), std::string::npos) << log;
}

TEST_F(TlsTest, SmtplibStarttlsRelaysMail) {
  auto server = StartServer();
  testing::RunResult r = Python(R"PY(
ca, port = sys.argv[1], int(sys.argv[2])
s = smtplib.SMTP('127.0.0.1', port, source_address=('127.0.0.2', 0), timeout=10)
s.ehlo('client.example.org')
assert s.has_extn('starttls')
code, _ = s.starttls(context=tls_context(ca))
assert code == 220, code
s.ehlo('client.example.org')
assert not s.has_extn('starttls')
assert s.sock.version() == 'TLSv1.3', s.sock.version()
refused = s.sendmail('a@example.org', ['alice@example.com'], b'Subject: tls\r\n\r\nover TLS\r\n')
assert refused == {}, refused
s.quit()
print('ok')
)PY");
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "ok\n") << r.err;
  ASSERT_EQ(server->Stop(SIGTERM), 0) << server->Stderr();
  EXPECT_NE(server->Stderr().find("from=<a@example.org>"), std::string::npos) << server->Stderr();
}

TEST_F(TlsTest, SwaksTls) {
  auto server = StartServer();
  testing::RunResult r =
      testing::Run({"/usr/bin/swaks", "--server", "127.0.0.1", "--port", std::to_string(port_),
                    "--from", "a@example.org", "--to", "alice@example.com", "--tls", "--tls-verify",
                    "--tls-ca-path", certs_.ca, "--tls-sni", "localhost", "--timeout", "10"},
                   "", std::chrono::seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("TLS started with cipher TLSv1.3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("250 2.0.0 Ok: queued as"), std::string::npos) << r.out;
}

TEST_F(TlsTest, EncryptLevelRefusesMailBeforeStarttls) {
  WriteConfig("smtpd_tls_security_level = encrypt\n");
  auto server = StartServer();
  SmtpClient c;
  ASSERT_TRUE(c.Connect(port_, "127.0.0.1", "127.0.0.2"));
  ASSERT_EQ(ReplyCode(c.ReadReply()), 220);
  std::string ehlo = c.Command("EHLO client.example.org");
  EXPECT_NE(ehlo.find("STARTTLS"), std::string::npos) << ehlo;
  std::string mail = c.Command("MAIL FROM:<a@example.org>");
  EXPECT_EQ(mail.rfind("530 5.7.0", 0), 0u) << mail;
  EXPECT_EQ(ReplyCode(c.Command("QUIT")), 221);

  // After STARTTLS the same commands work.
  testing::RunResult r = Python(R"PY(
ca, port = sys.argv[1], int(sys.argv[2])
s = smtplib.SMTP('127.0.0.1', port, source_address=('127.0.0.3', 0), timeout=10)
s.starttls(context=tls_context(ca))
refused = s.sendmail('a@example.org', ['alice@example.com'], b'Subject: e\r\n\r\ne\r\n')
assert refused == {}, refused
s.quit()
print('ok')
)PY");
  EXPECT_EQ(r.out, "ok\n") << r.err;
}

// CVE-2011-0411: "STARTTLS\r\nRSET\r\n" in one packet. The RSET is plaintext injected
// before the handshake: it must be discarded, so the first reply inside TLS is the EHLO's.
TEST_F(TlsTest, PlaintextPipelinedAfterStarttlsIsNeverAnsweredInsideTls) {
  auto server = StartServer();
  testing::RunResult r = Python(R"PY(
ca, port = sys.argv[1], int(sys.argv[2])
raw = socket.create_connection(('127.0.0.1', port), timeout=10, source_address=('127.0.0.2', 0))
f = raw.makefile('rb')
assert read_reply(f)[0].startswith('220')
raw.sendall(b'EHLO client.example.org\r\n')
read_reply(f)
raw.sendall(b'STARTTLS\r\nRSET\r\nMAIL FROM:<injected@example.org>\r\n')
reply = read_reply(f)
assert reply[0].startswith('220 2.0.0'), reply
s = tls_context(ca).wrap_socket(raw, server_hostname='localhost')
tf = s.makefile('rb')
s.sendall(b'EHLO client.example.org\r\n')
first = read_reply(tf)
assert first[0].startswith('250-mx.example.net'), first
# The session restarted: no transaction from before TLS survives.
s.sendall(b'RCPT TO:<alice@example.com>\r\n')
rcpt = read_reply(tf)
assert rcpt[0].startswith('503'), rcpt
s.sendall(b'QUIT\r\n')
assert read_reply(tf)[0].startswith('221'), 'quit'
print('ok')
)PY");
  EXPECT_EQ(r.out, "ok\n") << r.err;
}

// New certificate files + moat reload: new connections get the new certificate; a TLS
// session opened before goes on; a ticket from before the reload (another WOLFSSL_CTX)
// still resumes.
TEST_F(TlsTest, ReloadServesTheNewCertificateAndKeepsTickets) {
  auto server = StartServer();
  const std::string fingerprint_script = R"PY(
ca, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = starttls(port, ctx)
print(hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest())
s.close()
)PY";
  testing::RunResult before = Python(fingerprint_script);
  ASSERT_EQ(before.exit_code, 0) << before.err;

  // A session that stays open across the reload, and a ticket from before it.
  testing::Process old_session({MOAT_PYTHON, "-c", absl::StrCat(kPythonPrelude, R"PY(
import os
ca, port, flag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = tls_context(ca)
s = starttls(port, ctx, source='127.0.0.3')
f = s.makefile('rb')
s.sendall(b'EHLO client.example.org\r\n')
read_reply(f)
first_session = s.session
open(flag + '.open', 'w').close()
for _ in range(1000):
    if os.path.exists(flag + '.go'):
        break
    time.sleep(0.01)
s.sendall(b'MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n')
r = read_reply(f) + read_reply(f) + read_reply(f)
assert r[-1].startswith('354'), r
s.sendall(b'Subject: x\r\n\r\nx\r\n.\r\n')
assert read_reply(f)[0].startswith('250 2.0.0 Ok: queued'), 'queued'
s.sendall(b'QUIT\r\n')
read_reply(f)
s.close()
again = starttls(port, ctx, source='127.0.0.2', session=first_session)
print('resumed' if again.session_reused else 'full')
again.close()
)PY"),
                                certs_.ca, std::to_string(port_), dir_.path() + "/flag"});
  for (int i = 0; i < 2000 && !std::filesystem::exists(dir_.path() + "/flag.open"); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(std::filesystem::exists(dir_.path() + "/flag.open")) << old_session.Stderr();

  dir_.Write("cert.pem", testing::ReadFile(certs_.other_cert));
  dir_.Write("key.pem", testing::ReadFile(certs_.other_key));
  testing::RunResult reload = testing::RunMoat({"reload", "-c", dir_.path()});
  ASSERT_EQ(reload.exit_code, 0) << reload.err << server->Stderr();
  testing::RunResult after = Python(fingerprint_script);
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_NE(before.out, after.out);
  testing::RunResult other = testing::Run(
      {"/usr/bin/openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", certs_.other_cert});
  std::string expected;
  for (char ch : other.out.substr(other.out.find('=') + 1)) {
    if (ch != ':' && ch != '\n') {
      expected += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    }
  }
  EXPECT_EQ(after.out, expected + "\n");

  dir_.Write("flag.go", "");
  EXPECT_EQ(old_session.Wait(std::chrono::seconds(30)), 0) << old_session.Stderr();
  EXPECT_EQ(old_session.Stdout(), "resumed\n") << old_session.Stderr();
}

// Certificate reloads while clients keep connecting: no handshake fails, and both
// certificates are seen.
TEST_F(TlsTest, ReloadUnderLoadFailsNoHandshake) {
  auto server = StartServer();
  testing::Process load({MOAT_PYTHON, "-c", absl::StrCat(kPythonPrelude, R"PY(
import os
ca, port, flag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
seen, done = set(), 0
for i in range(400):
    s = starttls(port, ctx, source='127.0.0.%d' % (2 + i % 4))
    seen.add(hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest())
    f = s.makefile('rb')
    s.sendall(b'EHLO client.example.org\r\nQUIT\r\n')
    r = read_reply(f) + read_reply(f)
    assert r[-1].startswith('221'), r
    s.close()
    done += 1
    if os.path.exists(flag) and done >= 20:
        break
print(done, len(seen))
)PY"),
                         certs_.ca, std::to_string(port_), dir_.path() + "/stop"});
  for (int i = 0; i < 4; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    const bool other = i % 2 == 0;
    dir_.Write("cert.pem", testing::ReadFile(other ? certs_.other_cert : certs_.server_cert));
    dir_.Write("key.pem", testing::ReadFile(other ? certs_.other_key : certs_.server_key));
    testing::RunResult reload = testing::RunMoat({"reload", "-c", dir_.path()});
    ASSERT_EQ(reload.exit_code, 0) << reload.err << server->Stderr();
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  dir_.Write("stop", "");
  ASSERT_EQ(load.Wait(std::chrono::seconds(120)), 0) << load.Stderr();
  int done = 0;
  int seen = 0;
  ASSERT_EQ(sscanf(load.Stdout().c_str(), "%d %d", &done, &seen), 2) << load.Stdout();
  EXPECT_GE(done, 20);
  EXPECT_EQ(seen, 2) << load.Stdout();
  EXPECT_EQ(server->Stderr().find("SSL_accept error"), std::string::npos) << server->Stderr();
}

TEST_F(TlsTest, WrapperModeIsTlsFromTheFirstByte) {
  WriteConfig("smtpd_tls_security_level = may\nsmtpd_tls_wrappermode = yes\n");
  auto server = StartServer();
  testing::RunResult r = Python(R"PY(
ca, port = sys.argv[1], int(sys.argv[2])
s = smtplib.SMTP_SSL('127.0.0.1', port, source_address=('127.0.0.2', 0), timeout=10,
                     context=tls_context(ca), local_hostname='client.example.org')
s.ehlo()
assert not s.has_extn('starttls')
refused = s.sendmail('a@example.org', ['alice@example.com'], b'Subject: w\r\n\r\nw\r\n')
assert refused == {}, refused
s.quit()
print('ok')
)PY");
  EXPECT_EQ(r.out, "ok\n") << r.err;
}

// testssl.sh (Debian's testssl.sh package) --starttls smtp: protocols, cipher categories,
// forward secrecy and vulnerabilities. The certificate section (-S) is left out: its
// "NOT ok" lines judge the test certificate (private CA, no CRL/OCSP URI), not moat.
TEST_F(TlsTest, TestsslFindsNothingBelowTls12AndNothingVulnerable) {
  auto server = StartServer();
  testing::RunResult r = testing::Run(
      {"/usr/bin/testssl", "--starttls", "smtp", "--quiet", "--color", "0", "--warnings", "batch",
       "-p", "-s", "-f", "-U", absl::StrCat("127.0.0.1:", port_)},
      "", std::chrono::seconds(280));
  ASSERT_NE(r.exit_code, -1) << "testssl timed out\n" << r.out;
  EXPECT_NE(r.out.find("Testing vulnerabilities"), std::string::npos) << r.out << r.err;
  for (const char* line :
       {"SSLv2      not offered", "SSLv3      not offered", "TLS 1      not offered",
        "TLS 1.1    not offered", "TLS 1.2    offered", "TLS 1.3    offered",
        "NULL ciphers (no encryption)                  not offered", "PFS is offered (OK)"}) {
    EXPECT_NE(r.out.find(line), std::string::npos) << line << "\n" << r.out;
  }
  EXPECT_EQ(r.out.find("VULNERABLE"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("NOT ok"), std::string::npos) << r.out;
}

// ---- client certificates, smtpd_tls_received_header, implicit-TLS listeners
// (inbound-tls engineer) ----

// Messages the aiosmtpd sink (tests/e2e/peers/aiosmtpd_sink.py) wrote into `dir`, waiting
// (bounded) until there are `count` of them.
std::vector<std::string> SinkMessages(const std::string& dir, size_t count) {
  std::vector<std::string> out;
  for (int i = 0; i < 1500 && out.size() < count; ++i) {  // 30 s at most
    out.clear();
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      if (e.path().extension() == ".eml") {
        out.push_back(testing::ReadFile(e.path().string()));
      }
    }
    if (out.size() < count) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  return out;
}

// relay_clientcerts + permit_tls_clientcerts: an outside client (127.0.0.2, not in
// mynetworks) presenting the listed certificate relays to an outside domain; an unlisted
// (self-signed) certificate and no certificate get Postfix's 454 from the default-style
// defer_unauth_destination. The relayed message's Received: header has the TLS clauses
// (smtpd_tls_received_header = yes) and the log says "Trusted TLS connection".
TEST_F(TlsTest, ListedClientCertificateMayRelay) {
  const int sink_port = testing::FreePort();
  const std::string sink_dir = dir_.path() + "/sink";
  dir_.Write("relay_clientcerts", certs_.client_fingerprint + " client.test\n");
  WriteConfig(absl::StrCat(
      "smtpd_tls_security_level = may\n"
      "smtpd_tls_ask_ccert = yes\n"
      "smtpd_tls_CAfile = ", certs_.ca, "\n"
      "smtpd_tls_received_header = yes\n"
      "relay_clientcerts = texthash:", dir_.path(), "/relay_clientcerts\n"
      "smtpd_relay_restrictions = permit_mynetworks, permit_tls_clientcerts, "
      "defer_unauth_destination\n"
      "smtpd_recipient_restrictions =\n"
      "relayhost = [127.0.0.1]:", sink_port, "\n"));
  auto sink = StartSink(sink_port, sink_dir);
  auto server = StartServer();
  testing::RunResult r = testing::Run(
      {MOAT_PYTHON, "-c", absl::StrCat(kPythonPrelude, R"PY(
ca, port, cert, key, other_cert, other_key = sys.argv[1:7]
port = int(port)

def attempt(cert, key):
    ctx = tls_context(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    s = smtplib.SMTP('127.0.0.1', port, source_address=('127.0.0.2', 0), timeout=10)
    s.ehlo('client.example.org')
    s.starttls(context=ctx)
    s.ehlo('client.example.org')
    try:
        refused = s.sendmail('a@client.example.org', ['bob@outside.example'],
                             b'Subject: cert\r\n\r\nrelayed by certificate\r\n')
        result = 'relayed' if refused == {} else repr(refused)
    except smtplib.SMTPRecipientsRefused as e:
        code, text = e.recipients['bob@outside.example']
        result = '%d %s' % (code, text.decode())
    s.quit()
    return result

print(attempt(cert, key))
print(attempt(other_cert, other_key))
print(attempt(None, None))
)PY"),
       certs_.ca, std::to_string(port_), certs_.client_cert, certs_.client_key,
       certs_.other_cert, certs_.other_key},
      "", std::chrono::seconds(60));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out,
            "relayed\n"
            "454 4.7.1 <bob@outside.example>: Relay access denied\n"
            "454 4.7.1 <bob@outside.example>: Relay access denied\n")
      << r.err;
  std::vector<std::string> messages = SinkMessages(sink_dir, 1);
  ASSERT_EQ(messages.size(), 1u) << server->Stderr();
  EXPECT_NE(messages[0].find("relayed by certificate"), std::string::npos) << messages[0];
  EXPECT_NE(messages[0].find("\t(using TLSv1.3 with cipher TLS_CHACHA20_POLY1305_SHA256 "
                             "(256/256 bits))\r\n"
                             "\t(Client CN \"client.test\", Issuer \"moat test CA\" (verified "
                             "OK))\r\n"
                             "\tby mx.example.net (moat) with ESMTPS id "),
            std::string::npos)
      << messages[0];
  ASSERT_EQ(server->Stop(SIGTERM), 0) << server->Stderr();
  const std::string log = server->Stderr();
  EXPECT_NE(log.find("Trusted TLS connection established from unknown[127.0.0.2]: TLSv1.3"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("Untrusted TLS connection established from unknown[127.0.0.2]"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("Anonymous TLS connection established from unknown[127.0.0.2]"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("fingerprint " + certs_.client_fingerprint), std::string::npos) << log;
}

// smtpd_tls_received_header = no (the default): nothing about TLS in Received:.
TEST_F(TlsTest, ReceivedHeaderHasNoTlsClauseByDefault) {
  const int sink_port = testing::FreePort();
  const std::string sink_dir = dir_.path() + "/sink";
  WriteConfig(absl::StrCat("smtpd_tls_security_level = may\n"
                           "relayhost = [127.0.0.1]:", sink_port, "\n"));
  auto sink = StartSink(sink_port, sink_dir);
  auto server = StartServer();
  testing::RunResult r = Python(R"PY(
ca, port = sys.argv[1], int(sys.argv[2])
s = smtplib.SMTP('127.0.0.1', port, source_address=('127.0.0.2', 0), timeout=10)
s.starttls(context=tls_context(ca))
s.ehlo('client.example.org')
assert s.sendmail('a@example.org', ['alice@example.com'], b'Subject: t\r\n\r\nt\r\n') == {}
s.quit()
print('ok')
)PY");
  EXPECT_EQ(r.out, "ok\n") << r.err;
  std::vector<std::string> messages = SinkMessages(sink_dir, 1);
  ASSERT_EQ(messages.size(), 1u) << server->Stderr();
  EXPECT_NE(messages[0].find("Received: from client.example.org (unknown [127.0.0.2])\r\n"
                             "\tby mx.example.net (moat) with ESMTPS id "),
            std::string::npos)
      << messages[0];
  EXPECT_EQ(messages[0].find("using TLS"), std::string::npos) << messages[0];
}

// moat_listen = plain, "/tls": one moat serves STARTTLS on the first and implicit TLS on the
// second (openssl s_client without -starttls; smtplib.SMTP_SSL); the plain one is unchanged.
TEST_F(TlsTest, ImplicitTlsListenerNextToAPlainOne) {
  const int tls_port = testing::FreePort();
  WriteConfig(absl::StrCat("smtpd_tls_security_level = may\n"
                           "moat_listen = 127.0.0.1:", port_, ", 127.0.0.1:", tls_port, "/tls\n"));
  auto server = StartServer();
  ASSERT_TRUE(testing::WaitForPort(tls_port)) << server->Stderr();
  testing::RunResult implicit = testing::Run(
      {"/usr/bin/openssl", "s_client", "-connect", absl::StrCat("127.0.0.1:", tls_port), "-CAfile",
       certs_.ca, "-verify_hostname", "localhost", "-verify_return_error", "-brief", "-ign_eof"},
      "EHLO client.example.org\r\nSTARTTLS\r\nQUIT\r\n", std::chrono::seconds(30));
  EXPECT_EQ(implicit.exit_code, 0) << implicit.err;
  EXPECT_NE(implicit.err.find("Verification: OK"), std::string::npos) << implicit.err;
  EXPECT_NE(implicit.out.find("220 mx.example.net ESMTP"), std::string::npos) << implicit.out;
  EXPECT_NE(implicit.out.find("250-mx.example.net"), std::string::npos) << implicit.out;
  EXPECT_EQ(implicit.out.find("STARTTLS\r\n250"), std::string::npos) << implicit.out;
  EXPECT_EQ(implicit.out.find("250-STARTTLS"), std::string::npos) << implicit.out;
  EXPECT_NE(implicit.out.find("554 5.5.1 Error: TLS already active"), std::string::npos)
      << implicit.out;
  EXPECT_NE(implicit.out.find("221 2.0.0"), std::string::npos) << implicit.out;

  testing::RunResult r = testing::Run(
      {MOAT_PYTHON, "-c", absl::StrCat(kPythonPrelude, R"PY(
ca, port, tls_port = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = smtplib.SMTP_SSL('127.0.0.1', tls_port, source_address=('127.0.0.2', 0), timeout=10,
                     context=tls_context(ca), local_hostname='client.example.org')
s.ehlo()
assert not s.has_extn('starttls')
assert s.sendmail('a@example.org', ['alice@example.com'], b'Subject: i\r\n\r\ni\r\n') == {}
s.quit()
p = smtplib.SMTP('127.0.0.1', port, source_address=('127.0.0.2', 0), timeout=10)
p.ehlo('client.example.org')
assert p.has_extn('starttls')
assert p.sendmail('b@example.org', ['alice@example.com'], b'Subject: p\r\n\r\np\r\n') == {}
p.quit()
print('ok')
)PY"),
       certs_.ca, std::to_string(port_), std::to_string(tls_port)},
      "", std::chrono::seconds(60));
  EXPECT_EQ(r.out, "ok\n") << r.err;

  // A plaintext client on the TLS port gets no SMTP greeting in the clear.
  SmtpClient plain;
  ASSERT_TRUE(plain.Connect(tls_port));
  EXPECT_EQ(plain.ReadReply(std::chrono::milliseconds(300)), "");

  ASSERT_EQ(server->Stop(SIGTERM), 0) << server->Stderr();
  const std::string log = server->Stderr();
  EXPECT_NE(log.find("from=<a@example.org>, size="), std::string::npos) << log;
  EXPECT_NE(log.find("from=<b@example.org>, size="), std::string::npos) << log;
}

TEST_F(TlsTest, ImplicitTlsListenerWithoutTlsFailsStartup) {
  WriteConfig(absl::StrCat("smtpd_tls_security_level = none\n"
                           "moat_listen = 127.0.0.1:", port_, "/tls\n"));
  testing::RunResult r = testing::RunMoat({"serve", "-c", dir_.path()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find(absl::StrCat("moat_listen: 127.0.0.1:", port_, "/tls needs TLS")),
            std::string::npos)
      << r.err;
}

TEST_F(TlsTest, BadCertificateFailsStartup) {
  dir_.Write("key.pem", testing::ReadFile(certs_.other_key));  // not the certificate's key
  testing::RunResult r = testing::RunMoat({"serve", "-c", dir_.path()});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("does not match the certificate"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace moat
