// core/cmd/check.cc: `moat check [-c DIR]`. Validates main.cf (syntax, expansion, types,
// unknown and unsupported parameters, restrictions) and that every table and file it refers to
// exists. Diagnostics go to stderr through moat::log with file:line; the last line sums them
// up. Exit 0 when there is no error (warnings allowed), 1 on any error, 2 on a usage error.
// Owned by the config area. Runs once on the command line; single-threaded.
#include <cstdio>
#include <string>
#include <string_view>

#include "core/cmd/commands.h"
#include "core/config/config.h"
#include "core/log/log.h"

namespace moat::cmd {
namespace {

constexpr std::string_view kCheckUsage =
    "usage: moat check [-c CONFIG_DIR]\n"
    "\n"
    "Validates CONFIG_DIR/main.cf (default /etc/moat/main.cf) and every lookup table and file\n"
    "it refers to, and prints each problem with its file:line. Compiled tables (hash:, btree:,\n"
    "cdb:, lmdb:) must exist as FILE.moat (made by 'moat postmap TYPE:FILE'); texthash: and\n"
    "cidr: tables are read from FILE itself. Postfix parameters that moat does not implement\n"
    "are warnings; ones whose omission would weaken security are errors. Without -c and\n"
    "without /etc/moat/main.cf, the embedded demo configuration is checked.\n"
    "\n"
    "options:\n"
    "  -c CONFIG_DIR  the configuration directory (the file is CONFIG_DIR/main.cf)\n"
    "  -h, --help     this text\n"
    "\n"
    "exit status: 0 no errors (warnings allowed), 1 errors, 2 usage error\n";

}  // namespace

int Check(Args args) {
  if (WantsHelp(args, kCheckUsage)) {
    return 0;
  }
  std::string dir;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "-c") {
      if (i + 1 >= args.size()) {
        return UsageError("check", "option -c needs a directory");
      }
      dir = args[++i];
      if (dir.empty()) {
        return UsageError("check", "option -c needs a directory");
      }
    } else if (a.size() > 2 && a.substr(0, 2) == "-c") {
      dir = std::string(a.substr(2));
    } else if (!a.empty() && a.front() == '-') {
      return UsageError("check", "unknown option '" + std::string(a) + "'");
    } else {
      return UsageError("check", "unexpected argument '" + std::string(a) + "'");
    }
  }

  config::MainCfLocation location = config::LocateMainCf(dir);
  if (!location.error.empty()) {
    log::Error("%s", location.error);
    std::fprintf(stderr, "moat check: 1 error, 0 warnings\n");
    return 1;
  }
  std::string source = location.path;
  if (location.use_embedded_default) {
    source = std::string(config::kEmbeddedSourceName);
    log::Info("no %s/%s: checking the embedded default configuration",
              std::string(config::kDefaultConfigDirectory), std::string(config::kMainCfName));
  }
  config::LoadResult loaded = config::LoadLocated(location);
  config::Diagnostics all = loaded.diagnostics;
  if (loaded.unchecked != nullptr) {
    all.Append(config::CheckFiles(*loaded.unchecked));
  }
  all.SortByLine(source);
  for (const config::Diagnostic& d : all.items()) {
    if (d.IsError()) {
      log::Error("%s", d.ToString());
    } else {
      log::Warning("%s", d.ToString());
    }
  }
  int errors = all.errors();
  int warnings = all.warnings();
  std::fprintf(stderr, "moat check: %s: %d error%s, %d warning%s\n", source.c_str(), errors,
               errors == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s");
  return errors == 0 ? 0 : 1;
}

}  // namespace moat::cmd
