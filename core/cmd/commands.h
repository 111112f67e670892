// core/cmd/commands.h
//
// The `moat` subcommands (DESIGN section 3). Each takes the arguments after the command
// name (args[0] is the command name itself) and returns the process exit status:
// 0 success, 1 failure or "not found", 2 usage error. core/main.cc dispatches; each
// command lives in its own file in core/cmd/.
#pragma once

#include <span>
#include <string_view>

namespace moat::cmd {

using Args = std::span<char* const>;

int Serve(Args args);
int Check(Args args);
int Config(Args args);
int Postmap(Args args);
int Reload(Args args);
int Queue(Args args);
int Stats(Args args);

// Shared option handling: returns true if args holds --help or -h (and prints `usage`).
bool WantsHelp(Args args, std::string_view usage);
// Prints "moat CMD: MESSAGE" and "Try 'moat CMD --help'." to stderr, returns 2.
int UsageError(std::string_view command, std::string_view message);

}  // namespace moat::cmd
