// tls/server_context.cc: see server_context.h.
#include "tls/server_context.h"

// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/openssl/evp.h>
#include <wolfssl/wolfcrypt/ecc.h>
// clang-format on

#include <algorithm>
#include <cstring>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace moat::tls {

const char kDefaultCipherList[] =
    "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";

namespace {

// Protocol names in Postfix's order; index + 0 = SSLv2 ... 5 = TLSv1.3.
constexpr std::string_view kProtocols[] = {"SSLv2",   "SSLv3",   "TLSv1",
                                           "TLSv1.1", "TLSv1.2", "TLSv1.3"};
constexpr int kTls12 = 4;  // index of TLSv1.2
constexpr int kTls13 = 5;

int ProtocolIndex(std::string_view name) {
  for (int i = 0; i < 6; ++i) {
    if (kProtocols[i] == name) {
      return i;
    }
  }
  return -1;
}

// Memory pipes for the self-test handshake.
struct Pipe {
  std::string bytes;
};
struct PipeEnds {
  Pipe* in;
  Pipe* out;
};
int PipeRecv(WOLFSSL* /*ssl*/, char* buffer, int size, void* user) {
  Pipe* in = static_cast<PipeEnds*>(user)->in;
  if (in->bytes.empty()) {
    return WOLFSSL_CBIO_ERR_WANT_READ;
  }
  const size_t n = std::min(in->bytes.size(), static_cast<size_t>(size));
  std::memcpy(buffer, in->bytes.data(), n);
  in->bytes.erase(0, n);
  return static_cast<int>(n);
}
int PipeSend(WOLFSSL* /*ssl*/, char* buffer, int size, void* user) {
  static_cast<PipeEnds*>(user)->out->bytes.append(buffer, static_cast<size_t>(size));
  return size;
}

// Runs one handshake of `server_ctx` against a throw-away client in memory. This proves the
// private key matches the certificate (the client checks the server's signature made with
// the key against the certificate's public key): wolfSSL_CTX_check_private_key does not
// compare ECDSA keys in this build (verified: a foreign P-256 key passes it).
absl::Status SelfTestHandshake(WOLFSSL_CTX* server_ctx, int max_version) {
  WOLFSSL_CTX* client_ctx =
      wolfSSL_CTX_new(max_version == 2 ? wolfTLSv1_2_client_method() : wolfSSLv23_client_method());
  if (client_ctx == nullptr) {
    return absl::InternalError("wolfSSL_CTX_new failed");
  }
  wolfSSL_CTX_set_verify(client_ctx, WOLFSSL_VERIFY_NONE, nullptr);
  WOLFSSL* client = wolfSSL_new(client_ctx);
  WOLFSSL* server = wolfSSL_new(server_ctx);
  Pipe to_server;
  Pipe to_client;
  PipeEnds client_ends{&to_client, &to_server};
  PipeEnds server_ends{&to_server, &to_client};
  absl::Status status = absl::InternalError("self-test handshake did not finish");
  if (client != nullptr && server != nullptr) {
    for (WOLFSSL* ssl : {client, server}) {
      wolfSSL_SSLSetIORecv(ssl, PipeRecv);
      wolfSSL_SSLSetIOSend(ssl, PipeSend);
    }
    wolfSSL_SetIOReadCtx(client, &client_ends);
    wolfSSL_SetIOWriteCtx(client, &client_ends);
    wolfSSL_SetIOReadCtx(server, &server_ends);
    wolfSSL_SetIOWriteCtx(server, &server_ends);
    bool client_done = false;
    bool server_done = false;
    for (int round = 0; round < 20 && !(client_done && server_done); ++round) {
      if (!client_done) {
        const int r = wolfSSL_connect(client);
        client_done = r == WOLFSSL_SUCCESS;
        if (!client_done && wolfSSL_get_error(client, r) != WOLFSSL_ERROR_WANT_READ) {
          status = absl::InvalidArgumentError(
              "the private key does not match the certificate (self-test handshake failed)");
          break;
        }
      }
      if (!server_done) {
        const int r = wolfSSL_accept(server);
        server_done = r == WOLFSSL_SUCCESS;
        if (!server_done && wolfSSL_get_error(server, r) != WOLFSSL_ERROR_WANT_READ) {
          status = absl::InvalidArgumentError("self-test handshake failed on the server side");
          break;
        }
      }
    }
    if (client_done && server_done) {
      status = absl::OkStatus();
    }
  }
  wolfSSL_free(server);
  wolfSSL_free(client);
  wolfSSL_CTX_free(client_ctx);
  // FP_ECC build: the ECC math above filled this (control) thread's fixed-point cache.
  wc_ecc_fp_free();
  return status;
}

// smtpd_tls_ask_ccert: every certificate is accepted (asked for, never required); a chain
// that does not verify against smtpd_tls_CAfile marks the connection's TlsTransform
// untrusted (wolfSSL calls this with preverify = 0 for each failure).
int AskCcertVerify(int preverify, WOLFSSL_X509_STORE_CTX* store) {
  if (preverify == 0) {
    auto* ssl = static_cast<WOLFSSL*>(
        wolfSSL_X509_STORE_CTX_get_ex_data(store, wolfSSL_get_ex_data_X509_STORE_CTX_idx()));
    if (ssl != nullptr) {
      NoteUntrustedPeer(wolfSSL_get_app_data(ssl));
    }
  }
  return 1;
}

}  // namespace

