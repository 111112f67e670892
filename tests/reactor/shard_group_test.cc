// tests/reactor/shard_group_test.cc
//
// The shard engine over real loopback sockets, with a toy line protocol (LineHandler):
// echo with many clients, 2,000 concurrent connections, steering by source IP, idle
// timeouts, PauseReading under a pipelining client (the kernel holds the rest), output
// batching (one send per turn), the transform switch with the STARTTLS discard, per-client
// counting and the connection cap, cross-shard messages (1,000 round trips), reload, the
// idle-buffer property, and graceful shutdown under load with a fake group-commit spool
// (every 250 is backed by an fdatasync'd record; no client sees a reset). Every wait is
// bounded; sleeps only pace a client, never stand in for synchronisation.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <atomic>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "core/log/assert.h"
#include "core/reactor/listener.h"
#include "core/reactor/shard_group.h"
#include "gtest/gtest.h"
#include "tests/reactor/loopback.h"
#include "tests/testing/testing.h"

namespace moat::reactor {
namespace {

using testing::Connect;
using testing::ReadEnd;
using testing::ReadLine;
using testing::WaitFor;
using testing::WriteAll;

// What the handlers report to the test thread.
struct Observed {
  absl::Mutex mutex;
  std::vector<std::string> lines ABSL_GUARDED_BY(mutex);  // every line seen, in order
  std::map<CloseReason, int> closed ABSL_GUARDED_BY(mutex);
  int x_lines ABSL_GUARDED_BY(mutex) = 0;
  uint64_t burst_sends ABSL_GUARDED_BY(mutex) = 0;
  std::vector<size_t> client_counts ABSL_GUARDED_BY(mutex);
  int flood_accepted ABSL_GUARDED_BY(mutex) = -1;
  size_t flood_output_bytes ABSL_GUARDED_BY(mutex) = 0;

  bool Saw(const std::string& line) {
    absl::MutexLock lock(&mutex);
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  }
  int XLines() {
    absl::MutexLock lock(&mutex);
    return x_lines;
  }
};

// XOR with 0x5a both ways: a stand-in for TLS in the transform slot.
class XorTransform final : public Transform {
 public:
  bool Decode(std::span<const char> raw, std::string* plain, std::string* /*raw_out*/) override {
    for (char c : raw) {
      plain->push_back(static_cast<char>(c ^ 0x5a));
    }
    return true;
  }
  bool Encode(std::span<const char> plain, std::string* raw_out) override {
    for (char c : plain) {
      raw_out->push_back(static_cast<char>(c ^ 0x5a));
    }
    return true;
  }
};
std::string Xor(std::string_view s) {
  std::string out;
  for (char c : s) {
    out.push_back(static_cast<char>(c ^ 0x5a));
  }
  return out;
}

// A fake spool with group commit: records appended during a turn are written with one
// write + linked fdatasync at the end of the turn; callbacks run when it completed.
class FakeSpool {
 public:
  FakeSpool(Reactor& reactor, int fd) : reactor_(reactor), fd_(fd) {
    hook_ = reactor_.AddTurnHook([this] { Commit(); });
  }
  ~FakeSpool() {
    reactor_.RemoveTurnHook(hook_);
    close(fd_);
  }
  void Append(std::string_view record, absl::AnyInvocable<void()> on_durable) {
    staged_.append(record);
    waiters_.push_back(std::move(on_durable));
  }
  bool idle() const { return !inflight_ && staged_.empty(); }
  uint64_t commits() const { return commits_; }

 private:
  struct Op final : Operation {
    explicit Op(FakeSpool* s) : spool(s) {}
    void Complete(int32_t res, uint32_t) override { spool->OnSync(res); }
    FakeSpool* spool;
  };
  struct Ignore final : Operation {
    void Complete(int32_t, uint32_t) override {}
  };
  void Commit() {
    if (inflight_ || staged_.empty()) {
      return;
    }
    writing_ = std::move(staged_);
    staged_.clear();
    writing_waiters_ = std::move(waiters_);
    waiters_.clear();
    inflight_ = true;
    reactor_.WriteThenDatasync(&write_op_, &sync_op_, fd_, writing_.data(),
                               static_cast<uint32_t>(writing_.size()), offset_);
  }
  void OnSync(int32_t res) {
    MOAT_CHECK(res == 0);
    offset_ += writing_.size();
    inflight_ = false;
    ++commits_;
    for (auto& waiter : writing_waiters_) {
      waiter();
    }
    writing_waiters_.clear();
    reactor_.RequestTurn();  // records staged by the waiters go out next turn
  }

  Reactor& reactor_;
  int fd_;
  Reactor::HookId hook_;
  std::string staged_;
  std::string writing_;
  std::vector<absl::AnyInvocable<void()>> waiters_;
  std::vector<absl::AnyInvocable<void()>> writing_waiters_;
  bool inflight_ = false;
  uint64_t offset_ = 0;
  uint64_t commits_ = 0;
  Ignore write_op_;
  Op sync_op_{this};
};

struct HandlerConfig {
  Observed* observed = nullptr;
  absl::Duration idle_timeout = absl::ZeroDuration();
  std::vector<FakeSpool*> spools;  // by shard, for PING
};

// The toy protocol. Lines end in "\n". Verbs: QUIT, WAIT (pause), BURST (100 replies in
// one call), STARTTLS (switch to XOR), PING (a durable record, then "250 queued"),
// X... (counted, no reply); anything else is echoed as "250 <line>".
class LineHandler final : public StreamHandler {
 public:
  explicit LineHandler(const HandlerConfig* config) : config_(config) {}
  ~LineHandler() override { *alive_ = false; }

