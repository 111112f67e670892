// core/cmd/postmap.cc: `moat postmap`, Postfix's postmap(1) for moat's compiled tables.
// Owned by the table area. Runs once on the command line; single-threaded. Reads table
// sources (untrusted text) through core/table.
//
//   moat postmap [-i] [TYPE:]FILE...   compile FILE (or stdin with -i) into FILE.moat
//   moat postmap -q KEY [TYPE:]FILE... print the value of KEY (first table that has it)
//   moat postmap -q - [TYPE:]FILE...   keys from stdin, print "key<TAB>value" per hit
//   moat postmap -s [TYPE:]FILE...     print every entry as "key<TAB>value"
//
// Like postmap it prints nothing on success. Exit status: 0 success (or found), 1 failure
// or not found, 2 usage error. TYPE defaults to hash; hash btree cdb lmdb dbm sdbm all mean
// FILE.moat. Bad source lines are warned about with FILE, line N and skipped.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/str_format.h"
#include "core/cmd/commands.h"
#include "core/log/log.h"
#include "core/table/compiled_map.h"
#include "core/table/lookup.h"
#include "core/table/map.h"
#include "core/table/table_builder.h"

namespace moat::cmd {
namespace {

constexpr std::string_view kUsage =
    "usage: moat postmap [-i] [-v] [TYPE:]FILE...\n"
    "       moat postmap -q KEY [TYPE:]FILE...\n"
    "       moat postmap -s [TYPE:]FILE...\n"
    "\n"
    "Compiles a Postfix table source FILE (`key value` lines, # comments, continuation lines\n"
    "starting with white space) into FILE.moat, the mapped form every hash:, btree:, cdb:,\n"
    "lmdb: table in main.cf resolves to. Keys are folded to lower case; a duplicate key is\n"
    "warned about and the first value kept. The new file replaces the old one atomically.\n"
    "\n"
    "options:\n"
    "  -i       read the source from stdin instead of FILE (e.g. piped from ldapsearch)\n"
    "  -q KEY   print the value of KEY and exit 0, or exit 1 if no table has it;\n"
    "           KEY '-' reads keys from stdin and prints `key<TAB>value` for each hit\n"
    "  -s       print every entry of the table as `key<TAB>value`\n"
    "  -v       report rows, duplicates and size on stderr after compiling\n"
    "  -h, --help  this text\n"
    "\n"
    "TYPE is hash (default), btree, cdb, lmdb, dbm, sdbm; texthash: and cidr: tables are read\n"
    "from their source and need no compiling, but can be queried with -q.\n";

constexpr std::string_view kCommand = "postmap";

struct Table {
  std::string type;
  std::string path;
  std::string spec;
};

bool ParseTable(std::string_view arg, Table* t) {
  std::string_view type;
  std::string_view name;
  if (!table::SplitSpec(arg, &type, &name)) {
    type = "hash";
    name = arg;
    while (name.substr(0, 6) == "proxy:") {
      name.remove_prefix(6);
    }
  }
  if (name.empty()) {
    return false;
  }
  t->type = std::string(type);
  t->path = std::string(name);
  t->spec = t->type + ":" + t->path;
  return true;
}

void PrintEntry(std::string_view key, std::string_view value) {
  std::string line = absl::StrFormat("%s\t%s\n", key, value);
  std::fwrite(line.data(), 1, line.size(), stdout);
}

int Compile(const Table& t, bool from_stdin, bool verbose) {
  if (!table::IsCompiledType(t.type)) {
    log::Error("unsupported dictionary type: %s does not support bulk-mode creation", t.type);
    return 1;
  }
  table::CompileOptions options;
  std::string output = t.path + ".moat";
  absl::StatusOr<table::CompileStats> stats =
      from_stdin ? table::CompileToFile(STDIN_FILENO, "stdin", output, options)
                 : table::CompileFile(t.path, output, options);
  if (!stats.ok()) {
    log::Error("%s", std::string(stats.status().message()));
    return 1;
  }
  if (verbose) {
    log::Info("%s: %d rows, %d duplicates, %d bad lines, %d lines, %d bytes", output,
              stats->rows, stats->duplicates, stats->bad_lines, stats->lines,
              stats->file_bytes);
  }
  return 0;
}

int Query(const std::vector<std::unique_ptr<table::Map>>& maps, std::string_view key) {
  table::MapList list;
  std::vector<std::shared_ptr<const table::Map>> shared;
  for (const auto& map : maps) {
    // Non-owning: `maps` outlives the list.
    shared.push_back(std::shared_ptr<const table::Map>(map.get(), [](const table::Map*) {}));
  }
  list = table::MapList(std::move(shared));
  if (key != "-") {
    std::optional<table::Match> match = table::FindKey(list, key);
    if (!match) {
      return 1;
    }
    std::string line = absl::StrFormat("%s\n", match->value);
    std::fwrite(line.data(), 1, line.size(), stdout);
    return 0;
  }
  bool found = false;
  char* line = nullptr;
  size_t capacity = 0;
  ssize_t n;
  while ((n = getline(&line, &capacity, stdin)) >= 0) {
    std::string_view k(line, static_cast<size_t>(n));
    while (!k.empty() && (k.back() == '\n' || k.back() == '\r')) {
      k.remove_suffix(1);
    }
    if (k.empty()) {
      continue;
    }
    if (std::optional<table::Match> match = table::FindKey(list, k)) {
      PrintEntry(k, match->value);
      found = true;
    }
  }
  free(line);
  return found ? 0 : 1;
}

}  // namespace

int Postmap(Args args) {
  if (WantsHelp(args, kUsage)) {
    return 0;
  }
  bool from_stdin = false;
  bool show = false;
  bool verbose = false;
  bool query = false;
  std::string key;
  std::vector<Table> tables;
  for (size_t i = 1; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "-i") {
      from_stdin = true;
    } else if (a == "-s") {
      show = true;
    } else if (a == "-v") {
      verbose = true;
    } else if (a == "-q") {
      if (i + 1 >= args.size()) {
        return UsageError(kCommand, "-q needs a KEY");
      }
      query = true;
      key = args[++i];
    } else if (a.size() > 1 && a[0] == '-') {
      return UsageError(kCommand, absl::StrFormat("unknown option '%s'", a));
    } else {
      Table t;
      if (!ParseTable(a, &t)) {
        return UsageError(kCommand, absl::StrFormat("bad table '%s'", a));
      }
      tables.push_back(std::move(t));
    }
  }
  if (tables.empty()) {
    return UsageError(kCommand, "missing TYPE:FILE");
  }
  if (query && show) {
    return UsageError(kCommand, "-q and -s exclude each other");
  }
  if ((query || show) && from_stdin) {
    return UsageError(kCommand, "-i is for compiling; it cannot be combined with -q or -s");
  }
  if (from_stdin && tables.size() != 1) {
    return UsageError(kCommand, "-i compiles exactly one table");
  }
  if (!query && !show) {
    int status = 0;
    for (const Table& t : tables) {
      if (Compile(t, from_stdin, verbose) != 0) {
        status = 1;
      }
    }
    return status;
  }
  std::vector<std::unique_ptr<table::Map>> maps;
  table::OpenOptions options;
  for (const Table& t : tables) {
    absl::StatusOr<std::unique_ptr<table::Map>> map = table::OpenMap(t.spec, options);
    if (!map.ok()) {
      log::Error("%s", std::string(map.status().message()));
      return 1;
    }
    maps.push_back(std::move(*map));
  }
  if (query) {
    return Query(maps, key);
  }
  for (const auto& map : maps) {
    const auto* compiled = dynamic_cast<const table::CompiledMap*>(map.get());
    if (compiled == nullptr) {
      log::Error("%s: -s works on compiled tables only", map->spec());
      return 1;
    }
    compiled->ForEach(PrintEntry);
  }
  return 0;
}

}  // namespace moat::cmd
