// core/cmd/reload.cc: `moat reload [-c DIR]`: re-read main.cf and the tables in the running daemon; sessions are kept.
#include <string>
#include <string_view>

#include "core/cmd/commands.h"
#include "core/cmd/control_client.h"

namespace moat::cmd {

int Reload(Args args) {
  constexpr std::string_view kUsage =
      "usage: moat reload [-c CONFIG_DIR]\n"
      "\n"
      "Asks the running daemon (through moat_control_socket): re-read main.cf and the tables in the running daemon; sessions are kept.\n";
  if (WantsHelp(args, kUsage)) {
    return 0;
  }
  std::string dir;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "-c" && i + 1 < args.size()) {
      dir = args[++i];
    } else if (a == "-c") {
      return UsageError("reload", "option -c needs a directory");
    } else {
      return UsageError("reload", "unknown option '" + std::string(a) + "'");
    }
  }
  return RunControlRequest("reload", dir, "reload");
}

}  // namespace moat::cmd
