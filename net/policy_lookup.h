// net/policy_lookup.h
//
// Match lists (Postfix's domain_list/string_list/namadr_list: mydestination, relay_domains,
// mynetworks), the host name and address syntax checks of the restrictions, and small string
// helpers. Owned by the "policy" area. Table search orders are not here: they are
// core/table/lookup.h's, the project's one lookup-semantics module.
//
// Pure functions: no I/O, no locks; safe on any thread. The inputs are network-controlled
// strings (addresses, HELO names): every function handles any byte string.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "net/policy_settings.h"

namespace moat::net {

// The address extension ("+foo", with its delimiter) that Postfix's strip_addr() would
// remove from `address` with `delimiters` (recipient_delimiter), or "" (no delimiter, an
// empty localpart before it, postmaster, mailer-daemon, double-bounce, and with '-'
// owner-* and *-request).
std::string AddressExtension(std::string_view address, std::string_view delimiters);

// True for the key forms that matched the address without its extension.
bool MatchedWithoutExtension(table::KeyForm form);

// Postfix's domain_list_match/string_list_match: the first entry that matches decides
// (a negated entry that matches means "no").
bool MatchDomainList(const DomainList& list, std::string_view domain, bool parent_matches);
// namadr_list_match (mynetworks): host name patterns, networks and tables.
bool MatchNetworkList(const NetworkList& list, std::string_view client_name,
                      std::string_view client_ip, bool parent_matches);

// Syntax checks as Postfix's valid_hostname(), valid_hostaddr() and valid_mailhost_addr().
bool ValidHostname(std::string_view name);
bool ValidHostAddress(std::string_view address);
// "1.2.3.4" or "IPv6:2001:db8::1" (the inside of an address literal); returns the bare
// address, or nullopt.
std::optional<std::string_view> ValidMailhostAddress(std::string_view literal);

// Folds ASCII to lower case.
std::string LowerCase(std::string_view s);
// ASCII case-insensitive comparisons and trimming over std::string_view (this abseil's
// absl::string_view is a different type).
bool EqualsIgnoreCase(std::string_view a, std::string_view b);
bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix);
bool EndsWithIgnoreCase(std::string_view s, std::string_view suffix);
std::string_view StripWhitespace(std::string_view s);

}  // namespace moat::net
