// queue/sched/dsn.cc: see dsn.h. Owned by: outbound. Quotes untrusted content as data.
#include "queue/sched/dsn.h"

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace moat::sched {
namespace {

constexpr char kCrlf[] = "\r\n";
constexpr size_t kFoldColumn = 76;

absl::string_view AV(std::string_view s) {
  return {s.data(), s.size()};
}

// Control characters (CR/LF included) become spaces: a reason never breaks a line.
std::string Clean(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      c = ' ';
    }
  }
  return out;
}

// Folds `text` (one logical line) at spaces so lines stay near kFoldColumn; continuation
// lines start with `indent`. A word longer than a line is kept whole (lines stay under
// 998 octets because reasons are bounded by the client).
std::string Fold(std::string_view text, std::string_view indent) {
  std::string out;
  size_t column = 0;
  bool first_word = true;
  for (absl::string_view word : absl::StrSplit(AV(text), ' ', absl::SkipEmpty())) {
    if (!first_word && column + 1 + word.size() > kFoldColumn) {
      out += kCrlf;
      out.append(indent.data(), indent.size());
      column = indent.size();
    } else if (!first_word) {
      out += ' ';
      ++column;
    }
    out.append(word.data(), word.size());
    column += word.size();
    first_word = false;
  }
  return out;
}

bool Wanted(const DsnRecipient& r, DsnKind kind) {
  switch (kind) {
    case DsnKind::kFailure:
      return r.action == DsnAction::kFailed && NotifyAllowsFailure(r.notify);
    case DsnKind::kDelay:
      return r.action == DsnAction::kDelayed && NotifyAllowsDelay(r.notify);
    case DsnKind::kSuccess:
      return (r.action == DsnAction::kDelivered || r.action == DsnAction::kRelayed) &&
             NotifyAllowsSuccess(r.notify);
  }
  return false;
}

bool HasEightBit(std::string_view s) {
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) {
      return true;
    }
  }
  return false;
}

// The header section of `message` (through the CRLF that ends the last header line).
std::string_view HeaderSection(std::string_view message) {
  size_t end = message.find("\r\n\r\n");
  if (end != std::string_view::npos) {
    return message.substr(0, end + 2);
  }
  end = message.find("\n\n");
  if (end != std::string_view::npos) {
    return message.substr(0, end + 1);
  }
  return message;
}

void AppendWithCrlf(std::string* out, std::string_view text) {
  out->append(text.data(), text.size());
  if (!text.empty() && text.back() != '\n') {
    *out += kCrlf;
  }
}

// "rfc822;u@d" -> "rfc822; u@d" (RFC 3464 writes a space after the type).
std::string AddressField(std::string_view typed) {
  const size_t semi = typed.find(';');
  if (semi == std::string_view::npos) {
    return absl::StrFormat("rfc822; %s", Clean(typed));
  }
  std::string_view value = typed.substr(semi + 1);
  while (!value.empty() && value.front() == ' ') {
    value.remove_prefix(1);
  }
  return absl::StrFormat("%s; %s", Clean(typed.substr(0, semi)), Clean(value));
}

std::string HumanText(const DsnRequest& req) {
  std::string t = absl::StrFormat("This is the mail system at host %s.\r\n\r\n", req.myhostname);
  switch (req.kind) {
    case DsnKind::kFailure:
      t += "I'm sorry to have to inform you that your message could not\r\n"
           "be delivered to one or more recipients. It's attached below.\r\n\r\n"
           "For further assistance, please send mail to postmaster.\r\n\r\n"
           "If you do so, please include this problem report. You can\r\n"
           "delete your own text from the attached returned message.\r\n\r\n";
      break;
    case DsnKind::kDelay:
      t += "####################################################################\r\n"
           "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
           "####################################################################\r\n\r\n";
      absl::StrAppendFormat(&t,
                            "Your message could not be delivered for more than %d hour(s).\r\n"
                            "It will be retried until it is %d day(s) old.\r\n\r\n",
                            absl::ToInt64Hours(req.delay_warning_time),
                            absl::ToInt64Hours(req.maximal_queue_lifetime) / 24);
      t += "For further assistance, please send mail to postmaster.\r\n\r\n"
           "If you do so, please include this problem report. You can\r\n"
           "delete your own text from the attached returned message.\r\n\r\n";
      break;
    case DsnKind::kSuccess:
      t += "Your message was successfully delivered to the destination(s)\r\n"
           "listed below. If the message was delivered to mailbox you will\r\n"
           "receive no further notifications. Otherwise you may still receive\r\n"
           "notifications of mail delivery errors from other systems.\r\n\r\n";
      break;
  }
  t += "                   The mail system\r\n";
  return t;
}

