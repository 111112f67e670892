// tests/reactor/reactor_test.cc
//
// The Reactor alone, driven on the test thread: cross-thread inbox and a 1,000-message
// round trip between two reactors on two threads, turn-hook order and removal, timers
// through the loop's single timed wait, GetSqe on a tiny SQ, the file helpers the spool
// will use (write + linked fdatasync, writev, read, openat, close), connect with a link
// timeout, and the stall detector. Every loop is bounded by a turn count and a deadline.
#include "core/reactor/reactor.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "core/log/log.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat::reactor {
namespace {

using std::chrono::steady_clock;

// Records completions.
struct Recorder final : Operation {
  void Complete(int32_t r, uint32_t f) override {
    res = r;
    flags = f;
    ++count;
  }
  int32_t res = 0;
  uint32_t flags = 0;
  int count = 0;
};

std::unique_ptr<Reactor> MakeReactor(ReactorOptions options = {}) {
  absl::StatusOr<std::unique_ptr<Reactor>> reactor = Reactor::Create(options);
  EXPECT_TRUE(reactor.ok()) << reactor.status();
  return reactor.ok() ? std::move(*reactor) : nullptr;
}

// Turns the loop until `done` or 10 s / 100k turns.
template <typename Done>
bool TurnUntil(Reactor& reactor, Done done) {
  const auto deadline = steady_clock::now() + std::chrono::seconds(10);
  for (int turn = 0; turn < 100000 && !done(); ++turn) {
    if (steady_clock::now() > deadline) {
      return false;
    }
    reactor.RunOnce(absl::Milliseconds(10));
  }
  return done();
}

TEST(ReactorTest, PostFromAnotherThreadRunsOnTheLoop) {
  auto reactor = MakeReactor();
  ASSERT_NE(reactor, nullptr);
  std::atomic<int> ran{0};
  std::thread::id ran_on;
  std::thread poster([&] {
    for (int i = 0; i < 100; ++i) {
      ASSERT_TRUE(reactor->Post([&] {
        ran_on = std::this_thread::get_id();
        ran.fetch_add(1);
      }));
    }
  });
  poster.join();
  // The loop sleeps in io_uring_enter without timers: the eventfd must wake it.
  EXPECT_TRUE(TurnUntil(*reactor, [&] { return ran.load() == 100; }));
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  EXPECT_EQ(reactor->stats().inbox_messages, 100u);
}

TEST(ReactorTest, InboxIsBoundedAndKeepsOrderPerPoster) {
  ReactorOptions options;
  options.inbox_messages_max = 8;
  auto reactor = MakeReactor(options);
  ASSERT_NE(reactor, nullptr);
  std::vector<int> seen;
  for (int i = 0; i < 8; ++i) {
    EXPECT_TRUE(reactor->Post([&seen, i] { seen.push_back(i); }));
  }
  EXPECT_FALSE(reactor->Post([&seen] { seen.push_back(99); }));
  reactor->RunOnce();
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_TRUE(reactor->Post([] {}));  // room again
}

// Two loops on two threads bounce a counter 1,000 times through each other's inbox.
TEST(ReactorTest, ThousandRoundTripsBetweenTwoReactors) {
  constexpr int kRoundTrips = 1000;
  std::atomic<Reactor*> a{nullptr};
  std::atomic<Reactor*> b{nullptr};
  absl::Notification b_ready;
  std::atomic<int> pongs{0};
  std::atomic<bool> done{false};
  std::thread thread_b([&] {
    auto reactor = MakeReactor();
    b.store(reactor.get());
    b_ready.Notify();
    const auto deadline = steady_clock::now() + std::chrono::seconds(20);
    while (!done.load() && steady_clock::now() < deadline) {
      reactor->RunOnce(absl::Milliseconds(10));
    }
    b.store(nullptr);
    // Drain what is left so no closure refers to a dead reactor.
    reactor->RunOnce(absl::ZeroDuration());
  });
  b_ready.WaitForNotification();
  auto reactor_a = MakeReactor();
  a.store(reactor_a.get());
  std::function<void(int)> ping = [&](int n) {
    b.load()->Post([&, n] {
      // On B: answer A.
      a.load()->Post([&, n] {
        pongs.fetch_add(1);
        if (n + 1 < kRoundTrips) {
          ping(n + 1);
        }
      });
    });
  };
  ping(0);
  EXPECT_TRUE(TurnUntil(*reactor_a, [&] { return pongs.load() == kRoundTrips; }));
  done.store(true);
  b.load()->Post([] {});  // wake B
  thread_b.join();
  EXPECT_EQ(pongs.load(), kRoundTrips);
}

TEST(ReactorTest, TurnHooksRunInOrderEveryTurnAndCanBeRemoved) {
  auto reactor = MakeReactor();
  ASSERT_NE(reactor, nullptr);
  std::string trace;
  Reactor::HookId first = reactor->AddTurnHook([&] { trace += "1"; });
  Reactor::HookId second = 0;
  second = reactor->AddTurnHook([&] {
    trace += "2";
    reactor->RemoveTurnHook(second);  // a hook may remove itself
    reactor->AddTurnHook([&] { trace += "3"; });  // runs from the next turn
  });
  reactor->RequestTurn();
  reactor->RunOnce();
  EXPECT_EQ(trace, "12");
  reactor->RequestTurn();
  reactor->RunOnce();
  EXPECT_EQ(trace, "1213");
  reactor->RemoveTurnHook(first);
  reactor->RequestTurn();
  reactor->RunOnce();
  EXPECT_EQ(trace, "12133");
}

TEST(ReactorTest, TimersFireThroughTheTimedWait) {
  auto reactor = MakeReactor();
  ASSERT_NE(reactor, nullptr);
  std::vector<int> order;
  Timer late([&] { order.push_back(2); });
  Timer early([&] { order.push_back(1); });
  const int64_t start = reactor->RefreshNow();
  reactor->ArmTimer(late, absl::Milliseconds(60));
  reactor->ArmTimer(early, absl::Milliseconds(20));
  // No I/O at all: only the wait's timeout can wake the loop.
  int turns = 0;
  EXPECT_TRUE(TurnUntil(*reactor, [&] {
    ++turns;
    return order.size() == 2;
  }));
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_GE(reactor->NowNs() - start, 60'000'000);
  // A handful of wake-ups, not a busy loop.
  EXPECT_LT(turns, 50);
}

TEST(ReactorTest, GetSqeNeverFailsOnAFullQueue) {
  ReactorOptions options;
  options.sq_entries = 8;
  options.cq_entries = 1024;
  auto reactor = MakeReactor(options);
  ASSERT_NE(reactor, nullptr);
  constexpr int kOps = 200;
  std::vector<Recorder> ops(kOps);
  for (int i = 0; i < kOps; ++i) {
    io_uring_sqe* sqe = reactor->GetSqe();
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data(sqe, &ops[i]);
  }
  EXPECT_GT(reactor->stats().sq_full, 0u);
  EXPECT_TRUE(TurnUntil(*reactor, [&] {
    for (const Recorder& op : ops) {
      if (op.count != 1) {
        return false;
      }
    }
    return true;
  }));
}

TEST(ReactorTest, WriteThenDatasyncWritevReadOpenatClose) {
  testing::TempDir dir;
  auto reactor = MakeReactor();
  ASSERT_NE(reactor, nullptr);
  const std::string path = dir.path() + "/segment";
  Recorder open_op;
  reactor->Openat(&open_op, AT_FDCWD, path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  ASSERT_TRUE(TurnUntil(*reactor, [&] { return open_op.count == 1; }));
  ASSERT_GE(open_op.res, 0);
  const int fd = open_op.res;

  const std::string record = "record-one\n";
  Recorder write_op;
  Recorder sync_op;
  reactor->WriteThenDatasync(&write_op, &sync_op, fd, record.data(),
                             static_cast<uint32_t>(record.size()), 0);
  const std::string a = "two-";
  const std::string b = "three\n";
  iovec iov[2] = {{const_cast<char*>(a.data()), a.size()}, {const_cast<char*>(b.data()), b.size()}};
  Recorder writev_op;
  reactor->Writev(&writev_op, fd, iov, 2, record.size());
  ASSERT_TRUE(TurnUntil(*reactor, [&] {
    return write_op.count == 1 && sync_op.count == 1 && writev_op.count == 1;
  }));
  EXPECT_EQ(write_op.res, static_cast<int32_t>(record.size()));
  EXPECT_EQ(sync_op.res, 0);
  EXPECT_EQ(writev_op.res, static_cast<int32_t>(a.size() + b.size()));

  char buffer[64] = {};
  Recorder read_op;
  reactor->Read(&read_op, fd, buffer, sizeof(buffer), 0);
  ASSERT_TRUE(TurnUntil(*reactor, [&] { return read_op.count == 1; }));
  EXPECT_EQ(std::string(buffer, read_op.res), "record-one\ntwo-three\n");

  // A write that fails cancels the fdatasync linked behind it.
  Recorder bad_write;
  Recorder cancelled_sync;
  reactor->WriteThenDatasync(&bad_write, &cancelled_sync, -1, record.data(), 4, 0);
  Recorder close_op;
  reactor->Close(&close_op, fd);
  ASSERT_TRUE(TurnUntil(*reactor, [&] {
    return bad_write.count == 1 && cancelled_sync.count == 1 && close_op.count == 1;
  }));
  EXPECT_LT(bad_write.res, 0);
  EXPECT_EQ(cancelled_sync.res, -ECANCELED);
  EXPECT_EQ(close_op.res, 0);
}

TEST(ReactorTest, ConnectWithTimeoutConnectsAndTimesOut) {
  auto reactor = MakeReactor();
  ASSERT_NE(reactor, nullptr);
  // A listener that accepts nothing, with a full backlog, so a further SYN is dropped.
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length), 0);
  ASSERT_EQ(listen(listener, 0), 0);