std::string Fingerprint(std::string_view digest, const unsigned char* der, size_t size) {
  const WOLFSSL_EVP_MD* md = digest == "md5"      ? wolfSSL_EVP_md5()
                             : digest == "sha1"   ? wolfSSL_EVP_sha1()
                             : digest == "sha256" ? wolfSSL_EVP_sha256()
                             : digest == "sha512" ? wolfSSL_EVP_sha512()
                                                  : nullptr;
  unsigned char out[64];
  unsigned int length = sizeof(out);
  if (md == nullptr || der == nullptr ||
      wolfSSL_EVP_Digest(der, static_cast<int>(size), out, &length, md, nullptr) !=
          WOLFSSL_SUCCESS) {
    return "";
  }
  std::string text;
  text.reserve(length * 3);
  for (unsigned int i = 0; i < length; ++i) {
    absl::StrAppendFormat(&text, "%s%02X", i == 0 ? "" : ":", out[i]);
  }
  return text;
}

absl::Status ParseProtocols(const std::vector<std::string>& words, int* min_version,
                            int* max_version) {
  bool allowed[6] = {true, true, true, true, true, true};
  bool any_positive = false;
  bool positive[6] = {};
  for (std::string word : words) {
    // Lists may arrive as "!SSLv2:!SSLv3" too.
    size_t start = 0;
    while (start <= word.size()) {
      size_t end = word.find_first_of(":, \t", start);
      if (end == std::string::npos) {
        end = word.size();
      }
      std::string_view w(word.data() + start, end - start);
      start = end + 1;
      if (w.empty()) {
        continue;
      }
      int index;
      if (w.substr(0, 2) == ">=" || w.substr(0, 2) == "<=") {
        index = ProtocolIndex(w.substr(2));
        if (index < 0) {
          return absl::InvalidArgumentError(absl::StrFormat("unknown TLS protocol \"%s\"", w));
        }
        for (int i = 0; i < 6; ++i) {
          if (w[0] == '>' ? i < index : i > index) {
            allowed[i] = false;
          }
        }
        continue;
      }
      const bool negated = w[0] == '!';
      index = ProtocolIndex(negated ? w.substr(1) : w);
      if (index < 0) {
        return absl::InvalidArgumentError(absl::StrFormat("unknown TLS protocol \"%s\"", w));
      }
      if (negated) {
        allowed[index] = false;
      } else {
        positive[index] = true;
        any_positive = true;
      }
    }
  }
  if (any_positive) {
    for (int i = 0; i < 6; ++i) {
      allowed[i] = allowed[i] && positive[i];
    }
  }
  // Nothing below TLS 1.2, whatever the list says.
  const bool tls12 = allowed[kTls12];
  const bool tls13 = allowed[kTls13];
  if (!tls12 && !tls13) {
    return absl::InvalidArgumentError("no protocol of TLSv1.2 or TLSv1.3 is enabled");
  }
  *min_version = tls12 ? 2 : 3;
  *max_version = tls13 ? 3 : 2;
  return absl::OkStatus();
}

SecurityLevel SecurityLevelFromConfig(const config::Config& config) {
  const std::string& level = config.String("smtpd_tls_security_level");
  if (level == "may") {
    return SecurityLevel::kMay;
  }
  if (level == "encrypt") {
    return SecurityLevel::kEncrypt;
  }
  if (level.empty()) {
    // Postfix's obsolete pair, used only when the level is not set.
    return config.Bool("smtpd_enforce_tls") ? SecurityLevel::kEncrypt
           : config.Bool("smtpd_use_tls")   ? SecurityLevel::kMay
                                            : SecurityLevel::kNone;
  }
  return SecurityLevel::kNone;
}

absl::StatusOr<ServerOptions> ServerOptionsFromConfig(const config::Config& config) {
  ServerOptions o;
  o.level = SecurityLevelFromConfig(config);
  o.cert_file = config.String("smtpd_tls_cert_file");
  o.key_file = config.String("smtpd_tls_key_file");
  o.chain_files = config.List("smtpd_tls_chain_files");
  o.ca_file = config.String("smtpd_tls_CAfile");
  o.ask_client_cert = config.Bool("smtpd_tls_ask_ccert");
  o.fingerprint_digest = config.String("smtpd_tls_fingerprint_digest");
  o.wrapper_mode = config.Bool("smtpd_tls_wrappermode");
  o.received_header = config.Bool("smtpd_tls_received_header");
  const char* protocols_name =
      o.level == SecurityLevel::kEncrypt ? "smtpd_tls_mandatory_protocols" : "smtpd_tls_protocols";
  absl::Status s = ParseProtocols(config.List(protocols_name), &o.min_version, &o.max_version);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %s", protocols_name, s.message()));
  }
  if (o.level != SecurityLevel::kNone && o.cert_file.empty() && o.chain_files.empty()) {
    return absl::InvalidArgumentError(
        "smtpd_tls_security_level is set but neither smtpd_tls_cert_file nor "
        "smtpd_tls_chain_files is");
  }
  return o;
}