std::string_view Subject(DsnKind kind) {
  switch (kind) {
    case DsnKind::kFailure:
      return "Undelivered Mail Returned to Sender";
    case DsnKind::kDelay:
      return "Delayed Mail (still being retried)";
    case DsnKind::kSuccess:
      return "Successful Mail Delivery Report";
  }
  return "";
}

}  // namespace

std::optional<uint8_t> ParseNotify(std::string_view value) {
  uint8_t flags = 0;
  if (value.empty()) {
    return std::nullopt;
  }
  for (absl::string_view word : absl::StrSplit(AV(value), ',')) {
    if (absl::EqualsIgnoreCase(word, "NEVER")) {
      flags |= kNotifyNever;
    } else if (absl::EqualsIgnoreCase(word, "SUCCESS")) {
      flags |= kNotifySuccess;
    } else if (absl::EqualsIgnoreCase(word, "FAILURE")) {
      flags |= kNotifyFailure;
    } else if (absl::EqualsIgnoreCase(word, "DELAY")) {
      flags |= kNotifyDelay;
    } else {
      return std::nullopt;
    }
  }
  if ((flags & kNotifyNever) != 0 && flags != kNotifyNever) {
    return std::nullopt;
  }
  return flags;
}

bool NotifyAllowsFailure(uint8_t n) {
  return n == 0 || (n & kNotifyFailure) != 0;
}
bool NotifyAllowsDelay(uint8_t n) {
  return n == 0 || (n & kNotifyDelay) != 0;
}
bool NotifyAllowsSuccess(uint8_t n) {
  return (n & kNotifySuccess) != 0;
}

std::string_view DsnActionName(DsnAction action) {
  switch (action) {
    case DsnAction::kFailed:
      return "failed";
    case DsnAction::kDelayed:
      return "delayed";
    case DsnAction::kDelivered:
      return "delivered";
    case DsnAction::kRelayed:
      return "relayed";
  }
  return "failed";
}

std::string Rfc5322Date(absl::Time t) {
  return absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000 (UTC)", t, absl::UTCTimeZone());
}

