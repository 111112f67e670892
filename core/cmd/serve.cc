// core/cmd/serve.cc: `moat serve [-c DIR] [-v]`, the relay in the foreground.
#include <string>
#include <string_view>

#include "core/cmd/commands.h"
#include "core/server/server.h"

namespace moat::cmd {

int Serve(Args args) {
  constexpr std::string_view kUsage =
      "usage: moat serve [-c CONFIG_DIR] [-v]\n"
      "\n"
      "Runs the relay in the foreground, logging to stderr. Reads CONFIG_DIR/main.cf\n"
      "(default /etc/moat/main.cf); with no main.cf anywhere, runs the embedded demo\n"
      "configuration: listen on 127.0.0.1:2525, relay example.com to 127.0.0.1:2526, spool\n"
      "in a temporary directory. SIGTERM or SIGINT: stop accepting, let sessions finish\n"
      "(421 after a grace period), complete pending spool writes, exit 0.\n"
      "\n"
      "  -c DIR   configuration directory\n"
      "  -v       debug logging\n";
  if (WantsHelp(args, kUsage)) {
    return 0;
  }
  server::ServeOptions options;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "-c") {
      if (i + 1 >= args.size()) {
        return UsageError("serve", "option -c needs a directory");
      }
      options.config_dir = args[++i];
    } else if (a == "-v") {
      options.debug = true;
    } else {
      return UsageError("serve", "unknown option '" + std::string(a) + "'");
    }
  }
  return server::Serve(options);
}

}  // namespace moat::cmd
