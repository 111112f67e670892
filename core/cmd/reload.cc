// core/cmd/reload.cc: `moat reload`. Placeholder until its issue lands: it says so and fails.
#include <cstdio>

#include "core/cmd/commands.h"

namespace moat::cmd {

int Reload(Args args) {
  if (WantsHelp(args, "usage: moat reload (not built yet)\n")) {
    return 0;
  }
  std::fprintf(stderr, "moat reload: not built yet\n");
  return 1;
}

}  // namespace moat::cmd
