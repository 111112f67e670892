// core/log/log.cc: see log.h.
#include "core/log/log.h"

#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace moat::log {
namespace {

std::string& ProgramName() {
  static std::string name = "moat";
  return name;
}

// "PROGRAM[pid]: ", built once: getpid() is a system call in this glibc, and a busy shard
// logs several lines per message. Rebuilt by SetProgramName() (start-up, before threads) and
// in the child of a fork.
std::string BuildPrefix() {
  return absl::StrFormat("%s[%d]: ", ProgramName(), static_cast<int>(getpid()));
}
std::string& Prefix() {
  static std::string prefix = [] {
    pthread_atfork(nullptr, nullptr, [] { Prefix() = BuildPrefix(); });
    return BuildPrefix();
  }();
  return prefix;
}
std::atomic<bool> debug_enabled{false};
std::string* capture = nullptr;

// Writes all of `text` to stderr (retrying short writes and EINTR).
void WriteAll(std::string_view text) {
  const char* p = text.data();
  size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(STDERR_FILENO, p, left);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;  // stderr is gone: nothing better to do with a log line.
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
}

// Whole lines per write, at most this many bytes where a write must stay atomic (a pipe other
// processes may share: PIPE_BUF); set by StartWriter from what stderr is.
std::atomic<size_t> write_chunk_bytes{PIPE_BUF};

// Writes whole lines in chunks of at most write_chunk_bytes (a longer single line goes alone).
void WriteLines(std::string_view text) {
  const size_t limit = write_chunk_bytes.load(std::memory_order_relaxed);
  while (!text.empty()) {
    size_t chunk = text.size();
    if (chunk > limit) {
      size_t cut = text.rfind('\n', limit - 1);
      chunk = cut == std::string_view::npos ? text.find('\n') : cut;
      chunk = chunk == std::string_view::npos ? text.size() : chunk + 1;
    }
    WriteAll(text.substr(0, chunk));
    text.remove_prefix(chunk);
  }
}

// ---- The writer thread (StartWriter) ----
// One channel per batching thread: a single-producer single-consumer ring of line buffers. The
// producer swaps its turn's buffer into a free slot (and gets that slot's emptied buffer back,
// capacity kept); the writer writes full slots in order and empties them.
struct Channel {
  static constexpr uint64_t kSlots = 64;
  std::array<std::string, kSlots> slots;
  std::atomic<uint64_t> head{0};  // producer: slots filled
  std::atomic<uint64_t> tail{0};  // writer: slots written
};

struct Writer {
  std::mutex mu;  // guards channels and thread (registration, start, stop: never per line)
  std::vector<std::shared_ptr<Channel>> channels;
  std::thread thread;
  std::atomic<bool> running{false};
  std::atomic<bool> stop{false};
  std::atomic<bool> sleeping{false};
  std::atomic<uint32_t> signal{0};
  std::atomic<uint64_t> dropped{0};
};
// Never destroyed: a thread still logging while the process exits finds it intact.
Writer& TheWriter() {
  static Writer* w = new Writer;
  return *w;
}

constexpr size_t kGatherBytesMax = size_t{1} << 20;  // one write to a file or socket, at most
constexpr size_t kBatchBytesMax = size_t{4} << 20;    // one thread's lines per turn, then drops
constexpr size_t kSlotKeepBytes = size_t{256} << 10;  // a written slot keeps this much capacity

uint64_t CountLines(std::string_view text) {
  return static_cast<uint64_t>(std::count(text.begin(), text.end(), '\n'));
}

// Writer thread: writes every full slot of every channel; true if it wrote anything. The slots
// are gathered into one buffer first, so a busy relay makes one write per wake-up instead of
// one per slot (a W1 run: 0.83 writes per message, each a syscall on a CPU the shards share).
bool DrainChannels(Writer& w) {
  constexpr size_t kGatherBytes = size_t{256} << 10;
  static std::string out;  // alloc: the writer thread's (or StopWriter's, after the join) only
  std::vector<std::shared_ptr<Channel>> channels;
  {
    std::lock_guard<std::mutex> lock(w.mu);
    channels = w.channels;
  }
  bool wrote = false;
  for (const std::shared_ptr<Channel>& c : channels) {
    uint64_t tail = c->tail.load(std::memory_order_relaxed);
    const uint64_t head = c->head.load(std::memory_order_acquire);
    for (; tail != head; ++tail) {
      std::string& slot = c->slots[tail % Channel::kSlots];
      if (out.size() + slot.size() > kGatherBytes && !out.empty()) {
        WriteLines(out);
        out.clear();
      }
      out += slot;
      slot.clear();
      if (slot.capacity() > kSlotKeepBytes) {
        std::string().swap(slot);
      }
      c->tail.store(tail + 1, std::memory_order_release);
      wrote = true;
    }
  }
  if (!out.empty()) {
    WriteLines(out);
    out.clear();
    if (out.capacity() > 4 * kGatherBytes) {
      std::string().swap(out);
    }
  }
  if (uint64_t dropped = w.dropped.exchange(0, std::memory_order_relaxed); dropped > 0) {
    WriteAll(FormatLine(
        Level::kWarning,
        absl::StrFormat("%d log lines dropped: standard error did not keep up", dropped)));
  }
  return wrote;
}

bool AnyPending(Writer& w) {
  std::lock_guard<std::mutex> lock(w.mu);
  for (const std::shared_ptr<Channel>& c : w.channels) {
    if (c->head.load() != c->tail.load(std::memory_order_relaxed)) {
      return true;
    }
  }
  return w.dropped.load(std::memory_order_relaxed) > 0;
}

void WriterLoop(Writer& w) {
  for (;;) {
    const bool wrote = DrainChannels(w);
    if (w.stop.load()) {
      DrainChannels(w);
      return;
    }
    if (wrote) {
      // Busy: let a few turns' lines gather instead of waking once per turn.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      continue;
    }
    const uint32_t seen = w.signal.load();
    w.sleeping.store(true);  // seq_cst: pairs with the producer's head store + sleeping load
    if (!AnyPending(w) && !w.stop.load()) {
      w.signal.wait(seen);
    }
    w.sleeping.store(false);
  }
}

void WakeWriter(Writer& w) {
  if (w.sleeping.load()) {
    w.signal.fetch_add(1);
    w.signal.notify_one();
  }
}

struct ThreadBatch {
  bool enabled = false;
  std::string lines;                 // alloc: grows to the largest turn's output, then reused
  std::shared_ptr<Channel> channel;  // set at the first hand-off to a running writer
  ~ThreadBatch();
};
thread_local ThreadBatch batch;

// Hands this thread's lines to the writer; never blocks. False when no writer runs.
bool HandOff() {
  Writer& w = TheWriter();
  if (!w.running.load(std::memory_order_acquire)) {
    return false;
  }
  if (batch.channel == nullptr) {
    batch.channel = std::make_shared<Channel>();
    std::lock_guard<std::mutex> lock(w.mu);  // once per thread
    w.channels.push_back(batch.channel);
  }
  Channel& c = *batch.channel;
  const uint64_t head = c.head.load(std::memory_order_relaxed);
  if (head - c.tail.load(std::memory_order_acquire) >= Channel::kSlots) {
    // Every slot is waiting for a stuck stderr: drop rather than block the shard. Counted, and
    // reported by the writer once it can write again.
    w.dropped.fetch_add(CountLines(batch.lines), std::memory_order_relaxed);
    batch.lines.clear();
    return true;
  }
  batch.lines.swap(c.slots[head % Channel::kSlots]);  // gets back an empty buffer
  c.head.store(head + 1);                             // seq_cst: see WriterLoop
  WakeWriter(w);
  return true;
}

ThreadBatch::~ThreadBatch() {
  if (!lines.empty() && !HandOff()) {
    WriteLines(lines);
  }
}

std::string_view LevelPrefix(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug: ";
    case Level::kInfo:
      return "";
    case Level::kWarning:
      return "warning: ";
    case Level::kError:
      return "error: ";
    case Level::kFatal:
      return "fatal: ";
    case Level::kPanic:
      return "panic: ";
  }
  return "";
}

}  // namespace

