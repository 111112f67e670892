// Log lines have Postfix's shape: "PROGRAM[pid]: LEVEL: message", info without a level.
#include "core/log/log.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace moat::log {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override { CaptureForTest(&captured_); }
  void TearDown() override {
    CaptureForTest(nullptr);
    SetDebug(false);
    SetProgramName("moat");
  }
  std::string Pid() { return std::to_string(getpid()); }
  std::string captured_;
};

TEST_F(LogTest, InfoHasNoLevelWord) {
  SetProgramName("moat/smtpd");
  Info("connect from %s[%s]", "host.example", "192.0.2.1");
  EXPECT_EQ(captured_, "moat/smtpd[" + Pid() + "]: connect from host.example[192.0.2.1]\n");
}

TEST_F(LogTest, WarningAndErrorCarryTheirLevel) {
  Warning("%s:%d: unknown parameter %s", "main.cf", 3, "foo");
  Error("bad");
  EXPECT_EQ(captured_, "moat[" + Pid() + "]: warning: main.cf:3: unknown parameter foo\n" +
                           "moat[" + Pid() + "]: error: bad\n");
}

TEST_F(LogTest, DebugOnlyWhenSwitchedOn) {
  Debug("hidden %d", 1);
  EXPECT_EQ(captured_, "");
  SetDebug(true);
  Debug("shown %d", 2);
  EXPECT_EQ(captured_, "moat[" + Pid() + "]: debug: shown 2\n");
}

TEST(LogDeathTest, FatalExitsWithStatusOne) {
  EXPECT_EXIT(Fatal("cannot open %s", "/nonexistent"), ::testing::ExitedWithCode(1),
              "fatal: cannot open /nonexistent");
}

TEST(LogDeathTest, FatalWritesTheThreadsBatchFirst) {
  EXPECT_EXIT(
      {
        BeginThreadBatching();
        Info("batched before the end");
        Fatal("the end");
      },
      ::testing::ExitedWithCode(1), "batched before the end\n.*fatal: the end");
}

TEST(LogDeathTest, FatalWritesWhatTheWriterHoldsFirst) {
  EXPECT_EXIT(
      {
        StartWriter();
        std::thread([] {
          BeginThreadBatching();
          Info("handed off by another thread");
          FlushThreadBatch();
        }).join();
        BeginThreadBatching();
        Info("batched here");
        Fatal("the end");
      },
      ::testing::ExitedWithCode(1),
      "handed off by another thread\n.*batched here\n.*fatal: the end");
}

// Points stderr at a non-blocking pipe for one test, and reads back what was written.
class StderrPipe {
 public:
  StderrPipe() {
    EXPECT_EQ(pipe2(fds_, O_NONBLOCK | O_CLOEXEC), 0);
    EXPECT_EQ(fcntl(fds_[0], F_SETPIPE_SZ, 1 << 20) > 0, true);
    saved_ = dup(STDERR_FILENO);
    dup2(fds_[1], STDERR_FILENO);
  }
  ~StderrPipe() {
    dup2(saved_, STDERR_FILENO);
    close(saved_);
    close(fds_[0]);
    close(fds_[1]);
  }
  std::string Drain() {
    std::string out;
    char buf[65536];
    for (;;) {
      ssize_t n = read(fds_[0], buf, sizeof(buf));
      if (n <= 0) {
        return out;
      }
      out.append(buf, static_cast<size_t>(n));
    }
  }

 private:
  int fds_[2] = {-1, -1};
  int saved_ = -1;
};

TEST(LogBatchTest, LinesWaitForTheFlushAndKeepTheirOrder) {
  StderrPipe pipe;
  const std::string prefix = "moat[" + std::to_string(getpid()) + "]: ";
  // Run on a thread of its own: batching is per thread and must not leak into other tests.
  std::string before_flush;
  std::string after_flush;
  std::thread([&] {
    BeginThreadBatching();
    Info("one");
    Warning("two");
    before_flush = pipe.Drain();
    FlushThreadBatch();
    after_flush = pipe.Drain();
    Info("three");
    EndThreadBatching();  // flushes
  }).join();
  EXPECT_EQ(before_flush, "");
  EXPECT_EQ(after_flush, prefix + "one\n" + prefix + "warning: two\n");
  EXPECT_EQ(pipe.Drain(), prefix + "three\n");
}

