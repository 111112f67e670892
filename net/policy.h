// net/policy.h
//
// moat's restriction engine and relay policy: the implementation of net::Policy
// (net/policy_types.h) after Postfix's smtpd_check.c, trivial-rewrite's address resolver
// and cleanup's virtual alias expansion. Owned by the "policy" area.
//
//   Check():   smtpd_{client,helo,sender}_restrictions (at their stage, or all at RCPT with
//              smtpd_delay_reject = yes), then smtpd_relay_restrictions and
//              smtpd_recipient_restrictions, then the implicit reject_unlisted_recipient
//              (smtpd_reject_unlisted_recipient = yes) at RCPT; smtpd_data_restrictions at
//              DATA; smtpd_end_of_data_restrictions at the end of the message. Each list
//              ends at its first permit or reject; lists are independent (a permit in one
//              does not skip the next); the first reject answers. Reply texts and codes
//              are Postfix's ("554 5.7.1 <x@y>: Relay access denied").
//   Resolve(): recursive virtual_alias_maps expansion (virtual_alias_recursion_limit,
//              virtual_alias_expansion_limit; a loop defers with "451 4.6.0 Alias expansion
//              error" as Postfix's cleanup does) and next-hop resolution of each result:
//              address class (local: $mydestination or our address literals; virtual alias:
//              $virtual_alias_domains; relay: $relay_domains; else default), its transport
//              ($local_transport, error:User unknown, $relay_transport, $default_transport),
//              $relayhost for off-host classes, then transport_maps (address, domain,
//              parents, "*").
//
// Threading: immutable after Create(); Check() and Resolve() are const in effect and may be
// called from any number of shard threads at once. No I/O, no blocking, no locks.
// Untrusted input: every string of a PolicyRequest comes from the network; the engine never
// asserts on it. Unsupported restriction names and a relay policy without a working
// reject_unauth_destination/defer_unauth_destination/reject/defer are Create() errors.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "net/policy_settings.h"
#include "net/policy_types.h"

namespace moat::net {

// Postfix's address classes (ADDRESS_CLASS_README).
enum class AddressClass { kLocal, kVirtualAlias, kRelay, kDefault };

// What trivial-rewrite's resolver says about one address.
struct AddressResolution {
  std::string address;  // canonical: user@domain, domain in lower case
  AddressClass address_class = AddressClass::kDefault;
  std::string transport;  // "smtp", "relay", "error", ...
  std::string nexthop;    // "[10.0.0.5]:25", "example.com", error text
  bool routed = false;    // source-routed local part (user%host@domain, @a:u@b)
  bool bad_syntax = false;
};

class PolicyEngine final : public Policy {
 public:
  // Validates and compiles the settings. Errors name the parameter, e.g.
  // "smtpd_recipient_restrictions: unknown restriction \"reject_foo\"".
  static absl::StatusOr<std::unique_ptr<PolicyEngine>> Create(PolicySettings settings);

  PolicyDecision Check(const PolicyRequest& request) override;
  std::vector<ResolvedRecipient> Resolve(std::string_view recipient,
                                         PolicyDecision* failure) override;

  // The resolver alone (no virtual alias expansion). `server_ip` is the address the client
  // connected to (an address literal with it is local), or empty.
  AddressResolution ResolveAddress(std::string_view address, std::string_view server_ip) const;

  const PolicySettings& settings() const { return settings_; }

  // smtpd_client_event_limit_exceptions (unset: mynetworks as derived): a client exempt from
  // the connection count limit. Decided at connect time, by address alone.
  bool EventLimitExempt(std::string_view client_ip) const;

  ~PolicyEngine() override;
  PolicyEngine(const PolicyEngine&) = delete;
  PolicyEngine& operator=(const PolicyEngine&) = delete;

  struct CompiledRestriction;
  struct Evaluation;

 private:
  explicit PolicyEngine(PolicySettings settings);

  enum class Status { kDunno, kOk, kReject };

  Status RunList(Evaluation& eval, const std::vector<CompiledRestriction>& list,
                 std::string_view reply_name, int reply_class) const;
  Status RunOne(Evaluation& eval, const CompiledRestriction& r, std::string_view reply_name,
                int reply_class) const;
  Status CheckAccess(Evaluation& eval, const CompiledRestriction& r, int reply_class) const;
  Status TableResult(Evaluation& eval, const table::Map& table, std::string_view value,
                     std::string_view reply_name, int reply_class) const;
  Status CheckRecipientMaps(Evaluation& eval, std::string_view address,
                            int reply_class) const;
  Status RejectUnauthDestination(Evaluation& eval, int code, std::string_view dsn) const;
  bool PermitAuthDestination(Evaluation& eval) const;
  const AddressResolution& ResolveForCheck(Evaluation& eval, std::string_view address) const;
  Status RunClient(Evaluation& eval) const;
  Status RunHelo(Evaluation& eval) const;
  Status RunSender(Evaluation& eval) const;
  Status RunRecipient(Evaluation& eval) const;

  bool IsOwnAddressLiteral(std::string_view domain, std::string_view server_ip) const;
  bool IsLocalDomain(std::string_view domain, std::string_view server_ip) const;
  bool IsVirtualAliasDomain(std::string_view domain) const;
  // $myorigin, $mydestination or our address literal: where "user" keys apply.
  bool IsLocalForLookup(std::string_view address, std::string_view server_ip) const;
  std::string Canonicalize(std::string_view address) const;

  PolicySettings settings_;
  std::vector<CompiledRestriction> client_;
  std::vector<CompiledRestriction> helo_;
  std::vector<CompiledRestriction> sender_;
  std::vector<CompiledRestriction> relay_;
  std::vector<CompiledRestriction> recipient_;
  std::vector<CompiledRestriction> data_;
  std::vector<CompiledRestriction> end_of_data_;
};

}  // namespace moat::net
