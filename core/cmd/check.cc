// core/cmd/check.cc: `moat check`. Placeholder until its issue lands: it says so and fails.
#include <cstdio>

#include "core/cmd/commands.h"

namespace moat::cmd {

int Check(Args args) {
  if (WantsHelp(args, "usage: moat check (not built yet)\n")) {
    return 0;
  }
  std::fprintf(stderr, "moat check: not built yet\n");
  return 1;
}

}  // namespace moat::cmd
