// bench/micro/spool_benchmark.cc: the spool's CPU path and its group commit.
//
// Back of the envelope: framing a record is one xxh3 pass over the content (xxh3 runs at
// ~10 GB/s on this VM, DEPENDENCIES.md 6) plus a few hundred bytes of envelope encoding, so a
// 5 KB message should cost well under a microsecond of CPU, far below the relay's 100 us budget.
// The disk side is set by fdatasync latency (~0.2-2 ms on a VM's virtio disk): one message per
// fdatasync caps a shard at ~1,000-5,000 msg/s, so throughput comes from group commit, i.e.
// from how many messages one fdatasync covers. BM_Spool_GroupCommit fixes the batch size;
// BM_Spool_ConcurrentSessions lets N closed-loop "sessions" (threads, each waiting for its 250)
// share one committer, the way sessions of a shard share a loop turn, and reports what batch size
// emerges.
//
// Spool files go under $TMPDIR (default /tmp): point it at the spool's file system.
//
// Measured 2026-11-23 (Release, this 2-core VM, ext4, load average ~19 from other builds):
// framing 7.7 GB/s at 5 KB, 15 GB/s at 100 KB; the whole spool CPU path (Stage + PrepareCommit +
// OnCommitDone, no I/O) ~3.1 us per 5 KB message; fdatasync ~110-370/s, so one message per
// fdatasync gives ~300 msg/s and batches of 128 give ~13,900 msg/s; 20 closed-loop sessions
// sharing one committer reach ~12.8 messages per fdatasync (~1,850 msg/s), 100 sessions ~54.
#include <sys/uio.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"

#include "queue/blocking_committer.h"
#include "queue/message_record.h"
#include "queue/record.h"
#include "queue/spool.h"

namespace moat::queue {
namespace {

MessageEnvelope Envelope(const std::string& id) {
  MessageEnvelope e;
  e.queue_id = id;
  e.arrival_unix_us = 1700000000000000;
  e.client_ip = "192.0.2.7";
  e.client_name = "mail.example.net";
  e.helo = "mail.example.net";
  e.protocol = "ESMTP";
  e.sender = "alice@example.net";
  e.recipients.push_back({"bob@example.com", "", 0, "bob@example.com", "relay:[10.0.0.5]:25"});
  return e;
}

std::string Content(size_t bytes) {
  std::string s;
  s.reserve(bytes);
  for (size_t i = 0; s.size() < bytes; ++i) {
    s += absl::StrFormat("line %d of a benchmark message body, lorem ipsum dolor\r\n", i);
  }
  s.resize(bytes);
  return s;
}

// A spool directory under $TMPDIR, removed afterwards.
class BenchDir {
 public:
  BenchDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base != nullptr ? base : "/tmp") + "/moat-spool-bench-XXXXXX";
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    path_ = mkdtemp(buf.data()) != nullptr ? buf.data() : "";
  }
  ~BenchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class NullReporter : public Reporter {
 public:
  void Corruption(std::string_view, uint64_t, uint64_t, const absl::Status&) override {}
};

std::unique_ptr<Spool> OpenSpool(const std::string& dir) {
  static NullReporter reporter;
  SpoolOptions options;
  options.directory = dir + "/spool/0";
  absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options, reporter);
  return spool.ok() ? *std::move(spool) : nullptr;
}

// Framing only: envelope encoding + header + xxh3 over envelope and content (no spool, no I/O).
void BM_Spool_FrameRecord(benchmark::State& state) {
  std::string content = Content(static_cast<size_t>(state.range(0)));
  MessageEnvelope e = Envelope("0123456789ABCDEF");
  std::string head;
  char header[kHeaderBytes];
  uint64_t seq = 1;
  for (auto _ : state) {
    head.clear();
    EncodeEnvelope(e, content.size(), &head);
    uint64_t check = PayloadChecksum(head, 7) ^ PayloadChecksum(content, 7);
    EncodeHeader(
        {RecordType::kMessage, static_cast<uint32_t>(head.size() + content.size()), seq++, check},
        7, header);
    benchmark::DoNotOptimize(header);
  }
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(content.size()));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Spool_FrameRecord)->Arg(1 << 10)->Arg(5 << 10)->Arg(100 << 10)->Arg(10 << 20);

// The whole spool CPU path per message: Stage + PrepareCommit (framing, iovecs) +
// OnCommitDone (index update), with the I/O skipped. 64 messages per batch.
void BM_Spool_StageAndFrame(benchmark::State& state) {
  BenchDir dir;
  std::unique_ptr<Spool> spool = OpenSpool(dir.path());
  if (spool == nullptr) {
    state.SkipWithError("cannot open spool");
    return;
  }
  std::string content = Content(static_cast<size_t>(state.range(0)));
  std::vector<TicketResult> results;
  int64_t messages = 0;
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) {
      spool->Stage(Envelope(spool->NewQueueId()), content);
    }
    while (const CommitBatch* batch = spool->PrepareCommit()) {
      benchmark::DoNotOptimize(batch->iov.data());
      spool->OnCommitDone(0);  // pretend the write + fdatasync completed
    }
    spool->TakeResults(&results);
    messages += static_cast<int64_t>(results.size());
    state.PauseTiming();
    // Keep the index from growing without bound: finish and forget what we just queued.
    if (spool->index().size() > 100000) {
      spool.reset();
      spool = OpenSpool(dir.path() + "/again" + std::to_string(messages));
    }
    state.ResumeTiming();
  }
  state.SetItemsProcessed(messages);
  state.SetBytesProcessed(messages * static_cast<int64_t>(content.size()));
}
BENCHMARK(BM_Spool_StageAndFrame)->Arg(5 << 10)->Arg(100 << 10);

