// core/config/config.h
//
// The configuration snapshot: main.cf read, expanded, typed and validated once, then
// immutable. Later code (shards, sessions, the policy engine) holds a
// std::shared_ptr<const Config> and reads already-validated typed values; it never sees a
// parse error. Asking for a name that is not in the registry, or with the wrong type, is a
// programmer error (MOAT_CHECK).
//
//   auto loaded = config::Config::LoadFile("/etc/moat/main.cf");
//   for (const auto& d : loaded.diagnostics.items()) ...   // warnings and errors, file:line
//   if (loaded.config) { const Config& c = *loaded.config; c.Time("smtpd_timeout"); }
//
// Loading applies the rules of main_cf.h and expander.h, warns for unknown names (unless
// another parameter uses them as a user-defined variable, as Postfix allows) and, once each,
// for Postfix parameters moat does not implement; the security-relevant ones
// (registry.h SecurityRules) are errors. A load with any error yields no Config.
// Parses untrusted input (operator files). A Config is immutable: safe to share across threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/config/address_list.h"
#include "core/config/diagnostic.h"
#include "core/config/registry.h"
#include "core/config/restriction.h"
#include "core/config/values.h"

namespace moat::config {

// Where `moat` looks when no -c is given, and the file name inside a config dir.
inline constexpr std::string_view kDefaultConfigDirectory = "/etc/moat";
inline constexpr std::string_view kMainCfName = "main.cf";
// The spool of the embedded demo configuration unless the caller picks another.
inline constexpr std::string_view kDemoQueueDirectory = "/tmp/moat-demo";
// The name the embedded default reports as its source.
inline constexpr std::string_view kEmbeddedSourceName = "<embedded default>";

// The built-in demo main.cf (DESIGN section 3): listen on 127.0.0.1:2525, relay example.com to
// a next hop on 127.0.0.1:2526, spool in `queue_directory`.
std::string EmbeddedDefaultText(std::string_view queue_directory = kDemoQueueDirectory);

class Config;

struct LoadResult {
  std::shared_ptr<const Config> config;  // null when diagnostics has an error
  // Always set (except when the file could not be read): the same snapshot even when there
  // are errors, for tools that only display it (`moat config`, `moat check`'s file checks).
  // Values whose text was bad hold zero values. Never hand it to the daemon.
  std::shared_ptr<const Config> unchecked;
  Diagnostics diagnostics;
};

// Which main.cf a command uses. `dir` is the -c argument ("" when not given): then
// /etc/moat/main.cf, and when that does not exist either, the embedded default.
struct MainCfLocation {
  std::string path;                   // DIR/main.cf (empty when using the embedded default)
  bool use_embedded_default = false;  // no -c and no /etc/moat/main.cf
  std::string error;                  // -c DIR given but DIR/main.cf is missing: the message
};
MainCfLocation LocateMainCf(std::string_view dir);
// Loads what LocateMainCf found (REQUIRES: location.error is empty).
LoadResult LoadLocated(const MainCfLocation& location);

class Config {
 public:
  // A parameter as set in main.cf, for `moat config -n`.
  struct SetParameter {
    std::string name;
    std::string value;  // as written (unexpanded)
    int line = 0;
  };
  // One table the configuration uses, for `moat check`.
  struct TableUse {
    std::string param;
    int line = 0;  // 0 when it comes from a default
    TableRef table;
  };

  static LoadResult LoadFile(const std::string& path);
  static LoadResult LoadText(std::string_view text, const std::string& file_name);
  static LoadResult LoadEmbeddedDefault(std::string_view queue_directory = kDemoQueueDirectory);
  // Convenience for the daemon: logs every diagnostic through moat::log and returns the
  // Config, or InvalidArgument naming the first error and the error count.
  static absl::StatusOr<std::shared_ptr<const Config>> Load(const std::string& path);

  Config(const Config&) = delete;
  Config& operator=(const Config&) = delete;

  // The file this came from (kEmbeddedSourceName for the embedded default).
  const std::string& Source() const { return source_; }
  bool IsSet(std::string_view name) const;
  // The line `name` is set on, 0 when it has its default.
  int Line(std::string_view name) const;
  // The value as written in main.cf, or the default; unexpanded (what postconf prints).
  const std::string& Raw(std::string_view name) const;

  // Typed values. REQUIRES: `name` is in the registry with a matching type.
  const std::string& String(std::string_view name) const;  // expanded; any type
  bool Bool(std::string_view name) const;
  int64_t Int(std::string_view name) const;
  absl::Duration Time(std::string_view name) const;
  int64_t Size(std::string_view name) const;
  // kList, kHostPortList: the items; kDomainList: the words (files read in place, tables
  // left out: see Tables()); kTableList: the tables as "type:name".
  const std::vector<std::string>& List(std::string_view name) const;
  // kTableList, kDomainList, kAddressList: the type:table entries.
  const std::vector<TableRef>& Tables(std::string_view name) const;
  const std::vector<Restriction>& Restrictions(std::string_view name) const;
  const AddressList& Addresses(std::string_view name) const;

  // Parameters set in main.cf that postconf -n would print (registered, Postfix-only, and
  // user-defined ones that another parameter uses), sorted by name.
  const std::vector<SetParameter>& SetParameters() const { return set_parameters_; }
  // Every table the configuration uses: table lists, address lists, restriction arguments.
  std::vector<TableUse> TableUses() const;
  // Every /file/name the configuration reads (domain and address list includes).
  std::vector<std::string> IncludedFiles() const;

 private:
  struct Value {
    const ParamSpec* spec = nullptr;
    std::string raw;
    std::string expanded;
    int line = 0;
    bool set = false;
    bool boolean = false;
    int64_t integer = 0;
    absl::Duration duration;
    std::vector<std::string> list;
    std::vector<TableRef> tables;
    std::vector<Restriction> restrictions;
    AddressList addresses;
    std::vector<std::string> files;
  };
  class Loader;

  Config() = default;
  const Value& Get(std::string_view name, ParamType type) const;
  const Value& Get(std::string_view name) const;

  std::string source_;
  // Keys are the registry's names (static storage).
  absl::flat_hash_map<std::string_view, Value> values_;
  std::vector<SetParameter> set_parameters_;
};

// `moat check`'s file checks: every table and included file the configuration uses exists
// (compiled tables as FILE.moat, with the postmap command to run), and so do the TLS
// certificate and key files it names. Errors carry the line of the parameter.
Diagnostics CheckFiles(const Config& config);

}  // namespace moat::config
