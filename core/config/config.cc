// core/config/config.cc: see config.h.
#include "core/config/config.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "core/config/expander.h"
#include "core/config/main_cf.h"
#include "core/log/assert.h"
#include "core/log/log.h"

namespace moat::config {
namespace {

absl::string_view AV(std::string_view s) { return {s.data(), s.size()}; }

bool WordAllowed(std::string_view allowed, std::string_view word) {
  size_t start = 0;
  while (start <= allowed.size()) {
    size_t bar = allowed.find('|', start);
    if (bar == std::string_view::npos) {
      bar = allowed.size();
    }
    if (absl::EqualsIgnoreCase(AV(allowed.substr(start, bar - start)), AV(word))) {
      return true;
    }
    start = bar + 1;
  }
  return false;
}

std::string AllowedText(std::string_view allowed) {
  std::string text;
  size_t start = 0;
  while (start <= allowed.size()) {
    size_t bar = allowed.find('|', start);
    if (bar == std::string_view::npos) {
      bar = allowed.size();
    }
    std::string_view word = allowed.substr(start, bar - start);
    if (!text.empty()) {
      text += ", ";
    }
    text += word.empty() ? "(empty)" : std::string(word);
    start = bar + 1;
  }
  return text;
}

bool ReadWholeFile(const std::string& path, std::string* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = absl::StrFormat("cannot open %s: %s", path, std::strerror(errno));
    return false;
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  *out = buffer.str();
  return true;
}

bool FileExists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

std::string EmbeddedDefaultText(std::string_view queue_directory) {
  return absl::StrFormat(
      "# moat's embedded demo configuration (DESIGN section 3), used when no main.cf exists.\n"
      "# Accept mail for example.com on 127.0.0.1:2525 and relay it to 127.0.0.1:2526.\n"
      "myhostname = moat-demo.localhost\n"
      "mydestination =\n"
      "moat_listen = 127.0.0.1:2525\n"
      "mynetworks = 127.0.0.0/8\n"
      "relay_domains = example.com\n"
      "# Empty: every recipient in example.com is accepted.\n"
      "relay_recipient_maps =\n"
      "relayhost = [127.0.0.1]:2526\n"
      "queue_directory = %s\n",
      std::string(queue_directory));
}

// Builds one Config from main.cf text. Single use; not thread-safe (used by one Load call).
class Config::Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) {}

  LoadResult Run(std::string_view text) {
    auto config = std::shared_ptr<Config>(new Config());
    config->source_ = file_;
    std::vector<MainCfEntry> entries = ParseMainCf(text, file_, diagnostics_);
    CollectSettings(entries);
    for (const ParamSpec& spec : Registry()) {
      defaults_[spec.name] = spec.default_value.empty() ? ComputedDefault(spec.name)
                                                        : std::string(spec.default_value);
    }
    DeriveMydomainDefault();
    CollectReferences();
    ClassifySettings(entries, *config);
    for (const ParamSpec& spec : Registry()) {
      config->values_[spec.name] = BuildValue(spec);
    }
    CheckClientCertRestrictions(*config);
    LoadResult result;
    diagnostics_.SortByLine(file_);
    result.diagnostics = std::move(diagnostics_);
    result.unchecked = config;
    if (!result.diagnostics.HasErrors()) {
      result.config = std::move(config);
    }
    return result;
  }

 private:
  struct Setting {
    std::string value;
    int line = 0;
  };

  void CollectSettings(const std::vector<MainCfEntry>& entries) {
    for (const MainCfEntry& e : entries) {
      auto it = settings_.find(e.name);
      if (it != settings_.end()) {
        diagnostics_.Warning(file_, e.line,
                             absl::StrFormat("%s is set again (it was set on line %d); the "
                                             "last setting wins",
                                             e.name, it->second.line));
      }
      settings_[e.name] = {e.value, e.line};
    }
  }

  // Postfix's mydomain default is $myhostname minus its first label ("localdomain" when
  // there is no dot), so it follows a myhostname set in main.cf.
  void DeriveMydomainDefault() {
    if (!settings_.contains("myhostname")) {
      return;
    }
    RawLookup lookup = [this](std::string_view n) { return RawValue(n); };
    absl::StatusOr<std::string> host =
        ExpandParameter("myhostname", settings_["myhostname"].value, lookup, nullptr);
    if (!host.ok()) {
      return;  // reported when myhostname itself is built
    }
    size_t dot = host->find('.');
    defaults_["mydomain"] =
        dot == std::string::npos || dot + 1 >= host->size() ? "localdomain" : host->substr(dot + 1);
  }