  void OnOpen(Connection& c) override {
    (void)c.Send(absl::StrFormat("220 shard %d conn %d\r\n", c.shard().index(), c.id()));
    Rearm(c);
  }

  size_t OnData(Connection& c, std::span<const char> data) override {
    size_t used = 0;
    while (used < data.size()) {
      const char* begin = data.data() + used;
      const void* nl = memchr(begin, '\n', data.size() - used);
      if (nl == nullptr) {
        partial_.append(begin, data.size() - used);
        return data.size();
      }
      const size_t length = static_cast<const char*>(nl) - begin;
      partial_.append(begin, length);
      used += length + 1;
      std::string line = std::move(partial_);
      partial_.clear();
      if (!line.empty() && line.back() == '\r') {
        line.pop_back();
      }
      if (!HandleLine(c, line)) {
        return used;  // paused or closing: the connection keeps the rest
      }
    }
    Rearm(c);
    return used;
  }

  void OnDrained(Connection& c) override {
    if (burst_sends_before_ != UINT64_MAX) {
      absl::MutexLock lock(&config_->observed->mutex);
      config_->observed->burst_sends = c.sends() - burst_sends_before_;
      burst_sends_before_ = UINT64_MAX;
    }
    if (starttls_pending_) {
      // The 220 left: drop plaintext that was pipelined behind STARTTLS, switch, resume.
      starttls_pending_ = false;
      c.DiscardBufferedInput();
      c.SetTransform(std::make_unique<XorTransform>());
      c.ResumeReading();
    }
  }

  void OnTimeout(Connection& c) override {
    (void)c.Send("421 4.4.2 timeout\r\n");
    c.CloseAfterFlush(CloseReason::kTimeout);
  }

  void OnShutdown(Connection& c, ShutdownPhase phase) override {
    draining_ = true;
    if (phase == ShutdownPhase::kGraceExpired) {
      (void)c.Send("421 4.3.2 grace expired\r\n");
      c.CloseAfterFlush(CloseReason::kShutdown);
    }
  }

  void OnClosed(Connection& /*c*/, CloseReason reason) override {
    *alive_ = false;
    absl::MutexLock lock(&config_->observed->mutex);
    ++config_->observed->closed[reason];
  }

 private:
  void Rearm(Connection& c) {
    if (config_->idle_timeout > absl::ZeroDuration()) {
      c.SetTimeout(config_->idle_timeout);
    }
  }

  // Returns false when the caller must stop feeding lines (paused or closing).
  bool HandleLine(Connection& c, const std::string& line) {
    Observed* observed = config_->observed;
    if (line.starts_with("X")) {
      absl::MutexLock lock(&observed->mutex);
      ++observed->x_lines;
      return true;
    }
    {
      absl::MutexLock lock(&observed->mutex);
      observed->lines.push_back(line);
    }
    if (draining_) {
      (void)c.Send("421 4.3.2 shutting down\r\n");
      c.CloseAfterFlush(CloseReason::kShutdown);
      return false;
    }
    if (line == "QUIT") {
      (void)c.Send("221 bye\r\n");
      c.CloseAfterFlush();
      return false;
    }
    if (line == "WAIT") {
      (void)c.Send("250 waiting\r\n");
      c.PauseReading();
      return false;
    }
    if (line == "HOLD") {
      (void)c.Send("250 holding\r\n");
      c.HoldInput();
      return false;
    }
    if (line == "STARTTLS") {
      (void)c.Send("220 go ahead\r\n");
      starttls_pending_ = true;
      c.PauseReading();
      return false;
    }
    if (line == "BURST") {
      burst_sends_before_ = c.sends();
      for (int i = 0; i < 100; ++i) {
        (void)c.Send(absl::StrFormat("250-burst %d\r\n", i));
      }
      return true;
    }
    if (line == "FLOOD") {
      // Stage 1 KiB lines until the output bound says no.
      int accepted = 0;
      const std::string chunk = std::string(1022, 'f') + "\r\n";
      while (accepted < 100000 && c.Send(chunk)) {
        ++accepted;
      }
      absl::MutexLock lock(&observed->mutex);
      observed->flood_accepted = accepted;
      observed->flood_output_bytes = c.output_bytes();
      return true;
    }
    if (line == "PING") {
      FakeSpool* spool = config_->spools.at(c.shard().index());
      c.PauseReading();  // nothing more until the record is durable
      spool->Append(absl::StrFormat("PING %d\n", c.id()), [alive = alive_, &c] {
        if (*alive) {
          (void)c.Send("250 queued\r\n");
          c.ResumeReading();
        }
      });
      return false;
    }
    (void)c.Send("250 " + line + "\r\n");
    return true;
  }

