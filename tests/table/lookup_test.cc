// Postfix search orders, source text to lookup, for every map kind, including the tables
// of the Postfix guides in ../shared/seeds/ (relay_recipients with x/OK values and
// @domain wildcards, transport with smtp:[host]:port).
#include <string>
#include <vector>

#include "core/log/log.h"
#include "core/table/lookup.h"
#include "core/table/map.h"
#include "core/table/table_builder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat::table {
namespace {

class LookupTest : public ::testing::Test {
 protected:
  void SetUp() override { log::CaptureForTest(&log_); }
  void TearDown() override { log::CaptureForTest(nullptr); }

  // Compiles `source` as NAME and returns "hash:PATH".
  std::string Hash(const std::string& name, const std::string& source) {
    std::string path = dir_.Write(name, source);
    CompileOptions options;
    options.sync = false;
    absl::StatusOr<CompileStats> stats = CompileFile(path, path + ".moat", options);
    EXPECT_TRUE(stats.ok()) << stats.status();
    return "hash:" + path;
  }
  std::string Cidr(const std::string& name, const std::string& source) {
    return "cidr:" + dir_.Write(name, source);
  }
  MapList List(const std::string& specs) {
    absl::StatusOr<MapList> list = MapList::Open(specs);
    EXPECT_TRUE(list.ok()) << list.status();
    return list.ok() ? std::move(*list) : MapList();
  }
  static std::string Value(const std::optional<Match>& m) {
    return m ? std::string(m->value) : "<none>";
  }

  testing::TempDir dir_;
  std::string log_;
};

TEST_F(LookupTest, RelayRecipientsFromTheGuide) {
  // Seed 001: "user1@example.com x" lines; "@example.com x" as the catch-all alternative.
  MapList list = List(Hash("relay_recipients",
                           "user1@example.com   x\n"
                           "user2@example.com   x\n"
                           "Info@Example.org    OK\n"
                           "@catchall.example   x\n"));
  EXPECT_EQ(Value(FindRecipient(list, "user1@example.com", "")), "x");
  EXPECT_EQ(Value(FindRecipient(list, "USER2@EXAMPLE.COM", "")), "x");
  EXPECT_EQ(Value(FindRecipient(list, "info@example.org", "")), "OK");
  EXPECT_EQ(FindRecipient(list, "user3@example.com", ""), std::nullopt);
  EXPECT_EQ(FindRecipient(list, "user1@example.net", ""), std::nullopt);
  auto m = FindRecipient(list, "anybody@catchall.example", "");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->form, KeyForm::kAtDomain);
  EXPECT_EQ(m->map->spec(), "hash:" + dir_.path() + "/relay_recipients");
  EXPECT_EQ(FindRecipient(list, "", "+"), std::nullopt);
}

TEST_F(LookupTest, RecipientSearchOrderWithDelimiter) {
  MapList list = List(Hash("rcpt",
                           "user+special@example.com  special\n"
                           "user@example.com          plain\n"
                           "abuse@                    localpart-at\n"
                           "sales+eu@                 ext-at\n"
                           "@example.com              at-domain\n"
                           "alias                     bare-localpart\n"));
  auto m = FindRecipient(list, "user+special@example.com", "+");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "special");
  EXPECT_EQ(m->form, KeyForm::kAddress);
  m = FindRecipient(list, "user+other@example.com", "+");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "plain");
  EXPECT_EQ(m->form, KeyForm::kAddressNoExt);
  EXPECT_EQ(Value(FindRecipient(list, "user-other@example.com", "+-")), "plain");
  EXPECT_EQ(Value(FindRecipient(list, "user+other@example.com", "")), "at-domain");
  // user+ext@, then user@, before @domain.
  m = FindRecipient(list, "abuse@example.com", "+");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "localpart-at");
  EXPECT_EQ(m->form, KeyForm::kLocalPartAt);
  m = FindRecipient(list, "abuse+x@elsewhere.net", "+");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->form, KeyForm::kLocalPartNoExtAt);
  m = FindRecipient(list, "sales+eu@elsewhere.net", "+");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "ext-at");
  EXPECT_EQ(Value(FindRecipient(list, "nobody@example.com", "+")), "at-domain");
  EXPECT_EQ(FindRecipient(list, "nobody@example.net", "+"), std::nullopt);
  // The bare local part only for local domains.
  EXPECT_EQ(FindRecipient(list, "alias@local.example", "+", false), std::nullopt);
  m = FindRecipient(list, "alias+x@local.example", "+", true);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "bare-localpart");
  EXPECT_EQ(m->form, KeyForm::kLocalPartNoExt);
}

