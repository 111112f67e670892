// core/log/log.cc: see log.h.
#include "core/log/log.h"

#include <limits.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <string>

namespace moat::log {
namespace {

std::string& ProgramName() {
  static std::string name = "moat";
  return name;
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

// Writes whole lines in chunks of at most PIPE_BUF bytes (a longer single line goes alone).
void WriteLines(std::string_view text) {
  while (!text.empty()) {
    size_t chunk = text.size();
    if (chunk > PIPE_BUF) {
      size_t cut = text.rfind('\n', PIPE_BUF - 1);
      chunk = cut == std::string_view::npos ? text.find('\n') : cut;
      chunk = chunk == std::string_view::npos ? text.size() : chunk + 1;
    }
    WriteAll(text.substr(0, chunk));
    text.remove_prefix(chunk);
  }
}

struct ThreadBatch {
  bool enabled = false;
  std::string lines;  // alloc: grows to the largest turn's output, then reused
  ~ThreadBatch() { WriteLines(lines); }
};
thread_local ThreadBatch batch;

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

void SetProgramName(std::string_view name) { ProgramName() = std::string(name); }
void SetDebug(bool on) { debug_enabled.store(on, std::memory_order_relaxed); }
bool DebugEnabled() { return debug_enabled.load(std::memory_order_relaxed); }
void CaptureForTest(std::string* sink) { capture = sink; }

void BeginThreadBatching() { batch.enabled = true; }

void FlushThreadBatch() {
  if (!batch.lines.empty()) {
    WriteLines(batch.lines);
    batch.lines.clear();
  }
}

void EndThreadBatching() {
  FlushThreadBatch();
  batch.enabled = false;
}

std::string FormatLine(Level level, std::string_view message) {
  std::string line = absl::StrFormat("%s[%d]: ", ProgramName(), static_cast<int>(getpid()));
  line.append(LevelPrefix(level));
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
    batch.lines.append(line);
  } else {
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
