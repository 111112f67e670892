// bench/loadgen/options.cc: see options.h.
#include "bench/loadgen/options.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmath>
#include <cstring>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace moat::loadgen {
namespace {

constexpr unsigned kSend = 1;
constexpr unsigned kSink = 2;
constexpr unsigned kRun = 4;

enum class Kind { kBool, kValue };

struct Flag {
  const char* name;
  unsigned modes;
  Kind kind;
  // Applies the value (empty for kBool); returns an error message or "".
  std::function<std::string(Options&, const std::string&)> apply;
};

std::string BadNumber(const std::string& value, const char* what) {
  return absl::StrFormat("bad %s \"%s\"", what, value);
}

// Unsigned integer with an optional k/m/g suffix (powers of 1024), within [lo, hi].
std::string ParseCount(const std::string& value, uint64_t lo, uint64_t hi, uint64_t* out) {
  std::string digits = value;
  uint64_t mult = 1;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'k': case 'K': mult = 1024; break;
      case 'm': case 'M': mult = 1024 * 1024; break;
      case 'g': case 'G': mult = uint64_t{1024} * 1024 * 1024; break;
      default: break;
    }
    if (mult != 1) {
      digits.pop_back();
    }
  }
  uint64_t n = 0;
  if (digits.empty() || digits[0] == '-' || digits[0] == '+' ||
      !absl::SimpleAtoi(absl::string_view(digits.data(), digits.size()), &n)) {
    return BadNumber(value, "number");
  }
  if (n > hi / mult || n * mult < lo || n * mult > hi) {
    return absl::StrFormat("number %s out of range [%d, %d]", value, lo, hi);
  }
  *out = n * mult;
  return "";
}

std::string ParseReal(const std::string& value, double lo, double hi, double* out) {
  double d = 0;
  if (value.empty() || !absl::SimpleAtod(absl::string_view(value.data(), value.size()), &d) ||
      !std::isfinite(d)) {
    return BadNumber(value, "number");
  }
  if (d < lo || d > hi) {
    return absl::StrFormat("number %s out of range [%g, %g]", value, lo, hi);
  }
  *out = d;
  return "";
}

template <typename T>
std::function<std::string(Options&, const std::string&)> Count(T Options::*field, uint64_t lo,
                                                                uint64_t hi) {
  return [field, lo, hi](Options& o, const std::string& v) {
    uint64_t n = 0;
    std::string err = ParseCount(v, lo, hi, &n);
    if (err.empty()) {
      o.*field = static_cast<T>(n);
    }
    return err;
  };
}

std::function<std::string(Options&, const std::string&)> Real(double Options::*field, double lo,
                                                              double hi) {
  return [field, lo, hi](Options& o, const std::string& v) { return ParseReal(v, lo, hi, &(o.*field)); };
}

std::function<std::string(Options&, const std::string&)> Text(std::string Options::*field) {
  return [field](Options& o, const std::string& v) {
    if (v.empty()) {
      return std::string("empty value");
    }
    o.*field = v;
    return std::string();
  };
}

std::function<std::string(Options&, const std::string&)> Bool(bool Options::*field, bool value) {
  return [field, value](Options& o, const std::string&) {
    o.*field = value;
    return std::string();
  };
}

std::function<std::string(Options&, const std::string&)> Address(Endpoint Options::*field) {
  return [field](Options& o, const std::string& v) {
    auto ep = ParseEndpoint(v);
    if (!ep.ok()) {
      return std::string(ep.status().message());
    }
    o.*field = *ep;
    return std::string();
  };
}

constexpr uint64_t kMaxCount = uint64_t{1} << 48;