void SetProgramName(std::string_view name) {
  ProgramName() = std::string(name);
  Prefix() = BuildPrefix();
}
void SetDebug(bool on) {
  debug_enabled.store(on, std::memory_order_relaxed);
}
bool DebugEnabled() {
  return debug_enabled.load(std::memory_order_relaxed);
}
void CaptureForTest(std::string* sink) {
  capture = sink;
}

void BeginThreadBatching() {
  batch.enabled = true;
}

void FlushThreadBatch() {
  if (!batch.lines.empty() && !HandOff()) {
    WriteLines(batch.lines);
    batch.lines.clear();
  }
}

void StartWriter() {
  Writer& w = TheWriter();
  std::lock_guard<std::mutex> lock(w.mu);
  if (w.running.load()) {
    return;
  }
  w.stop.store(false);
  // Only a pipe needs writes of at most PIPE_BUF to keep other writers' lines from landing in
  // the middle of moat's; a file or journald's socket takes the whole batch at once.
  struct stat st {};
  const bool fifo = fstat(STDERR_FILENO, &st) != 0 || S_ISFIFO(st.st_mode);
  write_chunk_bytes.store(fifo ? PIPE_BUF : kGatherBytesMax, std::memory_order_relaxed);
  w.thread = std::thread([&w] { WriterLoop(w); });
  w.running.store(true, std::memory_order_release);
}

