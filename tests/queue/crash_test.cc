// kill -9 under load, at the spool level: a child process stages and commits messages in a loop
// (BlockingCommitter: write + fdatasync) and reports each acknowledged queue ID and Message-ID
// through a pipe only after its commit completed, i.e. exactly when a session would send its 250.
// The parent SIGKILLs it at a random point, recovers the spool, and every acknowledged message
// must be there with its content intact. Several rounds reuse the same spool, so each child also
// starts with a recovery. The crash test of the real server belongs to tests/e2e.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

#include "queue/blocking_committer.h"
#include "queue/spool.h"
#include "tests/queue/spool_test_util.h"
#include "tests/testing/testing.h"

namespace moat::queue {
namespace {

using testutil::MakeContent;
using testutil::MakeEnvelope;

// Content is a function of the Message-ID, so the parent can check it without being told.
std::string ContentFor(const std::string& message_id) {
  size_t size = 100 + (std::hash<std::string>()(message_id) % 20000);
  return MakeContent(message_id, size);
}

// The child: never returns. Loops at most kTurnsMax turns (the parent kills it long before).
[[noreturn]] void RunChild(const SpoolOptions& options, int round, int out_fd) {
  constexpr int kTurnsMax = 200000;
  testutil::RecordingReporter reporter;
  absl::StatusOr<std::unique_ptr<Spool>> opened = Spool::Open(options, reporter);
  if (!opened.ok()) {
    _exit(3);
  }
  Spool& spool = **opened;
  std::mt19937 rng(static_cast<uint32_t>(round));
  absl::flat_hash_map<uint64_t, std::pair<std::string, std::string>> staged;  // seq -> ids
  std::vector<std::string> keep;  // contents stay alive until their ticket is done
  std::vector<TicketResult> results;
  for (int turn = 0; turn < kTurnsMax; ++turn) {
    int n = std::uniform_int_distribution<int>(1, 8)(rng);
    keep.clear();
    keep.reserve(n);
    for (int i = 0; i < n; ++i) {
      std::string id = spool.NewQueueId();
      std::string message_id = absl::StrFormat("r%d.t%d.%d.%s@crash.example", round, turn, i, id);
      keep.push_back(ContentFor(message_id));
      staged[spool.Stage(MakeEnvelope(id, 1 + i % 3), keep.back()).sequence] = {id, message_id};
    }
    BlockingCommitter::CommitAll(spool);
    spool.TakeResults(&results);
    for (const TicketResult& r : results) {
      if (r.error != 0) {
        continue;
      }
      auto& [id, message_id] = staged[r.sequence];
      std::string line = id + " " + message_id + "\n";  // < PIPE_BUF: one atomic write
      if (write(out_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
        _exit(4);
      }
      staged.erase(r.sequence);
    }
  }
  _exit(0);
}

TEST(CrashTest, EveryAcknowledgedMessageSurvivesSigkill) {
  testing::TempDir dir;
  SpoolOptions options;
  options.directory = dir.path() + "/spool/2";
  options.shard = 2;
  options.segment_bytes = 512 * 1024;                   // several segments per round
  absl::flat_hash_map<std::string, std::string> acked;  // queue ID -> Message-ID
  std::mt19937 rng(4242);
  constexpr int kRounds = 4;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(round);
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      RunChild(options, round, fds[1]);
    }
    close(fds[1]);
    // Let it acknowledge a random number of messages (bounded by count and time), then kill it.
    size_t want = std::uniform_int_distribution<size_t>(50, 600)(rng);
    size_t got = 0;
    std::string buffer;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    auto take_lines = [&] {
      size_t nl;
      while ((nl = buffer.find('\n')) != std::string::npos) {
        std::vector<std::string> parts = absl::StrSplit(buffer.substr(0, nl), ' ');
        buffer.erase(0, nl + 1);
        ASSERT_EQ(parts.size(), 2u);
        acked[parts[0]] = parts[1];
        ++got;
      }
    };
    char chunk[4096];
    while (got < want && std::chrono::steady_clock::now() < deadline) {
      pollfd p{fds[0], POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) {
        continue;
      }
      ssize_t n = read(fds[0], chunk, sizeof(chunk));
      if (n <= 0) {
        break;  // the child died on its own: the checks below will say why
      }
      buffer.append(chunk, static_cast<size_t>(n));
      take_lines();
    }
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "child status " << status;
    // Whatever the child wrote before it died was acknowledged too.
    ssize_t n;
    while ((n = read(fds[0], chunk, sizeof(chunk))) > 0) {
      buffer.append(chunk, static_cast<size_t>(n));
    }
    take_lines();
    close(fds[0]);
    EXPECT_GE(got, want) << "the child should have acknowledged enough before the deadline";

    testutil::RecordingReporter reporter;
    absl::StatusOr<std::unique_ptr<Spool>> opened = Spool::Open(options, reporter);
    ASSERT_TRUE(opened.ok()) << opened.status();
    size_t found = 0;
    for (const auto& [id, message_id] : acked) {
      const QueuedMessage* m = (*opened)->index().Find(id);
      ASSERT_NE(m, nullptr) << "acknowledged and lost: " << id << " " << message_id;
      absl::StatusOr<std::string> content = (*opened)->ReadContent(*m);
      ASSERT_TRUE(content.ok()) << content.status();
      ASSERT_EQ(*content, ContentFor(message_id)) << id;
      EXPECT_NE(content->find("Message-ID: <" + message_id + ">"), std::string::npos);
      ++found;
    }
    EXPECT_EQ(found, acked.size());
    // A kill -9 keeps every written byte (the page cache survives); the only damage it can
    // leave is a batch cut short inside its pwritev: a torn tail, never damage in the middle.
    for (const auto& r : reporter.reports) {
      EXPECT_NE(r.reason.find("torn tail"), std::string::npos)
          << r.path << " @" << r.offset << ": " << r.reason;
    }
  }
  EXPECT_GT(acked.size(), 200u);
}

}  // namespace
}  // namespace moat::queue
