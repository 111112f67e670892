// tests/net/policy_clientcerts_test.cc
//
// permit_tls_clientcerts and permit_tls_all_clientcerts in the restriction engine, after
// Postfix's smtpd_check.c: a certificate or public-key fingerprint listed in
// relay_clientcerts permits (trusted or not); "all" permits any certificate that chained to
// smtpd_tls_CAfile; without TLS or without a certificate neither matches and the relay
// check answers "Relay access denied". Owner: "inbound-tls".
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "net/policy.h"
#include "net/policy_settings.h"

namespace moat::net {
namespace {

constexpr char kListedCert[] = "AA:BB:CC:01";
constexpr char kListedKey[] = "DD:EE:FF:02";

std::unique_ptr<PolicyEngine> Engine(const std::string& relay_restrictions) {
  auto certs = std::make_shared<MemoryMap>("hash:/relay_clientcerts");
  certs->Add(kListedCert, "partner.example");
  certs->Add(kListedKey, "partner key");
  auto open = [&](std::string_view spec) -> absl::StatusOr<TablePtr> {
    if (spec == "hash:/relay_clientcerts") {
      return TablePtr(certs);
    }
    return absl::NotFoundError("no table");
  };
  PolicySettings s;
  for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"myhostname", "mx.example.com"},
           {"mydestination", ""},
           {"mynetworks", "192.0.2.0/24"},
           {"relay_domains", "example.com"},
           {"relay_clientcerts", "hash:/relay_clientcerts"},
           {"smtpd_relay_restrictions", relay_restrictions}}) {
    absl::Status status = ApplyPolicyParameter(&s, name, value, open);
    EXPECT_TRUE(status.ok()) << name << ": " << status;
  }
  absl::StatusOr<std::unique_ptr<PolicyEngine>> engine = PolicyEngine::Create(std::move(s));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

struct Cert {
  bool tls = true;
  std::string fingerprint;
  std::string pkey_fingerprint;
  bool verified = false;
};

// The answer to "RCPT TO:<x@outside.example>" from an outside client.
PolicyDecision RelayTo(PolicyEngine& engine, const Cert& cert) {
  PolicyRequest r;
  r.stage = PolicyStage::kRcpt;
  r.client_ip = "203.0.113.9";
  r.server_ip = "198.51.100.1";
  r.helo_name = "client.example";
  r.sender = "a@client.example";
  r.recipient = "x@outside.example";
  r.protocol = "ESMTP";
  r.tls = cert.tls;
  r.client_cert_fingerprint = cert.fingerprint;
  r.client_pkey_fingerprint = cert.pkey_fingerprint;
  r.client_cert_verified = cert.verified;
  return engine.Check(r);
}

bool Permitted(const PolicyDecision& d) {
  return d.action != PolicyAction::kReject && d.action != PolicyAction::kDefer;
}

TEST(PolicyClientcertsTest, ListedCertificateFingerprintPermitsEvenUntrusted) {
  auto engine = Engine("permit_tls_clientcerts, reject_unauth_destination");
  ASSERT_NE(engine, nullptr);
  EXPECT_TRUE(Permitted(RelayTo(*engine, {true, kListedCert, "11:11", false})));
  EXPECT_TRUE(Permitted(RelayTo(*engine, {true, kListedCert, "11:11", true})));
  // Table keys fold case: a lower-case entry matches Postfix's upper-case print too.
  EXPECT_TRUE(Permitted(RelayTo(*engine, {true, "aa:bb:cc:01", "", false})));
}

TEST(PolicyClientcertsTest, ListedPublicKeyFingerprintPermits) {
  auto engine = Engine("permit_tls_clientcerts, reject_unauth_destination");
  ASSERT_NE(engine, nullptr);
  EXPECT_TRUE(Permitted(RelayTo(*engine, {true, "99:99", kListedKey, false})));
}

TEST(PolicyClientcertsTest, UnlistedOrMissingCertificateIsRelayDenied) {
  auto engine = Engine("permit_tls_clientcerts, reject_unauth_destination");
  ASSERT_NE(engine, nullptr);
  for (const Cert& cert : {Cert{true, "99:99", "88:88", true}, Cert{true, "", "", false},
                           Cert{false, "", "", false}}) {
    PolicyDecision d = RelayTo(*engine, cert);
    EXPECT_EQ(d.action, PolicyAction::kReject);
    EXPECT_EQ(d.code, 554);
    EXPECT_EQ(d.enhanced, "5.7.1");
    EXPECT_EQ(d.text, "<x@outside.example>: Relay access denied");
  }
  // Fingerprints without TLS (cannot happen in the session, but the engine checks it).
  EXPECT_FALSE(Permitted(RelayTo(*engine, {false, kListedCert, kListedKey, true})));
}

TEST(PolicyClientcertsTest, AllClientcertsNeedsATrustedCertificate) {
  auto engine = Engine("permit_tls_all_clientcerts, reject_unauth_destination");
  ASSERT_NE(engine, nullptr);
  EXPECT_TRUE(Permitted(RelayTo(*engine, {true, "99:99", "88:88", true})));
  EXPECT_FALSE(Permitted(RelayTo(*engine, {true, "99:99", "88:88", false})));
  // A listed but untrusted certificate: "all" does not look at relay_clientcerts.
  EXPECT_FALSE(Permitted(RelayTo(*engine, {true, kListedCert, "", false})));
  EXPECT_FALSE(Permitted(RelayTo(*engine, {true, "", "", false})));
}

TEST(PolicyClientcertsTest, DefaultRelayRestrictionsDeferWithoutPermission) {
  // Postfix's default smtpd_relay_restrictions end in defer_unauth_destination: 454.
  auto engine = Engine("permit_mynetworks, permit_tls_clientcerts, defer_unauth_destination");
  ASSERT_NE(engine, nullptr);
  PolicyDecision d = RelayTo(*engine, {true, "99:99", "", false});
  EXPECT_EQ(d.action, PolicyAction::kDefer);
  EXPECT_EQ(d.code, 454);
  EXPECT_EQ(d.enhanced, "4.7.1");
  EXPECT_EQ(d.text, "<x@outside.example>: Relay access denied");
  EXPECT_TRUE(Permitted(RelayTo(*engine, {true, kListedCert, "", false})));
}

}  // namespace
}  // namespace moat::net