  const HandlerConfig* config_;
  std::string partial_;
  bool starttls_pending_ = false;
  bool draining_ = false;
  uint64_t burst_sends_before_ = UINT64_MAX;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

ShardGroupOptions BaseOptions(int shards, HandlerConfig* config) {
  ShardGroupOptions options;
  options.shards = shards;
  options.listen = {*SocketAddress::Parse("127.0.0.1:0")};
  options.shard.recv_buffers = 256;
  options.shard.recv_buffer_bytes = 4096;
  options.shard.close_linger = absl::Seconds(2);
  options.on_start = [config](Shard& shard) {
    shard.SetHandlerFactory([config](Connection&, const ClientInfo&) {
      return std::make_unique<LineHandler>(config);
    });
  };
  return options;
}

std::unique_ptr<ShardGroup> StartGroup(ShardGroupOptions options) {
  absl::StatusOr<std::unique_ptr<ShardGroup>> group = ShardGroup::Start(std::move(options));
  EXPECT_TRUE(group.ok()) << group.status();
  return group.ok() ? std::move(*group) : nullptr;
}

uint64_t TotalConnections(ShardGroup& group) {
  uint64_t total = 0;
  for (const ShardStats& stats : group.CollectStats(absl::Seconds(5))) {
    total += stats.connections;
  }
  return total;
}

// "220 shard S conn ID" -> {S, ID}
std::pair<int, uint64_t> ParseGreeting(const std::string& line) {
  int shard = -1;
  unsigned long long id = 0;
  if (sscanf(line.c_str(), "220 shard %d conn %llu", &shard, &id) != 2) {
    return {-1, 0};
  }
  return {shard, id};
}

TEST(ShardGroupTest, EchoesForManyClientsAndClosesCleanly) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto group = StartGroup(BaseOptions(2, &config));
  ASSERT_NE(group, nullptr);
  const SocketAddress server = group->listen_addresses()[0];
  EXPECT_NE(server.port(), 0);
  for (int client = 0; client < 50; ++client) {
    int fd = Connect(server);
    ASSERT_GE(fd, 0);
    ASSERT_NE(ParseGreeting(ReadLine(fd)).first, -1);
    // Three commands in one write (pipelined), answered in order.
    ASSERT_TRUE(WriteAll(fd, absl::StrFormat("one %d\r\ntwo\r\nthree\r\n", client)));
    EXPECT_EQ(ReadLine(fd), absl::StrFormat("250 one %d", client));
    EXPECT_EQ(ReadLine(fd), "250 two");
    EXPECT_EQ(ReadLine(fd), "250 three");
    ASSERT_TRUE(WriteAll(fd, "QUIT\r\n"));
    EXPECT_EQ(ReadLine(fd), "221 bye");
    EXPECT_EQ(ReadEnd(fd), 0);
    close(fd);
  }
  EXPECT_TRUE(WaitFor([&] { return TotalConnections(*group) == 0; }));
  std::vector<ShardStats> stats = group->CollectStats(absl::Seconds(5));
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].accepted + stats[1].accepted, 50u);
  EXPECT_EQ(stats[0].closed + stats[1].closed, 50u);
}

TEST(ShardGroupTest, TwoThousandConcurrentConnectionsHoldNoReceiveBuffers) {
  constexpr int kClients = 2000;
  if (!testing::RaiseFdLimit(2 * kClients + 200)) {
    GTEST_SKIP() << "RLIMIT_NOFILE hard limit below " << 2 * kClients + 200
                 << "; cannot hold " << kClients << " loopback connections in one process";
  }
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto group = StartGroup(BaseOptions(2, &config));
  ASSERT_NE(group, nullptr);
  const SocketAddress server = group->listen_addresses()[0];
  std::vector<int> fds;
  for (int i = 0; i < kClients; ++i) {
    // Eight client IPs, so steering spreads them over both shards.
    const std::string source = absl::StrFormat("127.0.0.%d", 1 + i % 8);
    int fd = Connect(server, source.c_str());
    ASSERT_GE(fd, 0) << "client " << i << ": " << strerror(errno);
    fds.push_back(fd);
  }
  for (int fd : fds) {
    ASSERT_NE(ParseGreeting(ReadLine(fd)).first, -1);
  }
  for (size_t i = 0; i < fds.size(); ++i) {
    ASSERT_TRUE(WriteAll(fds[i], absl::StrFormat("hello %d\r\n", i)));
  }
  for (size_t i = 0; i < fds.size(); ++i) {
    ASSERT_EQ(ReadLine(fds[i]), absl::StrFormat("250 hello %d", i));
  }
  // All 2,000 are open and idle now: every receive buffer is back in the rings.
  std::vector<ShardStats> stats = group->CollectStats(absl::Seconds(5));
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[0].connections + stats[1].connections, static_cast<uint64_t>(kClients));
  for (const ShardStats& s : stats) {
    EXPECT_EQ(s.buffers_available, s.buffers_total) << "shard " << s.shard;
    EXPECT_GT(s.connections, 0u) << "shard " << s.shard << " got no connection";
  }
  for (int fd : fds) {
    close(fd);
  }
  EXPECT_TRUE(WaitFor([&] { return TotalConnections(*group) == 0; }));
}

TEST(ShardGroupTest, ConnectionsFromOneClientIpLandOnOneShard) {
  constexpr int kShards = 4;
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto group = StartGroup(BaseOptions(kShards, &config));
  ASSERT_NE(group, nullptr);
  ASSERT_TRUE(group->steering()) << "the kernel refused SO_ATTACH_REUSEPORT_CBPF";
  const SocketAddress server = group->listen_addresses()[0];
  std::set<int> shards_used;
  for (int last = 2; last <= 9; ++last) {
    const std::string ip = absl::StrFormat("127.0.0.%d", last);
    const int expected =
        ListenerSet::ShardForClient(*SocketAddress::Parse(ip + ":1"), kShards);
    for (int repeat = 0; repeat < 3; ++repeat) {
      int fd = Connect(server, ip.c_str());
      ASSERT_GE(fd, 0) << ip;
      auto [shard, id] = ParseGreeting(ReadLine(fd));
      EXPECT_EQ(shard, expected) << ip << " attempt " << repeat;
      shards_used.insert(shard);
      close(fd);
    }
  }
  EXPECT_EQ(shards_used.size(), static_cast<size_t>(kShards));
}

