// tls/tls_transform.h
//
// TlsTransform: one TLS connection (the server side; the client side for outbound STARTTLS)
// as a reactor::Transform. wolfSSL runs
// over memory buffers through its custom I/O callbacks: Decode() appends the raw bytes the
// ring delivered to an input buffer that the receive callback reads from, and every record
// wolfSSL writes (handshake flights, alerts, application data) is appended to the caller's
// output string by the send callback. Nothing ever blocks: the callbacks answer WANT_READ
// when the input buffer is empty, and the output string always takes everything.
//
// Handshake: driven by Decode() (wolfSSL_accept until it completes). On completion the
// `on_handshake` callback runs once, inside Decode, with the negotiated facts (HandshakeInfo).
// Plaintext handed to Encode() before the handshake completes (implicit TLS: the greeting)
// or while Decode() is running (a reply staged from the callback) is kept and encrypted at
// the end of that Decode(), after the handshake records, so records always leave in the
// order they were sealed.
//
// Owner: the connection's shard thread; not thread-safe. Parses untrusted input: yes (TLS
// records, through wolfSSL); a protocol error is a `false` from Decode (the connection
// closes), never an assert.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "absl/functional/any_invocable.h"

#include "core/reactor/connection.h"
#include "tls/client_context.h"
#include "tls/server_context.h"
#include "tls/session_cache.h"

namespace moat::tls {

struct HandshakeInfo {
  std::string protocol;  // "TLSv1.3"
  std::string cipher;    // OpenSSL's name, as Postfix logs it: "TLS_CHACHA20_POLY1305_SHA256"
  int cipher_bits = 0;
  int algorithm_bits = 0;
  bool resumed = false;  // abbreviated handshake (session ticket)
  // smtpd_tls_ask_ccert: a client certificate was asked for.
  bool client_cert_requested = false;
  // The client certificate (smtpd_tls_ask_ccert), fingerprinted with
  // smtpd_tls_fingerprint_digest in Postfix's form "AA:BB:..." (upper case): of the whole
  // certificate (DER) and of its public key (DER SubjectPublicKeyInfo), as Postfix's
  // peer_cert_fprint and peer_pkey_fprint. Empty without a certificate. A resumed session
  // carries no certificate (wolfSSL keeps none in the ticket): both are empty then.
  std::string peer_fingerprint;
  std::string peer_pkey_fingerprint;
  // The certificate chained to smtpd_tls_CAfile (Postfix's "Trusted"); false without one.
  bool peer_verified = false;
  std::string peer_cn;    // subject CN, for logs and the Received: header ("" if none)
  std::string issuer_cn;  // issuer CN
  // Client role (outbound-tls): the server certificate matched the name given to the
  // client constructor (smtp_tls_verify_cert_match = hostname). peer_verified is then "the
  // chain verified against smtp_tls_CAfile/CApath".
  bool peer_name_matched = false;
};

class TlsTransform final : public reactor::Transform {
 public:
  using HandshakeCallback = absl::AnyInvocable<void(const HandshakeInfo&)>;
  // REQUIRES: context outlives nothing in particular (it is held).
  TlsTransform(std::shared_ptr<const ServerContext> context, HandshakeCallback on_handshake);
  // The client role (outbound STARTTLS, owner "outbound-tls"; moat-loadgen): the first
  // Decode() (an empty one will do) produces the ClientHello. `server_name` is sent as SNI
  // unless it is an address literal, and the server certificate is matched against it
  // (HandshakeInfo). With `sessions`, the session kept under `session_key` is offered
  // (resumption), and a full handshake's ticket-bearing session is kept there when this
  // transform goes away (session_cache.h says why only those). REQUIRES: `sessions` outlives
  // this transform.
  TlsTransform(std::shared_ptr<const ClientContext> context, std::string server_name,
               HandshakeCallback on_handshake, ClientSessionCache* sessions = nullptr,
               std::string session_key = "");
  ~TlsTransform() override;
  TlsTransform(const TlsTransform&) = delete;
  TlsTransform& operator=(const TlsTransform&) = delete;

  bool Decode(std::span<const char> raw, std::string* plain, std::string* raw_out) override;
  bool Encode(std::span<const char> plain, std::string* raw_out) override;

  // Makes the next Encode() (an empty one will do) end with a close_notify alert, as
  // Postfix's SSL_shutdown before closing. Call before the connection's CloseAfterFlush.
  void RequestCloseNotify() { close_notify_requested_ = true; }

  bool handshake_done() const { return handshake_done_; }
  // The peer sent close_notify: what follows is ignored until the TCP EOF.
  bool peer_closed() const { return peer_closed_; }
  const HandshakeInfo& info() const { return info_; }
  // Why the last Decode/Encode failed ("" if none): for the log line.
  const std::string& error() const { return error_; }

  // wolfSSL I/O callback bodies (public for the C trampolines).
  int ReadRaw(char* buffer, int size);
  int WriteRaw(const char* buffer, int size);
  // The verify callback saw a certificate that does not chain to smtpd_tls_CAfile.
  void NoteUntrusted() { peer_untrusted_ = true; }

 private:
  bool FlushDeferred(std::string* raw_out);
  bool Fail(const char* what, int code);
  void CollectInfo();
  void Init(void* ctx);

  std::shared_ptr<const ServerContext> context_;  // server role
  std::shared_ptr<const ClientContext> client_context_;  // client role
  std::string server_name_;                              // client role: SNI, name check
  ClientSessionCache* sessions_ = nullptr;               // client role: resumption
  std::string session_key_;
  HandshakeCallback on_handshake_;
  void* ssl_ = nullptr;  // WOLFSSL*
  std::string in_;       // raw bytes not yet read by wolfSSL
  size_t in_offset_ = 0;
  std::string* out_ = nullptr;  // where the send callback appends (set per call)
  std::string deferred_;        // plaintext waiting for the handshake / the end of Decode
  bool in_decode_ = false;
  bool handshake_done_ = false;
  bool peer_closed_ = false;  // close_notify received
  bool close_notify_requested_ = false;
  bool close_notify_sent_ = false;
  bool peer_untrusted_ = false;
  HandshakeInfo info_;
  std::string error_;
};

}  // namespace moat::tls
