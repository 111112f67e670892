// core/cmd/control_client.h
//
// What `moat queue`, `moat stats` and `moat reload` share: find the running daemon's control
// socket from the configuration (-c DIR, else /etc/moat, else the embedded demo default),
// send one request, print the answer.
#pragma once

#include <string>
#include <string_view>

namespace moat::cmd {

// Sends `request` to the daemon configured by `config_dir` and prints the reply body on
// stdout (errors on stderr, prefixed "moat COMMAND: "). Returns the exit status.
int RunControlRequest(std::string_view command, const std::string& config_dir,
                      const std::string& request);

}  // namespace moat::cmd