void StopWriter() {
  Writer& w = TheWriter();
  std::thread thread;
  {
    std::lock_guard<std::mutex> lock(w.mu);
    if (!w.running.load() || std::this_thread::get_id() == w.thread.get_id()) {
      return;
    }
    w.running.store(false);
    w.stop.store(true);
    thread = std::move(w.thread);
  }
  w.signal.fetch_add(1);
  w.signal.notify_one();
  thread.join();
  DrainChannels(w);  // anything handed off while it stopped
  write_chunk_bytes.store(PIPE_BUF, std::memory_order_relaxed);  // stderr may change after this
}

uint64_t DroppedLinesForTest() {
  return TheWriter().dropped.load();
}

void EndThreadBatching() {
  FlushThreadBatch();
  batch.enabled = false;
}

std::string FormatLine(Level level, std::string_view message) {
  const std::string_view level_prefix = LevelPrefix(level);
  std::string line;
  line.reserve(Prefix().size() + level_prefix.size() + message.size() + 1);
  line.append(Prefix());
  line.append(level_prefix);
  line.append(message);
  line.push_back('\n');
  return line;
}

void Write(Level level, std::string_view message) {
  if (level == Level::kDebug && !DebugEnabled()) {
    return;
  }
  std::string line = FormatLine(level, message);
  const bool final_line = level == Level::kFatal || level == Level::kPanic;
  if (capture != nullptr) {
    capture->append(line);
  } else if (batch.enabled && !final_line) {
    if (batch.lines.size() + line.size() > kBatchBytesMax && TheWriter().running.load()) {
      TheWriter().dropped.fetch_add(1, std::memory_order_relaxed);  // a runaway turn
    } else {
      batch.lines.append(line);
    }
  } else {
    if (final_line) {
      StopWriter();  // what other threads handed off goes out first; then this thread's lines
    }
    FlushThreadBatch();
    WriteAll(line);
  }
  if (level == Level::kFatal) {
    std::exit(1);
  }
  if (level == Level::kPanic) {
    std::abort();
  }
}

void FatalLine(std::string_view message) {
  Write(Level::kFatal, message);
  std::exit(1);  // Write() exits already; this tells the compiler.
}

}  // namespace moat::log