TEST_F(LookupTest, PostfixNeverSplitsTheseLocalParts) {
  MapList list = List(Hash("nosplit",
                           "mailer@example.com mailer\n"
                           "postmaster@example.com pm\n"
                           "owner@example.com owner\n"
                           "list@example.com list\n"
                           "x@example.com x\n"));
  EXPECT_EQ(FindRecipient(list, "mailer-daemon@example.com", "-"), std::nullopt)
      << "mailer-daemon is never split into mailer + -daemon";
  EXPECT_EQ(Value(FindRecipient(list, "postmaster+x@example.com", "+")), "pm");
  EXPECT_EQ(FindRecipient(list, "owner-list@example.com", "-"), std::nullopt);
  EXPECT_EQ(FindRecipient(list, "list-request@example.com", "-"), std::nullopt);
  EXPECT_EQ(Value(FindRecipient(list, "list-foo@example.com", "-")), "list");
  EXPECT_EQ(FindRecipient(list, "+x@example.com", "+"), std::nullopt)
      << "a split that leaves an empty local part is not made";
  EXPECT_EQ(Value(FindRecipient(list, "x++y@example.com", "+")), "x");
}

TEST_F(LookupTest, VirtualAliasSearchOrder) {
  // Seed 001: postmaster and abuse for the firewall's own address literal.
  MapList list = List(Hash("virtual",
                           "postmaster      admin@inside.example\n"
                           "abuse           abuse@inside.example\n"
                           "user@example.com  u@inside.example\n"
                           "@example.com    catchall@inside.example\n"));
  EXPECT_EQ(Value(FindVirtualAlias(list, "postmaster@[192.0.2.1]", "+", true)),
            "admin@inside.example");
  EXPECT_EQ(FindVirtualAlias(list, "postmaster@remote.example", "+", false), std::nullopt);
  EXPECT_EQ(Value(FindVirtualAlias(list, "user+x@example.com", "+", false)),
            "u@inside.example");
  auto m = FindVirtualAlias(list, "other@example.com", "+", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "catchall@inside.example");
  EXPECT_EQ(m->form, KeyForm::kAtDomain);
  // No user@ forms in virtual(5).
  MapList at = List(Hash("virtual2", "abuse@ x\n"));
  EXPECT_EQ(FindVirtualAlias(at, "abuse@example.com", "+", true), std::nullopt);
}

TEST_F(LookupTest, AccessAddressSearchOrder) {
  MapList list = List(Hash("access",
                           "user@example.com   user-domain\n"
                           "example.com        domain\n"
                           ".example.com       subdomain\n"
                           "user@              localpart\n"
                           "spam+x@            ext-at\n"));
  auto m = FindAccessAddress(list, "user+x@example.com", "+", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "user-domain");
  m = FindAccessAddress(list, "other@example.com", "+", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "domain");
  EXPECT_EQ(m->form, KeyForm::kDomain);
  m = FindAccessAddress(list, "other@mx.example.com", "+", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "subdomain");
  EXPECT_EQ(m->form, KeyForm::kParentDomain);
  // With parent_domain_matches_subdomains, "example.com" matches the subdomain instead.
  EXPECT_EQ(Value(FindAccessAddress(list, "other@mx.example.com", "+", true)), "domain");
  // Domain before user@.
  EXPECT_EQ(Value(FindAccessAddress(list, "user@a.example.com", "+", false)), "subdomain");
  EXPECT_EQ(Value(FindAccessAddress(list, "user@example.net", "+", false)), "localpart");
  EXPECT_EQ(Value(FindAccessAddress(list, "spam+x@example.net", "+", false)), "ext-at");
  EXPECT_EQ(Value(FindAccessAddress(list, "user+y@example.net", "+", false)), "localpart");
  EXPECT_EQ(FindAccessAddress(list, "nobody@example.net", "+", false), std::nullopt);
  EXPECT_EQ(FindAccessAddress(list, "nobody@notexample.com", "+", false), std::nullopt);
}