TEST(ShardGroupTest, IdleTimeoutClosesIdleConnectionsOnly) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  config.idle_timeout = absl::Milliseconds(400);
  auto group = StartGroup(BaseOptions(1, &config));
  ASSERT_NE(group, nullptr);
  const SocketAddress server = group->listen_addresses()[0];
  int idle = Connect(server);
  int active = Connect(server);
  ASSERT_GE(idle, 0);
  ASSERT_GE(active, 0);
  ASSERT_NE(ParseGreeting(ReadLine(idle)).first, -1);
  ASSERT_NE(ParseGreeting(ReadLine(active)).first, -1);
  // The active client talks every 100 ms for about 1 s: each line re-arms its timer.
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(WriteAll(active, absl::StrFormat("tick %d\r\n", i)));
    ASSERT_EQ(ReadLine(active), absl::StrFormat("250 tick %d", i));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // client pacing
  }
  EXPECT_EQ(ReadLine(idle), "421 4.4.2 timeout");
  EXPECT_EQ(ReadEnd(idle), 0);
  ASSERT_TRUE(WriteAll(active, "QUIT\r\n"));
  EXPECT_EQ(ReadLine(active), "221 bye");
  close(idle);
  close(active);
  EXPECT_TRUE(WaitFor([&] { return TotalConnections(*group) == 0; }));
  absl::MutexLock lock(&observed.mutex);
  EXPECT_EQ(observed.closed[CloseReason::kTimeout], 1);
}

// Runs fn on the connection `id` of `shard`, on the shard's thread, and waits for it.
template <typename Fn>
void OnConnection(ShardGroup& group, int shard, uint64_t id, Fn fn) {
  absl::Notification done;
  ASSERT_TRUE(group.Post(shard, [&](Shard& s) {
    s.ForEachConnection([&](Connection& c) {
      if (c.id() == id) {
        fn(c);
      }
    });
    done.Notify();
  }));
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(10)));
}

// A pipelining client's writer thread: `first` (a command that stops the handler), then kLines
// lines of 1 KiB ("X..."), then "C". It stalls once the socket buffers are full.
class FloodWriter {
 public:
  static constexpr int kLines = 8 * 1024;
  FloodWriter(int fd, std::string first)
      : fd_(fd), thread_([this, fd, first = std::move(first)] {
          EXPECT_TRUE(WriteAll(fd, first));
          const std::string x_line = "X" + std::string(1021, 'x') + "\r\n";
          for (int i = 0; i < kLines; ++i) {
            if (!WriteAll(fd, x_line)) {
              return;
            }
            written_.fetch_add(1);
          }
          WriteAll(fd, "C\r\n");
        }) {}
  // A test that ends early must not hang on a writer blocked on full buffers.
  ~FloodWriter() {
    if (thread_.joinable()) {
      shutdown(fd_, SHUT_RDWR);
      thread_.join();
    }
  }
  // True once the writer made no progress between two polls short of the end: the server is
  // not reading.
  bool WaitStalled() {
    int last = -1;
    return WaitFor([&] {
      int now = written_.load();
      bool stalled = now == last && now < kLines;
      last = now;
      return stalled;
    }, std::chrono::milliseconds(20000));
  }
  void Join() {
    if (thread_.joinable()) {
      thread_.join();
    }
  }

 private:
  const int fd_;
  std::atomic<int> written_{0};
  std::thread thread_;
};

// One shard whose connections keep at most 256 KiB of pending input, and one client past the
// greeting: for the tests of paused and holding connections.
//
// What reaches a connection after it decides to pause is bounded by the buffer ring, not by
// timing: the cancel goes out with the next io_uring_enter, before the deferred task work that
// fills buffers runs (DEFER_TASKRUN), so at most one ring's worth of completions (the batch in
// which the pause was decided) lands on top of the input already kept. The ring here is
// 32 x 4 KiB = 128 KiB, so even a client that fills the whole ring in one batch stays under
// the 256 KiB bound (128 KiB + kHeldInputMax). With BaseOptions' 1 MiB ring, a shard that ran
// late on a loaded 2-core CI machine found more than 256 KiB in one batch and closed the
// connection for overflow.
class ShardGroupFloodTest : public ::testing::Test {
 protected:
  void SetUp() override {
    config.observed = &observed;
    auto options = BaseOptions(1, &config);
    options.shard.recv_buffers = kRingBytes / 4096;
    options.shard.recv_buffer_bytes = 4096;
    options.shard.pending_input_bytes_max = kPendingMax;
    static_assert(kRingBytes + Connection::kHeldInputMax < kPendingMax);
    group = StartGroup(std::move(options));
    ASSERT_NE(group, nullptr);
    fd = Connect(group->listen_addresses()[0]);
    ASSERT_GE(fd, 0);
    std::tie(shard, id) = ParseGreeting(ReadLine(fd));
    ASSERT_EQ(shard, 0);
  }

  void QuitAndClose() {
    ASSERT_TRUE(WriteAll(fd, "QUIT\r\n"));
    EXPECT_EQ(ReadLine(fd), "221 bye");
    close(fd);
  }

  static constexpr size_t kRingBytes = 128 * 1024;
  static constexpr size_t kPendingMax = 256 * 1024;
  Observed observed;
  HandlerConfig config;
  std::unique_ptr<ShardGroup> group;
  int fd = -1;
  int shard = -1;
  uint64_t id = 0;
};