  // Names that some value refers to: a user-defined name used that way is not "unknown".
  void CollectReferences() {
    for (const auto& [name, setting] : settings_) {
      for (std::string& n : ReferencedNames(setting.value)) {
        referenced_.insert(std::move(n));
      }
    }
    for (const auto& [name, value] : defaults_) {
      for (std::string& n : ReferencedNames(value)) {
        referenced_.insert(std::move(n));
      }
    }
  }

  void ClassifySettings(const std::vector<MainCfEntry>& entries, Config& config) {
    absl::flat_hash_set<std::string> seen;
    for (const MainCfEntry& e : entries) {
      if (!seen.insert(e.name).second) {
        continue;
      }
      const Setting& s = settings_[e.name];
      bool printable = true;
      if (FindParam(e.name) != nullptr) {
        // implemented
      } else if (const SecurityRule* rule = FindSecurityRule(e.name); rule != nullptr &&
                                                                      Triggers(*rule, s.value)) {
        diagnostics_.Error(file_, s.line,
                           absl::StrFormat("%s = %s is not supported: %s; ignoring it would "
                                           "weaken security",
                                           e.name, s.value, rule->reason));
      } else if (IsPostfixParameter(e.name)) {
        diagnostics_.Warning(file_, s.line,
                             absl::StrFormat("parameter %s is a Postfix parameter that moat "
                                             "does not implement; ignored",
                                             e.name));
      } else if (!referenced_.contains(e.name)) {
        diagnostics_.Warning(
            file_, s.line,
            absl::StrFormat("unknown parameter \"%s\" (neither moat nor Postfix has it, and no "
                            "parameter uses it); ignored",
                            e.name));
        printable = false;
      }
      if (printable) {
        config.set_parameters_.push_back({e.name, s.value, s.line});
      }
    }
    std::sort(config.set_parameters_.begin(), config.set_parameters_.end(),
              [](const SetParameter& a, const SetParameter& b) { return a.name < b.name; });
  }

  // permit_tls_clientcerts and permit_tls_all_clientcerts never match when no client
  // certificate is asked for. Postfix warns each time one is evaluated ("%s is requested,
  // but \"smtpd_tls_ask_ccert = no\""); moat says it once, at load, with the line
  // (inbound-tls engineer).
  void CheckClientCertRestrictions(const Config& config) {
    std::string level = config.String("smtpd_tls_security_level");
    if (level.empty()) {
      level = config.Bool("smtpd_enforce_tls") ? "encrypt"
              : config.Bool("smtpd_use_tls")   ? "may"
                                               : "none";
    }
    for (std::string_view name :
         {"smtpd_client_restrictions", "smtpd_helo_restrictions", "smtpd_sender_restrictions",
          "smtpd_relay_restrictions", "smtpd_recipient_restrictions", "smtpd_data_restrictions",
          "smtpd_end_of_data_restrictions"}) {
      const ParamSpec* spec = FindParam(name);
      if (spec == nullptr || spec->type != ParamType::kRestrictionList) {
        continue;
      }
      for (const Restriction& r : config.Restrictions(name)) {
        if (r.name != "permit_tls_clientcerts" && r.name != "permit_tls_all_clientcerts") {
          continue;
        }
        if (level == "none") {
          diagnostics_.Warning(file_, config.Line(name),
                               absl::StrFormat("%s: %s is requested, but TLS is off "
                                               "(smtpd_tls_security_level = none)",
                                               name, r.name));
        } else if (!config.Bool("smtpd_tls_ask_ccert")) {
          diagnostics_.Warning(file_, config.Line(name),
                               absl::StrFormat("%s: %s is requested, but \"smtpd_tls_ask_ccert "
                                               "= no\"",
                                               name, r.name));
        }
      }
    }
  }

  static bool Triggers(const SecurityRule& rule, std::string_view value) {
    if (rule.when == SecurityRule::When::kIfNonEmpty) {
      return !value.empty();
    }
    absl::StatusOr<bool> b = ParseBool(value);
    return !b.ok() || *b;  // a value that is not "no" cannot be shown to be harmless
  }

  const std::string* RawValue(std::string_view name) const {
    auto it = settings_.find(std::string(name));
    if (it != settings_.end()) {
      return &it->second.value;
    }
    auto d = defaults_.find(name);
    if (d != defaults_.end()) {
      return &d->second;
    }
    return nullptr;
  }