// Real group commit: `batch` 5 KB messages per write + fdatasync.
void BM_Spool_GroupCommit(benchmark::State& state) {
  BenchDir dir;
  std::unique_ptr<Spool> spool = OpenSpool(dir.path());
  if (spool == nullptr) {
    state.SkipWithError("cannot open spool");
    return;
  }
  const int batch = static_cast<int>(state.range(0));
  std::string content = Content(5 << 10);
  std::vector<TicketResult> results;
  int64_t messages = 0;
  int64_t syncs = 0;
  for (auto _ : state) {
    for (int i = 0; i < batch; ++i) {
      spool->Stage(Envelope(spool->NewQueueId()), content);
    }
    syncs += static_cast<int64_t>(BlockingCommitter::CommitAll(*spool));
    spool->TakeResults(&results);
    for (const TicketResult& r : results) {
      if (r.error != 0) {
        state.SkipWithError("commit failed");
        return;
      }
    }
    messages += static_cast<int64_t>(results.size());
  }
  state.SetItemsProcessed(messages);
  state.counters["fdatasync_per_s"] =
      benchmark::Counter(static_cast<double>(syncs), benchmark::Counter::kIsRate);
  state.counters["msgs_per_fdatasync"] =
      static_cast<double>(messages) / static_cast<double>(syncs > 0 ? syncs : 1);
}
BENCHMARK(BM_Spool_GroupCommit)->Arg(1)->Arg(8)->Arg(32)->Arg(128)->UseRealTime()->MinTime(2.0);

// N closed-loop sessions (threads) each submit a 5 KB message and wait for its "250" before the
// next; one committer thread stages whatever has arrived, commits it with one write + fdatasync,
// and wakes the waiters. The batch size is not chosen: it emerges from the concurrency.
void BM_Spool_ConcurrentSessions(benchmark::State& state) {
  BenchDir dir;
  std::unique_ptr<Spool> spool = OpenSpool(dir.path());
  if (spool == nullptr) {
    state.SkipWithError("cannot open spool");
    return;
  }
  const int sessions = static_cast<int>(state.range(0));
  const std::string content = Content(5 << 10);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> submitted;  // session indexes waiting to be staged
  std::vector<uint64_t> done(sessions, 0);
  bool stop = false;
  int64_t messages = 0;
  int64_t syncs = 0;

  std::thread committer([&] {
    std::vector<TicketResult> results;
    std::vector<std::pair<uint64_t, int>> tickets;  // sequence -> session
    std::vector<int> take;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return stop || !submitted.empty(); });
        if (stop && submitted.empty()) {
          return;
        }
        take.swap(submitted);
      }
      tickets.clear();
      for (int s : take) {
        tickets.emplace_back(spool->Stage(Envelope(spool->NewQueueId()), content).sequence, s);
      }
      take.clear();
      syncs += static_cast<int64_t>(BlockingCommitter::CommitAll(*spool));
      spool->TakeResults(&results);
      {
        std::lock_guard<std::mutex> lock(mu);
        for (const auto& [seq, s] : tickets) {
          ++done[s];
        }
        messages += static_cast<int64_t>(results.size());
      }
      cv.notify_all();
    }
  });

  for (auto _ : state) {
    // One "round": every session gets 20 messages acknowledged, closed loop.
    std::vector<std::thread> clients;
    for (int s = 0; s < sessions; ++s) {
      clients.emplace_back([&, s] {
        for (int m = 0; m < 20; ++m) {
          std::unique_lock<std::mutex> lock(mu);
          uint64_t target = done[s] + 1;
          submitted.push_back(s);
          cv.notify_all();
          cv.wait(lock, [&] { return done[s] >= target; });
        }
      });
    }
    for (std::thread& t : clients) {
      t.join();
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    stop = true;
  }
  cv.notify_all();
  committer.join();
  state.SetItemsProcessed(messages);
  state.counters["fdatasync_per_s"] =
      benchmark::Counter(static_cast<double>(syncs), benchmark::Counter::kIsRate);
  state.counters["msgs_per_fdatasync"] =
      static_cast<double>(messages) / static_cast<double>(syncs > 0 ? syncs : 1);
}
BENCHMARK(BM_Spool_ConcurrentSessions)->Arg(1)->Arg(20)->Arg(100)->UseRealTime()->MinTime(2.0);

}  // namespace
}  // namespace moat::queue
