// net/policy_lookup.cc
//
// Postfix's search orders over net::TableList. See policy_lookup.h.
#include "net/policy_lookup.h"

#include "absl/strings/ascii.h"

namespace moat::net {
namespace {

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

std::string AddressExtension(std::string_view address, std::string_view delimiters) {
  if (delimiters.empty()) {
    return "";
  }
  size_t at = address.rfind('@');
  std::string_view local = at == std::string_view::npos ? address : address.substr(0, at);
  if (EqualsIgnoreCase(local, "postmaster") || EqualsIgnoreCase(local, "mailer-daemon") ||
      EqualsIgnoreCase(local, "double-bounce")) {
    return "";
  }
  if (delimiters.find('-') != std::string_view::npos &&
      (StartsWithIgnoreCase(local, "owner-") ||
       (local.size() > 8 && EndsWithIgnoreCase(local, "-request")))) {
    return "";
  }
  size_t cut = local.find_first_of(delimiters);
  if (cut == std::string_view::npos || cut == 0) {
    return "";
  }
  return std::string(local.substr(cut));
}

bool MatchedWithoutExtension(table::KeyForm form) {
  return form == table::KeyForm::kAddressNoExt || form == table::KeyForm::kLocalPartNoExt ||
         form == table::KeyForm::kLocalPartNoExtAt;
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

// match_hostname() against a table: the name, then its parents.
bool MatchHostTable(const TableList& tables, std::string_view name, bool parent_matches) {
  return table::FindDomain(tables, name, parent_matches).has_value();
}

}  // namespace

bool MatchDomainList(const DomainList& list, std::string_view domain, bool parent_matches) {
  std::string name = LowerCase(domain);
  for (const DomainList::Entry& e : list.entries) {
    bool match = e.table != nullptr ? MatchHostTable(e.tables, name, parent_matches)
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
      match = (have_name && MatchHostTable(e.tables, name, parent_matches)) ||
              (have_ip && table::FindKey(e.tables, client_ip).has_value());
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