  Value BuildValue(const ParamSpec& spec) {
    Value v;
    v.spec = &spec;
    auto it = settings_.find(std::string(spec.name));
    v.set = it != settings_.end();
    v.line = v.set ? it->second.line : 0;
    v.raw = v.set ? it->second.value : defaults_[spec.name];
    std::string name(spec.name);
    auto error = [&](const std::string& message) {
      diagnostics_.Error(file_, v.line, absl::StrFormat("%s: %s", name, message));
    };
    std::vector<std::string> undefined;
    RawLookup lookup = [this](std::string_view n) { return RawValue(n); };
    absl::StatusOr<std::string> expanded = ExpandParameter(spec.name, v.raw, lookup, &undefined);
    for (const std::string& u : undefined) {
      diagnostics_.Warning(file_, v.line,
                           absl::StrFormat("%s: undefined parameter \"$%s\" expands to nothing",
                                           name, u));
    }
    if (!expanded.ok()) {
      error(std::string(expanded.status().message()));
      return v;  // typed fields keep their zero values; the load fails anyway
    }
    v.expanded = *std::move(expanded);
    Convert(spec, v, error);
    return v;
  }

  template <typename ErrorFn>
  void Convert(const ParamSpec& spec, Value& v, const ErrorFn& error) {
    const std::string& text = v.expanded;
    std::string name(spec.name);
    switch (spec.type) {
      case ParamType::kString:
        if (!spec.allowed.empty() && !WordAllowed(spec.allowed, text)) {
          error(absl::StrFormat("bad value \"%s\" (expected one of: %s)", text,
                                AllowedText(spec.allowed)));
        }
        return;
      case ParamType::kBool: {
        absl::StatusOr<bool> b = ParseBool(text);
        if (!b.ok()) {
          error(std::string(b.status().message()));
        } else {
          v.boolean = *b;
        }
        return;
      }
      case ParamType::kInteger: {
        absl::StatusOr<int64_t> i = ParseInteger(text);
        if (!i.ok()) {
          error(std::string(i.status().message()));
        } else if (*i < spec.min) {
          error(absl::StrFormat("value %d is too small (minimum %d)", *i, spec.min));
        } else {
          v.integer = *i;
        }
        return;
      }
      case ParamType::kTime: {
        absl::StatusOr<absl::Duration> d = ParseTime(text, spec.time_unit);
        if (!d.ok()) {
          error(std::string(d.status().message()));
        } else {
          v.duration = *d;
        }
        return;
      }
      case ParamType::kSize: {
        absl::StatusOr<int64_t> s = ParseSize(text);
        if (!s.ok()) {
          error(std::string(s.status().message()));
        } else if (*s < spec.min) {
          error(absl::StrFormat("value %d is too small (minimum %d)", *s, spec.min));
        } else {
          v.integer = *s;
        }
        return;
      }
      case ParamType::kList:
        v.list = SplitList(text);
        if (!spec.allowed.empty()) {
          for (const std::string& item : v.list) {
            if (!WordAllowed(spec.allowed, item)) {
              error(absl::StrFormat("bad value \"%s\" (expected: %s)", item,
                                    AllowedText(spec.allowed)));
            }
          }
        }
        return;
      case ParamType::kHostPortList:
        v.list = SplitList(text);
        for (const std::string& item : v.list) {
          // moat_listen entries may end in "/tls" (implicit TLS; inbound-tls engineer).
          absl::Status s = name == "moat_listen" ? ParseListenEntry(item).status()
                                                 : ValidateHostPort(item);
          if (!s.ok()) {
            error(std::string(s.message()));
          }
        }
        return;
      case ParamType::kTableList:
        for (const std::string& item : SplitList(text)) {
          AddTable(name, v, item, error);
        }
        for (const TableRef& t : v.tables) {
          v.list.push_back(t.ToString());
        }
        return;
      case ParamType::kDomainList:
        ConvertDomainList(name, v, error);
        return;
      case ParamType::kRestrictionList:
        v.restrictions =
            ParseRestrictions(SplitList(text), name, file_, v.line, v.set, diagnostics_);
        for (const Restriction& r : v.restrictions) {
          NoteProxy(name, v.line, r.table);
        }
        return;
      case ParamType::kAddressList: {
        // A default that refers to another list ("$mynetworks") repeats that list's errors:
        // they are reported once, where the operator wrote them.
        Diagnostics from_default;
        v.addresses = AddressList::Parse(SplitList(text), name, file_, v.line,
                                         v.set ? diagnostics_ : from_default);
        for (const TableRef& t : v.addresses.tables()) {
          NoteProxy(name, v.line, t);
        }
        return;
      }
    }
  }

