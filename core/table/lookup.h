// core/table/lookup.h
//
// Lookup semantics: which keys Postfix tries, in which order, for each kind of map. Every
// later area calls these instead of Map::Find so moat answers like Postfix. All functions:
//   - take the query as it came (any case); it is folded into a fixed stack buffer, so a
//     lookup makes ZERO heap allocations (tests/table/lookup_alloc_test.cc checks);
//   - try each candidate key in every map of the list before the next candidate (Postfix's
//     maps_find order); pattern tables (cidr:) only get the whole string, never the
//     partial keys, as in Postfix;
//   - return the first match: the value (a view into the map, valid while the map lives),
//     the map, and which form of the key matched;
//   - return nullopt for a query longer than kQueryBytesMax (no table key can be that long
//     in practice; an SMTP path is at most 256 octets).
// Thread-safe (const, lock-free); queries are untrusted bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/table/map.h"

namespace moat::table {

inline constexpr size_t kQueryBytesMax = 1024;

// Which derived key matched (names after Postfix's documentation).
enum class KeyForm : uint8_t {
  kExact,            // the key as given (MapList::Find, or a pattern table)
  kAddress,          // user+ext@domain: the whole address
  kAddressNoExt,     // user@domain
  kLocalPart,        // user+ext (virtual/recipient lookups for local domains)
  kLocalPartNoExt,   // user
  kLocalPartAt,      // user+ext@
  kLocalPartNoExtAt,  // user@
  kAtDomain,         // @domain
  kDomain,           // domain (of an address, a HELO name, a client hostname)
  kParentDomain,     // .parent or parent, per parent_domain_matches_subdomains
  kClientAddress,    // 192.0.2.1 / 2001:db8::1
  kNetwork,          // 192.0.2 / 192.0 / 192, 2001:db8: / 2001:db8 / 2001
  kWildcard,         // * (transport_maps)
};

struct Match {
  std::string_view value;
  const Map* map = nullptr;  // for show_user_unknown_table_name: map->spec()
  KeyForm form = KeyForm::kExact;
};

// An ordered list of maps (a main.cf value such as "hash:/a, cidr:/b"). Immutable.
class MapList {
 public:
  MapList() = default;
  explicit MapList(std::vector<std::shared_ptr<const Map>> maps) : maps_(std::move(maps)) {}
  // Opens every map named in `specs` (separated by commas and/or white space).
  static absl::StatusOr<MapList> Open(std::string_view specs, const OpenOptions& options = {});

  // The first map holding exactly `key` (already folded by the caller).
  std::optional<Match> Find(std::string_view key) const;
  const std::vector<std::shared_ptr<const Map>>& maps() const { return maps_; }
  bool empty() const { return maps_.empty(); }

 private:
  std::vector<std::shared_ptr<const Map>> maps_;
};

// Folds `key` and looks it up as it is in every map (e.g. relay_domains tables queried
// with a domain, smtpd_null_access_lookup_key).
std::optional<Match> FindKey(const MapList& maps, std::string_view key);

// relay_recipient_maps, local_recipient_maps: user+ext@domain, user@domain, then (only when
// `domain_is_local`) user+ext, user, then user+ext@, user@, then @domain. `delimiters` is
// recipient_delimiter (any of its characters starts an extension; empty: none). Postfix's
// split_addr() rules apply: postmaster, mailer-daemon, and with '-' owner-* and *-request
// are never split, nor a localpart that would become empty.
std::optional<Match> FindRecipient(const MapList& maps, std::string_view address,
                                   std::string_view delimiters, bool domain_is_local = false);

// virtual_alias_maps (virtual(5)): user+ext@domain, user@domain, then (only when
// `domain_is_local`: $myorigin, $mydestination, $inet_interfaces) user+ext, user, then
// @domain.
std::optional<Match> FindVirtualAlias(const MapList& maps, std::string_view address,
                                      std::string_view delimiters, bool domain_is_local);

// check_sender_access / check_recipient_access (access(5) EMAIL ADDRESS PATTERNS):
// user+ext@domain, user@domain, domain, parent domains, user+ext@, user@.
// `parent_matches_subdomains`: "smtpd_access_maps" is in parent_domain_matches_subdomains
// (then parents are looked up as "example.com", else as ".example.com").
std::optional<Match> FindAccessAddress(const MapList& maps, std::string_view address,
                                       std::string_view delimiters,
                                       bool parent_matches_subdomains);

// Domain lookups (relay_domains tables, check_helo_access, check_*_domain_access,
// access(5) HOST NAME patterns): domain, then each parent domain: "sub.example.com",
// then ".example.com", ".com" (or "example.com", "com" when parent_matches_subdomains).
std::optional<Match> FindDomain(const MapList& maps, std::string_view domain,
                                bool parent_matches_subdomains);

// check_client_access (access(5)): as Postfix's smtpd does, the client hostname and its
// parent domains first (skipped when `hostname` is empty), then the address "1.2.3.4" and
// its networks "1.2.3", "1.2", "1" (IPv6: "2001:db8::1", "2001:db8:", "2001:db8",
// "2001"). Pattern tables (cidr:) get the hostname and the address, whole.
std::optional<Match> FindClient(const MapList& maps, std::string_view address,
                                std::string_view hostname, bool parent_matches_subdomains);

// transport_maps (transport(5)): user+ext@domain, user@domain, domain, parent domains
// (".parent", or "parent" when "transport_maps" is in parent_domain_matches_subdomains),
// then "*".
std::optional<Match> FindTransport(const MapList& maps, std::string_view address,
                                   std::string_view delimiters, bool parent_matches_subdomains);

}  // namespace moat::table
