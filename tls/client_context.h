// tls/client_context.h
//
// ClientContext: one wolfSSL client context (WOLFSSL_CTX) for outbound STARTTLS, built from
// the smtp_tls_* parameters of one configuration snapshot: security level (Postfix's
// smtp_tls_security_level none|may|encrypt|verify), trust anchors (smtp_tls_CAfile,
// smtp_tls_CApath), protocol floor (never below TLS 1.2; smtp_tls_mandatory_protocols at
// encrypt/verify, smtp_tls_protocols at may) and an explicit cipher list (ChaCha20 first,
// the server's kDefaultCipherList). The context never fails a handshake on certificate
// grounds: wolfSSL's verify callback records "chain not trusted" on the connection's
// TlsTransform and the handshake goes on, so the level decides afterwards (may/encrypt:
// log "Untrusted", deliver; verify: defer "Server certificate not verified").
//
// Rebuilt on every reload (a new CA file applies to new connections); connections keep the
// context they started with (shared_ptr). Owner: "outbound-tls". Built on the control
// thread, immutable afterwards, shared by the shards (wolfSSL_new on a shared CTX takes
// its reference-count mutex, the handshake reads it without locks). Parses untrusted
// input: no (operator files); the TLS records are parsed by TlsTransform.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

#include "core/config/config.h"

namespace moat::tls {

// smtp_tls_security_level (dane, fingerprint and secure are not supported: refused).
enum class ClientLevel : uint8_t { kNone, kMay, kEncrypt, kVerify };
std::string_view ClientLevelName(ClientLevel level);  // "none", "may", ...

struct ClientOptions {
  ClientLevel level = ClientLevel::kNone;
  std::string ca_file;  // smtp_tls_CAfile
  std::string ca_path;  // smtp_tls_CApath
  int min_version = 2;  // 2 = TLS 1.2, 3 = TLS 1.3
  int max_version = 3;
  // wolfSSL suite names, best first. Empty = kDefaultCipherList.
  std::string cipher_list;
};

// smtp_tls_security_level, or the obsolete smtp_use_tls/smtp_enforce_tls when it is empty.
// An unsupported level (dane, dane-only, fingerprint, secure) is an error.
absl::StatusOr<ClientOptions> ClientOptionsFromConfig(const config::Config& config);

class ClientContext {
 public:
  // Loads the trust anchors: an error naming the file if unreadable. REQUIRES: level != kNone.
  static absl::StatusOr<std::shared_ptr<const ClientContext>> Create(ClientOptions options);
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  const ClientOptions& options() const { return options_; }
  ClientLevel level() const { return options_.level; }
  // True when trust anchors were loaded (without them no chain can be "Trusted").
  bool has_trust_anchors() const { return !options_.ca_file.empty() || !options_.ca_path.empty(); }
  // The WOLFSSL_CTX* (void* keeps wolfSSL out of this header).
  void* native() const { return ctx_; }

 private:
  explicit ClientContext(ClientOptions options) : options_(std::move(options)) {}
  ClientOptions options_;
  void* ctx_ = nullptr;
};

// Postfix's smtp_tls_verify_cert_match = hostname: does `name` (the next-hop host name, or
// an address literal) match the certificate's DNS subjectAltNames (CN when there are
// none), wildcards in the left-most label only? An address literal matches an IP
// subjectAltName. `x509` is a WOLFSSL_X509*.
bool CertificateMatchesName(void* x509, std::string_view name);

}  // namespace moat::tls
