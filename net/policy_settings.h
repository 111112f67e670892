// net/policy_settings.h
//
// Everything the policy engine (net/policy.h) needs from main.cf, already parsed: the
// restriction lists, the domain and network lists, the lookup tables and the reply codes.
// Owned by the "policy" area. A PolicySettings is built once on the control plane (from a
// config::Config snapshot by BuildPolicySettings() in net/policy_config.h, or parameter by
// parameter with ApplyPolicyParameter() in tests) and then only read: an engine built from it
// may be shared read-only by every shard.
//
// Parses main.cf values (trusted, operator input): errors are absl::Status values that name
// the parameter. Parses no network input.
//
// Lookup tables are core/table's Map objects (compiled hash:, texthash:, cidr:, ...) opened
// through a TableOpener, so tests can supply in-memory maps (MemoryMap).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/table/lookup.h"
#include "core/table/map.h"

namespace moat::net {

// Lookup tables are core/table's maps; the search orders are core/table/lookup.h's.
using TablePtr = std::shared_ptr<const table::Map>;
// A main.cf table list ("hash:/a, hash:/b"): searched in order, the first hit wins.
using TableList = table::MapList;

// An in-memory table (tests, and tables built from settings): keys are folded to lower case
// on insertion. Not thread-safe while being filled; read-only after.
class MemoryMap final : public table::Map {
 public:
  explicit MemoryMap(std::string spec) : table::Map(std::move(spec)) {}
  // Like postmap: the first value for a key wins; returns false for a duplicate.
  bool Add(std::string_view key, std::string_view value);
  std::optional<std::string_view> Find(std::string_view key) const override;
  uint64_t size() const override { return rows_.size(); }

 private:
  absl::flat_hash_map<std::string, std::string> rows_;
};

// Opens the table named by a main.cf entry such as "hash:/etc/moat/access".
// OpenTableWithCoreTable (below) is the production opener.
using TableOpener = std::function<absl::StatusOr<TablePtr>(std::string_view spec)>;

// A Postfix match list of domain names (mydestination, relay_domains,
// virtual_alias_domains): literal names, ".parent" patterns, "!negated" entries and tables,
// matched in order, the first match deciding.
struct DomainList {
  struct Entry {
    bool negate = false;
    std::string pattern;  // lower case; empty when `table` is set
    TablePtr table;
    TableList tables;  // {table}, for the core/table lookup functions
  };
  std::vector<Entry> entries;
  bool empty() const { return entries.empty(); }
};

// An IPv4 or IPv6 network ("10.0.0.0/8", "[2001:db8::]/32", "192.0.2.7").
struct IpNetwork {
  bool v6 = false;
  uint8_t bytes[16] = {};
  int prefix_length = 0;
};

// Parses a textual IPv4 or IPv6 address (no brackets, no prefix) into 4 or 16 bytes.
bool ParseIpAddress(std::string_view text, bool* v6, uint8_t bytes[16]);
// Parses one mynetworks-style entry. Errors on bad syntax and on host bits set past the
// prefix (Postfix: "non-null host address bits").
absl::StatusOr<IpNetwork> ParseIpNetwork(std::string_view text);
bool NetworkContains(const IpNetwork& network, bool v6, const uint8_t bytes[16]);

// A Postfix "namadr" list (mynetworks): networks, host name patterns, tables, negation.
struct NetworkList {
  struct Entry {
    bool negate = false;
    std::optional<IpNetwork> network;
    std::string host_pattern;  // lower case host name or ".parent" pattern
    TablePtr table;
    TableList tables;  // {table}, for the core/table lookup functions
  };
  std::vector<Entry> entries;
};

// One restriction of a smtpd_*_restrictions list: its name and, for check_*_access and
// other restrictions that take one, the argument ("hash:/etc/moat/access").
struct PolicyRestriction {
  std::string name;
  std::string arg;
};
using PolicyRestrictionList = std::vector<PolicyRestriction>;

// Splits a restriction list value: names separated by commas and/or white space; the names
// that take an argument consume the next word. A bare "type:table" entry is kept as a
// restriction whose name is the table (Postfix's implicit check_*_access of that list).
// Fails on a missing argument.
absl::StatusOr<PolicyRestrictionList> ParseRestrictionList(std::string_view value);

struct PolicySettings {
  // Identity and address classes.
  std::string myhostname = "localhost";
  std::string myorigin = "localhost";  // lower case
  DomainList mydestination;            // local domains (string list: exact names)
  // Our own addresses ($inet_interfaces and $proxy_interfaces, resolved to IP addresses):
  // the address literals "user@[a.d.d.r]" that are local. The server address of a request
  // counts too.
  std::vector<std::string> inet_addresses;
  std::vector<std::string> proxy_addresses;
  DomainList relay_domains;
  DomainList virtual_alias_domains;
  bool virtual_alias_domains_set = false;  // else: $virtual_alias_maps (domain keys)
  NetworkList mynetworks;
  std::string mynetworks_style = "host";
  // smtpd_client_event_limit_exceptions: clients exempt from the connection count limit.
  // Unset: the clients of mynetworks (as derived, with mynetworks_style).
  NetworkList event_limit_exceptions;
  bool event_limit_exceptions_set = false;

