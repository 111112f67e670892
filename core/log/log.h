// core/log/log.h
//
// The one place that formats moat's log lines. Lines have Postfix's shape so that
// pflogsumm-style tools work (DESIGN section 5):
//
//   moat/smtpd[1234]: 3F2A1C: client=host[203.0.113.7]
//   moat[1234]: warning: /etc/moat/main.cf:12: unknown parameter "foo"
//
// "PROGRAM[pid]: " then, for levels other than info, "warning: ", "error: ", "fatal: ",
// "panic: " or "debug: ", then the message. Lines go to stderr (journald takes them from
// there) with one write(2) each, so lines from several threads never interleave.
//
// Shard threads batch: a reactor loop turn logs several lines per message (connect, queued,
// delivered, disconnect), and one write(2) per line was the largest syscall count per message.
// A thread that called BeginThreadBatching() collects its lines in a thread-local buffer;
// FlushThreadBatch() (the reactor calls it once per loop turn, before it waits) writes them in
// as few write(2) calls as possible, each at most PIPE_BUF bytes and ending on a line boundary,
// so lines from different threads still never interleave on a pipe. Fatal and panic lines flush
// the batch first; a thread's batch is flushed when the thread ends.
//
// The daemon never lets a shard thread block on stderr (journald may be slow, a pipe full):
// StartWriter() starts a writer thread, and from then on FlushThreadBatch() hands the turn's
// lines to it through a per-thread single-producer ring of 64 buffers (no lock, no syscall
// unless the writer sleeps; then one futex wake). When every buffer still waits for a stuck
// stderr, the lines are dropped and counted, and the writer reports "N log lines dropped"
// once it can write again. A fatal or panic line stops the writer first (everything handed
// off is written), then goes out itself. StopWriter() writes what is left and joins.
//
// Thread safety: every function may be called from any thread. The program name and the
// debug switch are set once at start-up, before threads start.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/strings/str_format.h"

namespace moat::log {

enum class Level { kDebug, kInfo, kWarning, kError, kFatal, kPanic };

// Sets the "PROGRAM" part of the prefix (default "moat"). Call before threads start.
void SetProgramName(std::string_view name);
// Enables debug lines. Call before threads start.
void SetDebug(bool on);
bool DebugEnabled();

// Test hook: when set, lines are appended here instead of written to stderr.
// REQUIRES: single-threaded use in tests.
void CaptureForTest(std::string* sink);

// Per-thread batching (see above). Begin/End on the thread itself; End flushes.
void BeginThreadBatching();
void FlushThreadBatch();
void EndThreadBatching();

// The writer thread (see above). Start before the batching threads, stop after they ended.
void StartWriter();
void StopWriter();
// Lines dropped and not yet reported (tests).
uint64_t DroppedLinesForTest();

// Formats and writes one line. A fatal line exits the process with status 1 after
// writing; a panic aborts (core dump).
void Write(Level level, std::string_view message);

// Only the formatting, for tests and for text that goes elsewhere (e.g. the control socket).
std::string FormatLine(Level level, std::string_view message);

template <typename... Args>
void Info(const absl::FormatSpec<Args...>& format, const Args&... args) {
  Write(Level::kInfo, absl::StrFormat(format, args...));
}
template <typename... Args>
void Warning(const absl::FormatSpec<Args...>& format, const Args&... args) {
  Write(Level::kWarning, absl::StrFormat(format, args...));
}
template <typename... Args>
void Error(const absl::FormatSpec<Args...>& format, const Args&... args) {
  Write(Level::kError, absl::StrFormat(format, args...));
}
template <typename... Args>
[[noreturn]] void Fatal(const absl::FormatSpec<Args...>& format, const Args&... args);
template <typename... Args>
void Debug(const absl::FormatSpec<Args...>& format, const Args&... args) {
  if (DebugEnabled()) {
    Write(Level::kDebug, absl::StrFormat(format, args...));
  }
}

[[noreturn]] void FatalLine(std::string_view message);

template <typename... Args>
[[noreturn]] void Fatal(const absl::FormatSpec<Args...>& format, const Args&... args) {
  FatalLine(absl::StrFormat(format, args...));
}

}  // namespace moat::log
