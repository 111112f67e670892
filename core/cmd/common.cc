// core/cmd/common.cc: option helpers shared by the subcommands.
#include <cstdio>
#include <string>

#include "core/cmd/commands.h"

namespace moat::cmd {

bool WantsHelp(Args args, std::string_view usage) {
  for (size_t i = 1; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "--help" || a == "-h") {
      std::fwrite(usage.data(), 1, usage.size(), stdout);
      return true;
    }
    if (a == "--") {
      break;
    }
  }
  return false;
}

int UsageError(std::string_view command, std::string_view message) {
  std::string text = "moat " + std::string(command) + ": " + std::string(message) +
                     "\nTry 'moat " + std::string(command) + " --help'.\n";
  std::fwrite(text.data(), 1, text.size(), stderr);
  return 2;
}

}  // namespace moat::cmd
