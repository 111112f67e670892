// core/server/session_settings.cc: see session_settings.h.
#include "core/server/session_settings.h"

#include <cstdint>
#include <string>

#include "tls/server_context.h"

namespace moat::server {
namespace {

// Postfix (postconf(5), 3.9 and the 3.7.x backports): "yes" is an alias for "normalize".
net::BareNewline ParseBareNewline(const std::string& value) {
  if (value == "reject") {
    return net::BareNewline::kReject;
  }
  if (value == "yes" || value == "normalize") {
    return net::BareNewline::kNormalize;
  }
  if (value == "note") {
    return net::BareNewline::kNote;
  }
  return net::BareNewline::kNo;
}

}  // namespace

net::SessionSettings MakeSessionSettings(const config::Config& c) {
  net::SessionSettings s;
  s.myhostname = c.String("myhostname");
  s.mail_name = c.String("mail_name");
  s.banner = c.String("smtpd_banner");
  s.message_size_limit = static_cast<uint64_t>(c.Size("message_size_limit"));
  s.recipient_limit = static_cast<uint32_t>(c.Int("smtpd_recipient_limit"));
  s.recipient_overshoot_limit = static_cast<uint32_t>(c.Int("smtpd_recipient_overshoot_limit"));
  s.timeout = c.Time("smtpd_timeout");
  s.helo_required = c.Bool("smtpd_helo_required");
  s.disable_vrfy = c.Bool("disable_vrfy_command");
  s.delay_reject = c.Bool("smtpd_delay_reject");
  s.error_sleep = c.Time("smtpd_error_sleep_time");
  s.soft_error_limit = static_cast<int>(c.Int("smtpd_soft_error_limit"));
  s.hard_error_limit = static_cast<int>(c.Int("smtpd_hard_error_limit"));
  s.junk_command_limit = static_cast<int>(c.Int("smtpd_junk_command_limit"));
  s.smtputf8_enable = c.Bool("smtputf8_enable");
  s.bare_newline = ParseBareNewline(c.String("smtpd_forbid_bare_newline"));
  s.forbid_unauth_pipelining = c.Bool("smtpd_forbid_unauth_pipelining");
  s.client_connection_count_limit =
      static_cast<int>(c.Int("smtpd_client_connection_count_limit"));
  // STARTTLS (tls engineer): offered at "may" and "encrypt"; "encrypt" refuses mail
  // commands before it. With smtpd_tls_wrappermode the whole connection is TLS: no
  // STARTTLS, and nothing to require.
  const tls::SecurityLevel tls_level = tls::SecurityLevelFromConfig(c);
  const bool wrapper_mode = c.Bool("smtpd_tls_wrappermode");
  s.starttls_available = tls_level != tls::SecurityLevel::kNone && !wrapper_mode;
  s.tls_required = tls_level == tls::SecurityLevel::kEncrypt && !wrapper_mode;
  return s;
}

}  // namespace moat::server
