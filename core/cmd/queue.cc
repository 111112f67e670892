// core/cmd/queue.cc: `moat queue`. Placeholder until its issue lands: it says so and fails.
#include <cstdio>

#include "core/cmd/commands.h"

namespace moat::cmd {

int Queue(Args args) {
  if (WantsHelp(args, "usage: moat queue (not built yet)\n")) {
    return 0;
  }
  std::fprintf(stderr, "moat queue: not built yet\n");
  return 1;
}

}  // namespace moat::cmd
