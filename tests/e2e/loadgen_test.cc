// End-to-end tests of the moat-loadgen binary over loopback: `send` against `sink` delivers
// exactly --messages (and reuses connections as told), the JSON report parses (with Python's
// json module) and has the documented fields, expected rejections are not errors, open loop and
// `run` complete, a dead server ends the run with errors instead of hanging, and the tool
// interoperates with Postfix's smtp-source and smtp-sink. TLS: --starttls against the sink with
// --tls-cert (sessions resumed with --tls-resume), against a sink that does not offer STARTTLS
// (an error per attempt), `run` over TLS on both sides, and against the real `moat serve` with
// smtpd_tls_security_level = may (messages and --handshake-only). Only the last involves a relay.
#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"
#include "tests/tls/test_certs.h"

namespace moat {
namespace {

using testing::Process;

using testing::RunResult;
using testing::TempDir;

// The binary under test: $MOAT_LOADGEN_BINARY if set (e.g. to drive a Sanitize build of the
// tool from this test), else the one this build made.
const char* LoadgenBinary() {
  if (const char* env = getenv("MOAT_LOADGEN_BINARY"); env != nullptr && *env != '\0') {
    return env;
  }
#ifdef MOAT_LOADGEN_BINARY
  return MOAT_LOADGEN_BINARY;
#else
  return nullptr;
#endif
}
const char* const kLoadgen = LoadgenBinary();

// The top-level fields of a JSON object as "key -> JSON text of the value", parsed by Python's
// json module (so a malformed report fails the test). Empty on a parse failure.
std::map<std::string, std::string> ParseJson(const std::string& json, const std::string& path = "") {
  const std::string script =
      "import json, sys\n"
      "d = json.load(sys.stdin)\n"
      "for part in [p for p in sys.argv[1].split('.') if p]:\n"
      "    d = d[part]\n"
      "for k, v in d.items():\n"
      "    print(k + '\\t' + json.dumps(v, sort_keys=True))\n";
  RunResult r = moat::testing::Run({MOAT_PYTHON, "-c", script, path}, json);
  std::map<std::string, std::string> out;
  if (r.exit_code != 0) {
    ADD_FAILURE() << "JSON did not parse: " << r.err << "\n" << json;
    return out;
  }
  size_t pos = 0;
  while (pos < r.out.size()) {
    size_t end = r.out.find('\n', pos);
    std::string line = r.out.substr(pos, end - pos);
    size_t tab = line.find('\t');
    out[line.substr(0, tab)] = line.substr(tab + 1);
    pos = end + 1;
  }
  return out;
}

void ExpectDocumentedFields(const std::map<std::string, std::string>& j) {
  for (const char* f :
       {"messages", "errors", "elapsed_s", "msgs_per_sec", "p50_ms", "p99_ms", "p999_ms", "max_ms"}) {
    EXPECT_TRUE(j.count(f)) << "missing field " << f;
  }
}

double Number(const std::map<std::string, std::string>& j, const std::string& key) {
  auto it = j.find(key);
  if (it == j.end()) {
    ADD_FAILURE() << "missing " << key;
    return -1;
  }
  return std::stod(it->second);
}

size_t CountFiles(const std::string& dir, const std::string& suffix) {
  size_t n = 0;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return 0;
  }
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      ++n;
    }
  }
  closedir(d);
  return n;
}

