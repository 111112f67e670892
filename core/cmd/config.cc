// core/cmd/config.cc: `moat config [-c DIR] [-n|-d] [-x] [NAME...]`, postconf's main.cf
// mode: "name = value" lines sorted by name, values as written (unexpanded) with white space
// normalized exactly as postconf prints them. -n: only what main.cf sets; -d: moat's defaults;
// -x: expanded values. An unknown NAME gives "moat config: warning: NAME: unknown parameter"
// and exit 1. Problems in main.cf go to stderr (as postconf's warnings do); use `moat check`
// to validate. Owned by the config area. Single-threaded command-line code.
#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/cmd/commands.h"
#include "core/config/config.h"
#include "core/config/registry.h"
#include "core/config/values.h"
#include "core/log/log.h"

namespace moat::cmd {
namespace {

constexpr std::string_view kConfigUsage =
    "usage: moat config [-c CONFIG_DIR] [-n | -d] [-x] [NAME...]\n"
    "\n"
    "Prints main.cf parameters as 'name = value' lines, sorted by name, like postconf:\n"
    "every parameter moat implements with its effective value, plus the Postfix parameters\n"
    "main.cf sets. Values are printed as written ($name unexpanded) unless -x is given.\n"
    "\n"
    "options:\n"
    "  -c CONFIG_DIR  the configuration directory (the file is CONFIG_DIR/main.cf)\n"
    "  -n             only the parameters set in main.cf (postconf -n)\n"
    "  -d             moat's default values (postconf -d)\n"
    "  -x             expand $name references (postconf -x)\n"
    "  -h, --help     this text\n"
    "\n"
    "exit status: 0 ok, 1 unknown NAME or unreadable main.cf, 2 usage error\n";

void PrintLine(std::string_view name, std::string_view value) {
  std::string text = config::NormalizeWhiteSpace(value);
  std::string line(name);
  line += text.empty() ? " =\n" : " = " + text + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
}

}  // namespace

int Config(Args args) {
  if (WantsHelp(args, kConfigUsage)) {
    return 0;
  }
  std::string dir;
  bool only_set = false;
  bool defaults = false;
  bool expand = false;
  std::vector<std::string> names;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "-c") {
      if (i + 1 >= args.size() || std::string_view(args[i + 1]).empty()) {
        return UsageError("config", "option -c needs a directory");
      }
      dir = args[++i];
    } else if (a == "-n") {
      only_set = true;
    } else if (a == "-d") {
      defaults = true;
    } else if (a == "-x") {
      expand = true;
    } else if (a == "--") {
      for (++i; i < args.size(); ++i) {
        names.emplace_back(args[i]);
      }
    } else if (!a.empty() && a.front() == '-') {
      return UsageError("config", "unknown option '" + std::string(a) + "'");
    } else {
      names.emplace_back(a);
    }
  }
  if (only_set && defaults) {
    return UsageError("config", "-n and -d cannot be used together");
  }
  if (defaults && expand) {
    return UsageError("config", "-x cannot be used with -d");
  }

  // name -> value to print.
  std::map<std::string, std::string> values;
  if (defaults) {
    for (const config::ParamSpec& spec : config::Registry()) {
      values[std::string(spec.name)] = spec.default_value.empty()
                                           ? config::ComputedDefault(spec.name)
                                           : std::string(spec.default_value);
    }
  } else {
    config::MainCfLocation location = config::LocateMainCf(dir);
    if (!location.error.empty()) {
      std::fprintf(stderr, "moat config: fatal: %s\n", location.error.c_str());
      return 1;
    }
    config::LoadResult loaded = config::LoadLocated(location);
    for (const config::Diagnostic& d : loaded.diagnostics.items()) {
      if (d.IsError()) {
        log::Error("%s", d.ToString());
      } else {
        log::Warning("%s", d.ToString());
      }
    }
    if (loaded.unchecked == nullptr) {
      return 1;
    }
    const config::Config& c = *loaded.unchecked;
    for (const config::Config::SetParameter& p : c.SetParameters()) {
      values[p.name] = p.value;  // non-moat parameters: as written even with -x
    }
    if (!only_set) {
      for (const config::ParamSpec& spec : config::Registry()) {
        values[std::string(spec.name)] = c.Raw(spec.name);
      }
    }
    if (expand) {
      for (auto& [name, value] : values) {
        if (config::FindParam(name) != nullptr) {
          value = c.String(name);
        }
      }
    }
  }

  if (names.empty()) {
    for (const auto& [name, value] : values) {
      PrintLine(name, value);
    }
    return 0;
  }
  int status = 0;
  for (const std::string& name : names) {
    auto it = values.find(name);
    if (it != values.end()) {
      PrintLine(name, it->second);
    } else if (config::FindParam(name) == nullptr) {
      std::fprintf(stderr, "moat config: warning: %s: unknown parameter\n", name.c_str());
      status = 1;
    }
    // A moat parameter not set in main.cf with -n: nothing, as postconf -n.
  }
  return status;
}

}  // namespace moat::cmd
