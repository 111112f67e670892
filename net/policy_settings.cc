// net/policy_settings.cc
//
// Parsing of the policy parameters into PolicySettings. Control plane only.
#include "net/policy_settings.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "net/policy_lookup.h"

namespace moat::net {
namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = absl::ascii_tolower(static_cast<unsigned char>(c));
  }
  return out;
}

bool IsSeparator(char c) { return c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Splits a main.cf list value on commas and white space.
std::vector<std::string> SplitList(std::string_view value) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < value.size()) {
    while (i < value.size() && IsSeparator(value[i])) {
      ++i;
    }
    size_t start = i;
    while (i < value.size() && !IsSeparator(value[i])) {
      ++i;
    }
    if (i > start) {
      out.emplace_back(value.substr(start, i - start));
    }
  }
  return out;
}

// A "type:name" table entry, as opposed to a pattern, a file name or an IPv6 address
// ("[::1]/128", "fe80::1"): the part before the first ':' is a Postfix table type.
bool IsTableSpec(std::string_view entry) {
  static constexpr std::string_view kTypes[] = {
      "hash",   "btree",  "cdb",      "lmdb",   "texthash", "cidr",   "proxy",  "static",
      "inline", "regexp", "pcre",     "dbm",    "sdbm",     "ldap",   "mysql",  "pgsql",
      "sqlite", "tcp",    "socketmap", "memcache", "unix",  "fail",   "randmap", "pipemap",
      "unionmap", "internal", "environ", "nis", "nisplus", "netinfo"};
  size_t colon = entry.find(':');
  if (colon == std::string_view::npos || colon + 1 >= entry.size()) {
    return false;
  }
  std::string type = Lower(entry.substr(0, colon));
  return std::find(std::begin(kTypes), std::end(kTypes), type) != std::end(kTypes);
}

absl::Status WithName(std::string_view name, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrFormat("%s: %s", name, status.message()));
}

absl::StatusOr<TablePtr> OpenTable(std::string_view spec, const TableOpener& open) {
  if (!open) {
    return absl::FailedPreconditionError(absl::StrFormat("cannot open table %s", spec));
  }
  absl::StatusOr<TablePtr> table = open(spec);
  if (table.ok() && *table == nullptr) {
    return absl::NotFoundError(absl::StrFormat("table %s is not available", spec));
  }
  return table;
}

absl::StatusOr<TableList> ParseTableList(std::string_view value, const TableOpener& open) {
  std::vector<TablePtr> tables;
  for (const std::string& entry : SplitList(value)) {
    if (!IsTableSpec(entry)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("\"%s\" is not a lookup table (expected type:name)", entry));
    }
    absl::StatusOr<TablePtr> table = OpenTable(entry, open);
    if (!table.ok()) {
      return table.status();
    }
    tables.push_back(*std::move(table));
  }
  return TableList(std::move(tables));
}

// Entries of a match list, with "/file/name" entries replaced by the patterns in the file.
absl::StatusOr<std::vector<std::string>> ExpandFileEntries(std::string_view value) {
  std::vector<std::string> out;
  for (std::string& entry : SplitList(value)) {
    if (entry[0] != '/') {
      out.push_back(std::move(entry));
      continue;
    }
    std::ifstream in(entry);
    if (!in) {
      return absl::NotFoundError(absl::StrFormat("cannot open %s", entry));
    }
    std::string line;
    while (std::getline(in, line)) {
      size_t hash = line.find('#');
      if (hash != std::string::npos) {
        line.resize(hash);
      }
      for (std::string& word : SplitList(line)) {
        out.push_back(std::move(word));
      }
    }
  }
  return out;
}

// Postfix's match lists (domain lists, namadr lists): file entries expanded, leading '!'s
// toggle negation, "type:table" entries open their table, and `word` parses any other entry.
template <typename List, typename WordFn>
absl::StatusOr<List> ParseMatchList(std::string_view value, const TableOpener& open,
                                    WordFn word) {
  absl::StatusOr<std::vector<std::string>> entries = ExpandFileEntries(value);
  if (!entries.ok()) {
    return entries.status();
  }
  List list;
  for (std::string_view entry : *entries) {
    typename List::Entry e;
    while (!entry.empty() && entry[0] == '!') {
      e.negate = !e.negate;
      entry.remove_prefix(1);
    }
    if (entry.empty()) {
      return absl::InvalidArgumentError("empty negated entry");
    }
    if (IsTableSpec(entry)) {
      absl::StatusOr<TablePtr> table = OpenTable(entry, open);
      if (!table.ok()) {
        return table.status();
      }
      e.table = *std::move(table);
      e.tables = TableList({e.table});
    } else if (absl::Status status = word(entry, e); !status.ok()) {
      return status;
    }
    list.entries.push_back(std::move(e));
  }
  return list;
}

