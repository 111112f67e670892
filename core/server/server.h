// core/server/server.h
//
// `moat serve`: the composition root. Loads the configuration, recovers every shard's spool,
// builds the policy engine and the session settings, starts the shard engine
// (core/reactor) with one SMTP session per connection (core/server/session_handler.h) and
// one spool group-commit driver per shard (core/server/shard_spool.h), then runs the main
// thread's signal loop until SIGTERM. The only code that includes every room.
#pragma once

#include <string>

namespace moat::server {

struct ServeOptions {
  std::string config_dir;  // -c; empty: /etc/moat, else the embedded demo default
  bool debug = false;      // -v
};

// Runs the relay in the foreground. Returns the process exit status.
int Serve(const ServeOptions& options);

}  // namespace moat::server