// Starts a sink on an ephemeral port and reads the port back from its log line.
class Sink {
 public:
  explicit Sink(std::vector<std::string> flags) {
    std::vector<std::string> argv = {kLoadgen, "sink", "--listen", "127.0.0.1:0", "--json"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    process_ = std::make_unique<Process>(argv);
    const std::string marker = "sink listening on port ";
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline && process_->Running()) {
      std::string err = process_->Stderr();
      size_t at = err.find(marker);
      if (at != std::string::npos && err.find('\n', at) != std::string::npos) {
        port_ = std::stoi(err.substr(at + marker.size()));
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  Process& process() { return *process_; }

 private:
  std::unique_ptr<Process> process_;
  int port_ = 0;
};

class LoadgenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (kLoadgen == nullptr) {
      GTEST_SKIP() << "moat-loadgen is not part of this build";
    }
  }
};

TEST_F(LoadgenTest, SendToSinkDeliversExactlyMessagesAndReportsJson) {
  TempDir dir;
  Sink sink({"--messages", "200", "--dir", dir.path()});
  ASSERT_GT(sink.port(), 0) << sink.process().Stderr();
  RunResult send = moat::testing::Run({kLoadgen, "send", "--server", sink.address(), "--sessions", "10",
                        "--messages", "200", "--msgs-per-conn", "5", "--pipelining", "--size",
                        "3000", "--json"},
                       "", std::chrono::seconds(60));
  EXPECT_EQ(send.exit_code, 0) << send.err;
  ASSERT_EQ(sink.process().Wait(std::chrono::milliseconds(20000)), 0) << sink.process().Stderr();

  auto s = ParseJson(send.out);
  ExpectDocumentedFields(s);
  EXPECT_EQ(Number(s, "messages"), 200);
  EXPECT_EQ(Number(s, "errors"), 0);
  EXPECT_EQ(Number(s, "attempted"), 200);
  EXPECT_EQ(Number(s, "connections"), 40);  // 200 messages, 5 per connection
  EXPECT_GT(Number(s, "msgs_per_sec"), 0);
  EXPECT_GT(Number(s, "elapsed_s"), 0);
  EXPECT_LE(Number(s, "p50_ms"), Number(s, "p99_ms"));
  EXPECT_LE(Number(s, "p99_ms"), Number(s, "max_ms"));
  EXPECT_EQ(ParseJson(send.out, "replies")["end"], "{\"250\": 200}");

  auto k = ParseJson(sink.process().Stdout());
  ExpectDocumentedFields(k);
  EXPECT_EQ(Number(k, "messages"), 200);
  EXPECT_EQ(Number(k, "connections"), 40);
  EXPECT_EQ(Number(k, "no_timestamp"), 0);
  EXPECT_EQ(Number(k, "bytes"), 200 * 3000);
  EXPECT_EQ(k["rcpts_per_message"], "{\"1\": 200}");
  EXPECT_EQ(CountFiles(dir.path(), ".eml"), 200u);
  // A stored message is unstuffed, CRLF, with the timestamp header.
  const std::string first = testing::ReadFile(dir.path() + "/1.eml");
  EXPECT_EQ(first.size(), 3000u);
  EXPECT_NE(first.find("\r\nX-Loadgen-Timestamp: "), std::string::npos);
  EXPECT_NE(first.find("\r\n.") , std::string::npos);
  EXPECT_EQ(first.find("\r\n.."), std::string::npos);
  EXPECT_EQ(first.find("\r\n.\r\n"), std::string::npos);
}

TEST_F(LoadgenTest, UnknownRecipientsRejectedBySinkAreExpectedNotErrors) {
  // One lock-step session: the sink's every-second RCPT rejection lines up with the sender's
  // every-second unknown recipient, so every unknown one is refused and every known one taken.
  Sink sink({"--messages", "10", "--reply-5xx-share", "0.5", "--reply-on", "rcpt", "--fsync"});
  ASSERT_GT(sink.port(), 0);
  RunResult send = moat::testing::Run({kLoadgen, "send", "--server", sink.address(), "--sessions", "1",
                        "--messages", "20", "--msgs-per-conn", "0", "--unknown-share", "0.5",
                        "--json"});
  EXPECT_EQ(send.exit_code, 0) << send.out << send.err;
  auto s = ParseJson(send.out);
  EXPECT_EQ(Number(s, "messages"), 10);
  EXPECT_EQ(Number(s, "rejected_messages"), 10);
  EXPECT_EQ(Number(s, "rcpts_rejected_expected"), 10);
  EXPECT_EQ(Number(s, "errors"), 0);
  EXPECT_EQ(Number(s, "connections"), 1);
  EXPECT_EQ(sink.process().Wait(std::chrono::milliseconds(20000)), 0);
  EXPECT_EQ(Number(ParseJson(sink.process().Stdout()), "messages"), 10);
}

TEST_F(LoadgenTest, SinkRejectionsAtDataAreCountedAsErrorsByCode) {
  Sink sink({"--reply-4xx-share", "0.25", "--duration", "30"});
  ASSERT_GT(sink.port(), 0);
  RunResult send = moat::testing::Run({kLoadgen, "send", "--server", sink.address(), "--sessions", "2",
                        "--messages", "40", "--json"});
  EXPECT_EQ(send.exit_code, 1);
  auto s = ParseJson(send.out);
  EXPECT_EQ(Number(s, "messages"), 30);
  EXPECT_EQ(Number(s, "errors"), 10);
  EXPECT_EQ(ParseJson(send.out, "replies")["end"], "{\"250\": 30, \"451\": 10}");
  EXPECT_EQ(sink.process().Stop(SIGTERM), 0);
  EXPECT_EQ(Number(ParseJson(sink.process().Stdout()), "rejected_4xx"), 10);
}

TEST_F(LoadgenTest, OpenLoopAndRunModeComplete) {
  Sink sink({"--messages", "60"});
  ASSERT_GT(sink.port(), 0);
  RunResult send = moat::testing::Run({kLoadgen, "send", "--server", sink.address(), "--sessions", "4",
                        "--rate", "200", "--messages", "60", "--msgs-per-conn", "10", "--json"});
  EXPECT_EQ(send.exit_code, 0) << send.err;
  EXPECT_EQ(Number(ParseJson(send.out), "messages"), 60);
  EXPECT_EQ(sink.process().Wait(std::chrono::milliseconds(20000)), 0);

  // `run` with the relay address pointing at its own sink: the direct path, end to end.
  const std::string self = "127.0.0.1:" + std::to_string(testing::FreePort());
  RunResult run = moat::testing::Run({kLoadgen, "run", "--relay", self, "--sink", self, "--sessions", "5",
                       "--messages", "100", "--msgs-per-conn", "20", "--rcpts", "2", "--json"});
  EXPECT_EQ(run.exit_code, 0) << run.err;
  auto r = ParseJson(run.out);
  ExpectDocumentedFields(r);
  EXPECT_EQ(Number(r, "messages"), 100);
  EXPECT_EQ(Number(r, "lost"), 0);
  EXPECT_EQ(Number(ParseJson(run.out, "send"), "messages"), 100);
  EXPECT_EQ(ParseJson(run.out, "sink")["rcpts_per_message"], "{\"2\": 100}");
}

TEST_F(LoadgenTest, DeadServerEndsTheRunWithErrors) {
  const std::string nobody = "127.0.0.1:" + std::to_string(testing::FreePort());
  RunResult send = moat::testing::Run({kLoadgen, "send", "--server", nobody, "--sessions", "3", "--messages",
                        "6", "--json"},
                       "", std::chrono::seconds(30));
  EXPECT_EQ(send.exit_code, 1);
  auto s = ParseJson(send.out);
  EXPECT_EQ(Number(s, "messages"), 0);
  EXPECT_EQ(Number(s, "errors"), 6);
  EXPECT_GE(Number(s, "connect_errors"), 6);
}

TEST_F(LoadgenTest, UsageErrorsExitTwo) {
  RunResult r = moat::testing::Run({kLoadgen, "send", "--server", "127.0.0.1:1", "--messages", "1", "--nope"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown flag --nope"), std::string::npos) << r.err;
  r = moat::testing::Run({kLoadgen, "send", "--server", "127.0.0.1:1", "--messages", "x"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("--messages: bad number \"x\""), std::string::npos) << r.err;
  r = moat::testing::Run({kLoadgen, "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("moat-loadgen sink --listen"), std::string::npos);
}

TEST_F(LoadgenTest, InteroperatesWithPostfixSourceAndSink) {
  if (access("/usr/sbin/smtp-source", X_OK) != 0 || access("/usr/sbin/smtp-sink", X_OK) != 0) {
    GTEST_SKIP() << "postfix's smtp-source/smtp-sink are not installed (deploy/install-deps.sh)";
  }
  // smtp-source -> moat-loadgen sink.
  Sink sink({"--messages", "50"});
  ASSERT_GT(sink.port(), 0);
  RunResult source = moat::testing::Run({"/usr/sbin/smtp-source", "-c", "-m", "50", "-s", "5", "-l", "2000",
                          "-f", "a@client.example", "-t", "b@example.com", sink.address()});
  EXPECT_EQ(source.exit_code, 0) << source.err;
  EXPECT_EQ(sink.process().Wait(std::chrono::milliseconds(20000)), 0);
  auto k = ParseJson(sink.process().Stdout());
  EXPECT_EQ(Number(k, "messages"), 50);
  EXPECT_EQ(Number(k, "no_timestamp"), 50);  // smtp-source adds no timestamp header

  // moat-loadgen send -> smtp-sink.
  const int port = testing::FreePort();
  // smtp-sink refuses to run as root without -u.
  std::vector<std::string> argv = {"/usr/sbin/smtp-sink"};
  if (getuid() == 0) {
    argv.insert(argv.end(), {"-u", "postfix"});
  }
  argv.insert(argv.end(), {"127.0.0.1:" + std::to_string(port), "64"});
  Process smtp_sink(argv);
  ASSERT_TRUE(testing::WaitForPort(port));
  RunResult send = moat::testing::Run({kLoadgen, "send", "--server", "127.0.0.1:" + std::to_string(port),
                        "--sessions", "5", "--messages", "100", "--msgs-per-conn", "10",
                        "--pipelining", "--json"});
  EXPECT_EQ(send.exit_code, 0) << send.out << send.err;
  EXPECT_EQ(Number(ParseJson(send.out), "messages"), 100);
}

// ---- TLS ----

class LoadgenTlsTest : public LoadgenTest {
 protected:
  void SetUp() override {
    LoadgenTest::SetUp();
    if (IsSkipped()) {
      return;
    }
    certs_ = tls_testing::MakeTestCerts(certs_dir_);
  }
  std::vector<std::string> SinkTlsFlags() const {
    return {"--tls-cert", certs_.server_cert, "--tls-key", certs_.server_key};
  }

  TempDir certs_dir_;
  tls_testing::TestCerts certs_;
};

TEST_F(LoadgenTlsTest, StartTlsToSinkDeliversAndResumesSessions) {
  std::vector<std::string> flags = {"--messages", "20"};
  for (const std::string& f : SinkTlsFlags()) {
    flags.push_back(f);
  }
  Sink sink(flags);
  ASSERT_GT(sink.port(), 0) << sink.process().Stderr();
  RunResult send = moat::testing::Run(
      {kLoadgen, "send", "--server", sink.address(), "--starttls", "--tls-resume", "--sessions",
       "2", "--messages", "20", "--msgs-per-conn", "5", "--pipelining", "--size", "6000",
       "--json"},
      "", std::chrono::seconds(60));
  EXPECT_EQ(send.exit_code, 0) << send.out << send.err;
  ASSERT_EQ(sink.process().Wait(std::chrono::milliseconds(20000)), 0) << sink.process().Stderr();

  auto s = ParseJson(send.out);
  EXPECT_EQ(Number(s, "messages"), 20);
  EXPECT_EQ(Number(s, "errors"), 0);
  EXPECT_EQ(Number(s, "connections"), 4);
  auto t = ParseJson(send.out, "tls");
  EXPECT_EQ(Number(t, "handshakes"), 4);  // one per connection, reused for its 5 messages
  EXPECT_EQ(Number(t, "failures"), 0);
  EXPECT_EQ(Number(t, "not_offered"), 0);
  // Connections 3 and 4 start after 1 and 2 ended and left their tickets behind.
  EXPECT_GE(Number(t, "resumed"), 1);
  EXPECT_LE(Number(t, "resumed"), 2);
  EXPECT_GT(Number(t, "handshake_max_ms"), 0);
  EXPECT_LE(Number(t, "handshake_p50_ms"), Number(t, "handshake_max_ms"));

  auto k = ParseJson(sink.process().Stdout());
  EXPECT_EQ(Number(k, "messages"), 20);
  EXPECT_EQ(Number(k, "bytes"), 20 * 6000);  // byte-exact through TLS records
  EXPECT_EQ(Number(k, "no_timestamp"), 0);
  auto kt = ParseJson(sink.process().Stdout(), "tls");
  EXPECT_EQ(Number(kt, "handshakes"), 4);
  EXPECT_EQ(Number(kt, "resumed"), Number(t, "resumed"));
  EXPECT_EQ(Number(kt, "failures"), 0);
}

TEST_F(LoadgenTlsTest, ServerWithoutStartTlsFailsEveryAttempt) {
  Sink sink({"--duration", "30"});  // no --tls-cert: STARTTLS is not offered
  ASSERT_GT(sink.port(), 0);
  RunResult send = moat::testing::Run({kLoadgen, "send", "--server", sink.address(),
                                       "--starttls", "--sessions", "2", "--messages", "4",
                                       "--json"},
                                      "", std::chrono::seconds(60));
  EXPECT_EQ(send.exit_code, 1) << send.out << send.err;
  EXPECT_NE(send.err.find("STARTTLS not offered"), std::string::npos) << send.err;
  auto s = ParseJson(send.out);
  EXPECT_EQ(Number(s, "messages"), 0);
  EXPECT_EQ(Number(s, "errors"), 4);
  auto t = ParseJson(send.out, "tls");
  EXPECT_GE(Number(t, "not_offered"), 4);
  EXPECT_EQ(Number(t, "handshakes"), 0);
  EXPECT_EQ(sink.process().Stop(SIGTERM), 0);
  EXPECT_EQ(Number(ParseJson(sink.process().Stdout()), "messages"), 0);
}

TEST_F(LoadgenTlsTest, RunOverTlsOnBothSides) {
  // The relay address is the run's own TLS sink: sender and sink both speak TLS.
  const std::string self = "127.0.0.1:" + std::to_string(testing::FreePort());
  std::vector<std::string> argv = {kLoadgen, "run", "--relay", self, "--sink", self,
                                   "--starttls", "--sessions", "3", "--messages", "30",
                                   "--msgs-per-conn", "10", "--json"};
  for (const std::string& f : SinkTlsFlags()) {
    argv.push_back(f);
  }
  RunResult run = moat::testing::Run(argv, "", std::chrono::seconds(60));
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err;
  auto r = ParseJson(run.out);
  EXPECT_EQ(Number(r, "messages"), 30);
  EXPECT_EQ(Number(r, "lost"), 0);
  EXPECT_EQ(Number(ParseJson(run.out, "send.tls"), "handshakes"), 3);
  EXPECT_EQ(Number(ParseJson(run.out, "sink.tls"), "handshakes"), 3);
}

TEST_F(LoadgenTlsTest, StartTlsAgainstMoatServe) {
  TempDir dir;
  const int port = testing::FreePort();
  const int sink_port = testing::FreePort();
  dir.Write("transport", absl::StrCat("example.com smtp:[127.0.0.1]:", sink_port, "\n"));
  RunResult postmap = testing::RunMoat({"postmap", "hash:" + dir.path() + "/transport"});
  ASSERT_EQ(postmap.exit_code, 0) << postmap.err;
  dir.Write("main.cf",
            absl::StrCat("myhostname = mx.example.net\nmydestination =\nmynetworks = 127.0.0.1/32\n"
                         "relay_domains = example.com\ntransport_maps = hash:",
                         dir.path(), "/transport\nqueue_directory = ", dir.path(),
                         "/queue\nmoat_listen = 127.0.0.1:", port,
                         "\nmoat_shards = 2\nsmtpd_tls_security_level = may\n"
                         "smtpd_tls_cert_file = ",
                         certs_.server_cert, "\nsmtpd_tls_key_file = ", certs_.server_key, "\n"));
  Process moat_serve({testing::MoatBinary(), "serve", "-c", dir.path()});
  ASSERT_TRUE(testing::WaitForPort(port)) << moat_serve.Stderr();
  const std::string relay = "127.0.0.1:" + std::to_string(port);

  // Messages over TLS through moat to the sink (whatever moat's outbound TLS does).
  RunResult run = moat::testing::Run(
      {kLoadgen, "run", "--relay", relay, "--sink", "127.0.0.1:" + std::to_string(sink_port),
       "--starttls", "--tls-resume", "--sessions", "3", "--messages", "30", "--msgs-per-conn",
       "5", "--json"},
      "", std::chrono::seconds(90));
  EXPECT_EQ(run.exit_code, 0) << run.out << run.err << moat_serve.Stderr();
  EXPECT_EQ(Number(ParseJson(run.out), "messages"), 30);
  EXPECT_EQ(Number(ParseJson(run.out), "lost"), 0);
  auto t = ParseJson(run.out, "send.tls");
  EXPECT_EQ(Number(t, "handshakes"), 6);
  EXPECT_EQ(Number(t, "failures"), 0);
  EXPECT_GE(Number(t, "resumed"), 1);  // moat's shared ticket keys honour the kept ticket

  // Handshakes only: EHLO, STARTTLS, EHLO, QUIT per connection.
  RunResult shake = moat::testing::Run({kLoadgen, "send", "--server", relay, "--starttls",
                                        "--handshake-only", "--sessions", "4", "--messages",
                                        "20", "--json"},
                                       "", std::chrono::seconds(60));
  EXPECT_EQ(shake.exit_code, 0) << shake.out << shake.err;
  auto h = ParseJson(shake.out);
  EXPECT_EQ(Number(h, "messages"), 20);
  EXPECT_EQ(Number(h, "connections"), 20);
  EXPECT_EQ(Number(h, "bytes_sent") > 0, true);
  EXPECT_EQ(Number(ParseJson(shake.out, "tls"), "handshakes"), 20);
  EXPECT_EQ(ParseJson(shake.out, "replies")["mail"], "{}");  // no transaction at all
  EXPECT_EQ(moat_serve.Stop(SIGTERM), 0) << moat_serve.Stderr();
}

}  // namespace
}  // namespace moat