  __kernel_timespec long_timeout{5, 0};
  int first = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  Recorder connect_ok;
  reactor->ConnectWithTimeout(&connect_ok, first, reinterpret_cast<sockaddr*>(&address),
                              sizeof(address), &long_timeout);
  ASSERT_TRUE(TurnUntil(*reactor, [&] { return connect_ok.count == 1; }));
  EXPECT_EQ(connect_ok.res, 0);

  // Fill the backlog (backlog 0 admits one more), then one connect must time out.
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
    fillers.push_back(fd);
  }
  __kernel_timespec short_timeout{0, 200'000'000};
  int late = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  Recorder connect_late;
  reactor->ConnectWithTimeout(&connect_late, late, reinterpret_cast<sockaddr*>(&address),
                              sizeof(address), &short_timeout);
  ASSERT_TRUE(TurnUntil(*reactor, [&] { return connect_late.count == 1; }));
  EXPECT_EQ(connect_late.res, -ECANCELED);
  for (int fd : fillers) {
    close(fd);
  }
  close(first);
  close(late);
  close(listener);
}

TEST(ReactorTest, StallDetectorCountsSlowTurns) {
  ReactorOptions options;
  options.stall_threshold = absl::Milliseconds(20);
  auto reactor = MakeReactor(options);
  ASSERT_NE(reactor, nullptr);
  std::string captured;
  moat::log::CaptureForTest(&captured);
  reactor->AddTurnHook([] {
    // Simulates a blocking call on the shard thread (the thing the detector exists for).
    const auto until = steady_clock::now() + std::chrono::milliseconds(40);
    while (steady_clock::now() < until) {
    }
  });
  reactor->RequestTurn();
  reactor->RunOnce();
  moat::log::CaptureForTest(nullptr);
  EXPECT_EQ(reactor->stats().stalls, 1u);
  EXPECT_GE(reactor->stats().turn_ns_max, 40'000'000);
  EXPECT_NE(captured.find("stall"), std::string::npos) << captured;
}

}  // namespace
}  // namespace moat::reactor
