// queue/sched/delivery_log.h
//
// Formats delivery log lines exactly in Postfix's shape so pflogsumm-style tools work:
//
//   3F2A1C: to=<u@example.com>, relay=mx.internal[10.0.0.5]:25, delay=1.2,
//       delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as ABC)
//   3F2A1C: to=<u@example.com>, relay=none, delay=4642, delays=4642/0.56/0/0.03,
//       dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to ...)
//   3F2A1C: from=<a@b>, status=expired, returned to sender
//   3F2A1C: sender non-delivery notification: 4B7D2E
//
// (one line each). delays=a/b/c/d are: before the queue manager, in the queue manager,
// connection setup, transmission (Postfix's log_adhoc); numbers use Postfix's
// format_tv rule: two significant digits for small values, whole seconds from 10 s,
// at most delay_logging_resolution_limit (2) decimals, no trailing zeros.
// Owned by: outbound. Pure functions, thread-safe. The inputs are our own data, but the
// reason text may quote a remote server: callers pass it already made printable.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace moat::sched {

inline constexpr int kDelaySignificantDigits = 2;  // Postfix's SIG_DIGS
inline constexpr int kDelayResolutionLimit = 2;    // delay_logging_resolution_limit default

// Appends `d` (negative counts as 0) as Postfix's format_tv(sig_digits, max_decimals).
// REQUIRES: 1 <= sig_digits <= 6, 0 <= max_decimals <= 6.
void AppendDelay(std::string* out, absl::Duration d, int sig_digits = kDelaySignificantDigits,
                 int max_decimals = kDelayResolutionLimit);
std::string FormatDelay(absl::Duration d, int sig_digits = kDelaySignificantDigits,
                        int max_decimals = kDelayResolutionLimit);

// Time stamps of one delivery attempt. absl::InfinitePast() = not stamped (as Postfix's
// zero timeval): e.g. no conn_setup_done when no connection was made.
struct DeliveryTimes {
  absl::Time arrival = absl::InfinitePast();          // message received (incoming_arrival)
  absl::Time active = absl::InfinitePast();           // entered the active queue
  absl::Time handoff = absl::InfinitePast();          // handed to the delivery agent
  absl::Time conn_setup_done = absl::InfinitePast();  // connection + HELO done
  absl::Time done = absl::InfinitePast();             // result known (REQUIRED)
};

struct DeliveryLogEntry {
  std::string queue_id;
  std::string recipient;       // without <>
  std::string orig_recipient;  // logged as orig_to= when it differs (case-insensitively)
  std::string relay;           // "host[addr]:port" or "none"
  int conn_use = 1;            // transactions on this connection; logged when > 1
  DeliveryTimes times;
  std::string dsn;     // "2.0.0"
  std::string status;  // "sent", "deferred", "bounced"
  std::string reason;  // the text in parentheses
};

std::string FormatDeliveryLine(const DeliveryLogEntry& entry);
// "host[addr]:port".
std::string FormatRelay(std::string_view host, std::string_view address, uint16_t port);
// "ID: from=<sender>, status=expired, returned to sender".
std::string FormatExpiredLine(std::string_view queue_id, std::string_view sender);
// "ID: sender non-delivery notification: NEWID" (kind: "non-delivery", "delay",
// "delivery status").
std::string FormatNotificationLine(std::string_view queue_id, std::string_view kind,
                                   std::string_view notification_id);

}  // namespace moat::sched