TEST_F(ShardGroupFloodTest, PauseReadingLeavesPipelinedInputInTheKernel) {
  // A pipelining client: a command that pauses the handler, then 8 MiB more.
  FloodWriter writer(fd, "A\r\nWAIT\r\nB\r\n");
  EXPECT_EQ(ReadLine(fd), "250 A");
  EXPECT_EQ(ReadLine(fd), "250 waiting");
  // The writer stalls once the socket buffers are full: the server is not reading.
  ASSERT_TRUE(writer.WaitStalled());
  EXPECT_FALSE(observed.Saw("B"));
  EXPECT_EQ(observed.XLines(), 0);
  size_t buffered = 0;
  bool paused = false;
  bool closing = true;
  OnConnection(*group, shard, id, [&](Connection& c) {
    buffered = c.buffered_input_bytes();
    paused = c.reading_paused();
    closing = c.closing();
  });
  EXPECT_TRUE(paused);
  EXPECT_FALSE(closing);
  EXPECT_LE(buffered, kRingBytes);  // what arrived before the cancel: at most one ring
  OnConnection(*group, shard, id, [](Connection& c) { c.ResumeReading(); });
  EXPECT_EQ(ReadLine(fd), "250 B");
  EXPECT_EQ(ReadLine(fd), "250 C");
  writer.Join();
  EXPECT_EQ(observed.XLines(), FloodWriter::kLines);
  QuitAndClose();
  // After the 8 MiB burst every receive buffer is back in the ring.
  std::vector<ShardStats> stats = group->CollectStats(absl::Seconds(5));
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_EQ(stats[0].buffers_available, stats[0].buffers_total);
  EXPECT_GE(stats[0].bytes_in, static_cast<uint64_t>(FloodWriter::kLines) * 1024);
}

TEST_F(ShardGroupFloodTest, HoldInputKeepsWhatArrivesAndHandsItOverOnResume) {
  // A client that sends its next command while the handler waits. (Input left over in the
  // same read, which the handler did not consume, pauses reading for real: see Dispatch.)
  ASSERT_TRUE(WriteAll(fd, "HOLD\r\n"));
  EXPECT_EQ(ReadLine(fd), "250 holding");
  ASSERT_TRUE(WriteAll(fd, "B\r\n"));
  // The recv stays armed: "B" reaches the connection, which keeps it from the handler.
  size_t buffered = 0;
  bool paused = false;
  ASSERT_TRUE(WaitFor([&] {
    OnConnection(*group, shard, id, [&](Connection& c) {
      buffered = c.buffered_input_bytes();
      paused = c.reading_paused();
    });
    return buffered == 3;
  }, std::chrono::milliseconds(10000)));
  EXPECT_TRUE(paused);
  EXPECT_FALSE(observed.Saw("B"));
  ASSERT_TRUE(WriteAll(fd, "C\r\n"));
  ASSERT_TRUE(WaitFor([&] {
    OnConnection(*group, shard, id, [&](Connection& c) { buffered = c.buffered_input_bytes(); });
    return buffered == 6;
  }, std::chrono::milliseconds(10000)));
  EXPECT_FALSE(observed.Saw("C"));
  OnConnection(*group, shard, id, [](Connection& c) { c.ResumeReading(); });
  EXPECT_EQ(ReadLine(fd), "250 B");
  EXPECT_EQ(ReadLine(fd), "250 C");
  QuitAndClose();
}

TEST_F(ShardGroupFloodTest, HoldInputTurnsIntoAPauseWhenThePeerKeepsSending) {
  FloodWriter writer(fd, "HOLD\r\n");
  EXPECT_EQ(ReadLine(fd), "250 holding");
  // Past kHeldInputMax the recv is cancelled: the writer stalls on full socket buffers.
  ASSERT_TRUE(writer.WaitStalled());
  size_t buffered = 0;
  bool closing = true;
  OnConnection(*group, shard, id, [&](Connection& c) {
    buffered = c.buffered_input_bytes();
    closing = c.closing();
  });
  EXPECT_FALSE(closing);
  EXPECT_GT(buffered, Connection::kHeldInputMax);
  EXPECT_LE(buffered, kRingBytes + Connection::kHeldInputMax);
  EXPECT_EQ(observed.XLines(), 0);
  OnConnection(*group, shard, id, [](Connection& c) { c.ResumeReading(); });
  EXPECT_EQ(ReadLine(fd), "250 C");
  writer.Join();
  EXPECT_EQ(observed.XLines(), FloodWriter::kLines);
  QuitAndClose();
}

TEST(ShardGroupTest, TinyBufferRingRunsDryAndRecvRearms) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto options = BaseOptions(1, &config);
  options.shard.recv_buffers = 2;  // 2 x 64 bytes: the ring runs dry (-ENOBUFS) constantly
  options.shard.recv_buffer_bytes = 64;
  auto group = StartGroup(std::move(options));
  ASSERT_NE(group, nullptr);
  int fd = Connect(group->listen_addresses()[0]);
  ASSERT_GE(fd, 0);
  ReadLine(fd);
  constexpr int kLines = 4096;
  std::string burst;
  for (int i = 0; i < kLines; ++i) {
    burst += "X" + std::string(253, 'y') + "\r\n";
  }
  burst += "done\r\n";
  ASSERT_TRUE(WriteAll(fd, burst));
  EXPECT_EQ(ReadLine(fd), "250 done");
  EXPECT_EQ(observed.XLines(), kLines);
  std::vector<ShardStats> stats = group->CollectStats(absl::Seconds(5));
  ASSERT_EQ(stats.size(), 1u);
  EXPECT_GT(stats[0].recv_no_buffers, 0u);
  EXPECT_EQ(stats[0].buffers_available, 2u);
  close(fd);
}

TEST(ShardGroupTest, OutputStagedInOneTurnLeavesInOneSend) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto group = StartGroup(BaseOptions(1, &config));
  ASSERT_NE(group, nullptr);
  int fd = Connect(group->listen_addresses()[0]);
  ASSERT_GE(fd, 0);
  ReadLine(fd);
  ASSERT_TRUE(WriteAll(fd, "BURST\r\n"));
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(ReadLine(fd), absl::StrFormat("250-burst %d", i));
  }
  ASSERT_TRUE(WaitFor([&] {
    absl::MutexLock lock(&observed.mutex);
    return observed.burst_sends != 0;
  }));
  absl::MutexLock lock(&observed.mutex);
  EXPECT_EQ(observed.burst_sends, 1u);  // 100 Send() calls, one send SQE
  close(fd);
}

