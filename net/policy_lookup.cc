// net/policy_lookup.cc
//
// Postfix's search orders over net::TableList. See policy_lookup.h.
#include "net/policy_lookup.h"

#include "absl/strings/ascii.h"

namespace moat::net {
namespace {

// Splits "user+ext@domain" into "user@domain" and "+ext" per Postfix's strip_addr():
// postmaster, MAILER-DAEMON and double-bounce keep their extension-looking parts, and an
// address whose localpart would become empty is not split.
bool StripExtension(std::string_view address, std::string_view delimiters,
                    std::string* stripped, std::string* extension) {
  if (delimiters.empty()) {
    return false;
  }
  size_t at = address.rfind('@');
  std::string_view local = at == std::string_view::npos ? address : address.substr(0, at);
  if (EqualsIgnoreCase(local, "postmaster") ||
      EqualsIgnoreCase(local, "mailer-daemon") ||
      EqualsIgnoreCase(local, "double-bounce")) {
    return false;
  }
  size_t cut = local.find_first_of(delimiters);
  if (cut == std::string_view::npos || cut == 0) {
    return false;
  }
  if (delimiters.find('-') != std::string_view::npos) {
    // Postfix's owner_request_special = yes: owner-foo and foo-request stay whole.
    if (StartsWithIgnoreCase(local, "owner-") ||
        (local.size() > 8 && EndsWithIgnoreCase(local, "-request"))) {
      return false;
    }
  }
  *extension = std::string(local.substr(cut));
  *stripped = std::string(local.substr(0, cut));
  if (at != std::string_view::npos) {
    stripped->append(address.substr(at));
  }
  return true;
}

}  // namespace

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) {
    return false;
  }
  for (size_t i = 0; i < a.size(); ++i) {
    if (absl::ascii_tolower(static_cast<unsigned char>(a[i])) !=
        absl::ascii_tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

bool EndsWithIgnoreCase(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         EqualsIgnoreCase(s.substr(s.size() - suffix.size()), suffix);
}

std::string_view StripWhitespace(std::string_view s) {
  while (!s.empty() && absl::ascii_isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && absl::ascii_isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  return s;
}

std::string LowerCase(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = absl::ascii_tolower(static_cast<unsigned char>(c));
  }
  return out;
}

std::optional<std::string_view> FindKey(const TableList& tables, std::string_view key,
                                        bool partial) {
  for (const TablePtr& table : tables) {
    if (partial && !table->partial_keys()) {
      continue;
    }
    std::optional<std::string_view> value = table->Find(key);
    if (value.has_value()) {
      return value;
    }
  }
  return std::nullopt;
}

AddressSearch DefaultAddressSearch() {
  AddressSearch s;
  s.localpart_if_local = true;
  s.at_domain = true;
  return s;
}

AddressSearch AccessAddressSearch(bool parent_matches) {
  AddressSearch s;
  s.domain = true;
  s.parent_matches_subdomains = parent_matches;
  s.localpart_at = true;
  return s;
}

AddressSearch TransportAddressSearch(bool parent_matches) {
  AddressSearch s;
  s.domain = true;
  s.parent_matches_subdomains = parent_matches;
  return s;
}

std::optional<AddressMatch> FindAddress(const TableList& tables, std::string_view address,
                                        const AddressSearch& search,
                                        std::string_view recipient_delimiter,
                                        absl::FunctionRef<bool(std::string_view)> is_local) {
  if (tables.empty()) {
    return std::nullopt;
  }
  std::string full = LowerCase(address);
  std::string bare;
  std::string extension;
  bool has_bare =
      search.no_extension && StripExtension(full, recipient_delimiter, &bare, &extension);
  auto found = [&](std::string_view value, bool stripped) {
    AddressMatch m;
    m.value = value;
    if (stripped) {
      m.extension = extension;
    }
    return m;
  };
  // user+ext@domain, user@domain.
  if (search.full) {
    if (auto v = FindKey(tables, full, false)) {
      return found(*v, false);
    }
  }
  if (has_bare) {
    if (auto v = FindKey(tables, bare, true)) {
      return found(*v, true);
    }
  }
  size_t at = full.rfind('@');
  if (at == std::string::npos) {
    return std::nullopt;
  }
  std::string_view domain = std::string_view(full).substr(at + 1);
  // user+ext@ / user@ (only for local domains) and user+ext / user.
  auto find_local = [&](bool with_at) -> std::optional<AddressMatch> {
    std::string key = full.substr(0, at + (with_at ? 1 : 0));
    if (auto v = FindKey(tables, key, false)) {
      return found(*v, false);
    }
    if (has_bare) {
      size_t bare_at = bare.rfind('@');
      std::string bare_key = bare.substr(0, bare_at + (with_at ? 1 : 0));
      if (auto v = FindKey(tables, bare_key, true)) {
        return found(*v, true);
      }
    }
    return std::nullopt;
  };
  if (search.localpart_if_local && is_local(domain)) {
    if (auto m = find_local(false)) {
      return m;
    }
  }
  // @domain.
  if (search.at_domain) {
    if (auto v = FindKey(tables, std::string_view(full).substr(at), true)) {
      return found(*v, false);
    }
  }
  // domain and its parents.
  if (search.domain) {
    std::string_view name = domain;
    while (!name.empty()) {
      if (auto v = FindKey(tables, name, true)) {
        return found(*v, false);
      }
      size_t dot = name.find('.', 1);
      if (dot == std::string_view::npos) {
        break;
      }
      name = name.substr(search.parent_matches_subdomains ? dot + 1 : dot);
    }
  }
  if (search.localpart_at) {
    if (auto m = find_local(true)) {
      return m;
    }
  }
  return std::nullopt;
}

std::optional<std::string_view> FindDomain(const TableList& tables, std::string_view domain,
                                           bool parent_matches_subdomains) {
  std::string lower = LowerCase(domain);
  std::string_view name = lower;
  bool partial = false;
  while (!name.empty()) {
    if (auto v = FindKey(tables, name, partial)) {
      return v;
    }
    // No subdomain magic for numerical host names.
    if (ValidHostAddress(lower)) {
      break;
    }
    size_t dot = name.find('.', 1);
    if (dot == std::string_view::npos) {
      break;
    }
    name = name.substr(parent_matches_subdomains ? dot + 1 : dot);
    partial = true;
  }
  return std::nullopt;
}

std::optional<std::string_view> FindNetworkAddress(const TableList& tables,
                                                   std::string_view address) {
  std::string key = LowerCase(address);
  char delimiter = key.find(':') != std::string::npos ? ':' : '.';
  bool partial = false;
  while (!key.empty()) {
    if (auto v = FindKey(tables, key, partial)) {
      return v;
    }
    size_t cut = key.rfind(delimiter);
    if (cut == std::string::npos) {
      break;
    }
    key.resize(cut);
    partial = true;
  }
  return std::nullopt;
}

namespace {

bool MatchHostPattern(std::string_view name, std::string_view pattern, bool parent_matches) {
  if (name == pattern) {
    return true;
  }
  if (parent_matches) {
    return name.size() > pattern.size() && name.ends_with(pattern) &&
           name[name.size() - pattern.size() - 1] == '.';
  }
  return !pattern.empty() && pattern[0] == '.' && name.size() > pattern.size() &&
         name.ends_with(pattern);
}

// match_hostname() against a table: the name, then its parents (tables with partial keys).
bool MatchHostTable(const LookupTable& table, std::string_view name, bool parent_matches) {
  std::string_view entry = name;
  bool first = true;
  while (!entry.empty()) {
    if ((first || table.partial_keys()) && table.Find(entry).has_value()) {
      return true;
    }
    first = false;
    size_t dot = entry.find('.', 1);
    if (dot == std::string_view::npos) {
      break;
    }
    entry = entry.substr(parent_matches ? dot + 1 : dot);
  }
  return false;
}

}  // namespace

bool MatchDomainList(const DomainList& list, std::string_view domain, bool parent_matches) {
  std::string name = LowerCase(domain);
  for (const DomainList::Entry& e : list.entries) {
    bool match = e.table != nullptr ? MatchHostTable(*e.table, name, parent_matches)
                                    : MatchHostPattern(name, e.pattern, parent_matches);
    if (match) {
      return !e.negate;
    }
  }
  return false;
}

bool MatchNetworkList(const NetworkList& list, std::string_view client_name,
                      std::string_view client_ip, bool parent_matches) {
  bool v6 = false;
  uint8_t bytes[16];
  bool have_ip = ParseIpAddress(client_ip, &v6, bytes);
  std::string name = LowerCase(client_name);
  bool have_name = !name.empty() && name != "unknown";
  for (const NetworkList::Entry& e : list.entries) {
    bool match = false;
    if (e.network.has_value()) {
      match = have_ip && NetworkContains(*e.network, v6, bytes);
    } else if (e.table != nullptr) {
      match = (have_name && MatchHostTable(*e.table, name, parent_matches)) ||
              (have_ip && e.table->Find(LowerCase(client_ip)).has_value());
    } else {
      match = have_name && MatchHostPattern(name, e.host_pattern, parent_matches);
    }
    if (match) {
      return !e.negate;
    }
  }
  return false;
}

bool ValidHostname(std::string_view name) {
  constexpr size_t kLabelBytesMax = 63;
  constexpr size_t kNameBytesMax = 255;
  if (name.empty() || name.size() > kNameBytesMax) {
    return false;
  }
  size_t label_length = 0;
  bool non_numeric = false;
  for (size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    bool last = i + 1 == name.size();
    if (absl::ascii_isalnum(c) || c == '_') {
      if (++label_length > kLabelBytesMax) {
        return false;
      }
      if (!absl::ascii_isdigit(c)) {
        non_numeric = true;
      }
    } else if (c == '.') {
      if (label_length == 0 || last) {
        return false;
      }
      label_length = 0;
    } else if (c == '-') {
      non_numeric = true;
      ++label_length;
      if (label_length == 1 || last || name[i + 1] == '.') {
        return false;
      }
    } else {
      return false;
    }
  }
  return non_numeric;
}

bool ValidHostAddress(std::string_view address) {
  bool v6 = false;
  uint8_t bytes[16];
  return ParseIpAddress(address, &v6, bytes);
}

std::optional<std::string_view> ValidMailhostAddress(std::string_view literal) {
  bool v6 = false;
  uint8_t bytes[16];
  if (StartsWithIgnoreCase(literal, "IPv6:")) {
    std::string_view bare = literal.substr(5);
    if (ParseIpAddress(bare, &v6, bytes) && v6) {
      return bare;
    }
    return std::nullopt;
  }
  if (ParseIpAddress(literal, &v6, bytes) && !v6) {
    return literal;
  }
  return std::nullopt;
}

}  // namespace moat::net
