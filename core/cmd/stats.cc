// core/cmd/stats.cc: `moat stats [-c DIR]`, through the daemon's control socket.
#include <string_view>

#include "core/cmd/commands.h"
#include "core/cmd/control_client.h"

namespace moat::cmd {

int Stats(Args args) {
  constexpr std::string_view kUsage =
      "usage: moat stats [-c CONFIG_DIR]\n"
      "\n"
      "Prints the running daemon's counters (connections, accepted messages, spool commits,\n"
      "deliveries, queue size), one \"name: value\" line each.\n";
  return RunPlainControlCommand(args, "stats", kUsage);
}

}  // namespace moat::cmd
