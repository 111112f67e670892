// tls/client_context.cc: see client_context.h. Owner: "outbound-tls".
#include "tls/client_context.h"

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
// clang-format on

#include <arpa/inet.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

#include "tls/server_context.h"

namespace moat::tls {
namespace {

// Every certificate is let through the handshake; a chain that does not verify against the
// trust anchors marks the connection's TlsTransform untrusted (wolfSSL calls this with
// preverify = 0 for each failure). The security level decides after the handshake.
int ClientVerify(int preverify, WOLFSSL_X509_STORE_CTX* store) {
  if (preverify == 0) {
    auto* ssl = static_cast<WOLFSSL*>(
        wolfSSL_X509_STORE_CTX_get_ex_data(store, wolfSSL_get_ex_data_X509_STORE_CTX_idx()));
    if (ssl != nullptr) {
      NoteUntrustedPeer(wolfSSL_get_app_data(ssl));
    }
  }
  return 1;
}

bool IsAddressLiteral(const std::string& name) {
  unsigned char buffer[16];
  return inet_pton(AF_INET, name.c_str(), buffer) == 1 ||
         inet_pton(AF_INET6, name.c_str(), buffer) == 1;
}

}  // namespace

std::string_view ClientLevelName(ClientLevel level) {
  switch (level) {
    case ClientLevel::kNone:
      return "none";
    case ClientLevel::kMay:
      return "may";
    case ClientLevel::kEncrypt:
      return "encrypt";
    case ClientLevel::kVerify:
      return "verify";
  }
  return "none";
}

absl::StatusOr<ClientOptions> ClientOptionsFromConfig(const config::Config& config) {
  ClientOptions o;
  const std::string& level = config.String("smtp_tls_security_level");
  if (level.empty()) {
    // Postfix's obsolete pair, used only when the level is not set.
    o.level = config.Bool("smtp_enforce_tls") ? ClientLevel::kEncrypt
              : config.Bool("smtp_use_tls")   ? ClientLevel::kMay
                                              : ClientLevel::kNone;
  } else if (level == "none") {
    o.level = ClientLevel::kNone;
  } else if (level == "may") {
    o.level = ClientLevel::kMay;
  } else if (level == "encrypt") {
    o.level = ClientLevel::kEncrypt;
  } else if (level == "verify") {
    o.level = ClientLevel::kVerify;
  } else {
    return absl::InvalidArgumentError(absl::StrFormat(
        "smtp_tls_security_level = %s is not supported by moat (none, may, encrypt, verify)",
        level));
  }
  o.ca_file = config.String("smtp_tls_CAfile");
  o.ca_path = config.String("smtp_tls_CApath");
  const char* protocols_name = o.level >= ClientLevel::kEncrypt ? "smtp_tls_mandatory_protocols"
                                                                : "smtp_tls_protocols";
  absl::Status s = ParseProtocols(config.List(protocols_name), &o.min_version, &o.max_version);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %s", protocols_name, s.message()));
  }
  if (o.level == ClientLevel::kVerify && o.ca_file.empty() && o.ca_path.empty()) {
    return absl::InvalidArgumentError(
        "smtp_tls_security_level = verify needs smtp_tls_CAfile or smtp_tls_CApath");
  }
  return o;
}

ClientContext::~ClientContext() {
  if (ctx_ != nullptr) {
    wolfSSL_CTX_free(static_cast<WOLFSSL_CTX*>(ctx_));
  }
}

absl::StatusOr<std::shared_ptr<const ClientContext>> ClientContext::Create(ClientOptions options) {
  static const bool initialised = [] {
    wolfSSL_Init();
    return true;
  }();
  (void)initialised;
  if (options.level == ClientLevel::kNone) {
    return absl::InvalidArgumentError("no client TLS context at smtp_tls_security_level = none");
  }
  if (options.cipher_list.empty()) {
    options.cipher_list = kDefaultCipherList;
  }
  std::shared_ptr<ClientContext> context(new ClientContext(std::move(options)));
  const ClientOptions& o = context->options_;
  WOLFSSL_METHOD* method = o.max_version == 2   ? wolfTLSv1_2_client_method()
                           : o.min_version == 3 ? wolfTLSv1_3_client_method()
                                                : wolfSSLv23_client_method();
  WOLFSSL_CTX* ctx = wolfSSL_CTX_new(method);
  if (ctx == nullptr) {
    return absl::InternalError("wolfSSL_CTX_new failed");
  }
  context->ctx_ = ctx;
  if (o.min_version == 2 && o.max_version == 3 &&
      wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
    return absl::InternalError("cannot set the minimum TLS version");
  }
  if (wolfSSL_CTX_set_cipher_list(ctx, o.cipher_list.c_str()) != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(absl::StrFormat("bad cipher list \"%s\"", o.cipher_list));
  }
  if (!o.ca_file.empty() &&
      wolfSSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrFormat("smtp_tls_CAfile %s: no certificate could be loaded", o.ca_file));
  }
  if (!o.ca_path.empty() &&
      wolfSSL_CTX_load_verify_locations(ctx, nullptr, o.ca_path.c_str()) != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrFormat("smtp_tls_CApath %s: no certificate could be loaded", o.ca_path));
  }
  wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, ClientVerify);
  // Sessions are kept outside wolfSSL (ClientSessionCache, one per shard): its internal cache
  // is off. Session tickets are asked for in TLS 1.2 too (TLS 1.3 has them anyway).
  wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
  if (wolfSSL_CTX_UseSessionTicket(ctx) != WOLFSSL_SUCCESS) {
    return absl::InternalError("wolfSSL_CTX_UseSessionTicket failed");
  }
  return std::shared_ptr<const ClientContext>(std::move(context));
}

bool CertificateMatchesName(void* x509, std::string_view name) {
  auto* cert = static_cast<WOLFSSL_X509*>(x509);
  if (cert == nullptr || name.empty()) {
    return false;
  }
  const std::string text(name);
  if (IsAddressLiteral(text)) {
    return wolfSSL_X509_check_ip_asc(cert, text.c_str(), 0) == WOLFSSL_SUCCESS;
  }
  return wolfSSL_X509_check_host(cert, text.c_str(), text.size(), 0, nullptr) == WOLFSSL_SUCCESS;
}

}  // namespace moat::tls
