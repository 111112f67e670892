// queue/sched/dsn.h
//
// Composes RFC 3464 delivery status notifications the way Postfix's bounce(8) does:
// a multipart/report; report-type=delivery-status message from
// MAILER-DAEMON@$myhostname to the envelope sender, sent with the null sender, with
// (1) a text/plain part worded like Postfix's bounce templates, (2) a
// message/delivery-status part (Reporting-MTA, Arrival-Date, then per recipient
// Final-Recipient, Original-Recipient, Action, Status, Remote-MTA, Diagnostic-Code,
// Will-Retry-Until), and (3) the original headers (text/rfc822-headers), or the whole
// message (message/rfc822) when the sender asked for RET=FULL and it fits in
// bounce_size_limit (otherwise the headers only).
//
// Rules (RFC 3461 and Postfix): never a notification to the null sender; a recipient
// with NOTIFY=NEVER gets none; without NOTIFY, failures and delays are reported and
// successes are not; NOTIFY=SUCCESS asks for a success report: "delivered" when moat
// was the final hop, "relayed" when the next hop does not speak DSN (when it does, it
// got NOTIFY and reports itself, so moat sends nothing).
//
// Owned by: outbound. Pure functions, thread-safe. The original message is untrusted
// content: it is quoted as data, the MIME boundary is chosen so it never occurs in it,
// and reasons quoted from remote servers are made printable and folded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/time.h"

namespace moat::sched {

// DSN NOTIFY flags (RFC 3461). 0 = not given (Postfix: FAILURE and DELAY).
enum NotifyFlag : uint8_t {
  kNotifyNever = 1,
  kNotifySuccess = 2,
  kNotifyFailure = 4,
  kNotifyDelay = 8,
};
// Parses "SUCCESS,FAILURE", "NEVER" (case-insensitive). nullopt if malformed (NEVER
// combined with others, unknown word, empty).
std::optional<uint8_t> ParseNotify(std::string_view value);
bool NotifyAllowsFailure(uint8_t notify);
bool NotifyAllowsDelay(uint8_t notify);
bool NotifyAllowsSuccess(uint8_t notify);

enum class DsnKind { kFailure, kDelay, kSuccess };
enum class DsnAction { kFailed, kDelayed, kDelivered, kRelayed };
std::string_view DsnActionName(DsnAction action);

struct DsnRecipient {
  std::string address;   // final recipient, without <>
  std::string original;  // ORCPT ("rfc822;u@d") or "" (then none is reported)
  uint8_t notify = 0;    // NotifyFlag bits
  DsnAction action = DsnAction::kFailed;
  std::string status;      // "5.1.1"
  std::string remote_mta;  // the server's host name, "" when the failure was local
  std::string reply;       // the remote reply ("550 5.1.1 ..."), "" when local
  std::string reason;      // the full text as logged ("host h[a] said: ...")
};

struct DsnRequest {
  DsnKind kind = DsnKind::kFailure;
  std::string queue_id;         // the original message's queue id
  std::string notification_id;  // the queue id of the notification (for Message-Id), or ""
  std::string myhostname;
  std::string sender;  // the original envelope sender: the notification's recipient
  std::string envid;   // ENVID or ""
  bool ret_full = false;
  absl::Time arrival;
  absl::Time now;
  absl::Duration maximal_queue_lifetime = absl::Hours(24 * 5);  // for the delay text
  absl::Duration delay_warning_time = absl::Hours(4);           // for the delay text
  size_t bounce_size_limit = 50000;                             // Postfix's default
  // The original message (headers, blank line, body; CRLF line ends).
  std::string_view original_message;
  std::vector<DsnRecipient> recipients;
};

struct DsnMessage {
  std::string envelope_sender;     // always "" (the null sender)
  std::string envelope_recipient;  // the original sender
  std::string content;             // the full message, CRLF line ends
  int recipients = 0;              // how many recipients it reports on
};

// The notification, or nullopt when none is due: null sender, or no recipient of the
// request's kind whose NOTIFY asks for it.
std::optional<DsnMessage> ComposeDsn(const DsnRequest& request);

// "Mon, 23 Nov 2026 17:53:45 +0000 (UTC)" (RFC 5322 date as Postfix writes it).
std::string Rfc5322Date(absl::Time t);

}  // namespace moat::sched