TEST(ShardGroupTest, TransformSwitchDiscardsPlaintextPipelinedAfterStartTls) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto group = StartGroup(BaseOptions(1, &config));
  ASSERT_NE(group, nullptr);
  int fd = Connect(group->listen_addresses()[0]);
  ASSERT_GE(fd, 0);
  ReadLine(fd);
  // CVE-2011-0411: the injected command rides in the same segment as STARTTLS.
  ASSERT_TRUE(WriteAll(fd, "STARTTLS\r\nINJECTED\r\n"));
  EXPECT_EQ(ReadLine(fd), "220 go ahead");
  ASSERT_TRUE(WriteAll(fd, Xor("secret\r\n")));
  char buffer[64] = {};
  std::string reply;
  while (reply.find('\n') == std::string::npos && reply.size() < 64) {
    ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    ASSERT_GT(n, 0);
    reply += Xor(std::string_view(buffer, n));
  }
  EXPECT_EQ(reply, "250 secret\r\n");
  EXPECT_FALSE(observed.Saw("INJECTED"));
  EXPECT_TRUE(observed.Saw("secret"));
  close(fd);
}

TEST(ShardGroupTest, FactorySeesPerClientCountsAndCapRefusesWithReply) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto options = BaseOptions(1, &config);
  options.shard.connections_max = 3;
  options.shard.overload_reply = "421 4.3.2 busy\r\n";
  options.on_start = [&config](Shard& shard) {
    shard.SetHandlerFactory(
        [&config](Connection&, const ClientInfo& info) -> std::unique_ptr<StreamHandler> {
          {
            absl::MutexLock lock(&config.observed->mutex);
            config.observed->client_counts.push_back(info.client_connections);
          }
          if (info.client_connections > 2) {
            return nullptr;  // smtpd_client_connection_count_limit = 2
          }
          return std::make_unique<LineHandler>(&config);
        });
  };
  auto group = StartGroup(std::move(options));
  ASSERT_NE(group, nullptr);
  const SocketAddress server = group->listen_addresses()[0];
  int a1 = Connect(server, "127.0.0.3");
  int a2 = Connect(server, "127.0.0.3");
  ASSERT_NE(ParseGreeting(ReadLine(a1)).first, -1);
  ASSERT_NE(ParseGreeting(ReadLine(a2)).first, -1);
  int a3 = Connect(server, "127.0.0.3");
  EXPECT_EQ(ReadLine(a3), "");  // refused: closed without a word
  close(a3);
  ASSERT_TRUE(WaitFor([&] { return TotalConnections(*group) == 2; }));
  int b1 = Connect(server, "127.0.0.4");
  ASSERT_NE(ParseGreeting(ReadLine(b1)).first, -1);
  int b2 = Connect(server, "127.0.0.4");  // the 4th connection on a shard capped at 3
  EXPECT_EQ(ReadLine(b2), "421 4.3.2 busy");
  EXPECT_EQ(ReadEnd(b2), 0);
  for (int fd : {a1, a2, b1, b2}) {
    close(fd);
  }
  absl::MutexLock lock(&observed.mutex);
  EXPECT_EQ(observed.client_counts, (std::vector<size_t>{1, 2, 3, 1}));
}

TEST(ShardGroupTest, OutputIsBoundedPerConnection) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto options = BaseOptions(1, &config);
  options.shard.output_bytes_max = 64 * 1024;
  auto group = StartGroup(std::move(options));
  ASSERT_NE(group, nullptr);
  int fd = Connect(group->listen_addresses()[0]);
  ASSERT_GE(fd, 0);
  ReadLine(fd);
  ASSERT_TRUE(WriteAll(fd, "FLOOD\r\n"));
  ASSERT_TRUE(WaitFor([&] {
    absl::MutexLock lock(&observed.mutex);
    return observed.flood_accepted >= 0;
  }));
  {
    absl::MutexLock lock(&observed.mutex);
    EXPECT_EQ(observed.flood_accepted, 64);  // 64 x 1 KiB, then Send() said no
    EXPECT_LE(observed.flood_output_bytes, 64u * 1024u);
  }
  // What was accepted is delivered intact.
  for (int i = 0; i < 64; ++i) {
    ASSERT_EQ(ReadLine(fd).size(), 1022u) << i;
  }
  close(fd);
}

// A client that never reads: the send in flight blocks on a full socket. The idle timeout
// asks for a graceful close, the flush cannot finish, the linger time runs out and Close()
// must cancel the blocked send, wait for its completion and only then close the fd.
TEST(ShardGroupTest, CloseCancelsASendBlockedOnAClientThatDoesNotRead) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  config.idle_timeout = absl::Milliseconds(200);
  auto options = BaseOptions(1, &config);
  options.shard.output_bytes_max = 16 * 1024 * 1024;
  options.shard.close_linger = absl::Milliseconds(300);
  auto group = StartGroup(std::move(options));
  ASSERT_NE(group, nullptr);
  int fd = Connect(group->listen_addresses()[0]);
  ASSERT_GE(fd, 0);
  ReadLine(fd);
  ASSERT_TRUE(WriteAll(fd, "FLOOD\r\n"));  // then never read again
  ASSERT_TRUE(WaitFor([&] { return TotalConnections(*group) == 0; }));
  {
    absl::MutexLock lock(&observed.mutex);
    EXPECT_GT(observed.flood_accepted, 8 * 1024);  // far more than the socket buffers hold
    EXPECT_EQ(observed.closed[CloseReason::kTimeout], 1);
  }
  close(fd);
}

