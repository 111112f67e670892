// bench/micro/tls_benchmark.cc
//
// TLS micro-benchmarks (owner: "tls"): what orders the server's cipher list, and the
// handshake rate one core sustains. All in memory (a wolfSSL client against
// tls::TlsTransform through its memory-buffer I/O), one thread:
//   BM_Records/<suite>: TLS 1.3 records of 16 KiB, sealed by the server and opened by the
//     client (bytes/s = plaintext through both ends): AES-128-GCM, AES-256-GCM vs
//     ChaCha20-Poly1305 on Debian's wolfSSL (no AES-NI).
//   BM_Handshake/new, /resumed: full TLS 1.3 handshakes (ECDSA P-256, X25519/P-256 key
//     share), and resumptions from a session ticket (shared TicketKeys); both sides' CPU.
// Certificates: made once with the openssl CLI in a temporary directory.
// Run: build/bench/micro/tls_benchmark [--benchmark_filter=...]
// clang-format off
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
// clang-format on

#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <string>

#include "benchmark/benchmark.h"

#include "tls/server_context.h"
#include "tls/ticket_keys.h"
#include "tls/tls_transform.h"

namespace moat::tls {
namespace {

struct Certs {
  std::string dir, cert, key;
};

const Certs& TestCerts() {
  static Certs* certs = [] {
    auto* c = new Certs;
    char tmpl[] = "/tmp/moat-tls-bench-XXXXXX";
    c->dir = mkdtemp(tmpl);
    c->cert = c->dir + "/cert.pem";
    c->key = c->dir + "/key.pem";
    const std::string cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
        "-nodes -days 2 -subj /CN=localhost -keyout " +
        c->key + " -out " + c->cert + " 2>/dev/null";
    if (system(cmd.c_str()) != 0) {
      abort();
    }
    atexit([] { std::filesystem::remove_all(TestCerts().dir); });
    return c;
  }();
  return *certs;
}

std::shared_ptr<const ServerContext> MakeServer(const std::string& ciphers) {
  ServerOptions o;
  o.level = SecurityLevel::kMay;
  o.cert_file = TestCerts().cert;
  o.key_file = TestCerts().key;
  o.cipher_list = ciphers;
  auto c = ServerContext::Create(o);
  if (!c.ok()) {
    abort();
  }
  return *c;
}

struct Client {
  WOLFSSL_CTX* ctx;
  WOLFSSL* ssl = nullptr;
  std::string to_server, from_server;
  explicit Client(WOLFSSL_CTX* c) : ctx(c) {
    ssl = wolfSSL_new(ctx);
    wolfSSL_SetIOReadCtx(ssl, this);
    wolfSSL_SetIOWriteCtx(ssl, this);
  }
  ~Client() { wolfSSL_free(ssl); }
};

WOLFSSL_CTX* ClientContext() {
  WOLFSSL_CTX* ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
  wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, nullptr);
  wolfSSL_CTX_SetIORecv(ctx, [](WOLFSSL*, char* buf, int size, void* user) {
    auto* c = static_cast<Client*>(user);
    if (c->from_server.empty()) {
      return static_cast<int>(WOLFSSL_CBIO_ERR_WANT_READ);
    }
    const int n = std::min<int>(size, static_cast<int>(c->from_server.size()));
    std::memcpy(buf, c->from_server.data(), static_cast<size_t>(n));
    c->from_server.erase(0, static_cast<size_t>(n));
    return n;
  });
  wolfSSL_CTX_SetIOSend(ctx, [](WOLFSSL*, char* buf, int size, void* user) {
    static_cast<Client*>(user)->to_server.append(buf, static_cast<size_t>(size));
    return size;
  });
  return ctx;
}

bool Handshake(Client& client, TlsTransform& server) {
  std::string plain;
  for (int round = 0; round < 20; ++round) {
    const int r = wolfSSL_connect(client.ssl);
    if (r != WOLFSSL_SUCCESS && wolfSSL_get_error(client.ssl, r) != WOLFSSL_ERROR_WANT_READ) {
      return false;
    }
    std::string raw = std::move(client.to_server);
    client.to_server.clear();
    std::string out;
    if (!server.Decode({raw.data(), raw.size()}, &plain, &out)) {
      return false;
    }
    client.from_server += out;
    if (r == WOLFSSL_SUCCESS && server.handshake_done()) {
      return true;
    }
  }
  return false;
}

void BM_Records(benchmark::State& state, const char* suite) {
  auto server_context = MakeServer(suite);
  WOLFSSL_CTX* client_ctx = ClientContext();
  {
    Client client(client_ctx);
    TlsTransform server(server_context, nullptr);
    if (!Handshake(client, server)) {
      state.SkipWithError("handshake failed");
    } else {
      std::string record_plain(16384, 'x');
      char buffer[16384];
      for (auto _ : state) {
        std::string raw;
        server.Encode({record_plain.data(), record_plain.size()}, &raw);
        client.from_server += raw;
        int n = wolfSSL_read(client.ssl, buffer, sizeof(buffer));
        benchmark::DoNotOptimize(n);
      }
      state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * 16384);
      state.SetLabel(server.info().cipher);
    }
  }
  wolfSSL_CTX_free(client_ctx);
}
BENCHMARK_CAPTURE(BM_Records, chacha20_poly1305, "TLS13-CHACHA20-POLY1305-SHA256");
BENCHMARK_CAPTURE(BM_Records, aes128_gcm, "TLS13-AES128-GCM-SHA256");
BENCHMARK_CAPTURE(BM_Records, aes256_gcm, "TLS13-AES256-GCM-SHA384");

void BM_Handshake(benchmark::State& state, bool resume) {
  auto server_context = MakeServer("");
  WOLFSSL_CTX* client_ctx = ClientContext();
  WOLFSSL_SESSION* session = nullptr;
  {
    Client first(client_ctx);
    TlsTransform server(server_context, nullptr);
    if (Handshake(first, server)) {
      char b[16];
      wolfSSL_read(first.ssl, b, sizeof(b));  // takes the NewSessionTicket
      session = wolfSSL_get1_session(first.ssl);
    }
  }
  int resumed = 0;
  for (auto _ : state) {
    Client client(client_ctx);
    if (resume && session != nullptr) {
      wolfSSL_set_session(client.ssl, session);
    }
    TlsTransform server(server_context, nullptr);
    if (!Handshake(client, server)) {
      state.SkipWithError("handshake failed");
      break;
    }
    resumed += server.info().resumed ? 1 : 0;
  }
  state.counters["handshakes/s"] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
  state.counters["resumed"] = resumed;
  wolfSSL_SESSION_free(session);
  wolfSSL_CTX_free(client_ctx);
}
BENCHMARK_CAPTURE(BM_Handshake, new, false)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_Handshake, resumed, true)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace moat::tls