ServerContext::~ServerContext() {
  if (ctx_ != nullptr) {
    wolfSSL_CTX_free(static_cast<WOLFSSL_CTX*>(ctx_));
  }
}

absl::StatusOr<std::shared_ptr<const ServerContext>> ServerContext::Create(ServerOptions options) {
  static const bool initialised = [] {
    wolfSSL_Init();
    return true;
  }();
  (void)initialised;
  if (options.ticket_keys == nullptr) {
    options.ticket_keys = TicketKeys::Process();
  }
  if (options.cipher_list.empty()) {
    options.cipher_list = kDefaultCipherList;
  }
  if (options.key_file.empty()) {
    options.key_file = options.cert_file;
  }
  std::shared_ptr<ServerContext> context(new ServerContext(std::move(options)));
  const ServerOptions& o = context->options_;

  WOLFSSL_METHOD* method = o.max_version == 2   ? wolfTLSv1_2_server_method()
                           : o.min_version == 3 ? wolfTLSv1_3_server_method()
                                                : wolfSSLv23_server_method();
  WOLFSSL_CTX* ctx = wolfSSL_CTX_new(method);
  if (ctx == nullptr) {
    return absl::InternalError("wolfSSL_CTX_new failed");
  }
  context->ctx_ = ctx;
  if (o.min_version == 2 && o.max_version == 3 &&
      wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
    return absl::InternalError("cannot set the minimum protocol TLSv1.2");
  }
  // Always explicit: the build also has NULL/RC4/3DES/anon and TLS13-SHA256-SHA256 suites.
  if (wolfSSL_CTX_set_cipher_list(ctx, o.cipher_list.c_str()) != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(absl::StrFormat("bad cipher list \"%s\"", o.cipher_list));
  }
  if (!o.chain_files.empty()) {
    // Postfix: each file holds a private key followed by its certificate chain. wolfSSL
    // loads one chain per context: the first file (an RSA + ECDSA pair is not supported).
    const std::string& file = o.chain_files.front();
    if (wolfSSL_CTX_use_PrivateKey_file(ctx, file.c_str(), WOLFSSL_FILETYPE_PEM) !=
        WOLFSSL_SUCCESS) {
      return absl::InvalidArgumentError(
          absl::StrFormat("smtpd_tls_chain_files: no private key in %s", file));
    }
    if (wolfSSL_CTX_use_certificate_chain_file(ctx, file.c_str()) != WOLFSSL_SUCCESS) {
      return absl::InvalidArgumentError(
          absl::StrFormat("smtpd_tls_chain_files: no certificate chain in %s", file));
    }
  } else {
    if (wolfSSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != WOLFSSL_SUCCESS) {
      return absl::InvalidArgumentError(
          absl::StrFormat("smtpd_tls_cert_file: cannot load a certificate from %s", o.cert_file));
    }
    if (wolfSSL_CTX_use_PrivateKey_file(ctx, o.key_file.c_str(), WOLFSSL_FILETYPE_PEM) !=
        WOLFSSL_SUCCESS) {
      return absl::InvalidArgumentError(
          absl::StrFormat("smtpd_tls_key_file: cannot load a private key from %s", o.key_file));
    }
  }
  if (wolfSSL_CTX_check_private_key(ctx) != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError("the private key does not match the certificate");
  }
  if (!o.ca_file.empty() &&
      wolfSSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != WOLFSSL_SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrFormat("smtpd_tls_CAfile: cannot load %s", o.ca_file));
  }
  if (o.ask_client_cert) {
    // Ask, never require: relay_clientcerts matches the fingerprint; an untrusted or
    // missing certificate only means no permission from it (Postfix: "ask_ccert").
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, AskCcertVerify);
  } else {
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, nullptr);
  }
  // Server preference order (ChaCha first) wins over the client's.
  wolfSSL_CTX_set_options(ctx, WOLFSSL_OP_CIPHER_SERVER_PREFERENCE);
  wolfSSL_CTX_set_session_cache_mode(ctx, WOLFSSL_SESS_CACHE_OFF);
  o.ticket_keys->Install(ctx);
  absl::Status self_test = SelfTestHandshake(ctx, o.max_version);
  if (!self_test.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: %s", o.chain_files.empty() ? o.key_file : o.chain_files.front(), self_test.message()));
  }
  return std::shared_ptr<const ServerContext>(std::move(context));
}

}  // namespace moat::tls
