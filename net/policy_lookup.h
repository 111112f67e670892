// net/policy_lookup.h
//
// Postfix's table search orders as the policy engine needs them (access(5), virtual(5),
// transport(5), relay_recipient_maps), over net::TableList, plus the host name and address
// syntax checks of the restrictions. Owned by the "policy" area.
//
// NOTE: the table area (core/table/) is writing the project's one lookup-semantics module
// at the same time. This file is the policy engine's interim copy over its own LookupTable
// interface; once core/table's module is committed, these functions should become thin
// calls into it (see the report of the "policy" engineer).
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

// Postfix's maps_find(): the first table of `tables` that has `key`. With partial = true
// (a derived key such as a parent domain or "user@"), tables without partial_keys() are
// skipped. `key` must be lower case.
std::optional<std::string_view> FindKey(const TableList& tables, std::string_view key,
                                        bool partial);

// What mail_addr_find() tries, as flags (Postfix's MA_FIND_*).
struct AddressSearch {
  bool full = true;                 // user+ext@domain
  bool no_extension = true;         // user@domain
  bool localpart_if_local = false;  // user+ext, user (when the domain is local)
  bool at_domain = false;           // @domain
  bool domain = false;              // domain, then parents
  bool parent_matches_subdomains = false;  // parents as "example.com" (else ".example.com")
  bool localpart_at = false;        // user+ext@, user@ (any domain)
};

// The search orders used by the engine.
AddressSearch DefaultAddressSearch();                      // virtual, *_recipient_maps
AddressSearch AccessAddressSearch(bool parent_matches);    // check_{sender,recipient}_access
AddressSearch TransportAddressSearch(bool parent_matches); // transport_maps (before "*")

struct AddressMatch {
  std::string_view value;
  // The unmatched address extension including its delimiter ("+foo") when the match was
  // on the address without it; empty otherwise.
  std::string extension;
};

// Searches `tables` for `address` (canonical form, user@domain, lower-case domain) in
// Postfix's order. `is_local(domain)` says whether a domain is $myorigin, $mydestination
// or one of our address literals, for the localpart_if_local forms.
std::optional<AddressMatch> FindAddress(const TableList& tables, std::string_view address,
                                        const AddressSearch& search,
                                        std::string_view recipient_delimiter,
                                        absl::FunctionRef<bool(std::string_view)> is_local);

// check_domain_access(): the name, then (unless the name is an IP address) its parent
// domains as ".example.com" or, with parent_matches_subdomains, "example.com".
// `found_key` receives the key that matched.
std::optional<std::string_view> FindDomain(const TableList& tables, std::string_view domain,
                                           bool parent_matches_subdomains);

// check_addr_access(): the address, then shorter prefixes ("1.2.3.4", "1.2.3", "1.2", "1";
// for IPv6 split at ':').
std::optional<std::string_view> FindNetworkAddress(const TableList& tables,
                                                   std::string_view address);

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
