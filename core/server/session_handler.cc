// core/server/session_handler.cc: see session_handler.h.
#include "core/server/session_handler.h"

#include <string_view>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_format.h"
#include "core/log/log.h"

namespace moat::server {

SessionHandler::SessionHandler(const net::SessionSettings& settings, net::Policy& policy,
                               ShardSpool& spool, net::ConnectionInfo info,
                               std::shared_ptr<const void> pin,
                               std::shared_ptr<const tls::ServerContext> tls,
                               bool implicit_tls)
    : pin_(std::move(pin)),
      spool_(spool),
      session_(settings, policy, spool, info),
      tls_(std::move(tls)),
      peer_text_(absl::StrFormat("%s[%s]", info.client_name, info.client_ip)),
      implicit_tls_(implicit_tls) {
  spool_.Register(&session_, this);
}

SessionHandler::~SessionHandler() { spool_.Detach(&session_); }

void SessionHandler::OnOpen(reactor::Connection& connection) {
  connection_ = &connection;
  if (implicit_tls_) {
    if (tls_ == nullptr) {
      // Configuration invariant (a /tls listener needs a TLS level): never plaintext here.
      log::Error("implicit TLS connection from %s without a TLS context; closing", peer_text_);
      connection.Close(reactor::CloseReason::kLocal);
      return;
    }
    StartTls();  // implicit TLS: the greeting waits in the transform for the handshake
  }
  session_.Start();
  Pump();
}

size_t SessionHandler::OnData(reactor::Connection& /*connection*/, std::span<const char> data) {
  // The session buffers what it cannot act on yet (pipelined commands behind a pending
  // answer); reading pauses below so that buffer stays bounded by one receive.
  session_.OnData(std::string_view(data.data(), data.size()));
  Pump();
  return data.size();
}

void SessionHandler::OnDrained(reactor::Connection& connection) {
  // Only now has the output left: the session learns it here, so bytes that arrived
  // before the greeting was handed to the kernel count as talking before the greeting.
  if (handed_bytes_ > 0) {
    session_.ConsumeOutput(handed_bytes_);
    handed_bytes_ = 0;
    // STARTTLS (tls engineer): the 220 has left. Plaintext pipelined after the command
    // (CVE-2011-0411) is dropped, both what the connection kept and what the session
    // buffered (OnTlsStarted clears it); only bytes received from now on go to TLS.
    if (session_.WantsStartTls() && !tls_handshaking_ && tls_ != nullptr &&
        session_.output().empty()) {
      connection.DiscardBufferedInput();
      StartTls();
    }
    Pump();
  }
}

// ---- STARTTLS (tls engineer) ----

void SessionHandler::StartTls() {
  auto transform = std::make_unique<tls::TlsTransform>(
      tls_, [this](const tls::HandshakeInfo& info) { OnTlsHandshake(info); });
  tls_transform_ = transform.get();
  tls_handshaking_ = true;
  connection_->SetTransform(std::move(transform));
}

void SessionHandler::OnTlsHandshake(const tls::HandshakeInfo& info) {
  // Runs inside the transform's Decode: output staged here is sealed after the handshake
  // records (TlsTransform defers it), so Pump() is safe.
  tls_handshaking_ = false;
  // Postfix's tls_server_start wording: no certificate = Anonymous, one that did not chain
  // to smtpd_tls_CAfile = Untrusted, one that did = Trusted.
  log::Info("%s TLS connection established from %s: %s with cipher %s (%d/%d bits)%s",
            info.peer_fingerprint.empty() ? "Anonymous"
            : info.peer_verified          ? "Trusted"
                                          : "Untrusted",
            peer_text_, info.protocol, info.cipher, info.cipher_bits, info.algorithm_bits,
            info.resumed ? " (resumed)" : "");
  if (!info.peer_fingerprint.empty()) {
    log::Info("%s: client certificate CN=\"%s\" issuer CN=\"%s\" fingerprint %s, public key "
              "fingerprint %s",
              peer_text_, absl::CHexEscape(info.peer_cn), absl::CHexEscape(info.issuer_cn),
              info.peer_fingerprint, info.peer_pkey_fingerprint);
  }
  net::TlsInfo tls(info.protocol, info.cipher, info.cipher_bits, info.algorithm_bits);
  tls.received_header = tls_->options().received_header;
  tls.client_cert_requested = info.client_cert_requested;
  tls.peer_fingerprint = info.peer_fingerprint;
  tls.peer_pkey_fingerprint = info.peer_pkey_fingerprint;
  tls.peer_verified = info.peer_verified;
  tls.peer_cn = info.peer_cn;
  tls.issuer_cn = info.issuer_cn;
  if (session_.WantsStartTls()) {
    session_.OnTlsStarted(tls);
  } else if (implicit_tls_) {
    session_.OnImplicitTls(tls);
  }
  Pump();
}

void SessionHandler::OnTimeout(reactor::Connection& /*connection*/) {
  if (delaying_) {
    delaying_ = false;
    session_.OnDelayDone();
  } else {
    session_.OnTimeout();
  }
  Pump();
}

void SessionHandler::OnShutdown(reactor::Connection& connection, reactor::ShutdownPhase phase) {
  session_.OnShutdown();
  Pump();
  if (phase == reactor::ShutdownPhase::kGraceExpired && !session_.AwaitingQueue()) {
    connection.CloseAfterFlush(reactor::CloseReason::kShutdown);
  }
}

void SessionHandler::OnClosed(reactor::Connection& /*connection*/,
                              reactor::CloseReason reason) {
  if (tls_handshaking_ && tls_transform_ != nullptr) {
    // STARTTLS (tls engineer): Postfix's wording for a failed server handshake.
    log::Info("SSL_accept error from %s: %s", peer_text_,
              tls_transform_->error().empty() ? reactor::CloseReasonName(reason)
                                              : tls_transform_->error());
  }
  if (!session_.WantsClose()) {
    session_.OnEof();
  }
  spool_.Detach(&session_);
  connection_ = nullptr;
}

void SessionHandler::Pump() {
  if (connection_ == nullptr || connection_->closing()) {
    return;
  }
  const std::string& out = session_.output();
  if (out.size() > handed_bytes_) {
    std::string_view fresh(out.data() + handed_bytes_, out.size() - handed_bytes_);
    if (!connection_->Send(fresh)) {
      // The client does not read its replies: over the per-connection output bound.
      connection_->Close(reactor::CloseReason::kOverflow);
      return;
    }
    handed_bytes_ = out.size();
  }
  if (session_.WantsClose()) {
    if (tls_transform_ != nullptr && !tls_handshaking_) {
      // STARTTLS (tls engineer): close_notify after the last reply, as Postfix does.
      tls_transform_->RequestCloseNotify();
      (void)connection_->Send({});
    }
    connection_->CloseAfterFlush(reactor::CloseReason::kLocal);
    return;
  }
  if (session_.PendingDelay() > absl::ZeroDuration()) {
    if (!delaying_) {
      delaying_ = true;
      connection_->PauseReading();
      connection_->SetTimeout(session_.PendingDelay());
    }
    return;
  }
  if (tls_handshaking_) {
    // STARTTLS (tls engineer): reading runs the handshake; smtpd_timeout bounds it.
    if (connection_->reading_paused()) {
      connection_->ResumeReading();
    }
    connection_->SetTimeout(session_.timeout());
    return;
  }
  if (session_.WantsPause()) {
    // Waiting for the spool's fdatasync (or STARTTLS, later): no input, no idle timeout. The
    // fdatasync wait is short and the client waits for its 250, so the recv stays armed.
    if (session_.AwaitingQueue() && !session_.WantsStartTls()) {
      connection_->HoldInput();
    } else {
      connection_->PauseReading();
    }
    connection_->CancelTimeout();
    return;
  }
  if (connection_->reading_paused()) {
    connection_->ResumeReading();
  }
  connection_->SetTimeout(session_.timeout());
}

}  // namespace moat::server
