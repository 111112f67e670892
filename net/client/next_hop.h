// net/client/next_hop.h
//
// Parses a delivery next hop as Postfix writes it in transport_maps, relayhost,
// relay_transport and default_transport: "smtp:[10.0.0.5]:2525", "relay:[mx.internal]",
// "[ipv6:2001:db8::1]:25", "smtp:host" (needs an MX lookup), "error:text", "discard:".
// Owned by: outbound. Pure functions, thread-safe. The input comes from the operator's
// configuration and tables, not from the network, but it is still checked fully: a bad
// spec is a Status, never a crash.
//
// MX lookups (a host without brackets) wait for the DNS work: such a spec parses into a
// NextHop with needs_mx = true, and ResolveForDelivery() returns a clear
// kUnimplemented status ("MX lookup ... is not available yet") that the caller logs and
// turns into a deferral. Nothing is skipped silently.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace moat::client {

enum class TransportKind {
  kSmtp,     // "smtp:" (and any spec without a transport name)
  kRelay,    // "relay:": the same SMTP client, separate limits (relay_destination_*)
  kError,    // "error:text": fail the recipient with text (dsn from the text, 5.0.0 default)
  kDiscard,  // "discard:[text]": report delivered, send nothing
};

inline constexpr uint16_t kSmtpPortDefault = 25;

struct NextHop {
  TransportKind kind = TransportKind::kSmtp;
  std::string transport;  // "smtp", "relay", "error", "discard"
  // kSmtp/kRelay: the host name or address literal (without brackets or "ipv6:").
  std::string host;
  uint16_t port = kSmtpPortDefault;
  bool needs_mx = false;    // no brackets: Postfix would look up MX records for `host`
  bool is_literal = false;  // host is an IPv4 or IPv6 address literal
  bool is_ipv6 = false;
  // kError/kDiscard: the text after the colon (may be empty).
  std::string text;

  // "transport:[host]:port" (or "transport:host:port" when needs_mx, "error:text"):
  // the key of the destination's queue in the scheduler.
  std::string Key() const;
};

// Parses `spec`. A spec without "transport:" uses `default_transport` ("smtp" or
// "relay"; relayhost has no transport). An empty host part ("smtp:") means the
// recipient's domain, `recipient_domain`, with MX lookup (Postfix's default). Returns
// kInvalidArgument with the reason for malformed specs and unknown transports.
absl::StatusOr<NextHop> ParseNextHop(std::string_view spec,
                                     std::string_view default_transport = "smtp",
                                     std::string_view recipient_domain = "");

// For kSmtp/kRelay: OK when the next hop can be connected to now (bracketed host or
// address literal). For needs_mx: kUnimplemented, "MX lookup for HOST is not available
// yet (DNS support pending); write the next hop as TRANSPORT:[HOST] to deliver to HOST
// directly". The caller must log that text (moat::log::Warning) and defer.
absl::Status ResolveForDelivery(const NextHop& hop);

// For kError: the enhanced status code that starts the text ("4.x.y" or "5.x.y"), else
// "5.0.0" as Postfix's error(8). A 4.x.y code means deferred, otherwise bounced.
std::string ErrorTransportDsn(const NextHop& hop);

// What Postfix's error(8) and discard(8) report for a recipient routed to them: error:
// the dsn and text split from the next hop ("error:5.1.1 mailbox gone" -> 5.1.1,
// "mailbox gone"; 4.x.y defers, anything else bounces); discard: sent, 2.0.0, the text
// or "discarded". nullopt for smtp/relay next hops.
struct LocalOutcome {
  enum class Kind { kSent, kDeferred, kBounced };
  Kind kind = Kind::kBounced;
  std::string dsn;
  std::string reason;
};
std::optional<LocalOutcome> LocalTransportOutcome(const NextHop& hop);

}  // namespace moat::client
