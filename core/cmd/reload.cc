// core/cmd/reload.cc: `moat reload [-c DIR]`, through the daemon's control socket.
#include <string_view>

#include "core/cmd/commands.h"
#include "core/cmd/control_client.h"

namespace moat::cmd {

int Reload(Args args) {
  constexpr std::string_view kUsage =
      "usage: moat reload [-c CONFIG_DIR]\n"
      "\n"
      "Makes the running daemon re-read main.cf and its tables (like postfix reload; SIGHUP\n"
      "does the same). Sessions already open keep the configuration they started with; new\n"
      "ones get the new one. On an error the running configuration stays.\n";
  return RunPlainControlCommand(args, "reload", kUsage);
}

}  // namespace moat::cmd
