// Tests for core/config/main_cf.h: Postfix's main.cf line syntax.
#include "core/config/main_cf.h"

#include "gtest/gtest.h"

namespace moat::config {
namespace {

std::vector<MainCfEntry> Parse(std::string_view text, Diagnostics& d) {
  return ParseMainCf(text, "main.cf", d);
}

TEST(MainCfTest, NameEqualsValueWithWhiteSpaceTrimmed) {
  Diagnostics d;
  auto e = Parse("myhostname = mx.example.com\nmydomain=example.com\n  \nrelayhost =   \n", d);
  ASSERT_EQ(e.size(), 3u);
  EXPECT_EQ(e[0].name, "myhostname");
  EXPECT_EQ(e[0].value, "mx.example.com");
  EXPECT_EQ(e[0].line, 1);
  EXPECT_EQ(e[1].name, "mydomain");
  EXPECT_EQ(e[1].value, "example.com");
  EXPECT_EQ(e[2].name, "relayhost");
  EXPECT_EQ(e[2].value, "");
  EXPECT_EQ(e[2].line, 4);
  EXPECT_TRUE(d.items().empty());
}

TEST(MainCfTest, CommentsAreWholeLinesOnly) {
  Diagnostics d;
  auto e = Parse("# a comment\n   # an indented comment\nsmtpd_banner = hi # not a comment\n", d);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].value, "hi # not a comment");
  EXPECT_EQ(e[0].line, 3);
}

TEST(MainCfTest, ContinuationLinesJoinWithOneSpace) {
  Diagnostics d;
  auto e = Parse("mynetworks = 127.0.0.0/8,\n\t10.0.0.0/8   \n    192.168.0.0/16\nx = y\n", d);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].value, "127.0.0.0/8, 10.0.0.0/8 192.168.0.0/16");
  EXPECT_EQ(e[0].line, 1);
  EXPECT_EQ(e[1].line, 4);
}

TEST(MainCfTest, CommentsAndBlankLinesDoNotEndALogicalLine) {
  // As in seed 002: an empty value, a blank line, then indented items between comments.
  Diagnostics d;
  auto e = Parse(
      "smtpd_sender_restrictions =\n\n    #\n    # PERMIT {\n    permit_mynetworks\n"
      "# column-0 comment\n    reject_non_fqdn_sender\nnext = 1\n",
      d);
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].value, "permit_mynetworks reject_non_fqdn_sender");
  EXPECT_EQ(e[1].name, "next");
  EXPECT_EQ(e[1].line, 8);
  EXPECT_TRUE(d.items().empty());
}

TEST(MainCfTest, CrLfLineEndingsAreWhiteSpace) {
  Diagnostics d;
  auto e = Parse("a = b\r\n  c\r\n", d);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].value, "b c");
}

TEST(MainCfTest, MissingEqualsIsAnErrorWithLine) {
  Diagnostics d;
  auto e = Parse("a = b\nthis line has no equals\nc = d\n", d);
  EXPECT_EQ(e.size(), 2u);
  ASSERT_EQ(d.errors(), 1);
  EXPECT_EQ(d.items()[0].line, 2);
  EXPECT_EQ(d.items()[0].ToString(),
            "main.cf:2: missing \"=\" after parameter name in \"this line has no equals\"");
}

TEST(MainCfTest, LeadingContinuationIsAnError) {
  Diagnostics d;
  auto e = Parse("   stray = value\na = b\n", d);
  EXPECT_EQ(e.size(), 1u);
  ASSERT_EQ(d.errors(), 1);
  EXPECT_EQ(d.items()[0].line, 1);
}

TEST(MainCfTest, BadNamesAreErrors) {
  Diagnostics d;
  auto e = Parse("= value\nbad-name = x\nok_name2 = y\n", d);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].name, "ok_name2");
  ASSERT_EQ(d.errors(), 2);
  EXPECT_EQ(d.items()[0].ToString(), "main.cf:1: missing parameter name before \"=\"");
  EXPECT_EQ(d.items()[1].ToString(), "main.cf:2: bad parameter name \"bad-name\"");
}

TEST(MainCfTest, ValueMayContainEquals) {
  Diagnostics d;
  auto e = Parse("smtpd_banner = a=b\n", d);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].value, "a=b");
}

TEST(MainCfTest, LastLineWithoutNewline) {
  Diagnostics d;
  auto e = Parse("a = b\n  c", d);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].value, "b c");
}

TEST(MainCfTest, NulIsAnError) {
  Diagnostics d;
  std::string text("a = b\0c\n", 8);
  Parse(text, d);
  EXPECT_EQ(d.errors(), 1);
}

}  // namespace
}  // namespace moat::config
