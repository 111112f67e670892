// core/server/session_settings.h
//
// Fills the SMTP session's plain settings struct from the config snapshot (main.cf names to
// net::SessionSettings fields). Control thread, at start-up and on reload; pure.
#pragma once

#include "core/config/config.h"
#include "net/smtp_settings.h"

namespace moat::server {

net::SessionSettings MakeSessionSettings(const config::Config& config);

// The settings of a session on an implicit-TLS listener (moat_listen "ADDRESS:PORT/tls";
// inbound-tls engineer): the connection is TLS from its first byte, so STARTTLS is neither
// offered nor required.
inline net::SessionSettings ImplicitTlsSessionSettings(net::SessionSettings settings) {
  settings.starttls_available = false;
  settings.tls_required = false;
  return settings;
}

}  // namespace moat::server
