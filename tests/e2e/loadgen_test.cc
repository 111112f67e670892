// End-to-end tests of the moat-loadgen binary over loopback: `send` against `sink` delivers
// exactly --messages (and reuses connections as told), the JSON report parses (with Python's
// json module) and has the documented fields, expected rejections are not errors, open loop and
// `run` complete, a dead server ends the run with errors instead of hanging, and the tool
// interoperates with Postfix's smtp-source and smtp-sink. No relay is involved.
#include <dirent.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/testing/testing.h"

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

}  // namespace
}  // namespace moat
