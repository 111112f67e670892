// core/config/restriction.h
//
// The parsed form of a Postfix restriction list (smtpd_client_restrictions ...
// smtpd_data_restrictions): the names in order, with the table argument of check_*_access.
// Only the restrictions moat implements are accepted; the rest are configuration errors with
// file:line, because silently skipping a restriction changes who may send mail:
//   permit reject defer permit_mynetworks permit_auth_destination reject_unauth_destination
//   defer_unauth_destination reject_unlisted_recipient reject_unlisted_sender
//   reject_non_fqdn_sender reject_non_fqdn_recipient reject_non_fqdn_helo_hostname
//   reject_invalid_helo_hostname reject_unauth_pipelining permit_tls_clientcerts
//   permit_tls_all_clientcerts
//   check_client_access TABLE, check_helo_access TABLE, check_sender_access TABLE,
//   check_recipient_access TABLE
//   permit_sasl_authenticated: accepted, never matches (moat has no SASL AUTH), warns when
//   written in main.cf.
//   reject_unknown_* and reject_rbl_client / reject_rhsbl_*: errors "not implemented yet"
//   (they need the DNS work); check_policy_service and everything else: errors.
// Postfix's old names reject_non_fqdn_hostname and reject_invalid_hostname are accepted and
// stored under their current names. Parses untrusted input. Stateless, thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/config/diagnostic.h"
#include "core/config/values.h"

namespace moat::config {

struct Restriction {
  std::string name;  // e.g. "check_recipient_access" (current Postfix name)
  std::string arg;   // the table as written ("hash:/etc/moat/access"), empty if none
  TableRef table;    // parsed `arg` for check_*_access; type empty otherwise

  bool operator==(const Restriction& other) const {
    return name == other.name && arg == other.arg;
  }
};

// Parses the expanded list `items` of parameter `param` (set at file:line, or a default when
// `from_main_cf` is false: then no warnings are given for it).
std::vector<Restriction> ParseRestrictions(const std::vector<std::string>& items,
                                           std::string_view param, const std::string& file,
                                           int line, bool from_main_cf, Diagnostics& diagnostics);

// True if `name` is a restriction moat implements (after alias mapping).
bool IsSupportedRestriction(std::string_view name);

}  // namespace moat::config