const std::vector<Flag>& Flags() {
  static const std::vector<Flag>* flags = new std::vector<Flag>{
      {"json", kSend | kSink | kRun, Kind::kBool, Bool(&Options::json, true)},
      {"no-progress", kSend | kSink | kRun, Kind::kBool, Bool(&Options::progress, false)},
      {"messages", kSend | kSink | kRun, Kind::kValue, Count(&Options::messages, 1, kMaxCount)},
      {"duration", kSend | kSink | kRun, Kind::kValue, Real(&Options::duration_s, 0.001, 1e7)},
      {"timeout", kSend | kSink | kRun, Kind::kValue, Real(&Options::timeout_s, 0.001, 1e6)},
      {"server", kSend, Kind::kValue, Address(&Options::server)},
      {"relay", kRun, Kind::kValue, Address(&Options::server)},
      {"sessions", kSend | kRun, Kind::kValue, Count(&Options::sessions, 1, 1000000)},
      {"rate", kSend | kRun, Kind::kValue, Real(&Options::rate, 0.001, 1e8)},
      {"size", kSend | kRun, Kind::kValue, Count(&Options::size, 1, uint64_t{1} << 30)},
      {"from", kSend | kRun, Kind::kValue, Text(&Options::from)},
      {"to", kSend | kRun, Kind::kValue, Text(&Options::to)},
      {"to-pattern", kSend | kRun, Kind::kValue, Text(&Options::to)},
      {"to-count", kSend | kRun, Kind::kValue, Count(&Options::to_count, 1, kMaxCount)},
      {"unknown-pattern", kSend | kRun, Kind::kValue, Text(&Options::unknown_pattern)},
      {"unknown-share", kSend | kRun, Kind::kValue, Real(&Options::unknown_share, 0, 1)},
      {"rcpts", kSend | kRun, Kind::kValue, Count(&Options::rcpts, 1, 10000)},
      {"msgs-per-conn", kSend | kRun, Kind::kValue, Count(&Options::msgs_per_conn, 0, 1u << 30)},
      {"pipelining", kSend | kRun, Kind::kBool, Bool(&Options::pipelining, true)},
      {"starttls", kSend | kRun, Kind::kBool, Bool(&Options::starttls, true)},
      {"tls-resume", kSend | kRun, Kind::kBool, Bool(&Options::tls_resume, true)},
      {"handshake-only", kSend, Kind::kBool, Bool(&Options::handshake_only, true)},
      {"tls-cert", kSink | kRun, Kind::kValue, Text(&Options::tls_cert)},
      {"tls-key", kSink | kRun, Kind::kValue, Text(&Options::tls_key)},
      {"source-ips", kSend | kRun, Kind::kValue, Count(&Options::source_ips, 1, 254)},
      {"helo", kSend | kRun, Kind::kValue, Text(&Options::helo)},
      {"listen", kSink, Kind::kValue, Address(&Options::listen)},
      {"sink", kRun, Kind::kValue, Address(&Options::listen)},
      {"fsync", kSink | kRun, Kind::kBool, Bool(&Options::fsync, true)},
      {"no-chunking", kSink | kRun, Kind::kBool, Bool(&Options::chunking, false)},
      {"dir", kSink | kRun, Kind::kValue, Text(&Options::dir)},
      {"reply-4xx-share", kSink | kRun, Kind::kValue, Real(&Options::reply_4xx_share, 0, 1)},
      {"reply-5xx-share", kSink | kRun, Kind::kValue, Real(&Options::reply_5xx_share, 0, 1)},
      {"reply-on", kSink | kRun, Kind::kValue,
       [](Options& o, const std::string& v) {
         if (v == "rcpt") {
           o.reply_on = ReplyOn::kRcpt;
         } else if (v == "data") {
           o.reply_on = ReplyOn::kData;
         } else {
           return std::string("must be rcpt or data, not \"" + v + "\"");
         }
         return std::string();
       }},
      {"hostname", kSink | kRun, Kind::kValue, Text(&Options::hostname)},
      {"drain-timeout", kRun, Kind::kValue, Real(&Options::drain_s, 0, 1e6)},
  };
  return *flags;
}

absl::Status Usage(const std::string& message) {
  return absl::InvalidArgumentError(message);
}

}  // namespace

