// core/main.cc: the `moat` entry point. Thin by design (Envoy's source/exe): it picks the
// subcommand and hands over; every command lives in core/cmd/.
#include <cstdio>
#include <cstring>
#include <span>
#include <string_view>

#include "core/cmd/commands.h"
#include "core/log/log.h"

namespace {

struct Command {
  std::string_view name;
  int (*run)(moat::cmd::Args);
  std::string_view summary;
};

constexpr Command kCommands[] = {
    {"serve", moat::cmd::Serve, "[-c DIR]                 run the relay in the foreground"},
    {"check", moat::cmd::Check, "[-c DIR]                 validate main.cf and its tables"},
    {"config", moat::cmd::Config, "[-c DIR] [-n|-d] [NAME...] print parameters like postconf"},
    {"postmap", moat::cmd::Postmap, "[-i] TYPE:FILE | -q KEY TYPE:FILE  compile or query a table"},
    {"reload", moat::cmd::Reload, "[-c DIR]                 reload config and tables"},
    {"queue", moat::cmd::Queue, "[-c DIR] list|show ID|flush|delete ID|ALL|hold ID|release ID"},
    {"stats", moat::cmd::Stats, "[-c DIR]                 counters of the running daemon"},
};

void PrintUsage(FILE* out) {
  std::fprintf(out,
               "moat: an SMTP relay for the perimeter MX (Postfix main.cf syntax)\n\n"
               "usage: moat COMMAND [OPTIONS]\n\ncommands:\n");
  for (const Command& c : kCommands) {
    std::fprintf(out, "  moat %-8.*s %.*s\n", static_cast<int>(c.name.size()), c.name.data(),
                 static_cast<int>(c.summary.size()), c.summary.data());
  }
  std::fprintf(out,
               "\nCONFIG DIR defaults to /etc/moat (the file is DIR/main.cf).\n"
               "'moat COMMAND --help' describes one command.\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::span<char* const> args(argv, static_cast<size_t>(argc));
  if (args.size() < 2) {
    PrintUsage(stderr);
    return 2;
  }
  std::string_view name = args[1];
  if (name == "--help" || name == "-h" || name == "help") {
    PrintUsage(stdout);
    return 0;
  }
  for (const Command& c : kCommands) {
    if (c.name == name) {
      moat::log::SetProgramName("moat");
      return c.run(args.subspan(1));
    }
  }
  std::fprintf(stderr, "moat: unknown command '%s'\nTry 'moat --help'.\n", argv[1]);
  return 2;
}
