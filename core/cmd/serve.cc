// core/cmd/serve.cc: `moat serve`. Placeholder until its issue lands: it says so and fails.
#include <cstdio>

#include "core/cmd/commands.h"

namespace moat::cmd {

int Serve(Args args) {
  if (WantsHelp(args, "usage: moat serve (not built yet)\n")) {
    return 0;
  }
  std::fprintf(stderr, "moat serve: not built yet\n");
  return 1;
}

}  // namespace moat::cmd
