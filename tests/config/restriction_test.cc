// Tests for core/config/restriction.h: restriction lists in their parsed form.
#include "core/config/restriction.h"

#include "gtest/gtest.h"

namespace moat::config {
namespace {

std::vector<Restriction> Parse(const std::vector<std::string>& items, Diagnostics& d,
                               bool from_main_cf = true) {
  return ParseRestrictions(items, "smtpd_recipient_restrictions", "main.cf", 9, from_main_cf, d);
}

TEST(RestrictionTest, SupportedNamesInOrder) {
  Diagnostics d;
  auto r = Parse({"permit_mynetworks", "reject_unauth_destination", "reject_unlisted_recipient",
                  "permit"},
                 d);
  EXPECT_TRUE(d.items().empty());
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].name, "permit_mynetworks");
  EXPECT_EQ(r[1].name, "reject_unauth_destination");
  EXPECT_EQ(r[3].name, "permit");
  EXPECT_TRUE(r[0].arg.empty());
}

TEST(RestrictionTest, EverySupportedNameIsAccepted) {
  for (const char* name :
       {"permit", "reject", "defer", "permit_mynetworks", "reject_unauth_destination",
        "defer_unauth_destination", "reject_unlisted_recipient", "reject_unlisted_sender",
        "reject_non_fqdn_sender", "reject_non_fqdn_recipient", "reject_non_fqdn_helo_hostname",
        "reject_invalid_helo_hostname", "reject_unauth_pipelining", "permit_tls_clientcerts",
        "permit_auth_destination"}) {
    Diagnostics d;
    auto r = Parse({name}, d);
    EXPECT_TRUE(d.items().empty()) << name;
    ASSERT_EQ(r.size(), 1u) << name;
    EXPECT_TRUE(IsSupportedRestriction(name));
  }
}

TEST(RestrictionTest, AccessChecksTakeATable) {
  Diagnostics d;
  auto r = Parse({"check_client_access", "cidr:/etc/moat/clients", "check_sender_access",
                  "proxy:hash:/etc/moat/senders", "check_helo_access", "texthash:/h",
                  "check_recipient_access", "hash:/r"},
                 d);
  EXPECT_TRUE(d.items().empty());
  ASSERT_EQ(r.size(), 4u);
  EXPECT_EQ(r[0].name, "check_client_access");
  EXPECT_EQ(r[0].arg, "cidr:/etc/moat/clients");
  EXPECT_EQ(r[0].table.type, "cidr");
  EXPECT_EQ(r[1].table.type, "hash");
  EXPECT_TRUE(r[1].table.proxied);
  EXPECT_EQ(r[3].table.name, "/r");
}

TEST(RestrictionTest, AccessCheckWithoutTableIsAnError) {
  Diagnostics d;
  auto r = Parse({"permit_mynetworks", "check_client_access"}, d);
  EXPECT_EQ(r.size(), 1u);
  ASSERT_EQ(d.errors(), 1);
  EXPECT_EQ(d.items()[0].ToString(),
            "main.cf:9: smtpd_recipient_restrictions: check_client_access needs a table "
            "argument (type:/path)");
}

TEST(RestrictionTest, AccessCheckWithBadTableIsAnError) {
  Diagnostics d;
  Parse({"check_client_access", "ldap:/etc/postfix/ldap.cf"}, d);
  EXPECT_EQ(d.errors(), 1);
}

TEST(RestrictionTest, OldNamesMapToCurrentNames) {
  Diagnostics d;
  auto r = Parse({"reject_non_fqdn_hostname", "reject_invalid_hostname"}, d);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].name, "reject_non_fqdn_helo_hostname");
  EXPECT_EQ(r[1].name, "reject_invalid_helo_hostname");
}

TEST(RestrictionTest, SaslAuthenticatedWarnsOnlyWhenWrittenInMainCf) {
  Diagnostics d;
  auto r = Parse({"permit_sasl_authenticated"}, d);
  EXPECT_EQ(r.size(), 1u);
  EXPECT_EQ(d.errors(), 0);
  EXPECT_EQ(d.warnings(), 1);
  Diagnostics quiet;
  Parse({"permit_sasl_authenticated"}, quiet, /*from_main_cf=*/false);
  EXPECT_TRUE(quiet.items().empty());
}

TEST(RestrictionTest, DnsRestrictionsAreNotImplementedErrors) {
  Diagnostics d;
  auto r = Parse({"reject_unknown_sender_domain", "reject_rbl_client", "zen.example.org",
                  "reject_rhsbl_sender", "dbl.example.org", "permit"},
                 d);
  ASSERT_EQ(r.size(), 1u);  // only permit; the DNSBL zones were consumed as arguments
  ASSERT_EQ(d.errors(), 3);
  EXPECT_NE(d.items()[0].message.find("not implemented yet"), std::string::npos);
}

TEST(RestrictionTest, PolicyServiceIsAnErrorAndItsArgumentIsConsumed) {
  Diagnostics d;
  auto r = Parse({"check_policy_service", "inet:127.0.0.1:15000", "permit"}, d);
  EXPECT_EQ(r.size(), 1u);
  ASSERT_EQ(d.errors(), 1);
  EXPECT_NE(d.items()[0].message.find("check_policy_service"), std::string::npos);
}

TEST(RestrictionTest, UnknownNamesAreErrors) {
  Diagnostics d;
  Parse({"warn_if_reject", "my_restriction_class", "hash:/bare/table"}, d);
  EXPECT_EQ(d.errors(), 3);
  EXPECT_EQ(d.items()[0].ToString(),
            "main.cf:9: smtpd_recipient_restrictions: restriction \"warn_if_reject\" is not a "
            "restriction moat implements");
}

}  // namespace
}  // namespace moat::config
