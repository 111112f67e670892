// core/cmd/stats.cc: `moat stats`. Placeholder until its issue lands: it says so and fails.
#include <cstdio>

#include "core/cmd/commands.h"

namespace moat::cmd {

int Stats(Args args) {
  if (WantsHelp(args, "usage: moat stats (not built yet)\n")) {
    return 0;
  }
  std::fprintf(stderr, "moat stats: not built yet\n");
  return 1;
}

}  // namespace moat::cmd
