// net/client/next_hop.cc: see next_hop.h. Owned by: outbound.
#include "net/client/next_hop.h"

#include <arpa/inet.h>

#include <charconv>
#include <string>

#include "absl/strings/str_format.h"

namespace moat::client {
namespace {

bool IsIpv4(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}
bool IsIpv6(const std::string& s) {
  in6_addr a{};
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

// A host name: letters, digits, '-', '.', '_' (Postfix's valid_hostname is stricter
// about labels; this is enough to refuse garbage such as spaces and brackets).
bool IsHostName(std::string_view s) {
  if (s.empty() || s.size() > 255) {
    return false;
  }
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_';
    if (!ok) {
      return false;
    }
  }
  return true;
}

absl::Status ParsePort(std::string_view text, std::string_view spec, uint16_t* port) {
  unsigned value = 0;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || value == 0 ||
      value > 65535) {
    return absl::InvalidArgumentError(
        absl::StrFormat("next hop \"%s\": bad port \"%s\" (want 1..65535)", spec, text));
  }
  *port = static_cast<uint16_t>(value);
  return absl::OkStatus();
}

bool IsDsnCode(std::string_view s, char klass) {
  // d.ddd.ddd with the given class digit.
  if (s.size() < 5 || s[0] != klass || s[1] != '.') {
    return false;
  }
  size_t i = 2;
  size_t digits = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    ++i;
    ++digits;
  }
  if (digits == 0 || digits > 3 || i >= s.size() || s[i] != '.') {
    return false;
  }
  ++i;
  digits = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    ++i;
    ++digits;
  }
  return digits > 0 && digits <= 3 && (i == s.size() || s[i] == ' ');
}

}  // namespace

std::string NextHop::Key() const {
  switch (kind) {
    case TransportKind::kError:
    case TransportKind::kDiscard:
      return absl::StrFormat("%s:%s", transport, text);
    case TransportKind::kSmtp:
    case TransportKind::kRelay:
      break;
  }
  if (needs_mx) {
    return absl::StrFormat("%s:%s:%d", transport, host, port);
  }
  return absl::StrFormat("%s:[%s%s]:%d", transport, is_ipv6 ? "ipv6:" : "", host, port);
}

