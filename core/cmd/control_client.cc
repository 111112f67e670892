// core/cmd/control_client.cc: see control_client.h.
#include "core/cmd/control_client.h"

#include <cstdio>

#include "core/config/config.h"
#include "core/server/control.h"

namespace moat::cmd {

int RunControlRequest(std::string_view command, const std::string& config_dir,
                      const std::string& request) {
  std::string name(command);
  config::MainCfLocation location = config::LocateMainCf(config_dir);
  if (!location.error.empty()) {
    std::fprintf(stderr, "moat %s: %s\n", name.c_str(), location.error.c_str());
    return 1;
  }
  config::LoadResult loaded = location.use_embedded_default
                                  ? config::Config::LoadEmbeddedDefault()
                                  : config::LoadLocated(location);
  if (loaded.unchecked == nullptr) {
    std::fprintf(stderr, "moat %s: cannot read %s\n", name.c_str(), location.path.c_str());
    return 1;
  }
  const std::string path = loaded.unchecked->String("moat_control_socket");
  auto reply = server::ControlRequest(path, request);
  if (!reply.ok()) {
    std::fprintf(stderr, "moat %s: %s\n", name.c_str(),
                 std::string(reply.status().message()).c_str());
    return 1;
  }
  if (!reply->ok) {
    std::fprintf(stderr, "moat %s: %s\n", name.c_str(), reply->text.c_str());
    return 1;
  }
  std::fwrite(reply->text.data(), 1, reply->text.size(), stdout);
  return 0;
}

int RunPlainControlCommand(Args args, std::string_view command, std::string_view usage) {
  if (WantsHelp(args, usage)) {
    return 0;
  }
  std::string dir;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "-c" && i + 1 < args.size()) {
      dir = args[++i];
    } else if (a == "-c") {
      return UsageError(command, "option -c needs a directory");
    } else {
      return UsageError(command, "unknown option '" + std::string(a) + "'");
    }
  }
  return RunControlRequest(command, dir, std::string(command));
}

}  // namespace moat::cmd