  template <typename ErrorFn>
  void AddTable(const std::string& name, Value& v, const std::string& item,
                const ErrorFn& error) {
    absl::StatusOr<TableRef> ref = ParseTableRef(item);
    if (!ref.ok()) {
      error(std::string(ref.status().message()));
      return;
    }
    NoteProxy(name, v.line, *ref);
    v.tables.push_back(*std::move(ref));
  }

  // relay_domains, mydestination: words, type:table, /file/name (one level of files, as
  // Postfix's match lists read them; the words in the file are taken as they are).
  template <typename ErrorFn>
  void ConvertDomainList(const std::string& name, Value& v, const ErrorFn& error) {
    for (const std::string& item : SplitList(v.expanded)) {
      if (LooksLikeTableRef(item)) {
        AddTable(name, v, item, error);
      } else if (item.front() == '/') {
        std::string contents;
        std::string read_error;
        v.files.push_back(item);
        if (!ReadWholeFile(item, &contents, &read_error)) {
          error(read_error);
          continue;
        }
        std::istringstream lines(contents);
        std::string line;
        while (std::getline(lines, line)) {
          size_t hash = line.find('#');
          if (hash != std::string::npos) {
            line.resize(hash);
          }
          for (std::string& word : SplitList(line)) {
            v.list.push_back(std::move(word));
          }
        }
      } else {
        v.list.push_back(item);
      }
    }
  }

  void NoteProxy(const std::string& name, int line, const TableRef& ref) {
    if (ref.proxied && !proxy_warned_) {
      proxy_warned_ = true;
      diagnostics_.Warning(file_, line,
                           absl::StrFormat("%s: \"proxy:\" is ignored (moat reads tables "
                                           "directly); warned once",
                                           name));
    }
  }

  std::string file_;
  Diagnostics diagnostics_;
  absl::flat_hash_map<std::string, Setting> settings_;
  absl::flat_hash_map<std::string_view, std::string> defaults_;
  absl::flat_hash_set<std::string> referenced_;
  bool proxy_warned_ = false;
};

LoadResult Config::LoadText(std::string_view text, const std::string& file_name) {
  return Loader(file_name).Run(text);
}

LoadResult Config::LoadFile(const std::string& path) {
  std::string text;
  std::string error;
  if (!ReadWholeFile(path, &text, &error)) {
    LoadResult result;
    result.diagnostics.Error(path, 0, error);
    return result;
  }
  return LoadText(text, path);
}

LoadResult Config::LoadEmbeddedDefault(std::string_view queue_directory) {
  return LoadText(EmbeddedDefaultText(queue_directory), std::string(kEmbeddedSourceName));
}

absl::StatusOr<std::shared_ptr<const Config>> Config::Load(const std::string& path) {
  LoadResult result = LoadFile(path);
  std::string first_error;
  for (const Diagnostic& d : result.diagnostics.items()) {
    if (d.IsError()) {
      log::Error("%s", d.ToString());
      if (first_error.empty()) {
        first_error = d.ToString();
      }
    } else {
      log::Warning("%s", d.ToString());
    }
  }
  if (result.config == nullptr) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s (%d errors in total)", first_error, result.diagnostics.errors()));
  }
  return result.config;
}

MainCfLocation LocateMainCf(std::string_view dir) {
  MainCfLocation location;
  bool explicit_dir = !dir.empty();
  std::string directory = explicit_dir ? std::string(dir) : std::string(kDefaultConfigDirectory);
  while (directory.size() > 1 && directory.back() == '/') {
    directory.pop_back();
  }
  location.path = directory + "/" + std::string(kMainCfName);
  if (FileExists(location.path)) {
    return location;
  }
  if (explicit_dir) {
    location.error = absl::StrFormat("%s does not exist (-c %s)", location.path, directory);
    return location;
  }
  location.path.clear();
  location.use_embedded_default = true;
  return location;
}

LoadResult LoadLocated(const MainCfLocation& location) {
  MOAT_CHECK(location.error.empty());
  if (location.use_embedded_default) {
    return Config::LoadEmbeddedDefault();
  }
  return Config::LoadFile(location.path);
}

const Config::Value& Config::Get(std::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end()) {
    log::Write(log::Level::kPanic,
               absl::StrFormat("config: \"%s\" is not a registered parameter", std::string(name)));
  }
  MOAT_CHECK(it != values_.end());
  return it->second;
}