  // parent_domain_matches_subdomains membership.
  bool relay_domains_parent_match = true;
  bool access_maps_parent_match = true;  // smtpd_access_maps
  bool mynetworks_parent_match = true;
  bool transport_maps_parent_match = false;

  // Recipient validation.
  TableList relay_recipient_maps;  // empty: every relay recipient is valid
  TableList local_recipient_maps;  // empty: every local recipient is valid
  TableList virtual_alias_maps;
  std::string recipient_delimiter;
  bool show_user_unknown_table_name = true;
  bool reject_unlisted_recipient = true;  // smtpd_reject_unlisted_recipient
  bool reject_unlisted_sender = false;    // smtpd_reject_unlisted_sender
  std::string double_bounce_sender = "double-bounce";
  int virtual_alias_recursion_limit = 1000;
  int virtual_alias_expansion_limit = 1000;
  int virtual_alias_address_length_limit = 1000;

  // Routing.
  TableList transport_maps;
  std::string relayhost;
  std::string relay_transport = "relay";
  std::string default_transport = "smtp";
  std::string local_transport;  // empty: Postfix's default, "local:$myhostname"

  // Restrictions.
  bool delay_reject = true;  // smtpd_delay_reject
  bool relay_before_recipient_restrictions = true;
  PolicyRestrictionList client_restrictions;
  PolicyRestrictionList helo_restrictions;
  PolicyRestrictionList sender_restrictions;
  PolicyRestrictionList relay_restrictions = {
      {"permit_mynetworks", ""}, {"permit_sasl_authenticated", ""},
      {"defer_unauth_destination", ""}};
  PolicyRestrictionList recipient_restrictions;
  PolicyRestrictionList data_restrictions;
  PolicyRestrictionList end_of_data_restrictions;
  TableList relay_clientcerts;
  std::string null_access_lookup_key = "<>";

  // Reply codes (Postfix's names and defaults).
  int access_map_reject_code = 554;
  int access_map_defer_code = 450;
  int reject_code = 554;
  int defer_code = 450;
  int relay_domains_reject_code = 554;
  int unknown_relay_recipient_reject_code = 550;
  int unknown_local_recipient_reject_code = 550;
  int unknown_virtual_alias_reject_code = 550;
  int non_fqdn_reject_code = 504;
  int invalid_hostname_reject_code = 501;

  // Every table a restriction list names (check_client_access hash:/p, bare entries),
  // keyed by its main.cf spec.
  absl::flat_hash_map<std::string, TablePtr> access_tables;
};

// Opens `spec` with table::OpenMap().
absl::StatusOr<TablePtr> OpenTableWithCoreTable(std::string_view spec);

// The parameters ApplyPolicyParameter() understands, in Postfix's spelling.
const std::vector<std::string_view>& PolicyParameterNames();

// Sets one parameter from its (already $-expanded) main.cf value, opening the tables it
// names with `open`. Restriction lists also open the tables of their check_*_access
// entries into settings->access_tables. Unknown names and bad values are errors.
absl::Status ApplyPolicyParameter(PolicySettings* settings, std::string_view name,
                                  std::string_view value, const TableOpener& open);

}  // namespace moat::net
