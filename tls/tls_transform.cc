// tls/tls_transform.cc: see tls_transform.h.
#include "tls/tls_transform.h"

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/ecc.h>
// clang-format on

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"

#include "core/log/assert.h"

namespace moat::tls {
namespace {

// One TLS record's worth of plaintext per wolfSSL_write/read call.
constexpr int kRecordBytes = 16384;
// Compact the raw input buffer once this much of it has been read.
constexpr size_t kCompactBytes = 16384;

// Debian's wolfSSL is built with FP_ECC: every thread that does ECC math keeps a
// thread-local fixed-point cache (~800 KiB after a few handshakes) that only
// wc_ecc_fp_free() on that thread releases. One of these per shard thread does it at
// thread exit.
struct EccCacheReleaser {
  ~EccCacheReleaser() { wc_ecc_fp_free(); }
};
void ReleaseEccCacheAtThreadExit() {
  thread_local EccCacheReleaser releaser;
  (void)releaser;
}

int RecvTrampoline(WOLFSSL* /*ssl*/, char* buffer, int size, void* user) {
  return static_cast<TlsTransform*>(user)->ReadRaw(buffer, size);
}

int SendTrampoline(WOLFSSL* /*ssl*/, char* buffer, int size, void* user) {
  return static_cast<TlsTransform*>(user)->WriteRaw(buffer, size);
}

// The CN of `name` ("" if none), at most 255 bytes.
std::string CommonName(WOLFSSL_X509_NAME* name) {
  char text[256] = {};
  if (name == nullptr ||
      wolfSSL_X509_NAME_get_text_by_NID(name, NID_commonName, text, sizeof(text)) <= 0) {
    return "";
  }
  return text;
}

}  // namespace

void NoteUntrustedPeer(void* app_data) {
  if (app_data != nullptr) {
    static_cast<TlsTransform*>(app_data)->NoteUntrusted();
  }
}

TlsTransform::TlsTransform(std::shared_ptr<const ServerContext> context,
                           HandshakeCallback on_handshake)
    : context_(std::move(context)), on_handshake_(std::move(on_handshake)) {
  Init(context_->native());
}

TlsTransform::TlsTransform(std::shared_ptr<const ClientContext> context, std::string server_name,
                           HandshakeCallback on_handshake, ClientSessionCache* sessions,
                           std::string session_key)
    : client_context_(std::move(context)),
      server_name_(std::move(server_name)),
      sessions_(sessions),
      session_key_(std::move(session_key)),
      on_handshake_(std::move(on_handshake)) {
  Init(client_context_->native());
  if (sessions_ != nullptr) {
    if (void* session = sessions_->Find(session_key_); session != nullptr) {
      // A session the server no longer honours only costs a full handshake.
      wolfSSL_set_session(static_cast<WOLFSSL*>(ssl_), static_cast<WOLFSSL_SESSION*>(session));
    }
  }
  unsigned char address[16];
  if (!server_name_.empty() && inet_pton(AF_INET, server_name_.c_str(), address) != 1 &&
      inet_pton(AF_INET6, server_name_.c_str(), address) != 1) {
    // SNI: the next-hop host name, never an address literal (RFC 6066).
    wolfSSL_UseSNI(static_cast<WOLFSSL*>(ssl_), WOLFSSL_SNI_HOST_NAME, server_name_.data(),
                   static_cast<unsigned short>(server_name_.size()));
  }
}

void TlsTransform::Init(void* native) {
  ReleaseEccCacheAtThreadExit();
  auto* ctx = static_cast<WOLFSSL_CTX*>(native);
  WOLFSSL* ssl = wolfSSL_new(ctx);
  MOAT_CHECK(ssl != nullptr);  // out of memory
  wolfSSL_SSLSetIORecv(ssl, RecvTrampoline);
  wolfSSL_SSLSetIOSend(ssl, SendTrampoline);
  wolfSSL_SetIOReadCtx(ssl, this);
  wolfSSL_SetIOWriteCtx(ssl, this);
  wolfSSL_set_app_data(ssl, this);  // for the verify callback (NoteUntrustedPeer)
  ssl_ = ssl;
}

TlsTransform::~TlsTransform() {
  auto* ssl = static_cast<WOLFSSL*>(ssl_);
  if (sessions_ != nullptr && handshake_done_ && !info_.resumed) {
    // Taken at the end: a TLS 1.3 server sends its ticket after the handshake.
    WOLFSSL_SESSION* session = wolfSSL_get1_session(ssl);
    if (session != nullptr && wolfSSL_SESSION_has_ticket(session) == 1) {
      sessions_->Keep(session_key_, session);
    } else if (session != nullptr) {
      wolfSSL_SESSION_free(session);
    }
  }
  wolfSSL_free(ssl);
}

int TlsTransform::ReadRaw(char* buffer, int size) {
  const size_t available = in_.size() - in_offset_;
  if (available == 0) {
    return WOLFSSL_CBIO_ERR_WANT_READ;
  }
  const size_t n = std::min(available, static_cast<size_t>(size));
  std::memcpy(buffer, in_.data() + in_offset_, n);
  in_offset_ += n;
  return static_cast<int>(n);
}

int TlsTransform::WriteRaw(const char* buffer, int size) {
  if (out_ == nullptr) {
    // A write outside Decode/Encode cannot happen (wolfSSL only writes from calls we make).
    return WOLFSSL_CBIO_ERR_GENERAL;
  }
  out_->append(buffer, static_cast<size_t>(size));
  return size;
}

bool TlsTransform::Fail(const char* what, int code) {
  char text[WOLFSSL_MAX_ERROR_SZ];
  wolfSSL_ERR_error_string_n(static_cast<unsigned long>(code), text, sizeof(text));
  error_ = absl::StrFormat("%s: %s (%d)", what, text, code);
  return false;
}

void TlsTransform::CollectInfo() {
  auto* ssl = static_cast<WOLFSSL*>(ssl_);
  info_.protocol = wolfSSL_get_version(ssl);
  const int suite = wolfSSL_get_current_cipher_suite(ssl);
  const char* iana = wolfSSL_get_cipher_name_iana_from_suite(static_cast<unsigned char>(suite >> 8),
                                                             static_cast<unsigned char>(suite));
  // The names Postfix logs (OpenSSL's): for TLS 1.3 they are the IANA names, for TLS 1.2
  // OpenSSL's own ("ECDHE-ECDSA-CHACHA20-POLY1305"), which wolfSSL's internal names equal.
  if (info_.protocol == "TLSv1.3" && iana != nullptr) {
    info_.cipher = iana;
  } else {
    info_.cipher = wolfSSL_get_cipher_name(ssl);
  }
  int alg_bits = 0;
  info_.cipher_bits = wolfSSL_CIPHER_get_bits(wolfSSL_get_current_cipher(ssl), &alg_bits);
  // wolfSSL leaves the algorithm's bits at 0; for these AEAD suites they equal the key's.
  info_.algorithm_bits = alg_bits > 0 ? alg_bits : info_.cipher_bits;
  info_.resumed = wolfSSL_session_reused(ssl) != 0;
  const bool client = client_context_ != nullptr;
  const std::string digest = client ? "sha256" : context_->options().fingerprint_digest;
  info_.client_cert_requested = !client && context_->options().ask_client_cert;
  WOLFSSL_X509* peer = wolfSSL_get_peer_certificate(ssl);
  if (peer != nullptr) {
    int der_size = 0;
    const unsigned char* der = wolfSSL_X509_get_der(peer, &der_size);
    if (der != nullptr && der_size > 0) {
      info_.peer_fingerprint =
          Fingerprint(digest, der, static_cast<size_t>(der_size));
    }
    // The DER SubjectPublicKeyInfo, as Postfix's i2d_X509_PUBKEY (size asked first).
    int key_size = 0;
    if (wolfSSL_X509_get_pubkey_buffer(peer, nullptr, &key_size) == WOLFSSL_SUCCESS &&
        key_size > 0) {
      std::string key(static_cast<size_t>(key_size), '\0');
      if (wolfSSL_X509_get_pubkey_buffer(peer, reinterpret_cast<unsigned char*>(key.data()),
                                         &key_size) == WOLFSSL_SUCCESS) {
        info_.peer_pkey_fingerprint =
            Fingerprint(digest,
                        reinterpret_cast<const unsigned char*>(key.data()),
                        static_cast<size_t>(key_size));
      }
    }
    info_.peer_cn = CommonName(wolfSSL_X509_get_subject_name(peer));
    info_.issuer_cn = CommonName(wolfSSL_X509_get_issuer_name(peer));
    // Trusted only against an operator's CA file, and only when no check failed. Server
    // role: a resumed session runs no verification (wolfSSL restores the certificate from
    // the ticket, not the verdict): not trusted, fail closed; its fingerprints stay valid
    // (the ticket is sealed with our keys after a handshake in which the client proved
    // its key). inbound-tls engineer.
    info_.peer_verified = client ? client_context_->has_trust_anchors() && !peer_untrusted_
                                 : !context_->options().ca_file.empty() && !peer_untrusted_ &&
                                       !info_.resumed;
    info_.peer_name_matched = client && CertificateMatchesName(peer, server_name_);
    wolfSSL_X509_free(peer);
  }
}

bool TlsTransform::Decode(std::span<const char> raw, std::string* plain, std::string* raw_out) {
  auto* ssl = static_cast<WOLFSSL*>(ssl_);
  if (peer_closed_) {
    return true;  // after close_notify: ignore the rest until the TCP EOF
  }
  in_.append(raw.data(), raw.size());
  out_ = raw_out;
  in_decode_ = true;
  bool ok = true;
  bool just_completed = false;
  if (!handshake_done_) {
    const int r = client_context_ != nullptr ? wolfSSL_connect(ssl) : wolfSSL_accept(ssl);
    if (r == WOLFSSL_SUCCESS) {
      handshake_done_ = true;
      just_completed = true;
      CollectInfo();
    } else {
      const int error = wolfSSL_get_error(ssl, r);
      if (error != WOLFSSL_ERROR_WANT_READ && error != WOLFSSL_ERROR_WANT_WRITE) {
        ok = Fail("TLS handshake failed", error);
      }
    }
  }
  if (ok && handshake_done_) {
    // Bounded: each read consumes input bytes or ends the loop.
    char buffer[kRecordBytes];
    for (int i = 0; i < 1 << 20; ++i) {
      const int n = wolfSSL_read(ssl, buffer, sizeof(buffer));
      if (n > 0) {
        plain->append(buffer, static_cast<size_t>(n));
        continue;
      }
      const int error = wolfSSL_get_error(ssl, n);
      if (error == WOLFSSL_ERROR_ZERO_RETURN) {
        peer_closed_ = true;
      } else if (error != WOLFSSL_ERROR_WANT_READ && error != WOLFSSL_ERROR_WANT_WRITE) {
        ok = Fail("TLS read failed", error);
      }
      break;
    }
  }
  if (ok && just_completed && on_handshake_) {
    on_handshake_(info_);  // may call Encode: deferred, flushed below
  }
  in_decode_ = false;
  if (ok && handshake_done_) {
    ok = FlushDeferred(raw_out);
  }
  out_ = nullptr;
  if (in_offset_ == in_.size()) {
    in_.clear();
    in_offset_ = 0;
  } else if (in_offset_ >= kCompactBytes) {
    in_.erase(0, in_offset_);
    in_offset_ = 0;
  }
  return ok;
}

bool TlsTransform::FlushDeferred(std::string* raw_out) {
  if (deferred_.empty()) {
    return true;
  }
  std::string pending = std::move(deferred_);
  deferred_.clear();
  return Encode({pending.data(), pending.size()}, raw_out);
}

bool TlsTransform::Encode(std::span<const char> plain, std::string* raw_out) {
  if (in_decode_ || !handshake_done_) {
    deferred_.append(plain.data(), plain.size());
    return true;
  }
  auto* ssl = static_cast<WOLFSSL*>(ssl_);
  out_ = raw_out;
  size_t offset = 0;
  bool ok = true;
  while (offset < plain.size()) {
    const int chunk = static_cast<int>(std::min<size_t>(plain.size() - offset, kRecordBytes));
    const int n = wolfSSL_write(ssl, plain.data() + offset, chunk);
    if (n <= 0) {
      ok = Fail("TLS write failed", wolfSSL_get_error(ssl, n));
      break;
    }
    offset += static_cast<size_t>(n);
  }
  if (ok && close_notify_requested_ && !close_notify_sent_) {
    close_notify_sent_ = true;
    wolfSSL_shutdown(ssl);  // sends the alert; the peer's answer is not awaited
  }
  out_ = nullptr;
  return ok;
}

}  // namespace moat::tls
