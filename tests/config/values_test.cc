// Tests for core/config/values.h: typed value parsers.
#include "core/config/values.h"

#include "gtest/gtest.h"

namespace moat::config {
namespace {

TEST(ValuesTest, Bool) {
  EXPECT_TRUE(*ParseBool("yes"));
  EXPECT_TRUE(*ParseBool("YES"));
  EXPECT_FALSE(*ParseBool("no"));
  auto r = ParseBool("true");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "bad boolean value \"true\" (expected yes or no)");
  EXPECT_FALSE(ParseBool("").ok());
}

TEST(ValuesTest, Integer) {
  EXPECT_EQ(*ParseInteger("0"), 0);
  EXPECT_EQ(*ParseInteger("1000"), 1000);
  EXPECT_EQ(*ParseInteger("-5"), -5);
  EXPECT_FALSE(ParseInteger("").ok());
  EXPECT_FALSE(ParseInteger("12a").ok());
  EXPECT_FALSE(ParseInteger("+3").ok());
  EXPECT_FALSE(ParseInteger("99999999999999999999999").ok());
  EXPECT_EQ(ParseInteger("x").status().message(), "bad integer value \"x\"");
}

TEST(ValuesTest, TimeUnits) {
  EXPECT_EQ(*ParseTime("300s", 's'), absl::Seconds(300));
  EXPECT_EQ(*ParseTime("300", 's'), absl::Seconds(300));
  EXPECT_EQ(*ParseTime("5m", 's'), absl::Minutes(5));
  EXPECT_EQ(*ParseTime("2h", 's'), absl::Hours(2));
  EXPECT_EQ(*ParseTime("5d", 's'), absl::Hours(120));
  EXPECT_EQ(*ParseTime("1w", 's'), absl::Hours(168));
  EXPECT_EQ(*ParseTime("0", 'h'), absl::ZeroDuration());
}

TEST(ValuesTest, TimeDefaultUnitAppliesToBareNumbers) {
  EXPECT_EQ(*ParseTime("5", 'd'), absl::Hours(120));
  EXPECT_EQ(*ParseTime("4", 'h'), absl::Hours(4));
}

TEST(ValuesTest, BadTimes) {
  auto r = ParseTime("5x", 's');
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "bad time value \"5x\" (expected a number with an optional unit s, m, h, d or w)");
  EXPECT_FALSE(ParseTime("", 's').ok());
  EXPECT_FALSE(ParseTime("s", 's').ok());
  EXPECT_FALSE(ParseTime("-1s", 's').ok());
  EXPECT_FALSE(ParseTime("1.5h", 's').ok());
  EXPECT_FALSE(ParseTime("10 s", 's').ok());
  EXPECT_FALSE(ParseTime("999999999w", 's').ok());  // overflows Postfix's int seconds
}

TEST(ValuesTest, Sizes) {
  EXPECT_EQ(*ParseSize("10240000"), 10240000);
  EXPECT_EQ(*ParseSize("0"), 0);
  auto r = ParseSize("10M");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "bad size value \"10M\" (expected a number of bytes)");
  EXPECT_FALSE(ParseSize("-1").ok());
  EXPECT_FALSE(ParseSize("").ok());
}

TEST(ValuesTest, ListsSplitOnCommasAndWhiteSpace) {
  EXPECT_EQ(SplitList("a, b,c  d\t\ne,,f"),
            (std::vector<std::string>{"a", "b", "c", "d", "e", "f"}));
  EXPECT_TRUE(SplitList("  , ,").empty());
  EXPECT_TRUE(SplitList("").empty());
}

TEST(ValuesTest, NormalizeWhiteSpaceLikePostconf) {
  EXPECT_EQ(NormalizeWhiteSpace("  a,  b\t\tc \n d  "), "a, b c d");
  EXPECT_EQ(NormalizeWhiteSpace(""), "");
  EXPECT_EQ(NormalizeWhiteSpace("x"), "x");
}

TEST(ValuesTest, HostPort) {
  EXPECT_TRUE(ValidateHostPort("127.0.0.1:2525").ok());
  EXPECT_TRUE(ValidateHostPort("[::1]:2525").ok());
  EXPECT_TRUE(ValidateHostPort("[::]:25").ok());
  EXPECT_TRUE(ValidateHostPort("0.0.0.0:25").ok());
  EXPECT_TRUE(ValidateHostPort("*:25").ok());
  EXPECT_FALSE(ValidateHostPort("127.0.0.1").ok());
  EXPECT_FALSE(ValidateHostPort("127.0.0.1:65536").ok());
  EXPECT_FALSE(ValidateHostPort("127.0.0.1:").ok());
  EXPECT_FALSE(ValidateHostPort("::1:25").ok());
  EXPECT_FALSE(ValidateHostPort("[1.2.3.4]:25").ok());
  EXPECT_FALSE(ValidateHostPort("mail.example.com:25").ok());
}

TEST(ValuesTest, TableRefs) {
  auto t = ParseTableRef("hash:/etc/moat/transport");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->type, "hash");
  EXPECT_EQ(t->name, "/etc/moat/transport");
  EXPECT_FALSE(t->proxied);
  EXPECT_TRUE(t->IsCompiled());
  EXPECT_EQ(t->FilePath(), "/etc/moat/transport.moat");
  EXPECT_EQ(t->ToString(), "hash:/etc/moat/transport");

  auto p = ParseTableRef("proxy:btree:/x/y");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->proxied);
  EXPECT_EQ(p->type, "btree");

  auto c = ParseTableRef("cidr:/etc/moat/networks");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->IsCompiled());
  EXPECT_EQ(c->FilePath(), "/etc/moat/networks");
  EXPECT_EQ(ParseTableRef("texthash:/a")->FilePath(), "/a");
  for (const char* type : {"cdb", "lmdb"}) {
    EXPECT_TRUE(ParseTableRef(std::string(type) + ":/a")->IsCompiled()) << type;
  }
}

TEST(ValuesTest, BadTableRefs) {
  auto r = ParseTableRef("ldap:/etc/postfix/ldap.cf");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("table type \"ldap\""), std::string::npos);
  EXPECT_FALSE(ParseTableRef("hash:relative/path").ok());
  EXPECT_FALSE(ParseTableRef("hash:").ok());
  EXPECT_FALSE(ParseTableRef("proxy:unix:passwd.byname").ok());
  EXPECT_FALSE(ParseTableRef("/just/a/file").ok());
}

TEST(ValuesTest, LooksLikeTableRef) {
  EXPECT_TRUE(LooksLikeTableRef("hash:/x"));
  EXPECT_TRUE(LooksLikeTableRef("proxy:hash:/x"));
  EXPECT_FALSE(LooksLikeTableRef("::1"));
  EXPECT_FALSE(LooksLikeTableRef("[::1]/128"));
  EXPECT_FALSE(LooksLikeTableRef("/file"));
  EXPECT_FALSE(LooksLikeTableRef("example.com"));
}

}  // namespace
}  // namespace moat::config