absl::StatusOr<Endpoint> ParseEndpoint(const std::string& text) {
  Endpoint ep;
  ep.text = text;
  std::string host;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    size_t close = text.find("]:");
    if (close == std::string::npos) {
      return Usage(absl::StrFormat("bad address \"%s\": want [IPv6]:PORT", text));
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos || text.find(':') != colon) {
      return Usage(absl::StrFormat("bad address \"%s\": want HOST:PORT", text));
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  uint64_t port_number = 0;
  if (!ParseCount(port, 0, 65535, &port_number).empty() || port.back() > '9') {
    return Usage(absl::StrFormat("bad port in \"%s\"", text));
  }
  if (host == "localhost") {
    host = "127.0.0.1";
  }
  auto* v4 = reinterpret_cast<sockaddr_in*>(&ep.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&ep.addr);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port_number));
    ep.addr_len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port_number));
    ep.addr_len = sizeof(sockaddr_in6);
  } else {
    return Usage(absl::StrFormat("bad address \"%s\": HOST must be a numeric IP or localhost",
                                 text));
  }
  return ep;
}

std::string ExpandPattern(const std::string& pattern, uint64_t n) {
  size_t at = pattern.find("%d");
  if (at == std::string::npos) {
    return pattern;
  }
  return absl::StrCat(pattern.substr(0, at), n, pattern.substr(at + 2));
}

absl::StatusOr<Options> ParseArgs(const std::vector<std::string>& args) {
  Options o;
  if (args.size() < 2) {
    return Usage("missing mode: send, sink or run");
  }
  unsigned mode_bit = 0;
  const std::string& mode = args[1];
  if (mode == "--help" || mode == "-h" || mode == "help") {
    o.help = true;
    return o;
  } else if (mode == "send") {
    o.mode = Mode::kSend;
    mode_bit = kSend;
  } else if (mode == "sink") {
    o.mode = Mode::kSink;
    mode_bit = kSink;
  } else if (mode == "run") {
    o.mode = Mode::kRun;
    mode_bit = kRun;
  } else {
    return Usage(absl::StrFormat("unknown mode \"%s\": want send, sink or run", mode));
  }
  bool have_server = false;
  bool have_listen = false;
  for (size_t i = 2; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--help" || arg == "-h") {
      o.help = true;
      return o;
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      return Usage(absl::StrFormat("unexpected argument \"%s\"", arg));
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_inline_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline_value = true;
    }
    const Flag* flag = nullptr;
    for (const Flag& f : Flags()) {
      if (name == f.name) {
        flag = &f;
        break;
      }
    }
    if (flag == nullptr) {
      return Usage(absl::StrFormat("unknown flag --%s", name));
    }
    if ((flag->modes & mode_bit) == 0) {
      return Usage(absl::StrFormat("flag --%s does not apply to %s", name, mode));
    }
    if (flag->kind == Kind::kBool) {
      if (has_inline_value) {
        return Usage(absl::StrFormat("flag --%s takes no value", name));
      }
    } else if (!has_inline_value) {
      if (i + 1 >= args.size()) {
        return Usage(absl::StrFormat("flag --%s needs a value", name));
      }
      value = args[++i];
    }
    std::string err = flag->apply(o, value);
    if (!err.empty()) {
      return Usage(absl::StrFormat("--%s: %s", name, err));
    }
    have_server |= (name == "server" || name == "relay");
    have_listen |= (name == "listen" || name == "sink");
  }
  // Cross-flag checks.
  if (o.mode != Mode::kSink && !have_server) {
    return Usage(o.mode == Mode::kSend ? "send needs --server HOST:PORT"
                                       : "run needs --relay HOST:PORT");
  }
  if (o.mode != Mode::kSend && !have_listen) {
    return Usage(o.mode == Mode::kSink ? "sink needs --listen HOST:PORT"
                                       : "run needs --sink HOST:PORT");
  }
  if (o.mode != Mode::kSink && o.messages == 0 && o.duration_s == 0) {
    return Usage("give --messages N and/or --duration S: every run is bounded");
  }
  if (o.reply_4xx_share + o.reply_5xx_share > 1.0) {
    return Usage("--reply-4xx-share + --reply-5xx-share must not exceed 1");
  }
  if (o.tls_resume && !o.starttls) {
    return Usage("--tls-resume needs --starttls");
  }
  if (o.handshake_only) {
    o.msgs_per_conn = 1;  // one handshake per connection
  }
  if (!o.tls_key.empty() && o.tls_cert.empty()) {
    return Usage("--tls-key needs --tls-cert");
  }
  if (o.tls_key.empty()) {
    o.tls_key = o.tls_cert;
  }
  if (o.unknown_share > 0 && o.unknown_pattern.empty()) {
    size_t at = o.to.find('@');
    o.unknown_pattern =
        "loadgen-unknown-%d" + (at == std::string::npos ? std::string("@example.com") : o.to.substr(at));
  }
  return o;
}

