// bench/loadgen/options.h
//
// The command line of moat-loadgen (DESIGN.md section 7): `send`, `sink` and `run`, each with
// a strict flag set. An unknown flag, a flag that does not belong to the mode, a missing
// value or a malformed number is an InvalidArgument status whose message names the flag;
// main() prints it with the usage and exits 2. Flags take `--flag VALUE` or `--flag=VALUE`.
//
// Parses untrusted input only in the sense of argv; no networking. Not thread-safe (plain data).
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace moat::loadgen {

enum class Mode { kSend, kSink, kRun };

// A numeric IPv4/IPv6 address and port ("127.0.0.1:2525", "[::1]:2525"; "localhost" is
// 127.0.0.1). No DNS: the load generator must not block on a resolver.
struct Endpoint {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  std::string text;
};

enum class ReplyOn { kRcpt, kData };

struct Options {
  Mode mode = Mode::kSend;
  bool help = false;  // --help: print the usage and exit 0

  // Common.
  bool json = false;
  uint64_t messages = 0;     // --messages: send: transactions to attempt; sink: exit after N
  double duration_s = 0;     // --duration: stop after this long (0 = no limit)
  double timeout_s = 30;     // --timeout: per reply / per idle connection
  bool progress = true;      // --no-progress turns the live line off even on a terminal

  // send / run: the sender.
  Endpoint server;           // send: --server; run: --relay
  uint32_t sessions = 1;     // --sessions: concurrent SMTP sessions
  double rate = 0;           // --rate: messages per second (open loop); 0 = closed loop
  uint64_t size = 1024;      // --size: message bytes (header + body, before dot-stuffing)
  std::string from = "loadgen@client.example";
  std::string to = "user%d@example.com";          // --to: address, or pattern with %d
  uint64_t to_count = 1000;                        // --to-count: %d ranges over [0, N)
  std::string unknown_pattern;                     // --unknown-pattern (default derived from --to)
  double unknown_share = 0;                        // --unknown-share F in [0, 1]
  uint32_t rcpts = 1;                              // --rcpts per message
  uint32_t msgs_per_conn = 1;                      // --msgs-per-conn (0 = unlimited)
  bool pipelining = false;                         // --pipelining (used if advertised)
  bool starttls = false;                           // --starttls: TLS before the transactions
  bool tls_resume = false;                         // --tls-resume: resume sessions (tickets)
  bool handshake_only = false;                     // --handshake-only: EHLO [STARTTLS, EHLO], QUIT
  uint32_t source_ips = 0;                         // --source-ips N: bind to 127.0.0.1..N
  std::string helo = "loadgen.client.example";     // --helo

  // sink / run: the sink.
  Endpoint listen;                 // sink: --listen; run: --sink
  bool fsync = false;              // --fsync: fdatasync every message before its 250
  bool chunking = true;            // CHUNKING offered (BDAT); --no-chunking turns it off
  std::string dir;                 // --dir: write each message to DIR/<n>.eml
  double reply_4xx_share = 0;      // --reply-4xx-share F
  double reply_5xx_share = 0;      // --reply-5xx-share F
  ReplyOn reply_on = ReplyOn::kData;  // --reply-on rcpt|data
  std::string hostname = "sink.loadgen.example";  // --hostname (banner and EHLO)
  std::string tls_cert;            // --tls-cert: PEM chain; the sink offers STARTTLS
  std::string tls_key;             // --tls-key: PEM key (default: --tls-cert)
  double drain_s = 30;             // run: --drain-timeout, wait for the relay after sending
};

// Parses argv[1..] (argv[0] is the program). REQUIRES: nothing; any input is safe.
absl::StatusOr<Options> ParseArgs(const std::vector<std::string>& args);

// Parses "HOST:PORT" as described at Endpoint.
absl::StatusOr<Endpoint> ParseEndpoint(const std::string& text);

// Fills `pattern`'s first "%d" with n (or returns it unchanged when it has none).
std::string ExpandPattern(const std::string& pattern, uint64_t n);

// The usage text.
const char* Usage();

}  // namespace moat::loadgen
