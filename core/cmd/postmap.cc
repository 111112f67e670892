// core/cmd/postmap.cc: `moat postmap`. Placeholder until its issue lands: it says so and fails.
#include <cstdio>

#include "core/cmd/commands.h"

namespace moat::cmd {

int Postmap(Args args) {
  if (WantsHelp(args, "usage: moat postmap (not built yet)\n")) {
    return 0;
  }
  std::fprintf(stderr, "moat postmap: not built yet\n");
  return 1;
}

}  // namespace moat::cmd
