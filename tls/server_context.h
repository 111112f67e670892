// tls/server_context.h
//
// ServerContext: one wolfSSL server context (WOLFSSL_CTX) built from the smtpd_tls_*
// parameters of one configuration snapshot: certificate chain and key, protocol floor
// (never below TLS 1.2), an explicit cipher list (ChaCha20-Poly1305 first: measured faster
// than AES-GCM on Debian's wolfSSL, which has no AES-NI; see tls/README.md), optional client
// certificate request, and the shared session-ticket keys (TicketKeys) so a ticket issued
// on one shard resumes on all of them. Rebuilt on every reload: new certificates apply to
// new connections; connections keep the context they started with (shared_ptr).
//
// One context per configuration generation is shared by the shards. wolfSSL's locking on a
// shared WOLFSSL_CTX: wolfSSL_new()/wolfSSL_free() take the context's reference-count mutex
// once per connection; the handshake itself reads the context without locks. The server
// session cache is off (tickets carry resumption; the built-in cache is a process-global
// table of 33 rows with row locks, i.e. shared between CTXs anyway), so there are no
// cross-shard locks on the handshake path besides those two and TicketKeys' mutex.
//
// Owner: the "tls" engineer. Built on the control thread; immutable afterwards and used by
// every shard (thread-safe in the sense above). Parses untrusted input: no (files from the
// operator); the TLS records are parsed by TlsTransform.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

#include "core/config/config.h"
#include "tls/ticket_keys.h"

namespace moat::tls {

// smtpd_tls_security_level.
enum class SecurityLevel : uint8_t { kNone, kMay, kEncrypt };

// The server side of TLS as configured. Built by ServerOptionsFromConfig or by hand (tests).
struct ServerOptions {
  SecurityLevel level = SecurityLevel::kNone;
  std::string cert_file;                 // PEM chain (leaf first) or leaf only
  std::string key_file;                  // PEM key (defaults to cert_file)
  std::vector<std::string> chain_files;  // smtpd_tls_chain_files: key + chain per file
  std::string ca_file;                   // smtpd_tls_CAfile: CAs named in a cert request
  // Lowest/highest protocol version: 2 = TLS 1.2, 3 = TLS 1.3.
  int min_version = 2;
  int max_version = 3;
  bool ask_client_cert = false;  // smtpd_tls_ask_ccert
  // smtpd_tls_fingerprint_digest: md5, sha1, sha256 (Postfix >= 3.6 default) or sha512.
  std::string fingerprint_digest = "sha256";
  bool wrapper_mode = false;     // smtpd_tls_wrappermode (implicit TLS)
  bool received_header = false;  // smtpd_tls_received_header
  // wolfSSL suite names, TLS 1.3 and 1.2. Empty = kDefaultCipherList.
  std::string cipher_list;
  // Shared ticket keys. nullptr = TicketKeys::Process().
  std::shared_ptr<TicketKeys> ticket_keys;
};

// Server suites, best first: ChaCha20-Poly1305 before AES-GCM (measured, README), forward
// secret, AEAD only. Never NULL, RC4, 3DES, CBC or anonymous suites.
extern const char kDefaultCipherList[];

// Parses a Postfix protocol list ("!SSLv2, !SSLv3, !TLSv1, !TLSv1.1", ">=TLSv1.2",
// "TLSv1.2 TLSv1.3", "<=TLSv1.2") into [min, max] (2 = TLS 1.2, 3 = TLS 1.3), clamped to
// at least TLS 1.2. Error when nothing of TLS 1.2/1.3 is left or a word is unknown.
absl::Status ParseProtocols(const std::vector<std::string>& words, int* min_version,
                            int* max_version);

// smtpd_tls_security_level, or the obsolete smtpd_use_tls/smtpd_enforce_tls when it is empty.
SecurityLevel SecurityLevelFromConfig(const config::Config& config);

// smtpd_tls_* of a snapshot. Level: smtpd_tls_security_level, or the obsolete
// smtpd_use_tls/smtpd_enforce_tls when it is empty. Protocols: smtpd_tls_mandatory_protocols
// at "encrypt", smtpd_tls_protocols otherwise.
absl::StatusOr<ServerOptions> ServerOptionsFromConfig(const config::Config& config);

// Postfix's fingerprint of `der` with `digest` ("md5", "sha1", "sha256", "sha512"):
// upper-case hex pairs joined by ':' ("AB:CD:..."). Empty for an unknown digest name.
std::string Fingerprint(std::string_view digest, const unsigned char* der, size_t size);

// For the context's verify callback: `app_data` is the WOLFSSL's app data, the connection's
// TlsTransform (or null), whose client certificate did not verify. Defined in
// tls_transform.cc.
void NoteUntrustedPeer(void* app_data);

class ServerContext {
 public:
  // Loads the certificates and keys: an error (with the file name) if any is unreadable,
  // or the key does not match the certificate. REQUIRES: options.level != kNone.
  static absl::StatusOr<std::shared_ptr<const ServerContext>> Create(ServerOptions options);
  ~ServerContext();
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  const ServerOptions& options() const { return options_; }
  // The WOLFSSL_CTX* (void* keeps wolfSSL out of this header). wolfSSL_new() on it is
  // thread-safe.
  void* native() const { return ctx_; }

 private:
  explicit ServerContext(ServerOptions options) : options_(std::move(options)) {}
  ServerOptions options_;
  void* ctx_ = nullptr;
};

}  // namespace moat::tls
