// cidr_table(5): first match wins, IPv4 and IPv6, negation, if/endif blocks, bad rules
// warned with file:line and skipped.
#include <string>

#include "core/log/log.h"
#include "core/table/cidr_map.h"
#include "core/table/map.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat::table {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

class CidrMapTest : public ::testing::Test {
 protected:
  void SetUp() override { log::CaptureForTest(&log_); }
  void TearDown() override { log::CaptureForTest(nullptr); }
  std::unique_ptr<Map> Load(const std::string& text) {
    std::string path = dir_.Write("cidr", text);
    absl::StatusOr<std::unique_ptr<Map>> map = OpenMap("cidr:" + path);
    EXPECT_TRUE(map.ok()) << map.status();
    return map.ok() ? std::move(*map) : nullptr;
  }
  testing::TempDir dir_;
  std::string log_;
};

TEST_F(CidrMapTest, MynetworksStyleFirstMatchWins) {
  auto map = Load(
      "# mynetworks\n"
      "127.0.0.0/8        OK\n"
      "12.34.56.0/24      inside\n"
      "12.34.0.0/16       outer\n"
      "192.168.1.1        host\n"
      "[::1]/128          v6-loopback\n"
      "2001:db8::/32      v6-net\n"
      "0.0.0.0/0          any-v4\n");
  ASSERT_NE(map, nullptr);
  EXPECT_TRUE(map->IsPattern());
  EXPECT_EQ(map->size(), 7u);
  EXPECT_THAT(map->Find("127.0.0.1"), Optional(std::string_view("OK")));
  EXPECT_THAT(map->Find("12.34.56.78"), Optional(std::string_view("inside")));
  EXPECT_THAT(map->Find("12.34.57.1"), Optional(std::string_view("outer")));
  EXPECT_THAT(map->Find("192.168.1.1"), Optional(std::string_view("host")));
  EXPECT_THAT(map->Find("192.168.1.2"), Optional(std::string_view("any-v4")));
  EXPECT_THAT(map->Find("::1"), Optional(std::string_view("v6-loopback")));
  EXPECT_THAT(map->Find("[::1]"), Optional(std::string_view("v6-loopback")));
  EXPECT_THAT(map->Find("2001:DB8:ffff::7"), Optional(std::string_view("v6-net")));
  EXPECT_EQ(map->Find("2001:db9::1"), std::nullopt);
  EXPECT_EQ(map->Find("host.example.com"), std::nullopt);
  EXPECT_EQ(map->Find(""), std::nullopt);
  EXPECT_EQ(map->Find("1.2.3.4.5"), std::nullopt);
  EXPECT_EQ(log_, "");
}

TEST_F(CidrMapTest, OddPrefixLengths) {
  auto map = Load("10.0.0.0/9 a\n10.128.0.0/9 b\n2001:db8:8000::/33 c\n");
  ASSERT_NE(map, nullptr);
  EXPECT_THAT(map->Find("10.127.255.255"), Optional(std::string_view("a")));
  EXPECT_THAT(map->Find("10.128.0.0"), Optional(std::string_view("b")));
  EXPECT_THAT(map->Find("2001:db8:8000::1"), Optional(std::string_view("c")));
  EXPECT_EQ(map->Find("2001:db8:7fff::1"), std::nullopt);
}

TEST_F(CidrMapTest, NegationAndIfBlocks) {
  auto map = Load(
      "if 10.0.0.0/8\n"
      "  # indented comments are fine\n"
      "if !10.1.0.0/16\n"
      "10.0.0.0/8 in-10-not-10.1\n"
      "endif\n"
      "10.1.2.0/24 in-10.1.2\n"
      "endif\n"
      "!192.0.2.0/24 not-test-net\n");
  ASSERT_NE(map, nullptr);
  EXPECT_THAT(map->Find("10.2.3.4"), Optional(std::string_view("in-10-not-10.1")));
  EXPECT_THAT(map->Find("10.1.2.3"), Optional(std::string_view("in-10.1.2")));
  EXPECT_THAT(map->Find("10.1.3.3"), Optional(std::string_view("not-test-net")));
  EXPECT_EQ(map->Find("192.0.2.1"), std::nullopt);
  EXPECT_THAT(map->Find("8.8.8.8"), Optional(std::string_view("not-test-net")));
}

TEST_F(CidrMapTest, BadRulesAreWarnedAndSkipped) {
  auto map = Load(
      "1.2.3.4/24 host-bits-set\n"
      "1.2.3.0/33 bad-length\n"
      "1.2.3.0/-1 bad-length\n"
      "example.com not-an-address\n"
      "1.2.3.0/24\n"
      "endif\n"
      "5.6.7.0/24 good\n");
  ASSERT_NE(map, nullptr);
  EXPECT_EQ(map->size(), 1u);
  EXPECT_THAT(log_, HasSubstr("cidr, line 1: non-null host address bits in \"1.2.3.4/24\""));
  EXPECT_THAT(log_, HasSubstr("cidr, line 2: bad net/mask pattern"));
  EXPECT_THAT(log_, HasSubstr("cidr, line 3: bad net/mask pattern"));
  EXPECT_THAT(log_, HasSubstr("cidr, line 4: bad net/mask pattern"));
  EXPECT_THAT(log_, HasSubstr("cidr, line 5: no lookup result"));
  EXPECT_THAT(log_, HasSubstr("cidr, line 6: ignoring ENDIF without matching IF"));
  EXPECT_EQ(map->Find("1.2.3.4"), std::nullopt);
  EXPECT_THAT(map->Find("5.6.7.8"), Optional(std::string_view("good")));
}

TEST_F(CidrMapTest, MissingFileIsAnError) {
  EXPECT_EQ(OpenMap("cidr:" + dir_.path() + "/none").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ParseIpAddressTest, AcceptsAddressesOnly) {
  uint8_t out[16];
  bool v6 = true;
  EXPECT_TRUE(ParseIpAddress("192.0.2.1", out, &v6));
  EXPECT_FALSE(v6);
  EXPECT_EQ(out[0], 192);
  EXPECT_TRUE(ParseIpAddress("[2001:db8::1]", out, &v6));
  EXPECT_TRUE(v6);
  EXPECT_FALSE(ParseIpAddress("", out, &v6));
  EXPECT_FALSE(ParseIpAddress("[]", out, &v6));
  EXPECT_FALSE(ParseIpAddress("1.2.3", out, &v6));
  EXPECT_FALSE(ParseIpAddress(std::string(200, '1'), out, &v6));
  EXPECT_FALSE(ParseIpAddress(std::string_view("1.2.3.4\0", 8), out, &v6));
}

}  // namespace
}  // namespace moat::table
