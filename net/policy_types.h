// net/policy_types.h
//
// The contract between the SMTP session (net/smtp_session*) and the policy engine
// (net/policy*): what the session knows when it asks, and what the policy answers. Policy
// is pure: no I/O, no blocking, answers from the config snapshot and the lookup tables
// only. One Policy object per shard (or shared read-only); called on the shard thread.
//
// Stages follow Postfix: smtpd_client_restrictions at connect (or delayed to RCPT when
// smtpd_delay_reject = yes), helo at HELO/EHLO (or delayed), sender at MAIL (or delayed),
// then smtpd_relay_restrictions and smtpd_recipient_restrictions at RCPT, and
// smtpd_data_restrictions at DATA/BDAT.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moat::net {

enum class PolicyStage { kConnect, kHelo, kMail, kRcpt, kData, kEndOfData };

// What the session knows. Views are valid for the duration of the call only.
struct PolicyRequest {
  PolicyStage stage = PolicyStage::kConnect;
  // The client. client_ip is the textual address ("192.0.2.1", "2001:db8::1", no brackets);
  // client_name is "unknown" when there is no verified reverse name (no DNS yet).
  std::string_view client_ip;
  std::string_view client_name = "unknown";
  uint16_t client_port = 0;
  // Local address the client connected to (for postmaster@[our ip] literals).
  std::string_view server_ip;
  // HELO/EHLO argument as given (empty before HELO).
  std::string_view helo_name;
  // MAIL FROM address without <> ("" for the null sender). Set from kMail on.
  std::string_view sender;
  // RCPT TO address without <>. Set at kRcpt only.
  std::string_view recipient;
  // ESMTP/SMTP, and TLS facts (STARTTLS issue).
  std::string_view protocol = "SMTP";
  bool tls = false;
  // The client certificate (smtpd_tls_ask_ccert), fingerprinted with
  // smtpd_tls_fingerprint_digest, "AA:BB:..." upper case, or empty without one: the whole
  // certificate and its public key (Postfix's peer_cert_fprint / peer_pkey_fprint;
  // permit_tls_clientcerts looks both up in relay_clientcerts). `client_cert_verified`: it
  // chained to smtpd_tls_CAfile (permit_tls_all_clientcerts).
  std::string_view client_cert_fingerprint;
  std::string_view client_pkey_fingerprint;
  bool client_cert_verified = false;
  // The client sent commands before the server's reply where PIPELINING does not allow it
  // (for reject_unauth_pipelining), decided by the session.
  bool unauth_pipelining = false;
  // Recipients accepted so far in this transaction.
  uint32_t accepted_rcpt_count = 0;
};

enum class PolicyAction : uint8_t {
  kDunno,   // no decision: the transaction continues (also the result of a finished list)
  kPermit,  // OK/permit: accepted by this list
  kReject,  // 5xx
  kDefer,   // 4xx
};

// The answer. For kReject/kDefer, `code`, `enhanced` and `text` make the reply line
// "<code> <enhanced> <text>", e.g. 554 "5.7.1" "<x@y>: Relay access denied", and the session
// logs "NOQUEUE: reject: RCPT from host[ip]: 554 5.7.1 <x@y>: Relay access denied; from=<..>
// to=<..> proto=ESMTP helo=<..>".
struct PolicyDecision {
  PolicyAction action = PolicyAction::kDunno;
  int code = 0;
  std::string enhanced;
  std::string text;
};

// A recipient after virtual alias expansion and next-hop resolution (trivial-rewrite's job
// in Postfix). `next_hop` is a transport:nexthop string such as "smtp:[10.0.0.5]:25",
// "relay:[mx.internal]", "error:local mail delivery is disabled", "discard:".
struct ResolvedRecipient {
  std::string address;
  std::string next_hop;
};

class Policy {
 public:
  virtual ~Policy() = default;
  // Evaluates the restriction lists due at request.stage (with smtpd_delay_reject, the
  // client/helo/sender lists are evaluated at kRcpt, before relay and recipient lists).
  virtual PolicyDecision Check(const PolicyRequest& request) = 0;
  // Recursive virtual_alias_maps expansion (loop- and count-limited) and transport
  // resolution for one accepted recipient. An empty result with a decision means the
  // expansion failed (e.g. a loop): the decision says how to answer.
  virtual std::vector<ResolvedRecipient> Resolve(std::string_view recipient,
                                                 PolicyDecision* failure) = 0;
};

}  // namespace moat::net