TEST(ShardGroupTest, UnconsumedInputOverTheBoundClosesTheConnection) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto options = BaseOptions(1, &config);
  options.shard.pending_input_bytes_max = 64;
  auto group = StartGroup(std::move(options));
  ASSERT_NE(group, nullptr);
  int fd = Connect(group->listen_addresses()[0]);
  ASSERT_GE(fd, 0);
  ReadLine(fd);
  // The handler pauses after WAIT and leaves 200 bytes unconsumed: over the 64-byte bound.
  ASSERT_TRUE(WriteAll(fd, "WAIT\r\n" + std::string(198, 'a') + "\r\n"));
  // An abortive close: the reply staged in the same turn is dropped with the connection.
  EXPECT_EQ(ReadLine(fd), "");
  close(fd);
  ASSERT_TRUE(WaitFor([&] { return TotalConnections(*group) == 0; }));
  absl::MutexLock lock(&observed.mutex);
  EXPECT_EQ(observed.closed[CloseReason::kOverflow], 1);
}

TEST(ShardGroupTest, HalfClosedClientGetsItsRepliesThenEof) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto group = StartGroup(BaseOptions(1, &config));
  ASSERT_NE(group, nullptr);
  int fd = Connect(group->listen_addresses()[0]);
  ASSERT_GE(fd, 0);
  ReadLine(fd);
  ASSERT_TRUE(WriteAll(fd, "last words\r\n"));
  ASSERT_EQ(shutdown(fd, SHUT_WR), 0);
  EXPECT_EQ(ReadLine(fd), "250 last words");
  EXPECT_EQ(ReadEnd(fd), 0);
  close(fd);
  ASSERT_TRUE(WaitFor([&] { return TotalConnections(*group) == 0; }));
  absl::MutexLock lock(&observed.mutex);
  EXPECT_EQ(observed.closed[CloseReason::kPeerClosed], 1);
}

TEST(ShardGroupTest, ListensOnIpv6Loopback) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto options = BaseOptions(2, &config);
  options.listen = {*SocketAddress::Parse("[::1]:0"), *SocketAddress::Parse("127.0.0.1:0")};
  absl::StatusOr<std::unique_ptr<ShardGroup>> group = ShardGroup::Start(std::move(options));
  if (!group.ok() && group.status().message().find("Cannot assign") != std::string::npos) {
    GTEST_SKIP() << "no IPv6 loopback here: " << group.status();
  }
  ASSERT_TRUE(group.ok()) << group.status();
  const SocketAddress v6 = (*group)->listen_addresses()[0];
  EXPECT_EQ(v6.family(), AF_INET6);
  EXPECT_NE(v6.port(), 0);
  const int expected = ListenerSet::ShardForClient(*SocketAddress::Parse("[::1]:1"), 2);
  for (int i = 0; i < 3; ++i) {
    int fd = Connect(v6);
    ASSERT_GE(fd, 0);
    auto [shard, id] = ParseGreeting(ReadLine(fd));
    EXPECT_EQ(shard, expected);
    ASSERT_TRUE(WriteAll(fd, "QUIT\r\n"));
    EXPECT_EQ(ReadLine(fd), "221 bye");
    close(fd);
  }
  EXPECT_EQ((*group)->listen_addresses()[1].family(), AF_INET);
}

TEST(ShardGroupTest, ThousandCrossShardRoundTrips) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto group = StartGroup(BaseOptions(2, &config));
  ASSERT_NE(group, nullptr);
  constexpr int kRoundTrips = 1000;
  absl::Notification done;
  std::atomic<int> wrong_thread{0};
  ShardGroup* g = group.get();
  std::function<void(int)> ping = [&](int n) {
    g->Post(1, [&, n](Shard& one) {
      if (one.index() != 1 || !one.reactor().OnReactorThread()) {
        wrong_thread.fetch_add(1);
      }
      g->Post(0, [&, n](Shard& zero) {
        if (zero.index() != 0 || !zero.reactor().OnReactorThread()) {
          wrong_thread.fetch_add(1);
        }
        if (n + 1 == kRoundTrips) {
          done.Notify();
        } else {
          ping(n + 1);
        }
      });
    });
  };
  ping(0);
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(wrong_thread.load(), 0);
}

TEST(ShardGroupTest, ReloadReachesEveryShard) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto options = BaseOptions(3, &config);
  std::atomic<int> applied{0};
  std::atomic<const void*> last[3] = {nullptr, nullptr, nullptr};
  auto base_start = options.on_start;
  options.on_start = [&, base_start](Shard& shard) {
    base_start(shard);
    shard.SetReloadHandler([&, index = shard.index()](std::shared_ptr<const void> snapshot) {
      last[index].store(snapshot.get());
      applied.fetch_add(1);
    });
  };
  auto group = StartGroup(std::move(options));
  ASSERT_NE(group, nullptr);
  auto snapshot = std::make_shared<const std::string>("config v2");
  EXPECT_TRUE(group->Reload(snapshot, absl::Seconds(10)));
  EXPECT_EQ(applied.load(), 3);
  for (auto& slot : last) {
    EXPECT_EQ(slot.load(), snapshot.get());
  }
}

