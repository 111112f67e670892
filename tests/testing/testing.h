// tests/testing/testing.h
//
// Helpers shared by the tests: a temporary directory that removes itself, running a
// program and capturing its output, starting a background process and stopping it by its
// PID, and finding a free loopback port. Every wait is bounded.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

namespace moat::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // Writes `contents` to path()/name (creating parent folders) and returns the full path.
  std::string Write(const std::string& name, const std::string& contents) const;

 private:
  std::string path_;
};

struct RunResult {
  int exit_code = -1;  // the exit status, or 128+signal if killed by a signal
  std::string out;
  std::string err;
};

// Runs argv[0] with the given arguments (no shell), feeding `input` on stdin, and waits
// at most `timeout` (then kills it and returns exit_code -1).
RunResult Run(const std::vector<std::string>& argv, const std::string& input = "",
              std::chrono::seconds timeout = std::chrono::seconds(60));

// Path of the built `moat` binary.
std::string MoatBinary();
// Shorthand: Run({MoatBinary(), args...}).
RunResult RunMoat(const std::vector<std::string>& args, const std::string& input = "");

// A process running in the background; stopped (SIGTERM, then SIGKILL after a bounded
// wait) by its PID on destruction. Its stdout and stderr go to files in a TempDir.
class Process {
 public:
  explicit Process(const std::vector<std::string>& argv);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  // Sends `signal` and waits at most `timeout` for exit. Returns the exit code as in
  // RunResult, or -1 if it did not exit in time.
  int Stop(int signal, std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  // Waits until the process exits by itself, at most `timeout`; -1 if it did not.
  int Wait(std::chrono::milliseconds timeout);
  bool Running();
  std::string Stdout() const;
  std::string Stderr() const;

 private:
  TempDir dir_;
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read it back, close).
int FreePort();
// Waits until something accepts TCP connections on 127.0.0.1:port, at most `timeout`.
bool WaitForPort(int port, std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
// Waits until `file` contains `text`, at most `timeout`.
bool WaitForText(const std::string& file, const std::string& text,
                 std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));

std::string ReadFile(const std::string& path);
// The directory of the source tree (for fixtures in tests/testdata).
std::string SourceDir();

}  // namespace moat::testing