const char* Usage() {
  return R"USAGE(usage: moat-loadgen send|sink|run [FLAGS]

moat-loadgen send --server HOST:PORT (--messages N | --duration S) [FLAGS]
  --sessions N          concurrent SMTP sessions (default 1)
  --rate R              open loop: R messages/s; latency from the intended send time
                        (default: closed loop, each session as fast as possible)
  --size BYTES          message size, header + body (k/m suffix = 1024/1048576; default 1024)
  --from ADDR           envelope sender (default loadgen@client.example)
  --to ADDR|PATTERN     recipient; %d is replaced by 0..--to-count-1 in turn
                        (default user%d@example.com; --to-pattern is a synonym)
  --to-count N          range of %d (default 1000)
  --rcpts N             recipients per message (default 1)
  --unknown-share F     share F of recipients use --unknown-pattern (default
                        loadgen-unknown-%d@<domain of --to>); they must be rejected with 5xx,
                        which counts as "rejected (expected)". A message whose recipients were
                        all rejected is not sent (RSET) and counts as a rejected message.
  --unknown-pattern P   address pattern of the unknown recipients
  --msgs-per-conn N     messages per connection, 0 = unlimited (default 1)
  --pipelining          send MAIL, RCPT... and DATA as one group when PIPELINING is offered
  --source-ips N        bind each connection to 127.0.0.1..127.0.0.N in turn
  --helo NAME           EHLO name
  --starttls            EHLO, STARTTLS (an error if the server does not offer it), the TLS
                        handshake, EHLO again, then the transactions over TLS; reports the
                        handshake count and latency (STARTTLS reply to handshake done)
  --tls-resume          with --starttls: resume TLS sessions across connections (tickets)
  --handshake-only      no mail: each connection only does the greeting, EHLO (with --starttls:
                        STARTTLS, the TLS handshake, EHLO again) and QUIT; one "message" = one
                        such connection (forces --msgs-per-conn 1)
moat-loadgen sink --listen HOST:PORT [--messages N] [--duration S] [FLAGS]
  --fsync               write every message to a file and fdatasync it before the 250
  --no-chunking         do not offer CHUNKING (BDAT), as smtp-sink (Postfix 3.7) does not
  --dir DIR             write every message to DIR/<n>.eml (unstuffed, CRLF)
  --reply-4xx-share F   answer a share F with 451 4.3.0, --reply-5xx-share F with 554 5.6.0
  --reply-on rcpt|data  where those shares apply (default data: the reply to the final dot)
  --hostname NAME       name in the banner and EHLO reply
  --tls-cert FILE       offer STARTTLS with this PEM certificate chain (TLS 1.2+)
  --tls-key FILE        its PEM private key (default: the --tls-cert file)
moat-loadgen run --relay HOST:PORT --sink HOST:PORT (--messages N | --duration S) [FLAGS]
  sender and sink in one process: all send and sink flags, plus
  --drain-timeout S     how long to wait for the relay to deliver after sending (default 30)
common:
  --messages N          send/run: transactions to attempt; sink: exit after N messages
  --duration S          stop after S seconds
  --timeout S           per-reply timeout (default 30)
  --json                one JSON object on stdout (messages, errors, elapsed_s, msgs_per_sec,
                        p50_ms, p99_ms, p999_ms, max_ms, ...)
  --no-progress         no live progress line (shown on stderr only when it is a terminal)
exit status: 0 when every message was accepted (send), received (sink) or relayed (run);
1 otherwise; 2 on a usage error.
)USAGE";
}

}  // namespace moat::loadgen
