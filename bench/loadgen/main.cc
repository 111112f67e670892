// bench/loadgen/main.cc: the moat-loadgen entry point (DESIGN.md section 7). Parses the flags,
// runs the engine, prints the report (text on stdout, or one JSON object with --json) and
// exits 0 when every message was accepted (send), received (sink) or relayed (run), 1
// otherwise, 2 on a usage error.
#include <sys/resource.h>

#include <cstdio>
#include <string>
#include <vector>

#include "bench/loadgen/engine.h"
#include "bench/loadgen/options.h"
#include "bench/loadgen/stats.h"
#include "core/log/log.h"

namespace {

using moat::loadgen::Mode;

int ExitStatus(const moat::loadgen::Options& o, const moat::loadgen::SendStats& send,
               const moat::loadgen::SinkStats& sink) {
  if (o.mode == Mode::kSink) {
    bool ok = sink.write_errors == 0 && (o.messages == 0 || sink.messages >= o.messages);
    return ok ? 0 : 1;
  }
  bool ok = send.errors == 0 && send.accepted + send.rejected_messages == send.attempted &&
            (o.messages == 0 || o.duration_s > 0 || send.attempted == o.messages);
  if (o.mode == Mode::kRun) {
    ok = ok && sink.write_errors == 0 && sink.messages >= send.accepted;
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  moat::log::SetProgramName("moat-loadgen");
  std::vector<std::string> args(argv, argv + argc);
  auto options = moat::loadgen::ParseArgs(args);
  if (!options.ok()) {
    std::fprintf(stderr, "moat-loadgen: %s\n\n%s", std::string(options.status().message()).c_str(),
                 moat::loadgen::Usage());
    return 2;
  }
  if (options->help) {
    std::fputs(moat::loadgen::Usage(), stdout);
    return 0;
  }
  // Thousands of sessions need thousands of descriptors: take the hard limit.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  moat::loadgen::Engine::InstallSignalHandlers();
  moat::loadgen::Engine engine(*options);
  if (auto status = engine.Init(); !status.ok()) {
    moat::log::Error("%s", std::string(status.message()));
    return 1;
  }
  if (options->mode != Mode::kSend) {
    moat::log::Info("sink listening on port %d", engine.listen_port());
  }
  engine.Run();
  const auto* send = options->mode != Mode::kSink ? &engine.send_stats() : nullptr;
  const auto* sink = options->mode != Mode::kSend ? &engine.sink_stats() : nullptr;
  std::string report = options->json ? moat::loadgen::FormatJson(*options, send, sink)
                                     : moat::loadgen::FormatText(*options, send, sink);
  std::fputs(report.c_str(), stdout);
  std::fflush(stdout);
  return ExitStatus(*options, engine.send_stats(), engine.sink_stats());
}