std::optional<DsnMessage> ComposeDsn(const DsnRequest& req) {
  if (req.sender.empty()) {
    return std::nullopt;  // never a notification to the null sender
  }
  std::vector<const DsnRecipient*> reported;
  for (const DsnRecipient& r : req.recipients) {
    if (Wanted(r, req.kind)) {
      reported.push_back(&r);
    }
  }
  if (reported.empty()) {
    return std::nullopt;
  }

  // Part 3 first: the boundary must not occur in it.
  const bool full = req.ret_full && req.kind != DsnKind::kSuccess &&
                    req.original_message.size() <= req.bounce_size_limit;
  const std::string_view returned =
      full ? req.original_message : HeaderSection(req.original_message);
  std::string boundary =
      absl::StrFormat("%s.%d/%s", req.queue_id, absl::ToUnixSeconds(req.now), req.myhostname);
  for (int n = 1; absl::StrContains(AV(returned), AV("--" + boundary)) && n < 1000; ++n) {
    boundary = absl::StrFormat("%s.%d.%d/%s", req.queue_id, absl::ToUnixSeconds(req.now), n,
                               req.myhostname);
  }
  const bool eight_bit = HasEightBit(returned);

  DsnMessage msg;
  msg.envelope_recipient = req.sender;
  msg.recipients = static_cast<int>(reported.size());
  std::string& m = msg.content;
  const std::string id = req.notification_id.empty() ? req.queue_id : req.notification_id;
  absl::StrAppendFormat(&m, "From: MAILER-DAEMON@%s (Mail Delivery System)\r\n", req.myhostname);
  absl::StrAppendFormat(&m, "Subject: %s\r\n", Subject(req.kind));
  absl::StrAppendFormat(&m, "To: %s\r\n", Clean(req.sender));
  m += "Auto-Submitted: auto-replied\r\n";
  m += "MIME-Version: 1.0\r\n";
  absl::StrAppendFormat(&m,
                        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
                        "\tboundary=\"%s\"\r\n",
                        boundary);
  absl::StrAppendFormat(&m, "Content-Transfer-Encoding: %s\r\n", eight_bit ? "8bit" : "7bit");
  absl::StrAppendFormat(&m, "Message-Id: <%s.%s@%s>\r\n",
                        absl::FormatTime("%Y%m%d%H%M%S", req.now, absl::UTCTimeZone()), id,
                        req.myhostname);
  absl::StrAppendFormat(&m, "Date: %s\r\n", Rfc5322Date(req.now));
  m += "\r\nThis is a MIME-encapsulated message.\r\n\r\n";

  // Part 1: the human-readable notification.
  absl::StrAppendFormat(&m, "--%s\r\n", boundary);
  m += "Content-Description: Notification\r\n";
  m += "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
  m += HumanText(req);
  for (const DsnRecipient* r : reported) {
    m += kCrlf;
    m += Fold(absl::StrFormat("<%s>: %s", Clean(r->address), Clean(r->reason)), "    ");
    m += kCrlf;
  }
  m += kCrlf;

  // Part 2: the machine-readable report.
  absl::StrAppendFormat(&m, "--%s\r\n", boundary);
  m += "Content-Description: Delivery report\r\n";
  m += "Content-Type: message/delivery-status\r\n\r\n";
  absl::StrAppendFormat(&m, "Reporting-MTA: dns; %s\r\n", req.myhostname);
  absl::StrAppendFormat(&m, "X-Moat-Queue-ID: %s\r\n", req.queue_id);
  absl::StrAppendFormat(&m, "X-Moat-Sender: rfc822; %s\r\n", Clean(req.sender));
  if (!req.envid.empty()) {
    absl::StrAppendFormat(&m, "Original-Envelope-Id: %s\r\n", Clean(req.envid));
  }
  absl::StrAppendFormat(&m, "Arrival-Date: %s\r\n", Rfc5322Date(req.arrival));
  for (const DsnRecipient* r : reported) {
    m += kCrlf;
    absl::StrAppendFormat(&m, "Final-Recipient: rfc822; %s\r\n", Clean(r->address));
    if (!r->original.empty()) {
      absl::StrAppendFormat(&m, "Original-Recipient: %s\r\n", AddressField(r->original));
    }
    absl::StrAppendFormat(&m, "Action: %s\r\n", DsnActionName(r->action));
    absl::StrAppendFormat(&m, "Status: %s\r\n", Clean(r->status));
    if (!r->remote_mta.empty()) {
      absl::StrAppendFormat(&m, "Remote-MTA: dns; %s\r\n", Clean(r->remote_mta));
    }
    if (!r->reply.empty()) {
      m += Fold(absl::StrFormat("Diagnostic-Code: smtp; %s", Clean(r->reply)), "    ");
      m += kCrlf;
    } else if (!r->reason.empty()) {
      m += Fold(absl::StrFormat("Diagnostic-Code: X-Moat; %s", Clean(r->reason)), "    ");
      m += kCrlf;
    }
    if (r->action == DsnAction::kDelayed) {
      absl::StrAppendFormat(&m, "Will-Retry-Until: %s\r\n",
                            Rfc5322Date(req.arrival + req.maximal_queue_lifetime));
    }
  }
  m += kCrlf;

  // Part 3: the original headers or message.
  absl::StrAppendFormat(&m, "--%s\r\n", boundary);
  if (full) {
    m += "Content-Description: Undelivered Message\r\n";
    m += "Content-Type: message/rfc822\r\n";
  } else {
    m += req.kind == DsnKind::kSuccess ? "Content-Description: Message Headers\r\n"
                                       : "Content-Description: Undelivered Message Headers\r\n";
    m += "Content-Type: text/rfc822-headers\r\n";
  }
  if (eight_bit) {
    m += "Content-Transfer-Encoding: 8bit\r\n";
  }
  m += kCrlf;
  AppendWithCrlf(&m, returned);
  absl::StrAppendFormat(&m, "\r\n--%s--\r\n", boundary);
  return msg;
}

}  // namespace moat::sched
