// core/server/session_settings.h
//
// Fills the SMTP session's plain settings struct from the config snapshot (main.cf names to
// net::SessionSettings fields). Control thread, at start-up and on reload; pure.
#pragma once

#include "core/config/config.h"
#include "net/smtp_settings.h"

namespace moat::server {

net::SessionSettings MakeSessionSettings(const config::Config& config);

}  // namespace moat::server
