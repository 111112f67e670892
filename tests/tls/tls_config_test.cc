// tests/tls/tls_config_test.cc
//
// The configuration side of inbound TLS: the "/tls" (implicit TLS) option of moat_listen
// entries (accepted forms, errors with file:line), the warnings for permit_tls_clientcerts /
// permit_tls_all_clientcerts when no client certificate is asked for, and the
// smtpd_tls_fingerprint_digest / smtpd_tls_received_header options reaching ServerOptions.
// Owner: "inbound-tls".
#include <string>
#include <vector>

#include "core/config/config.h"
#include "core/config/values.h"
#include "gtest/gtest.h"
#include "tls/server_context.h"

namespace moat::tls {
namespace {

config::LoadResult Load(std::string_view text) {
  return config::Config::LoadText(text, "/etc/moat/main.cf");
}

std::string Dump(const config::Diagnostics& d) {
  std::string out;
  for (const config::Diagnostic& x : d.items()) {
    out += (x.IsError() ? "error: " : "warning: ") + x.ToString() + "\n";
  }
  return out;
}

bool Has(const config::Diagnostics& d, const std::string& text) {
  for (const config::Diagnostic& x : d.items()) {
    if (x.ToString() == text) {
      return true;
    }
  }
  return false;
}

TEST(ListenEntryTest, PlainAndImplicitTlsForms) {
  struct Case {
    std::string text;
    std::string address;
    bool implicit_tls;
  };
  for (const Case& c : std::vector<Case>{{"127.0.0.1:25", "127.0.0.1:25", false},
                                         {"127.0.0.1:465/tls", "127.0.0.1:465", true},
                                         {"[::1]:465/tls", "[::1]:465", true},
                                         {"*:465/tls", "*:465", true},
                                         {"[::]:2525", "[::]:2525", false}}) {
    absl::StatusOr<config::ListenEntry> e = config::ParseListenEntry(c.text);
    ASSERT_TRUE(e.ok()) << c.text << ": " << e.status();
    EXPECT_EQ(e->address, c.address) << c.text;
    EXPECT_EQ(e->implicit_tls, c.implicit_tls) << c.text;
  }
  for (const char* bad : {"127.0.0.1:465/ssl", "127.0.0.1:465/TLS", "127.0.0.1/tls",
                                 "127.0.0.1:465/tls/tls", "/tls", "127.0.0.1:465/"}) {
    EXPECT_FALSE(config::ParseListenEntry(bad).ok()) << bad;
  }
}

TEST(ListenEntryTest, BadEntryIsAConfigErrorWithFileAndLine) {
  config::LoadResult r = Load(
      "myhostname = mx.example.com\n"
      "moat_listen = 127.0.0.1:2525, 127.0.0.1:4650/smtps\n");
  EXPECT_EQ(r.config, nullptr);
  ASSERT_EQ(r.diagnostics.errors(), 1) << Dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].ToString(),
            "/etc/moat/main.cf:2: moat_listen: bad moat_listen entry \"127.0.0.1:4650/smtps\": "
            "the only option is \"/tls\" (implicit TLS)");

  config::LoadResult ok = Load("moat_listen = 127.0.0.1:2525, 127.0.0.1:4650/tls\n");
  ASSERT_NE(ok.config, nullptr) << Dump(ok.diagnostics);
  EXPECT_EQ(ok.config->List("moat_listen"),
            (std::vector<std::string>{"127.0.0.1:2525", "127.0.0.1:4650/tls"}));
}

TEST(ClientCertRestrictionsTest, WarnWhenNoCertificateIsAskedFor) {
  // TLS off: the permit can never match.
  config::LoadResult off = Load(
      "relay_clientcerts = texthash:/etc/moat/relay_clientcerts\n"
      "smtpd_relay_restrictions = permit_tls_clientcerts, reject_unauth_destination\n");
  ASSERT_NE(off.config, nullptr) << Dump(off.diagnostics);
  EXPECT_TRUE(Has(off.diagnostics,
                  "/etc/moat/main.cf:2: smtpd_relay_restrictions: permit_tls_clientcerts is "
                  "requested, but TLS is off (smtpd_tls_security_level = none)"))
      << Dump(off.diagnostics);

  // TLS on, no certificate asked for: Postfix's wording.
  config::LoadResult no_ask = Load(
      "smtpd_tls_security_level = may\n"
      "smtpd_tls_cert_file = /etc/moat/cert.pem\n"
      "smtpd_recipient_restrictions = permit_tls_all_clientcerts, reject_unauth_destination\n");
  ASSERT_NE(no_ask.config, nullptr) << Dump(no_ask.diagnostics);
  EXPECT_TRUE(Has(no_ask.diagnostics,
                  "/etc/moat/main.cf:3: smtpd_recipient_restrictions: permit_tls_all_clientcerts "
                  "is requested, but \"smtpd_tls_ask_ccert = no\""))
      << Dump(no_ask.diagnostics);

  // Asked for: no warning about it.
  config::LoadResult asked = Load(
      "smtpd_tls_security_level = may\n"
      "smtpd_tls_cert_file = /etc/moat/cert.pem\n"
      "smtpd_tls_ask_ccert = yes\n"
      "smtpd_relay_restrictions = permit_tls_clientcerts, reject_unauth_destination\n");
  ASSERT_NE(asked.config, nullptr) << Dump(asked.diagnostics);
  for (const config::Diagnostic& d : asked.diagnostics.items()) {
    EXPECT_EQ(d.ToString().find("is requested"), std::string::npos) << d.ToString();
  }
}

TEST(ServerOptionsTest, ClientCertificateAndReceivedHeaderOptions) {
  config::LoadResult r = Load(
      "smtpd_tls_security_level = may\n"
      "smtpd_tls_cert_file = /etc/moat/cert.pem\n"
      "smtpd_tls_CAfile = /etc/moat/ca.pem\n"
      "smtpd_tls_ask_ccert = yes\n"
      "smtpd_tls_fingerprint_digest = sha1\n"
      "smtpd_tls_received_header = yes\n");
  ASSERT_NE(r.config, nullptr) << Dump(r.diagnostics);
  absl::StatusOr<ServerOptions> o = ServerOptionsFromConfig(*r.config);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_TRUE(o->ask_client_cert);
  EXPECT_EQ(o->fingerprint_digest, "sha1");
  EXPECT_TRUE(o->received_header);
  EXPECT_EQ(o->ca_file, "/etc/moat/ca.pem");

  config::LoadResult d = Load("smtpd_tls_security_level = may\n"
                              "smtpd_tls_cert_file = /etc/moat/cert.pem\n");
  ASSERT_NE(d.config, nullptr) << Dump(d.diagnostics);
  absl::StatusOr<ServerOptions> defaults = ServerOptionsFromConfig(*d.config);
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_FALSE(defaults->ask_client_cert);
  EXPECT_EQ(defaults->fingerprint_digest, "sha256");  // Postfix >= 3.6
  EXPECT_FALSE(defaults->received_header);            // Postfix: no
}

}  // namespace
}  // namespace moat::tls