absl::StatusOr<DomainList> ParseDomainList(std::string_view value, const TableOpener& open) {
  return ParseMatchList<DomainList>(value, open,
                                    [](std::string_view entry, DomainList::Entry& e) {
                                      e.pattern = Lower(entry);
                                      return absl::OkStatus();
                                    });
}

absl::StatusOr<NetworkList> ParseNetworkList(std::string_view value, const TableOpener& open) {
  return ParseMatchList<NetworkList>(
      value, open, [](std::string_view entry, NetworkList::Entry& e) {
        if (entry[0] == '[' || entry.find(':') != std::string_view::npos ||
            absl::ascii_isdigit(static_cast<unsigned char>(entry[0]))) {
          absl::StatusOr<IpNetwork> network = ParseIpNetwork(entry);
          if (!network.ok()) {
            return network.status();
          }
          e.network = *network;
        } else {
          e.host_pattern = Lower(entry);
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<bool> ParseBool(std::string_view value) {
  std::string v = Lower(value);
  if (v == "yes" || v == "true" || v == "1") {
    return true;
  }
  if (v == "no" || v == "false" || v == "0") {
    return false;
  }
  return absl::InvalidArgumentError(absl::StrFormat("bad boolean value \"%s\"", value));
}

absl::StatusOr<int> ParseInt(std::string_view value, int min, int max) {
  int v = 0;
  if (value.empty() || value.size() > 9) {
    return absl::InvalidArgumentError(absl::StrFormat("bad number \"%s\"", value));
  }
  for (char c : value) {
    if (c < '0' || c > '9') {
      return absl::InvalidArgumentError(absl::StrFormat("bad number \"%s\"", value));
    }
    v = v * 10 + (c - '0');
  }
  if (v < min || v > max) {
    return absl::InvalidArgumentError(
        absl::StrFormat("number %d out of range [%d, %d]", v, min, max));
  }
  return v;
}

// Restriction names that consume the following word as their argument.
bool TakesArgument(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "check_client_access",        "check_reverse_client_access",
      "check_helo_access",          "check_sender_access",
      "check_recipient_access",     "check_etrn_access",
      "check_ccert_access",         "check_sasl_access",
      "check_client_ns_access",     "check_client_mx_access",
      "check_client_a_access",      "check_reverse_client_ns_access",
      "check_reverse_client_mx_access", "check_reverse_client_a_access",
      "check_helo_ns_access",       "check_helo_mx_access",
      "check_helo_a_access",        "check_sender_ns_access",
      "check_sender_mx_access",     "check_sender_a_access",
      "check_recipient_ns_access",  "check_recipient_mx_access",
      "check_recipient_a_access",   "check_policy_service",
      "reject_rbl_client",          "reject_rbl",
      "permit_dnswl_client",        "reject_rhsbl_client",
      "reject_rhsbl_reverse_client", "reject_rhsbl_helo",
      "reject_rhsbl_sender",        "reject_rhsbl_recipient",
      "permit_rhswl_client",        "sleep",
  };
  return std::find(std::begin(kNames), std::end(kNames), name) != std::end(kNames);
}

}  // namespace

bool MemoryMap::Add(std::string_view key, std::string_view value) {
  return rows_.try_emplace(Lower(key), std::string(value)).second;
}

absl::StatusOr<TablePtr> OpenTableWithCoreTable(std::string_view spec) {
  absl::StatusOr<std::unique_ptr<table::Map>> map = table::OpenMap(spec);
  if (!map.ok()) {
    return map.status();
  }
  return TablePtr(*std::move(map));
}

std::optional<std::string_view> MemoryMap::Find(std::string_view key) const {
  auto it = rows_.find(absl::string_view(key.data(), key.size()));
  if (it == rows_.end()) {
    return std::nullopt;
  }
  return std::string_view(it->second);
}

bool ParseIpAddress(std::string_view text, bool* v6, uint8_t bytes[16]) {
  char buf[64];
  if (text.empty() || text.size() >= sizeof(buf)) {
    return false;
  }
  memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  memset(bytes, 0, 16);
  if (text.find(':') != std::string_view::npos) {
    *v6 = true;
    return inet_pton(AF_INET6, buf, bytes) == 1;
  }
  *v6 = false;
  return inet_pton(AF_INET, buf, bytes) == 1;
}

absl::StatusOr<IpNetwork> ParseIpNetwork(std::string_view text) {
  std::string_view address = text;
  std::string_view prefix;
  size_t slash = text.rfind('/');
  if (slash != std::string_view::npos) {
    address = text.substr(0, slash);
    prefix = text.substr(slash + 1);
  }
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
    address = address.substr(1, address.size() - 2);
  }
  IpNetwork network;
  if (!ParseIpAddress(address, &network.v6, network.bytes)) {
    return absl::InvalidArgumentError(absl::StrFormat("bad network address \"%s\"", text));
  }
  int max_length = network.v6 ? 128 : 32;
  network.prefix_length = max_length;
  if (slash != std::string_view::npos) {
    absl::StatusOr<int> length = ParseInt(prefix, 0, max_length);
    if (!length.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat("bad network mask in \"%s\"", text));
    }
    network.prefix_length = *length;
  }
  for (int bit = network.prefix_length; bit < max_length; ++bit) {
    if (network.bytes[bit / 8] & (0x80 >> (bit % 8))) {
      return absl::InvalidArgumentError(
          absl::StrFormat("non-null host address bits in \"%s\"", text));
    }
  }
  return network;
}