TEST(LogBatchTest, LargeBatchesArriveWholeAndInOrder) {
  StderrPipe pipe;
  const std::string prefix = "moat[" + std::to_string(getpid()) + "]: ";
  std::string expected;
  std::thread([&] {
    BeginThreadBatching();
    for (int i = 0; i < 2000; ++i) {
      std::string text = "line " + std::to_string(i) + " " + std::string(i % 97, 'x');
      Info("%s", text);
      expected += prefix + text + "\n";
    }
    // One line longer than PIPE_BUF goes out alone, whole.
    std::string long_line(3 * PIPE_BUF, 'y');
    Info("%s", long_line);
    expected += prefix + long_line + "\n";
    Info("after the long line");
    expected += prefix + "after the long line\n";
    EndThreadBatching();
  }).join();
  EXPECT_EQ(pipe.Drain(), expected);
}

TEST(LogBatchTest, ThreadsWithoutBatchingWriteAtOnce) {
  StderrPipe pipe;
  Info("immediate");
  EXPECT_EQ(pipe.Drain(), "moat[" + std::to_string(getpid()) + "]: immediate\n");
}

TEST(LogWriterTest, HandedOffLinesArriveWholeAndInOrder) {
  StderrPipe pipe;
  const std::string prefix = "moat[" + std::to_string(getpid()) + "]: ";
  std::string expected;
  StartWriter();
  std::thread([&] {
    BeginThreadBatching();
    for (int turn = 0; turn < 40; ++turn) {
      for (int i = 0; i < 25; ++i) {
        std::string text = "turn " + std::to_string(turn) + " line " + std::to_string(i);
        Info("%s", text);
        expected += prefix + text + "\n";
      }
      FlushThreadBatch();
    }
    Info("last, flushed when the thread ends");
    expected += prefix + "last, flushed when the thread ends\n";
  }).join();
  StopWriter();  // writes what is left
  EXPECT_EQ(pipe.Drain(), expected);
  EXPECT_EQ(DroppedLinesForTest(), 0u);
}

// A blocking pipe nobody reads, as a stuck journald would look: the batching thread must not
// block; what cannot be handed off is dropped, counted, and reported once stderr drains.
TEST(LogWriterTest, AStuckStderrNeverBlocksABatchingThread) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
  const int saved = dup(STDERR_FILENO);
  dup2(fds[1], STDERR_FILENO);
  StartWriter();
  constexpr int kTurns = 400;
  constexpr int kLinesPerTurn = 25;
  std::thread([&] {
    BeginThreadBatching();
    const std::string filler(200, 'z');
    for (int turn = 0; turn < kTurns; ++turn) {
      for (int i = 0; i < kLinesPerTurn; ++i) {
        Info("line %d %s", turn * kLinesPerTurn + i, filler);
      }
      FlushThreadBatch();  // 2 MB in all against a 64 KiB pipe: would block without the writer
    }
    EndThreadBatching();
  }).join();
  // The producer finished while stderr was stuck. Now drain the pipe so the writer can finish.
  std::string out;
  std::atomic<bool> stopped{false};
  std::thread reader([&] {
    char buf[65536];
    for (;;) {
      pollfd p{fds[0], POLLIN, 0};
      if (poll(&p, 1, 50) == 1) {
        ssize_t n = read(fds[0], buf, sizeof(buf));
        if (n > 0) {
          out.append(buf, static_cast<size_t>(n));
          continue;
        }
      }
      if (stopped.load()) {
        return;
      }
    }
  });
  StopWriter();
  stopped.store(true);
  reader.join();
  dup2(saved, STDERR_FILENO);
  close(saved);
  close(fds[0]);
  close(fds[1]);

  uint64_t delivered = 0;
  for (size_t at = out.find("]: line "); at != std::string::npos;
       at = out.find("]: line ", at + 1)) {
    ++delivered;
  }
  const std::string marker = "warning: ";
  size_t warning = out.find(marker);
  ASSERT_NE(warning, std::string::npos) << "the drops were reported";
  uint64_t dropped = std::stoull(out.substr(warning + marker.size()));
  EXPECT_NE(out.find(" log lines dropped: standard error did not keep up\n"), std::string::npos);
  EXPECT_GT(dropped, 0u);
  EXPECT_GT(delivered, 0u);
  EXPECT_EQ(delivered + dropped, uint64_t{kTurns} * kLinesPerTurn) << "every line is accounted";
}

}  // namespace
}  // namespace moat::log