absl::StatusOr<NextHop> ParseNextHop(std::string_view spec, std::string_view default_transport,
                                     std::string_view recipient_domain) {
  NextHop hop;
  std::string_view rest = spec;
  // "[...]" or a bare host has no transport; "name:rest" has one, unless the colon is
  // inside brackets.
  const size_t colon = spec.find(':');
  const size_t bracket = spec.find('[');
  std::string_view transport = default_transport;
  if (colon != std::string_view::npos && (bracket == std::string_view::npos || colon < bracket)) {
    transport = spec.substr(0, colon);
    rest = spec.substr(colon + 1);
  }
  hop.transport = std::string(transport);
  if (transport == "error") {
    hop.kind = TransportKind::kError;
    hop.text = std::string(rest);
    return hop;
  }
  if (transport == "discard") {
    hop.kind = TransportKind::kDiscard;
    hop.text = std::string(rest);
    return hop;
  }
  if (transport == "smtp") {
    hop.kind = TransportKind::kSmtp;
  } else if (transport == "relay") {
    hop.kind = TransportKind::kRelay;
  } else {
    return absl::InvalidArgumentError(absl::StrFormat(
        "next hop \"%s\": unknown transport \"%s\" (moat has smtp, relay, error, discard)", spec,
        transport));
  }

  if (rest.empty()) {
    // Postfix: an empty next hop means the recipient domain, with MX lookup.
    if (recipient_domain.empty()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("next hop \"%s\": no host and no recipient domain", spec));
    }
    rest = recipient_domain;
  }

  std::string_view port_text;
  if (rest.front() == '[') {
    const size_t close = rest.find(']');
    if (close == std::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrFormat("next hop \"%s\": missing \"]\"", spec));
    }
    std::string_view inside = rest.substr(1, close - 1);
    std::string_view after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return absl::InvalidArgumentError(
            absl::StrFormat("next hop \"%s\": junk after \"]\"", spec));
      }
      port_text = after.substr(1);
      if (port_text.empty()) {
        return absl::InvalidArgumentError(absl::StrFormat("next hop \"%s\": empty port", spec));
      }
    }
    if (inside.size() > 5 && (inside.substr(0, 5) == "ipv6:" || inside.substr(0, 5) == "IPv6:" ||
                              inside.substr(0, 5) == "IPV6:")) {
      hop.host = std::string(inside.substr(5));
      if (!IsIpv6(hop.host)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("next hop \"%s\": bad IPv6 address \"%s\"", spec, hop.host));
      }
      hop.is_ipv6 = true;
      hop.is_literal = true;
    } else {
      hop.host = std::string(inside);
      if (IsIpv4(hop.host)) {
        hop.is_literal = true;
      } else if (IsIpv6(hop.host)) {
        // Postfix wants "ipv6:" but a bare IPv6 literal in brackets is unambiguous.
        hop.is_ipv6 = true;
        hop.is_literal = true;
      } else if (!IsHostName(hop.host)) {
        return absl::InvalidArgumentError(
            absl::StrFormat("next hop \"%s\": bad host name \"%s\"", spec, hop.host));
      }
    }
  } else {
    // host or host:port: MX lookup (Postfix), unless the host is an IPv4 literal.
    const size_t c = rest.rfind(':');
    std::string_view host = rest;
    if (c != std::string_view::npos) {
      host = rest.substr(0, c);
      port_text = rest.substr(c + 1);
      if (port_text.empty()) {
        return absl::InvalidArgumentError(absl::StrFormat("next hop \"%s\": empty port", spec));
      }
    }
    hop.host = std::string(host);
    if (IsIpv4(hop.host)) {
      hop.is_literal = true;
    } else if (IsHostName(hop.host)) {
      hop.needs_mx = true;
    } else {
      return absl::InvalidArgumentError(
          absl::StrFormat("next hop \"%s\": bad host name \"%s\"", spec, hop.host));
    }
  }
  if (!port_text.empty()) {
    if (absl::Status s = ParsePort(port_text, spec, &hop.port); !s.ok()) {
      return s;
    }
  }
  return hop;
}

absl::Status ResolveForDelivery(const NextHop& hop) {
  if (hop.kind != TransportKind::kSmtp && hop.kind != TransportKind::kRelay) {
    return absl::OkStatus();
  }
  if (!hop.needs_mx) {
    return absl::OkStatus();
  }
  return absl::UnimplementedError(absl::StrFormat(
      "MX lookup for %s is not available yet (DNS support pending); write the next hop as "
      "%s:[%s]:%d to deliver to %s directly",
      hop.host, hop.transport, hop.host, hop.port, hop.host));
}

std::string ErrorTransportDsn(const NextHop& hop) {
  std::string_view text = hop.text;
  if (IsDsnCode(text, '4') || IsDsnCode(text, '5')) {
    return std::string(text.substr(0, text.find(' ')));
  }
  return "5.0.0";
}

std::optional<LocalOutcome> LocalTransportOutcome(const NextHop& hop) {
  if (hop.kind == TransportKind::kDiscard) {
    return LocalOutcome{LocalOutcome::Kind::kSent, "2.0.0",
                        hop.text.empty() ? "discarded" : hop.text};
  }
  if (hop.kind != TransportKind::kError) {
    return std::nullopt;
  }
  const std::string dsn = ErrorTransportDsn(hop);
  std::string_view text = hop.text;
  if (text.substr(0, dsn.size()) == dsn) {
    text.remove_prefix(dsn.size());
    while (!text.empty() && text.front() == ' ') {
      text.remove_prefix(1);
    }
  }
  return LocalOutcome{dsn[0] == '4' ? LocalOutcome::Kind::kDeferred : LocalOutcome::Kind::kBounced,
                      dsn, text.empty() ? "delivery failed (error transport)" : std::string(text)};
}

}  // namespace moat::client
