// core/cmd/config.cc: `moat config`. Placeholder until its issue lands: it says so and fails.
#include <cstdio>

#include "core/cmd/commands.h"

namespace moat::cmd {

int Config(Args args) {
  if (WantsHelp(args, "usage: moat config (not built yet)\n")) {
    return 0;
  }
  std::fprintf(stderr, "moat config: not built yet\n");
  return 1;
}

}  // namespace moat::cmd