bool NetworkContains(const IpNetwork& network, bool v6, const uint8_t bytes[16]) {
  if (network.v6 != v6) {
    return false;
  }
  int full = network.prefix_length / 8;
  if (memcmp(network.bytes, bytes, full) != 0) {
    return false;
  }
  int rest = network.prefix_length % 8;
  if (rest == 0) {
    return true;
  }
  uint8_t mask = static_cast<uint8_t>(0xff << (8 - rest));
  return (network.bytes[full] & mask) == (bytes[full] & mask);
}

absl::StatusOr<PolicyRestrictionList> ParseRestrictionList(std::string_view value) {
  std::vector<std::string> words = SplitList(value);
  PolicyRestrictionList list;
  for (size_t i = 0; i < words.size(); ++i) {
    PolicyRestriction r;
    r.name = IsTableSpec(words[i]) ? words[i] : Lower(words[i]);
    if (TakesArgument(r.name)) {
      if (i + 1 >= words.size()) {
        return absl::InvalidArgumentError(
            absl::StrFormat("restriction %s requires an argument", r.name));
      }
      r.arg = words[++i];
    }
    list.push_back(std::move(r));
  }
  return list;
}

const std::vector<std::string_view>& PolicyParameterNames() {
  static const std::vector<std::string_view> kNames = {
      "myhostname",
      "myorigin",
      "mydestination",
      "inet_interfaces",
      "proxy_interfaces",
      "relay_domains",
      "virtual_alias_domains",
      "mynetworks",
      "mynetworks_style",
      "smtpd_client_event_limit_exceptions",
      "parent_domain_matches_subdomains",
      "relay_recipient_maps",
      "local_recipient_maps",
      "virtual_alias_maps",
      "recipient_delimiter",
      "show_user_unknown_table_name",
      "smtpd_reject_unlisted_recipient",
      "smtpd_reject_unlisted_sender",
      "double_bounce_sender",
      "virtual_alias_recursion_limit",
      "virtual_alias_expansion_limit",
      "virtual_alias_address_length_limit",
      "transport_maps",
      "relayhost",
      "relay_transport",
      "default_transport",
      "local_transport",
      "smtpd_delay_reject",
      "smtpd_relay_before_recipient_restrictions",
      "smtpd_client_restrictions",
      "smtpd_helo_restrictions",
      "smtpd_sender_restrictions",
      "smtpd_relay_restrictions",
      "smtpd_recipient_restrictions",
      "smtpd_data_restrictions",
      "smtpd_end_of_data_restrictions",
      "relay_clientcerts",
      "smtpd_null_access_lookup_key",
      "access_map_reject_code",
      "access_map_defer_code",
      "reject_code",
      "defer_code",
      "relay_domains_reject_code",
      "unknown_relay_recipient_reject_code",
      "unknown_local_recipient_reject_code",
      "unknown_virtual_alias_reject_code",
      "non_fqdn_reject_code",
      "invalid_hostname_reject_code",
  };
  return kNames;
}

