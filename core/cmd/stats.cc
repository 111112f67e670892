// core/cmd/stats.cc: `moat stats [-c DIR]`: counters of the running daemon (connections, messages, deliveries, queue).
#include <string>
#include <string_view>

#include "core/cmd/commands.h"
#include "core/cmd/control_client.h"

namespace moat::cmd {

int Stats(Args args) {
  constexpr std::string_view kUsage =
      "usage: moat stats [-c CONFIG_DIR]\n"
      "\n"
      "Asks the running daemon (through moat_control_socket): counters of the running daemon (connections, messages, deliveries, queue).\n";
  if (WantsHelp(args, kUsage)) {
    return 0;
  }
  std::string dir;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "-c" && i + 1 < args.size()) {
      dir = args[++i];
    } else if (a == "-c") {
      return UsageError("stats", "option -c needs a directory");
    } else {
      return UsageError("stats", "unknown option '" + std::string(a) + "'");
    }
  }
  return RunControlRequest("stats", dir, "stats");
}

}  // namespace moat::cmd
