// net/smtp_message.h
//
// What the SMTP server session hands to the spool, and the interface it hands it through.
// Owner: the "session" engineer. The sink is implemented by integration code over
// queue/ (group commit); one sink per shard, called on the shard thread only.
//
// Protocol between SmtpSession and MessageSink (Postfix's smtpd <-> cleanup):
//   1. First accepted RCPT of a transaction: NewQueueId() names the message. The session
//      logs "QUEUEID: client=name[ip]" and uses the ID in later log lines.
//   2. End of data, policy passed: Submit(message, session). The session stops reading
//      (WantsPause()) until the sink calls session.OnQueued() -- only after the fdatasync
//      that covers the message -- or session.OnQueueFailed(). Exactly one of the two,
//      from within Submit() or later from the shard loop. REQUIRES: while
//      SmtpSession::AwaitingQueue() is true, the session stays alive, or its owner tells
//      the sink to forget it (never to call it) before destroying it.
//   3. A transaction that got an ID but ends without Submit (RSET, HELO, QUIT, lost
//      connection, rejected content) is reported with Abandon(queue_id).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "net/policy_types.h"
#include "net/smtp_command.h"

namespace moat::net {

class SmtpSession;

// The peer, as the I/O layer knows it at accept time (after a PROXY header, if any).
struct ConnectionInfo {
  std::string client_ip;             // "192.0.2.1" or "2001:db8::1", no brackets
  std::string client_name = "unknown";
  uint16_t client_port = 0;
  std::string server_ip;
  uint16_t server_port = 0;
  // Connections from this client IP open on this shard now, this one included (the
  // shard counts them: DESIGN 1 steers one IP to one shard, so the count is exact).
  int client_connection_count = 1;
  // smtpd_client_event_limit_exceptions matched (default $mynetworks): no count limit.
  bool exempt_from_limits = false;
};

// TLS facts for the Received: header, the protocol name and the policy (set after
// STARTTLS, or at the start of an implicit-TLS connection). The peer_* fields describe the
// client certificate (smtpd_tls_ask_ccert; "inbound-tls" engineer's part).
struct TlsInfo {
  TlsInfo() = default;
  // The negotiated facts only (no certificate, no Received: clause).
  TlsInfo(std::string protocol_name, std::string cipher_name, int bits, int alg_bits)
      : protocol(std::move(protocol_name)),
        cipher(std::move(cipher_name)),
        cipher_bits(bits),
        algorithm_bits(alg_bits) {}

  std::string protocol;  // "TLSv1.3"
  std::string cipher;    // "TLS_AES_256_GCM_SHA384"
  int cipher_bits = 0;
  int algorithm_bits = 0;
  // smtpd_tls_received_header: the Received: header gets the TLS clauses.
  bool received_header = false;
  // smtpd_tls_ask_ccert: a client certificate was asked for.
  bool client_cert_requested = false;
  // smtpd_tls_fingerprint_digest fingerprints of the client certificate and of its public
  // key, "AA:BB:..." upper case (relay_clientcerts keys); empty without a certificate.
  std::string peer_fingerprint;
  std::string peer_pkey_fingerprint;
  bool peer_verified = false;  // chained to smtpd_tls_CAfile
  std::string peer_cn;         // subject CN
  std::string issuer_cn;       // issuer CN
};

struct AcceptedRecipient {
  std::string address;  // RCPT TO address as given, without <>
  uint8_t dsn_notify = 0;  // DsnNotify bits, 0 = not given
  std::string orcpt_type;  // ORCPT= type ("rfc822"), "" when not given
  std::string orcpt;       // ORCPT= address, decoded
  // virtual_alias_maps expansion and next hops (Policy::Resolve).
  std::vector<ResolvedRecipient> resolved;
};

struct AcceptedMessage {
  std::string queue_id;
  std::string sender;  // "" = null sender
  std::vector<AcceptedRecipient> recipients;
  DsnRet dsn_ret = DsnRet::kNone;
  std::string dsn_envid;
  BodyType body = BodyType::kNone;
  bool smtputf8 = false;
  uint64_t declared_size = 0;  // SIZE= (0 = not given)
  // Client facts for logs and bounces.
  std::string client_name;
  std::string client_ip;
  std::string helo_name;
  std::string protocol;  // "ESMTP", "SMTP", "ESMTPS", "UTF8SMTPS", ...
  absl::Time arrival;
  // The Received: header moat prepended, then the content as received: CRLF line ends,
  // dot-unstuffed, bare LF normalized to CRLF.
  std::string content;
};

enum class QueueError : uint8_t {
  kWriteError,  // "451 4.3.0 Error: queue file write error"
  kNoSpace,     // ENOSPC: "452 4.3.1 Insufficient system storage"
};

class MessageSink {
 public:
  virtual ~MessageSink() = default;
  // A queue ID for a new transaction. Cannot fail: nothing is written yet.
  virtual std::string NewQueueId() = 0;
  // Stores the message durably, then answers the session (see the protocol above).
  virtual void Submit(AcceptedMessage message, SmtpSession& session) = 0;
  // The transaction named `queue_id` ended without Submit().
  virtual void Abandon(std::string_view queue_id) { (void)queue_id; }
  // The clock for the arrival time and the Received: header date (tests override it).
  virtual absl::Time Now() { return absl::Now(); }
};

}  // namespace moat::net