namespace {

absl::Status ApplyRestrictions(PolicySettings* settings, PolicyRestrictionList* target,
                               std::string_view value, const TableOpener& open) {
  absl::StatusOr<PolicyRestrictionList> list = ParseRestrictionList(value);
  if (!list.ok()) {
    return list.status();
  }
  for (const PolicyRestriction& r : *list) {
    std::string_view spec;
    if (IsTableSpec(r.name)) {
      spec = r.name;
    } else if (r.name.starts_with("check_") && r.name.ends_with("_access")) {
      spec = r.arg;
    }
    if (spec.empty() || settings->access_tables.contains(std::string(spec))) {
      continue;
    }
    absl::StatusOr<TablePtr> table = OpenTable(spec, open);
    if (!table.ok()) {
      return table.status();
    }
    settings->access_tables.emplace(std::string(spec), *std::move(table));
  }
  *target = *std::move(list);
  return absl::OkStatus();
}

absl::Status ApplyOwnAddresses(std::vector<std::string>* addresses, std::string_view value) {
  addresses->clear();
  for (const std::string& entry : SplitList(value)) {
    std::string_view address = entry;
    if (address.size() >= 2 && address.front() == '[' && address.back() == ']') {
      address = address.substr(1, address.size() - 2);
    }
    bool v6 = false;
    uint8_t bytes[16];
    std::string lower = Lower(address);
    if (ParseIpAddress(address, &v6, bytes)) {
      addresses->emplace_back(address);
    } else if (lower == "localhost" || lower == "loopback-only") {
      addresses->emplace_back("127.0.0.1");
      addresses->emplace_back("::1");
    } else if (lower != "all") {
      // Postfix resolves host names here; moat does no blocking DNS on the control path.
      return absl::InvalidArgumentError(absl::StrFormat(
          "\"%s\": write interface addresses, not host names", entry));
    }
    // "all" is resolved by the caller (BuildPolicySettings lists the interface addresses);
    // the request's server address always counts.
  }
  return absl::OkStatus();
}

absl::Status ApplyOne(PolicySettings* s, std::string_view name, std::string_view value,
                      const TableOpener& open) {
  auto assign = [](auto* target, auto result) -> absl::Status {
    if (!result.ok()) {
      return result.status();
    }
    *target = *std::move(result);
    return absl::OkStatus();
  };
  auto code = [&](int* target) { return assign(target, ParseInt(value, 200, 599)); };
  std::string trimmed(StripWhitespace(value));

  if (name == "myhostname") {
    s->myhostname = trimmed;
  } else if (name == "myorigin") {
    s->myorigin = Lower(trimmed);
  } else if (name == "mydestination") {
    return assign(&s->mydestination, ParseDomainList(value, open));
  } else if (name == "inet_interfaces") {
    return ApplyOwnAddresses(&s->inet_addresses, value);
  } else if (name == "proxy_interfaces") {
    return ApplyOwnAddresses(&s->proxy_addresses, value);
  } else if (name == "relay_domains") {
    return assign(&s->relay_domains, ParseDomainList(value, open));
  } else if (name == "virtual_alias_domains") {
    s->virtual_alias_domains_set = true;
    return assign(&s->virtual_alias_domains, ParseDomainList(value, open));
  } else if (name == "mynetworks") {
    return assign(&s->mynetworks, ParseNetworkList(value, open));
  } else if (name == "smtpd_client_event_limit_exceptions") {
    s->event_limit_exceptions_set = true;
    return assign(&s->event_limit_exceptions, ParseNetworkList(value, open));
  } else if (name == "mynetworks_style") {
    std::string style = Lower(trimmed);
    if (style != "host" && style != "subnet" && style != "class") {
      return absl::InvalidArgumentError(absl::StrFormat("bad value \"%s\"", value));
    }
    s->mynetworks_style = style;
  } else if (name == "parent_domain_matches_subdomains") {
    std::vector<std::string> names = SplitList(value);
    auto has = [&](std::string_view n) {
      return std::find(names.begin(), names.end(), n) != names.end();
    };
    s->relay_domains_parent_match = has("relay_domains");
    s->access_maps_parent_match = has("smtpd_access_maps");
    s->mynetworks_parent_match = has("mynetworks");
    s->transport_maps_parent_match = has("transport_maps");
  } else if (name == "relay_recipient_maps") {
    return assign(&s->relay_recipient_maps, ParseTableList(value, open));
  } else if (name == "local_recipient_maps") {
    return assign(&s->local_recipient_maps, ParseTableList(value, open));
  } else if (name == "virtual_alias_maps") {
    return assign(&s->virtual_alias_maps, ParseTableList(value, open));
  } else if (name == "recipient_delimiter") {
    s->recipient_delimiter = trimmed;
  } else if (name == "show_user_unknown_table_name") {
    return assign(&s->show_user_unknown_table_name, ParseBool(trimmed));
  } else if (name == "smtpd_reject_unlisted_recipient") {
    return assign(&s->reject_unlisted_recipient, ParseBool(trimmed));
  } else if (name == "smtpd_reject_unlisted_sender") {
    return assign(&s->reject_unlisted_sender, ParseBool(trimmed));
  } else if (name == "double_bounce_sender") {
    s->double_bounce_sender = trimmed;
  } else if (name == "virtual_alias_recursion_limit") {
    return assign(&s->virtual_alias_recursion_limit, ParseInt(trimmed, 1, 100000000));
  } else if (name == "virtual_alias_expansion_limit") {
    return assign(&s->virtual_alias_expansion_limit, ParseInt(trimmed, 1, 100000000));
  } else if (name == "virtual_alias_address_length_limit") {
    return assign(&s->virtual_alias_address_length_limit, ParseInt(trimmed, 1, 100000000));
  } else if (name == "transport_maps") {
    return assign(&s->transport_maps, ParseTableList(value, open));
  } else if (name == "relayhost") {
    s->relayhost = trimmed;
  } else if (name == "relay_transport") {
    s->relay_transport = trimmed;
  } else if (name == "default_transport") {
    s->default_transport = trimmed;
  } else if (name == "local_transport") {
    s->local_transport = trimmed;
  } else if (name == "smtpd_delay_reject") {
    return assign(&s->delay_reject, ParseBool(trimmed));
  } else if (name == "smtpd_relay_before_recipient_restrictions") {
    return assign(&s->relay_before_recipient_restrictions, ParseBool(trimmed));
  } else if (name == "smtpd_client_restrictions") {
    return ApplyRestrictions(s, &s->client_restrictions, value, open);
  } else if (name == "smtpd_helo_restrictions") {
    return ApplyRestrictions(s, &s->helo_restrictions, value, open);
  } else if (name == "smtpd_sender_restrictions") {
    return ApplyRestrictions(s, &s->sender_restrictions, value, open);
  } else if (name == "smtpd_relay_restrictions") {
    return ApplyRestrictions(s, &s->relay_restrictions, value, open);
  } else if (name == "smtpd_recipient_restrictions") {
    return ApplyRestrictions(s, &s->recipient_restrictions, value, open);
  } else if (name == "smtpd_data_restrictions") {
    return ApplyRestrictions(s, &s->data_restrictions, value, open);
  } else if (name == "smtpd_end_of_data_restrictions") {
    return ApplyRestrictions(s, &s->end_of_data_restrictions, value, open);
  } else if (name == "relay_clientcerts") {
    return assign(&s->relay_clientcerts, ParseTableList(value, open));
  } else if (name == "smtpd_null_access_lookup_key") {
    s->null_access_lookup_key = trimmed;
  } else if (name == "access_map_reject_code") {
    return code(&s->access_map_reject_code);
  } else if (name == "access_map_defer_code") {
    return code(&s->access_map_defer_code);
  } else if (name == "reject_code") {
    return code(&s->reject_code);
  } else if (name == "defer_code") {
    return code(&s->defer_code);
  } else if (name == "relay_domains_reject_code") {
    return code(&s->relay_domains_reject_code);
  } else if (name == "unknown_relay_recipient_reject_code") {
    return code(&s->unknown_relay_recipient_reject_code);
  } else if (name == "unknown_local_recipient_reject_code") {
    return code(&s->unknown_local_recipient_reject_code);
  } else if (name == "unknown_virtual_alias_reject_code") {
    return code(&s->unknown_virtual_alias_reject_code);
  } else if (name == "non_fqdn_reject_code") {
    return code(&s->non_fqdn_reject_code);
  } else if (name == "invalid_hostname_reject_code") {
    return code(&s->invalid_hostname_reject_code);
  } else {
    return absl::InvalidArgumentError("not a policy parameter");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyPolicyParameter(PolicySettings* settings, std::string_view name,
                                  std::string_view value, const TableOpener& open) {
  absl::Status status = ApplyOne(settings, name, value, open);
  if (!status.ok()) {
    return WithName(name, status);
  }
  return status;
}

}  // namespace moat::net