const Config::Value& Config::Get(std::string_view name, ParamType type) const {
  const Value& v = Get(name);
  MOAT_CHECK(v.spec->type == type);
  return v;
}

bool Config::IsSet(std::string_view name) const { return Get(name).set; }
int Config::Line(std::string_view name) const { return Get(name).line; }
const std::string& Config::Raw(std::string_view name) const { return Get(name).raw; }
const std::string& Config::String(std::string_view name) const { return Get(name).expanded; }
bool Config::Bool(std::string_view name) const { return Get(name, ParamType::kBool).boolean; }
int64_t Config::Int(std::string_view name) const {
  return Get(name, ParamType::kInteger).integer;
}
absl::Duration Config::Time(std::string_view name) const {
  return Get(name, ParamType::kTime).duration;
}
int64_t Config::Size(std::string_view name) const { return Get(name, ParamType::kSize).integer; }

const std::vector<std::string>& Config::List(std::string_view name) const {
  const Value& v = Get(name);
  ParamType t = v.spec->type;
  MOAT_CHECK(t == ParamType::kList || t == ParamType::kHostPortList ||
             t == ParamType::kDomainList || t == ParamType::kTableList);
  return v.list;
}

const std::vector<TableRef>& Config::Tables(std::string_view name) const {
  const Value& v = Get(name);
  ParamType t = v.spec->type;
  MOAT_CHECK(t == ParamType::kTableList || t == ParamType::kDomainList ||
             t == ParamType::kAddressList);
  return t == ParamType::kAddressList ? v.addresses.tables() : v.tables;
}

const std::vector<Restriction>& Config::Restrictions(std::string_view name) const {
  return Get(name, ParamType::kRestrictionList).restrictions;
}

const AddressList& Config::Addresses(std::string_view name) const {
  return Get(name, ParamType::kAddressList).addresses;
}

std::vector<Config::TableUse> Config::TableUses() const {
  std::vector<TableUse> uses;
  for (const ParamSpec& spec : Registry()) {
    const Value& v = values_.at(spec.name);
    std::string param(spec.name);
    for (const TableRef& t : v.tables) {
      uses.push_back({param, v.line, t});
    }
    for (const TableRef& t : v.addresses.tables()) {
      uses.push_back({param, v.line, t});
    }
    for (const Restriction& r : v.restrictions) {
      if (!r.table.type.empty()) {
        uses.push_back({param, v.line, r.table});
      }
    }
  }
  return uses;
}

std::vector<std::string> Config::IncludedFiles() const {
  std::vector<std::string> files;
  for (const ParamSpec& spec : Registry()) {
    const Value& v = values_.at(spec.name);
    files.insert(files.end(), v.files.begin(), v.files.end());
    files.insert(files.end(), v.addresses.files().begin(), v.addresses.files().end());
  }
  return files;
}

Diagnostics CheckFiles(const Config& config) {
  Diagnostics out;
  absl::flat_hash_set<std::string> reported;
  for (const Config::TableUse& use : config.TableUses()) {
    std::string path = use.table.FilePath();
    if (FileExists(path) || !reported.insert(use.param + "\n" + path).second) {
      continue;
    }
    if (use.table.IsCompiled()) {
      out.Error(config.Source(), use.line,
                absl::StrFormat("%s: table %s does not exist: run \"moat postmap %s\"", use.param,
                                path, use.table.ToString()));
    } else {
      out.Error(config.Source(), use.line,
                absl::StrFormat("%s: table %s does not exist", use.param, path));
    }
  }
  for (std::string_view name : {"smtpd_tls_cert_file", "smtpd_tls_key_file", "smtpd_tls_CAfile",
                                "smtp_tls_CAfile", "smtp_tls_cert_file", "smtp_tls_key_file"}) {
    const std::string& path = config.String(name);
    if (!path.empty() && !FileExists(path) && reported.insert(path).second) {
      out.Error(config.Source(), config.Line(name),
                absl::StrFormat("%s: file %s does not exist", std::string(name), path));
    }
  }
  for (const std::string& path : config.List("smtpd_tls_chain_files")) {
    if (!FileExists(path)) {
      out.Error(config.Source(), config.Line("smtpd_tls_chain_files"),
                absl::StrFormat("smtpd_tls_chain_files: file %s does not exist", path));
    }
  }
  return out;
}

}  // namespace moat::config