TEST_F(LookupTest, DomainLookupsWithParents) {
  MapList list = List(Hash("domains",
                           "example.com    exact\n"
                           ".example.com   dot-parent\n"
                           "example.org    org\n"));
  auto m = FindDomain(list, "Example.COM", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "exact");
  EXPECT_EQ(m->form, KeyForm::kDomain);
  EXPECT_EQ(Value(FindDomain(list, "a.b.example.com", false)), "dot-parent");
  EXPECT_EQ(Value(FindDomain(list, "a.b.example.com", true)), "exact");
  EXPECT_EQ(FindDomain(list, "a.example.org", false), std::nullopt)
      << "without parent_domain_matches_subdomains, example.org does not match subdomains";
  EXPECT_EQ(Value(FindDomain(list, "a.example.org", true)), "org");
  EXPECT_EQ(FindDomain(list, "notexample.com", true), std::nullopt);
  EXPECT_EQ(FindDomain(list, "com", true), std::nullopt);
  EXPECT_EQ(FindDomain(list, "", true), std::nullopt);
  EXPECT_EQ(FindDomain(list, ".", true), std::nullopt);
}

TEST_F(LookupTest, ClientLookupsHostnameThenAddressThenNetworks) {
  MapList list = List(Hash("clients",
                           "1.2.3.4            ip\n"
                           "1.2.3              net3\n"
                           "10                 net1\n"
                           "host.example.com   host\n"
                           ".example.com       parent\n"
                           "2001:db8::1        v6\n"
                           "2001:db8           v6net\n"
                           "fe80:              v6colon\n"));
  auto m = FindClient(list, "1.2.3.4", "", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "ip");
  EXPECT_EQ(m->form, KeyForm::kClientAddress);
  m = FindClient(list, "1.2.3.5", "", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "net3");
  EXPECT_EQ(m->form, KeyForm::kNetwork);
  EXPECT_EQ(Value(FindClient(list, "10.9.8.7", "", false)), "net1");
  EXPECT_EQ(FindClient(list, "11.2.3.4", "", false), std::nullopt);
  EXPECT_EQ(Value(FindClient(list, "5.6.7.8", "HOST.example.com", false)), "host");
  EXPECT_EQ(Value(FindClient(list, "5.6.7.8", "other.example.com", false)), "parent");
  // Postfix's smtpd looks up the name before the address (check_namadr_access).
  EXPECT_EQ(Value(FindClient(list, "1.2.3.4", "host.example.com", false)), "host");
  EXPECT_EQ(Value(FindClient(list, "1.2.3.4", "unknown", false)), "ip");
  EXPECT_EQ(Value(FindClient(list, "2001:DB8::1", "", false)), "v6");
  EXPECT_EQ(Value(FindClient(list, "2001:db8::2", "", false)), "v6net");
  EXPECT_EQ(Value(FindClient(list, "fe80::1", "", false)), "v6colon");
  EXPECT_EQ(FindClient(list, "", "", false), std::nullopt);
}

TEST_F(LookupTest, PatternTablesGetTheWholeKeyOnly) {
  MapList list = List(Cidr("cidr", "1.2.3.0/24 cidr-hit\n") + ", " +
                      Hash("after", "1.2.3.4 hash-ip\n1.2 hash-net\n"));
  auto m = FindClient(list, "1.2.3.4", "", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "cidr-hit") << "the first map wins for the same key";
  EXPECT_TRUE(m->map->IsPattern());
  EXPECT_EQ(Value(FindClient(list, "1.2.9.9", "", false)), "hash-net");
  // mynetworks as a cidr table alone.
  MapList mynetworks = List(Cidr("mynetworks", "127.0.0.0/8 OK\n12.34.56.0/24 OK\n"));
  EXPECT_EQ(Value(FindClient(mynetworks, "12.34.56.7", "", false)), "OK");
  EXPECT_EQ(FindClient(mynetworks, "12.34.57.7", "", false), std::nullopt);
}

