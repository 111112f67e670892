// core/cmd/control_client.h
//
// What `moat queue`, `moat stats` and `moat reload` share: find the running daemon's control
// socket from the configuration (-c DIR, else /etc/moat, else the embedded demo default),
// send one request, print the answer.
#pragma once

#include <string>
#include <string_view>

#include "core/cmd/commands.h"

namespace moat::cmd {

// Sends `request` to the daemon configured by `config_dir` and prints the reply body on
// stdout (errors on stderr, prefixed "moat COMMAND: "). Returns the exit status.
int RunControlRequest(std::string_view command, const std::string& config_dir,
                      const std::string& request);

// A command whose only option is -c DIR and whose request is its own name (`moat stats`,
// `moat reload`): parses args, prints `usage` for --help, sends the request.
int RunPlainControlCommand(Args args, std::string_view command, std::string_view usage);

}  // namespace moat::cmd
