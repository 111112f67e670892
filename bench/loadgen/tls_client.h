// bench/loadgen/tls_client.h
//
// The client side of TLS for moat-loadgen's --starttls: wolfSSL over memory buffers, like the
// server's tls::TlsTransform (its custom I/O callbacks read from an input string and append to
// the caller's output string), so the ring moves every byte and nothing blocks. It lives here,
// not in tls/, because moat's own client role (outbound STARTTLS) was not there yet when the
// load generator needed one; it checks no certificate (a load generator measures, it does not
// authenticate: like Postfix's smtp_tls_security_level=may).
//
//   TlsClientContext  one WOLFSSL_CTX for the process: TLS 1.2+, an explicit cipher list
//                     (tls::kDefaultCipherList), no verification, session tickets on; keeps the
//                     newest resumable session for --tls-resume.
//   TlsClient         one connection (a reactor::Transform, like the server's): Start() writes the ClientHello, Decode() drives the
//                     handshake and opens records, Encode() seals plaintext.
//
// Handshake: Start() then Decode() until handshake_done(). A TLS 1.3 server sends its session
// ticket after the handshake, so the session worth keeping is taken when the connection ends
// (~TlsClient hands it to the context if it carries a ticket and came from a full handshake:
// see tls_client.cc for why resumed connections' sessions are not kept).
//
// Owner: the engine's one thread; not thread-safe. Parses untrusted input: yes (TLS records,
// through wolfSSL); a protocol error is a `false` with error() set, never an assert.
#pragma once

#include <cstddef>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

#include "core/reactor/connection.h"

namespace moat::loadgen {

class TlsClientContext {
 public:
  // `resume`: offer the newest kept session to new connections (--tls-resume).
  static absl::StatusOr<std::unique_ptr<TlsClientContext>> Create(bool resume);
  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  void* native() const { return ctx_; }  // WOLFSSL_CTX*
  bool resume() const { return resume_; }
  // The kept session (WOLFSSL_SESSION*, still owned here) or nullptr.
  void* session() const { return session_; }
  // Takes ownership of a WOLFSSL_SESSION*; replaces the kept one.
  void KeepSession(void* session);

 private:
  TlsClientContext(void* ctx, bool resume) : ctx_(ctx), resume_(resume) {}
  void* ctx_ = nullptr;
  bool resume_ = false;
  void* session_ = nullptr;
};

class TlsClient final : public reactor::Transform {
 public:
  // REQUIRES: context outlives this object.
  explicit TlsClient(TlsClientContext* context);
  ~TlsClient() override;
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  // Begins the handshake: the ClientHello is appended to *raw_out.
  bool Start(std::string* raw_out);
  // Raw bytes from the server. Plaintext is appended to *plain, handshake records and alerts to
  // *raw_out. False on a TLS error (see error()).
  bool Decode(std::span<const char> raw, std::string* plain, std::string* raw_out) override;
  // Seals plaintext. REQUIRES: handshake_done() or plain is empty.
  bool Encode(std::span<const char> plain, std::string* raw_out) override;

  bool handshake_done() const { return handshake_done_; }
  // True once after the handshake completes (the Decode that completed it).
  bool TakeHandshakeCompleted();
  bool resumed() const { return resumed_; }
  bool peer_closed() const { return peer_closed_; }
  const std::string& protocol() const { return protocol_; }
  const std::string& cipher() const { return cipher_; }
  const std::string& error() const { return error_; }

  // wolfSSL I/O callback bodies (public for the C trampolines).
  int ReadRaw(char* buffer, int size);
  int WriteRaw(const char* buffer, int size);

 private:
  bool Handshake();
  bool Fail(const char* what, int code);

  TlsClientContext* context_;
  void* ssl_ = nullptr;  // WOLFSSL*
  std::string in_;
  size_t in_offset_ = 0;
  std::string* out_ = nullptr;
  bool handshake_done_ = false;
  bool handshake_completed_ = false;
  bool resumed_ = false;
  bool peer_closed_ = false;
  std::string protocol_;
  std::string cipher_;
  std::string error_;
};

}  // namespace moat::loadgen