TEST_F(LookupTest, TransportFromTheGuides) {
  // Seeds 000/001/003: one domain to the inside gateway, [] = no MX lookup, with a port.
  MapList list = List(Hash("transport",
                           "user@example.com    smtp:[user-box.example.com]:2525\n"
                           "example.com         smtp:[inside-gateway.example.com]\n"
                           ".example.com        relay:[sub-gateway.example.com]:10025\n"
                           "example.net         smtp:[192.0.2.10]:25\n"
                           "*                   smtp:[default.example.com]\n"));
  auto m = FindTransport(list, "user+tag@example.com", "+", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "smtp:[user-box.example.com]:2525");
  EXPECT_EQ(m->form, KeyForm::kAddressNoExt);
  EXPECT_EQ(Value(FindTransport(list, "other@example.com", "+", false)),
            "smtp:[inside-gateway.example.com]");
  m = FindTransport(list, "x@deep.sub.example.com", "+", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "relay:[sub-gateway.example.com]:10025");
  EXPECT_EQ(m->form, KeyForm::kParentDomain);
  EXPECT_EQ(Value(FindTransport(list, "x@deep.sub.example.com", "+", true)),
            "smtp:[inside-gateway.example.com]");
  EXPECT_EQ(Value(FindTransport(list, "x@example.net", "+", false)), "smtp:[192.0.2.10]:25");
  m = FindTransport(list, "x@elsewhere.org", "+", false);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->value, "smtp:[default.example.com]");
  EXPECT_EQ(m->form, KeyForm::kWildcard);
  MapList no_wildcard = List(Hash("transport2", "example.com smtp:[in]\n"));
  EXPECT_EQ(FindTransport(no_wildcard, "x@example.org", "+", false), std::nullopt);
}

TEST_F(LookupTest, SeveralMapsKeyMajorOrder) {
  // Postfix tries each key in every map before the next, less specific, key.
  MapList list = List(Hash("first", "@example.com first-domain\n") + " " +
                      Hash("second", "user@example.com second-user\n"));
  EXPECT_EQ(Value(FindRecipient(list, "user@example.com", "+")), "second-user");
  EXPECT_EQ(Value(FindRecipient(list, "other@example.com", "+")), "first-domain");
}

TEST_F(LookupTest, TexthashAndStaticInLists) {
  std::string text = dir_.Write("text", "Known@Example.com OK\n");
  MapList list = List("texthash:" + text + ", static:fallback");
  EXPECT_EQ(Value(FindRecipient(list, "known@example.com", "+")), "OK");
  EXPECT_EQ(Value(FindRecipient(list, "unknown@example.com", "+")), "fallback");
}

TEST_F(LookupTest, OverlongAndOddQueriesMatchNothing) {
  MapList list = List(Hash("odd", "@example.com x\n* star\n"));
  std::string long_address(kQueryBytesMax, 'a');
  long_address += "@example.com";
  EXPECT_EQ(FindRecipient(list, long_address, "+"), std::nullopt);
  EXPECT_EQ(FindTransport(list, long_address, "+", false), std::nullopt);
  EXPECT_EQ(FindClient(list, long_address, long_address, false), std::nullopt);
  std::string just_fits(kQueryBytesMax - 12, 'a');
  EXPECT_EQ(Value(FindRecipient(list, just_fits + "@example.com", "+")), "x");
  EXPECT_EQ(FindRecipient(list, "@", "+"), std::nullopt);
  EXPECT_EQ(Value(FindRecipient(list, "@example.com", "+")), "x");
  EXPECT_EQ(FindRecipient(list, "no-at-sign", "+"), std::nullopt);
  EXPECT_EQ(Value(FindTransport(list, "no-at-sign", "+", false)), "star");
  EXPECT_EQ(Value(FindKey(list, "@EXAMPLE.com")), "x");
}

TEST_F(LookupTest, MapListOpenReportsTheBadSpec) {
  absl::StatusOr<MapList> list = MapList::Open("hash:" + dir_.path() + "/missing");
  ASSERT_FALSE(list.ok());
  EXPECT_THAT(std::string(list.status().message()), ::testing::HasSubstr("missing.moat"));
  absl::StatusOr<MapList> empty = MapList::Open(" , ");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

}  // namespace
}  // namespace moat::table
