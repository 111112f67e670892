// core/config/values.h
//
// Parsers for the typed main.cf values, with Postfix's syntax: booleans (yes/no), integers,
// times (a number with an optional unit s, m, h, d or w; the unit defaults per parameter),
// sizes (a number of bytes, as Postfix's message_size_limit), lists (separated by commas
// and/or white space), "address:port" lists (moat_listen), and `type:table` references.
// Parse untrusted input (operator files); every failure is a Status whose message names the
// bad text, e.g. `bad time value "5x"`; callers prefix file:line and the parameter name.
// Stateless and thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace moat::config {

absl::StatusOr<bool> ParseBool(std::string_view text);
absl::StatusOr<int64_t> ParseInteger(std::string_view text);
// `default_unit` is one of s, m, h, d, w: the unit of a bare number (Postfix's per-parameter
// default unit: maximal_queue_lifetime = 5 means five days).
absl::StatusOr<absl::Duration> ParseTime(std::string_view text, char default_unit);
absl::StatusOr<int64_t> ParseSize(std::string_view text);

// Splits a list on commas and white space; empty items are dropped.
std::vector<std::string> SplitList(std::string_view text);

// Words separated by single spaces: how postconf prints a value (pcf_print_line).
std::string NormalizeWhiteSpace(std::string_view text);

// "ipv4:port", "[ipv6]:port" or "*:port" (every address); port 0..65535.
absl::Status ValidateHostPort(std::string_view text);

// One moat_listen entry: "ADDRESS:PORT" (plain SMTP, STARTTLS as configured) or
// "ADDRESS:PORT/tls": implicit TLS, the handshake first (Postfix's smtpd_tls_wrappermode
// for that listener only, the port 465 "submissions"/SMTPS style). ADDRESS as in
// ValidateHostPort.
struct ListenEntry {
  std::string address;  // "127.0.0.1:465", without the suffix
  bool implicit_tls = false;
};
inline constexpr std::string_view kImplicitTlsSuffix = "/tls";
absl::StatusOr<ListenEntry> ParseListenEntry(std::string_view text);

// A reference to a lookup table written `type:name`, as in `hash:/etc/moat/transport`.
struct TableRef {
  std::string type;       // hash, btree, cdb, lmdb, texthash, cidr
  std::string name;       // the source file, an absolute path
  bool proxied = false;   // written proxy:type:name; moat reads tables itself, proxy: is dropped

  std::string ToString() const { return type + ":" + name; }
  // hash, btree, cdb and lmdb resolve to moat's compiled form NAME.moat (DESIGN section 4);
  // texthash and cidr are read from their source.
  bool IsCompiled() const;
  // The file that must exist for moat to use the table.
  std::string FilePath() const { return IsCompiled() ? name + ".moat" : name; }
};

// True when `text` has the shape "type:..." (a lower-case type name then ':'), i.e. it is
// meant as a table reference and not as a word, address or IPv6 literal.
bool LooksLikeTableRef(std::string_view text);
// Parses `[proxy:]type:/absolute/path` with a table type moat implements.
absl::StatusOr<TableRef> ParseTableRef(std::string_view text);

}  // namespace moat::config
