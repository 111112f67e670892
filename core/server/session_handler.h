// core/server/session_handler.h
//
// Glue between one accepted connection (reactor::Connection, a byte stream) and the SMTP
// session state machine (net::SmtpSession, pure): feeds received bytes in, moves staged
// replies out once per turn, pauses reading while the session waits (for the fdatasync
// behind its 250, or an error-sleep delay), runs the smtpd_timeout on the connection's
// timer slot, and turns graceful shutdown into the session's 421.
// STARTTLS ("tls" engineer's part): once the 220 has left, the pipelined plaintext is
// discarded and a tls::TlsTransform is put in the connection's transform slot; when its
// handshake completes the session is told (OnTlsStarted) and restarts. On an implicit-TLS
// listener ("/tls" moat_listen entry, or every listener with smtpd_tls_wrappermode) the
// transform is installed before the greeting and the session learns TLS (OnImplicitTls)
// when the handshake completes. Logs Postfix's "Anonymous/Untrusted/Trusted TLS connection
// established from ..." line.
//
// Owner: its shard thread; one per connection; destroyed by the connection after OnClosed.
#pragma once

#include <cstddef>
#include <memory>
#include <span>

#include "core/reactor/connection.h"
#include "core/server/shard_spool.h"
#include "net/smtp_session.h"
#include "tls/server_context.h"
#include "tls/tls_transform.h"

namespace moat::server {

class SessionHandler final : public reactor::StreamHandler, public AnswerTarget {
 public:
  // `pin` keeps whatever owns `settings` and `policy` (the configuration generation the
  // session started with) alive for the session's lifetime.
  // `tls` (may be null: no TLS) is the generation's server context (tls engineer).
  // `implicit_tls`: the connection came in on an implicit-TLS listener (or
  // smtpd_tls_wrappermode): the handshake runs before the greeting. REQUIRES: `tls` set
  // then (a null one closes the connection with an error logged).
  SessionHandler(const net::SessionSettings& settings, net::Policy& policy, ShardSpool& spool,
                 net::ConnectionInfo info, std::shared_ptr<const void> pin = nullptr,
                 std::shared_ptr<const tls::ServerContext> tls = nullptr,
                 bool implicit_tls = false);
  ~SessionHandler() override;

  void OnOpen(reactor::Connection& connection) override;
  size_t OnData(reactor::Connection& connection, std::span<const char> data) override;
  void OnDrained(reactor::Connection& connection) override;
  void OnTimeout(reactor::Connection& connection) override;
  void OnShutdown(reactor::Connection& connection, reactor::ShutdownPhase phase) override;
  void OnClosed(reactor::Connection& connection, reactor::CloseReason reason) override;

  // Moves the session's staged output to the connection and applies what the session wants
  // (close, pause, delay, timeout). Called after every event, and by the spool when the
  // session got its queue answer.
  void Pump();
  // AnswerTarget: the session got its "queued" (or failure) answer.
  void OnAnswered() override { Pump(); }

  net::SmtpSession& session() { return session_; }

 private:
  std::shared_ptr<const void> pin_;  // declared first: outlives the session
  ShardSpool& spool_;
  net::SmtpSession session_;
  reactor::Connection* connection_ = nullptr;
  size_t handed_bytes_ = 0;  // bytes of session_.output() already given to Send()
  bool delaying_ = false;    // the timer slot runs an error-sleep delay, not smtpd_timeout

  // ---- STARTTLS (tls engineer) ----
  void StartTls();
  void OnTlsHandshake(const tls::HandshakeInfo& info);
  std::shared_ptr<const tls::ServerContext> tls_;
  std::string peer_text_;                        // "name[ip]" for TLS log lines
  tls::TlsTransform* tls_transform_ = nullptr;   // owned by the connection
  bool tls_handshaking_ = false;                 // transform installed, handshake not done
  bool implicit_tls_ = false;                    // TLS from the first byte (inbound-tls)
};

}  // namespace moat::server
