// bench/loadgen/tls_client.cc: see tls_client.h.
#include "bench/loadgen/tls_client.h"

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
// clang-format on

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

#include "core/log/assert.h"
#include "tls/server_context.h"

namespace moat::loadgen {
namespace {

// One TLS record's worth of plaintext per wolfSSL_read/write call.
constexpr int kRecordBytes = 16384;
// Compact the raw input once this much of it has been read.
constexpr size_t kCompactBytes = 16384;

int RecvTrampoline(WOLFSSL* /*ssl*/, char* buffer, int size, void* user) {
  return static_cast<TlsClient*>(user)->ReadRaw(buffer, size);
}

int SendTrampoline(WOLFSSL* /*ssl*/, char* buffer, int size, void* user) {
  return static_cast<TlsClient*>(user)->WriteRaw(buffer, size);
}

}  // namespace

absl::StatusOr<std::unique_ptr<TlsClientContext>> TlsClientContext::Create(bool resume) {
  WOLFSSL_CTX* ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
  if (ctx == nullptr) {
    return absl::InternalError("wolfSSL_CTX_new failed");
  }
  std::unique_ptr<TlsClientContext> context(new TlsClientContext(ctx, resume));
  // Never below TLS 1.2; always an explicit list (DEPENDENCIES.md section 4: the library
  // would otherwise offer NULL and integrity-only suites).
  if (wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
    return absl::InternalError("wolfSSL_CTX_SetMinVersion(TLS 1.2) failed");
  }
  if (wolfSSL_CTX_set_cipher_list(ctx, tls::kDefaultCipherList) != WOLFSSL_SUCCESS) {
    return absl::InternalError("wolfSSL_CTX_set_cipher_list failed");
  }
  wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, nullptr);
  if (resume && wolfSSL_CTX_UseSessionTicket(ctx) != WOLFSSL_SUCCESS) {
    return absl::InternalError("wolfSSL_CTX_UseSessionTicket failed");
  }
  wolfSSL_CTX_SetIORecv(ctx, RecvTrampoline);
  wolfSSL_CTX_SetIOSend(ctx, SendTrampoline);
  return context;
}

TlsClientContext::~TlsClientContext() {
  if (session_ != nullptr) {
    wolfSSL_SESSION_free(static_cast<WOLFSSL_SESSION*>(session_));
  }
  wolfSSL_CTX_free(static_cast<WOLFSSL_CTX*>(ctx_));
}

void TlsClientContext::KeepSession(void* session) {
  if (session_ != nullptr) {
    wolfSSL_SESSION_free(static_cast<WOLFSSL_SESSION*>(session_));
  }
  session_ = session;
}

TlsClient::TlsClient(TlsClientContext* context) : context_(context) {
  WOLFSSL* ssl = wolfSSL_new(static_cast<WOLFSSL_CTX*>(context_->native()));
  MOAT_CHECK(ssl != nullptr);  // out of memory
  wolfSSL_SetIOReadCtx(ssl, this);
  wolfSSL_SetIOWriteCtx(ssl, this);
  if (context_->resume() && context_->session() != nullptr) {
    // A session the server no longer honours only costs a full handshake.
    wolfSSL_set_session(ssl, static_cast<WOLFSSL_SESSION*>(context_->session()));
  }
  ssl_ = ssl;
}

TlsClient::~TlsClient() {
  auto* ssl = static_cast<WOLFSSL*>(ssl_);
  // Only a full handshake's session is kept: with Debian's wolfSSL 5.5.4, a session taken from a
  // resumed TLS 1.3 connection resumes again against wolfSSL but OpenSSL servers (Postfix)
  // answer it with a fatal alert (seen in bench/compare). Re-offering the first ticket is fine
  // for both (stateless tickets are not single-use).
  if (context_->resume() && handshake_done_ && !resumed_) {
    WOLFSSL_SESSION* session = wolfSSL_get1_session(ssl);
    if (session != nullptr && wolfSSL_SESSION_has_ticket(session) == 1) {
      context_->KeepSession(session);
    } else if (session != nullptr) {
      wolfSSL_SESSION_free(session);
    }
  }
  wolfSSL_free(ssl);
}

int TlsClient::ReadRaw(char* buffer, int size) {
  const size_t available = in_.size() - in_offset_;
  if (available == 0) {
    return WOLFSSL_CBIO_ERR_WANT_READ;
  }
  const size_t n = std::min(available, static_cast<size_t>(size));
  std::memcpy(buffer, in_.data() + in_offset_, n);
  in_offset_ += n;
  return static_cast<int>(n);
}

int TlsClient::WriteRaw(const char* buffer, int size) {
  if (out_ == nullptr) {
    return WOLFSSL_CBIO_ERR_GENERAL;  // wolfSSL writes only inside our calls
  }
  out_->append(buffer, static_cast<size_t>(size));
  return size;
}

bool TlsClient::Fail(const char* what, int code) {
  char text[WOLFSSL_MAX_ERROR_SZ];
  wolfSSL_ERR_error_string_n(static_cast<unsigned long>(code), text, sizeof(text));
  error_ = absl::StrFormat("%s: %s (%d)", what, text, code);
  return false;
}

bool TlsClient::Handshake() {
  auto* ssl = static_cast<WOLFSSL*>(ssl_);
  const int r = wolfSSL_connect(ssl);
  if (r == WOLFSSL_SUCCESS) {
    handshake_done_ = true;
    handshake_completed_ = true;
    resumed_ = wolfSSL_session_reused(ssl) != 0;
    protocol_ = wolfSSL_get_version(ssl);
    cipher_ = wolfSSL_get_cipher_name(ssl);
    return true;
  }
  const int error = wolfSSL_get_error(ssl, r);
  if (error == WOLFSSL_ERROR_WANT_READ || error == WOLFSSL_ERROR_WANT_WRITE) {
    return true;
  }
  return Fail("TLS handshake failed", error);
}

bool TlsClient::Start(std::string* raw_out) {
  out_ = raw_out;
  const bool ok = Handshake();
  out_ = nullptr;
  return ok;
}

bool TlsClient::Decode(std::span<const char> raw, std::string* plain, std::string* raw_out) {
  if (peer_closed_) {
    return true;  // after close_notify: ignore the rest until the TCP EOF
  }
  auto* ssl = static_cast<WOLFSSL*>(ssl_);
  in_.append(raw.data(), raw.size());
  out_ = raw_out;
  bool ok = true;
  if (!handshake_done_) {
    ok = Handshake();
  }
  if (ok && handshake_done_) {
    char buffer[kRecordBytes];
    // Bounded: each read consumes input or ends the loop.
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

bool TlsClient::Encode(std::span<const char> plain, std::string* raw_out) {
  if (plain.empty()) {
    return true;
  }
  MOAT_CHECK(handshake_done_);  // the SMTP client is silent until the handshake completes
  auto* ssl = static_cast<WOLFSSL*>(ssl_);
  out_ = raw_out;
  bool ok = true;
  size_t offset = 0;
  while (offset < plain.size()) {
    const int chunk = static_cast<int>(std::min<size_t>(plain.size() - offset, kRecordBytes));
    const int n = wolfSSL_write(ssl, plain.data() + offset, chunk);
    if (n <= 0) {
      ok = Fail("TLS write failed", wolfSSL_get_error(ssl, n));
      break;
    }
    offset += static_cast<size_t>(n);
  }
  out_ = nullptr;
  return ok;
}

bool TlsClient::TakeHandshakeCompleted() {
  const bool completed = handshake_completed_;
  handshake_completed_ = false;
  return completed;
}

}  // namespace moat::loadgen
