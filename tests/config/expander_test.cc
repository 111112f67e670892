// Tests for core/config/expander.h: $name expansion as Postfix does it.
#include "core/config/expander.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace moat::config {
namespace {

class ExpanderTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::string> Expand(std::string_view text) {
    undefined_.clear();
    RawLookup lookup = [this](std::string_view name) -> const std::string* {
      auto it = params_.find(std::string(name));
      return it == params_.end() ? nullptr : &it->second;
    };
    return ExpandParameter("top", text, lookup, &undefined_);
  }

  std::map<std::string, std::string> params_ = {
      {"myhostname", "mx.example.com"}, {"mydomain", "example.com"}, {"empty", ""},
      {"nested", "$myhostname/$mydomain"}, {"deep", "[${nested}]"},
  };
  std::vector<std::string> undefined_;
};

TEST_F(ExpanderTest, PlainTextIsUnchanged) { EXPECT_EQ(*Expand("hello world"), "hello world"); }

TEST_F(ExpanderTest, DollarNameAndBraceAndParenForms) {
  EXPECT_EQ(*Expand("$myhostname"), "mx.example.com");
  EXPECT_EQ(*Expand("${myhostname}x"), "mx.example.comx");
  EXPECT_EQ(*Expand("$(mydomain)"), "example.com");
  EXPECT_EQ(*Expand("localhost.$mydomain, $myhostname"), "localhost.example.com, mx.example.com");
}

TEST_F(ExpanderTest, NameEndsAtNonNameCharacter) {
  EXPECT_EQ(*Expand("$mydomain.org"), "example.com.org");
}

TEST_F(ExpanderTest, RecursiveExpansion) {
  EXPECT_EQ(*Expand("$deep"), "[mx.example.com/example.com]");
}

TEST_F(ExpanderTest, IfSetForm) {
  EXPECT_EQ(*Expand("${myhostname?yes}"), "yes");
  EXPECT_EQ(*Expand("${empty?yes}"), "");
  EXPECT_EQ(*Expand("${nosuch?yes}"), "");
  EXPECT_EQ(*Expand("${myhostname?is $mydomain}"), "is example.com");
  EXPECT_EQ(*Expand("${myhostname?{braced}}"), "braced");
}

TEST_F(ExpanderTest, IfUnsetForm) {
  EXPECT_EQ(*Expand("${myhostname:no}"), "");
  EXPECT_EQ(*Expand("${empty:fallback $mydomain}"), "fallback example.com");
  EXPECT_EQ(*Expand("${empty:{x}}"), "x");
}

TEST_F(ExpanderTest, IfElseForm) {
  EXPECT_EQ(*Expand("${myhostname?{a}:{b}}"), "a");
  EXPECT_EQ(*Expand("${empty?{a}:{b}}"), "b");
}

TEST_F(ExpanderTest, NestedConditionals) {
  EXPECT_EQ(*Expand("${myhostname?${empty:inner}}"), "inner");
}

TEST_F(ExpanderTest, DoubleDollarIsLiteral) {
  EXPECT_EQ(*Expand("cost $$5 $${x}"), "cost $5 ${x}");
}

TEST_F(ExpanderTest, UndefinedNamesExpandToNothingAndAreReported) {
  EXPECT_EQ(*Expand("a $nosuch b ${other:c}"), "a  b c");
  EXPECT_EQ(undefined_, (std::vector<std::string>{"nosuch", "other"}));
}

TEST_F(ExpanderTest, UnterminatedBraceIsAnError) {
  auto r = Expand("x ${myhostname");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "unterminated \"${\" in \"${myhostname\"");
  EXPECT_FALSE(Expand("$(mydomain").ok());
  EXPECT_FALSE(Expand("${myhostname?{a}").ok());
}

TEST_F(ExpanderTest, BadDollarSyntaxIsAnError) {
  EXPECT_FALSE(Expand("trailing $").ok());
  EXPECT_FALSE(Expand("a $-b").ok());
  EXPECT_FALSE(Expand("${}").ok());
  EXPECT_FALSE(Expand("${name!x}").ok());
  auto r = Expand("${{$compatibility_level} <level {2} ? {a} : {b}}");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("relational"), std::string::npos);
}

TEST_F(ExpanderTest, TwoNameLoopIsDetectedWithItsChain) {
  params_["a"] = "x $b";
  params_["b"] = "${a}";
  RawLookup lookup = [this](std::string_view name) -> const std::string* {
    auto it = params_.find(std::string(name));
    return it == params_.end() ? nullptr : &it->second;
  };
  auto r = ExpandParameter("a", params_["a"], lookup, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "expansion loop: a -> b -> a");
}

TEST_F(ExpanderTest, SelfReferenceIsALoop) {
  params_["self"] = "${self?x$self}";
  RawLookup lookup = [this](std::string_view name) -> const std::string* {
    auto it = params_.find(std::string(name));
    return it == params_.end() ? nullptr : &it->second;
  };
  auto r = ExpandParameter("self", params_["self"], lookup, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "expansion loop: self -> self");
}

TEST_F(ExpanderTest, DeepChainsHitTheDepthLimitNotTheStack) {
  // p0 -> p1 -> ... -> p199: longer than kExpansionDepthMax, no loop.
  for (int i = 0; i < 200; ++i) {
    params_[absl::StrCat("p", i)] = absl::StrCat("$p", i + 1);
  }
  params_["p200"] = "end";
  auto r = Expand("$p0");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("deeper than"), std::string::npos);
  // A chain within the limit works.
  params_["p50"] = "end";
  EXPECT_EQ(*Expand("$p0"), "end");
}

TEST_F(ExpanderTest, SameNameTwiceIsNotALoop) {
  EXPECT_EQ(*Expand("$mydomain $mydomain"), "example.com example.com");
}

TEST(ReferencedNamesTest, FindsNamesInAllBranches) {
  auto names = ReferencedNames("$a ${b?$c} ${d:{$e}} $$f $(g) ${h?{$i}:{$j}}");
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"a", "b", "c", "d", "e", "g", "h", "i", "j"}));
}

}  // namespace
}  // namespace moat::config
