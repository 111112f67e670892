// core/log/log.cc: see log.h.
#include "core/log/log.h"

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
  if (capture != nullptr) {
    capture->append(line);
  } else {
    const char* p = line.data();
    size_t left = line.size();
    while (left > 0) {
      ssize_t n = ::write(STDERR_FILENO, p, left);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        break;  // stderr is gone: nothing better to do with a log line.
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
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
