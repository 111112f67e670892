// core/cmd/queue.cc: `moat queue [-c DIR] list|show ID|flush|delete ID|ALL|hold ID|release ID`,
// postqueue/postsuper for the running daemon, through its control socket.
#include <string>
#include <string_view>

#include "core/cmd/commands.h"
#include "core/cmd/control_client.h"

namespace moat::cmd {

int Queue(Args args) {
  constexpr std::string_view kUsage =
      "usage: moat queue [-c CONFIG_DIR] list|show ID|flush|delete ID|delete ALL|hold ID|"
      "release ID\n"
      "\n"
      "Asks the running daemon (through moat_control_socket):\n"
      "  list        the queue, like postqueue -p ('*' active, '!' on hold)\n"
      "  show ID     one message: envelope, recipient states and content\n"
      "  flush       retry every deferred message now (postqueue -f)\n"
      "  delete ID   remove a message, or ALL of them (postsuper -d)\n"
      "  hold ID     keep a message from delivery (postsuper -h)\n"
      "  release ID  let a held message go again (postsuper -H)\n";
  if (WantsHelp(args, kUsage)) {
    return 0;
  }
  std::string dir;
  size_t i = 1;
  while (i < args.size() && std::string_view(args[i]).starts_with("-")) {
    std::string_view a = args[i];
    if (a == "-c" && i + 1 < args.size()) {
      dir = args[i + 1];
      i += 2;
    } else if (a == "-c") {
      return UsageError("queue", "option -c needs a directory");
    } else {
      return UsageError("queue", "unknown option '" + std::string(a) + "'");
    }
  }
  if (i >= args.size()) {
    return UsageError("queue", "a subcommand is required");
  }
  std::string verb = args[i++];
  const bool takes_id = verb == "show" || verb == "delete" || verb == "hold" || verb == "release";
  const bool plain = verb == "list" || verb == "flush";
  if (!takes_id && !plain) {
    return UsageError("queue", "unknown subcommand '" + verb + "'");
  }
  std::string request = verb;
  if (takes_id) {
    if (i >= args.size()) {
      return UsageError("queue", verb + " needs a queue ID");
    }
    request.append(1, ' ');
    request.append(args[i++]);
  }
  if (i < args.size()) {
    return UsageError("queue", "unexpected argument '" + std::string(args[i]) + "'");
  }
  return RunControlRequest("queue", dir, request);
}

}  // namespace moat::cmd
