// net/smtp_settings.h
//
// SessionSettings: every knob of the SMTP server session, as a plain struct. Integration
// code fills it from the config snapshot (main.cf names in the comments); the defaults are
// Postfix's. Owner: the "session" engineer. Immutable while sessions use it: one object
// may be shared read-only by all sessions of a shard (or of all shards).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "net/smtp_data.h"

namespace moat::net {

struct SessionSettings {
  // myhostname: used in the 220 greeting, EHLO/HELO replies, 421 replies, Received:.
  std::string myhostname = "localhost";
  // mail_name: "(moat)" in Received:, and the default banner.
  std::string mail_name = "moat";
  // smtpd_banner, already expanded ("$myhostname ESMTP $mail_name"). Empty = that default.
  std::string banner;

  // message_size_limit: SIZE= and actual content bytes (0 = no limit).
  uint64_t message_size_limit = 10240000;
  // smtpd_recipient_limit / smtpd_recipient_overshoot_limit.
  uint32_t recipient_limit = 1000;
  uint32_t recipient_overshoot_limit = 1000;
  // smtpd_timeout: the I/O layer arms a timer of this length while it waits for input
  // and calls SmtpSession::OnTimeout() when it fires.
  absl::Duration timeout = absl::Seconds(300);
  // smtpd_helo_required, disable_vrfy_command, smtpd_delay_reject.
  bool helo_required = false;
  bool disable_vrfy = false;
  bool delay_reject = true;
  // smtpd_error_sleep_time, smtpd_soft_error_limit, smtpd_hard_error_limit,
  // smtpd_junk_command_limit.
  absl::Duration error_sleep = absl::Seconds(1);
  int soft_error_limit = 10;
  int hard_error_limit = 20;
  int junk_command_limit = 100;
  // smtpd_forbid_bare_newline and smtpd_forbid_bare_newline_reject_code.
  BareNewline bare_newline = BareNewline::kNormalize;
  int bare_newline_reject_code = 550;
  // smtpd_forbid_unauth_pipelining (Postfix >= 3.9 default: yes): a client that sends
  // ahead where RFC 2920 forbids it gets "554 5.5.0 Error: SMTP protocol synchronization".
  bool forbid_unauth_pipelining = true;
  // smtputf8_enable.
  bool smtputf8_enable = true;
  // smtpd_client_connection_count_limit (0 = none). The count itself comes from the I/O
  // layer in ConnectionInfo.
  int client_connection_count_limit = 50;
  // Command lines: RFC 5321 4.5.3.1.4, 512 octets including CRLF. MAIL and RCPT may be
  // longer by the ESMTP parameters they carry (RFC 1869 4, RFC 3461 5: ORCPT up to 500).
  size_t command_line_bytes_max = 512;
  size_t parameter_line_bytes_extra = 1024;
  // Text lines in DATA/BDAT: RFC 5321 4.5.3.1.6, 1000 octets including CRLF. Longer lines
  // make the message rejected (DESIGN 5). 0 = accept any length (Postfix's behaviour).
  size_t data_line_bytes_max = 1000;
  // STARTTLS can be offered (a TLS context exists). The STARTTLS issue wires it.
  bool starttls_available = false;
  // smtpd_tls_security_level = encrypt: only commands allowed before TLS (EHLO, HELO,
  // STARTTLS, NOOP, QUIT, HELP) work in plaintext; the rest get
  // "530 5.7.0 Must issue a STARTTLS command first".
  bool tls_required = false;
};

}  // namespace moat::net