// Graceful shutdown under load. Busy clients PING in a loop; each PING becomes a record
// in the shard's fake spool and is answered "250 queued" only after its fdatasync. When
// shutdown begins, a busy client's next command gets 421; an idle client gets 421 when
// the grace period ends. Nobody sees a reset, and every 250 has its record on disk.
TEST(ShardGroupTest, GracefulShutdownUnderLoadLosesNothingAndResetsNobody) {
  constexpr int kShards = 2;
  constexpr int kBusy = 24;
  constexpr int kIdle = 4;
  ::moat::testing::TempDir dir;
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  config.spools.resize(kShards);
  auto options = BaseOptions(kShards, &config);
  options.on_start = [&](Shard& shard) {
    const std::string path = absl::StrFormat("%s/spool-%d", dir.path(), shard.index());
    int fd = open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    MOAT_CHECK(fd >= 0);
    auto* spool = new FakeSpool(shard.reactor(), fd);
    config.spools[shard.index()] = spool;
    shard.SetHandlerFactory([&config](Connection&, const ClientInfo&) {
      return std::make_unique<LineHandler>(&config);
    });
    shard.SetShutdownBarrier([spool] { return spool->idle(); });
  };
  options.on_stop = [&](Shard& shard) {
    EXPECT_TRUE(config.spools[shard.index()]->idle());
    delete config.spools[shard.index()];
  };
  auto group = StartGroup(std::move(options));
  ASSERT_NE(group, nullptr);
  const SocketAddress server = group->listen_addresses()[0];

  std::atomic<int> acknowledged{0};
  std::atomic<int> got_421{0};
  std::atomic<int> resets{0};
  std::atomic<int> ready{0};
  std::vector<std::thread> clients;
  for (int i = 0; i < kBusy + kIdle; ++i) {
    clients.emplace_back([&, busy = i < kBusy] {
      int fd = Connect(server);
      if (fd < 0 || ParseGreeting(ReadLine(fd)).first < 0) {
        ready.fetch_add(1);
        return;
      }
      int pings = 0;
      std::string reply;
      for (int round = 0; round < 100000; ++round) {
        if (busy) {
          if (!WriteAll(fd, "PING\r\n")) {
            break;
          }
        }
        if (pings == 3 || !busy) {
          ready.fetch_add(pings == 3 || !busy ? 1 : 0);
        }
        reply = ReadLine(fd);
        if (reply == "250 queued") {
          acknowledged.fetch_add(1);
          ++pings;
          continue;
        }
        break;
      }
      if (reply.starts_with("421")) {
        got_421.fetch_add(1);
      }
      if (ReadEnd(fd) != 0) {
        resets.fetch_add(1);
      }
      close(fd);
    });
  }
  ASSERT_TRUE(WaitFor([&] { return ready.load() >= kBusy + kIdle; }));
  group->BeginShutdown(absl::Milliseconds(500));
  EXPECT_TRUE(group->Join(absl::Seconds(20)));
  for (std::thread& t : clients) {
    t.join();
  }
  EXPECT_EQ(got_421.load(), kBusy + kIdle);
  EXPECT_EQ(resets.load(), 0);
  // Every acknowledged PING is a durable record (a record may exist without its 250 if
  // the client was told 421 first; never the other way round).
  int records = 0;
  for (int shard = 0; shard < kShards; ++shard) {
    std::string contents =
        ::moat::testing::ReadFile(absl::StrFormat("%s/spool-%d", dir.path(), shard));
    records += static_cast<int>(std::count(contents.begin(), contents.end(), '\n'));
  }
  EXPECT_GE(records, acknowledged.load());
  EXPECT_GT(acknowledged.load(), 3 * kBusy - 1);
  EXPECT_EQ(group->running(), 0);
}

TEST(ShardGroupTest, SecondShutdownRequestEndsTheGracePeriod) {
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto group = StartGroup(BaseOptions(2, &config));
  ASSERT_NE(group, nullptr);
  int fd = Connect(group->listen_addresses()[0]);
  ASSERT_GE(fd, 0);
  ASSERT_NE(ParseGreeting(ReadLine(fd)).first, -1);
  group->BeginShutdown(absl::Seconds(600));
  group->BeginShutdown(absl::ZeroDuration());  // the operator insists
  EXPECT_EQ(ReadLine(fd), "421 4.3.2 grace expired");
  EXPECT_EQ(ReadEnd(fd), 0);
  close(fd);
  // Far less than the first request's 600 s grace.
  EXPECT_TRUE(group->Join(absl::Seconds(30)));
}

TEST(ShardGroupTest, SigtermDrainsAndRunUntilShutdownReturnsZero) {
  ShardGroup::BlockSignals();  // before the shard threads exist, as main() does
  Observed observed;
  HandlerConfig config;
  config.observed = &observed;
  auto group = StartGroup(BaseOptions(2, &config));
  ASSERT_NE(group, nullptr);
  int fd = Connect(group->listen_addresses()[0]);
  ASSERT_GE(fd, 0);
  ASSERT_NE(ParseGreeting(ReadLine(fd)).first, -1);
  std::atomic<int> reloads{0};
  std::thread signaller([&] {
    kill(getpid(), SIGHUP);
    WaitFor([&] { return reloads.load() == 1; });
    kill(getpid(), SIGTERM);
  });
  const int status = group->RunUntilShutdown(absl::Milliseconds(300), [&] { reloads++; });
  signaller.join();
  EXPECT_EQ(status, 0);
  EXPECT_EQ(reloads.load(), 1);
  EXPECT_EQ(ReadLine(fd), "421 4.3.2 grace expired");
  EXPECT_EQ(ReadEnd(fd), 0);
  close(fd);
  // The listeners are closed: nobody is accepted any more.
  EXPECT_LT(Connect(group->listen_addresses()[0]), 0);
}

}  // namespace
}  // namespace moat::reactor
