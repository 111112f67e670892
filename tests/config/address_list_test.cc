// Tests for core/config/address_list.h: CIDR lists as in mynetworks.
#include "core/config/address_list.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat::config {
namespace {

AddressList Parse(const std::vector<std::string>& entries, Diagnostics& d) {
  return AddressList::Parse(entries, "mynetworks", "main.cf", 7, d);
}

TEST(AddressListTest, Ipv4NetworksAndHosts) {
  Diagnostics d;
  AddressList list = Parse({"127.0.0.0/8", "192.0.2.7", "10.1.0.0/16"}, d);
  EXPECT_TRUE(d.items().empty());
  EXPECT_EQ(list.rule_count(), 3u);
  EXPECT_TRUE(list.ContainsText("127.0.0.1"));
  EXPECT_TRUE(list.ContainsText("127.255.255.255"));
  EXPECT_FALSE(list.ContainsText("128.0.0.1"));
  EXPECT_TRUE(list.ContainsText("192.0.2.7"));
  EXPECT_FALSE(list.ContainsText("192.0.2.8"));
  EXPECT_TRUE(list.ContainsText("10.1.200.3"));
  EXPECT_FALSE(list.ContainsText("10.2.0.1"));
  EXPECT_FALSE(list.ContainsText("not an address"));
}

TEST(AddressListTest, OddPrefixLengths) {
  Diagnostics d;
  AddressList list = Parse({"192.0.2.128/25", "0.0.0.0/0"}, d);
  EXPECT_TRUE(d.items().empty());
  EXPECT_TRUE(list.ContainsText("8.8.8.8"));  // /0 matches everything IPv4
  EXPECT_FALSE(list.ContainsText("::1"));     // but no IPv6
  Diagnostics d2;
  AddressList narrow = Parse({"192.0.2.128/25"}, d2);
  EXPECT_TRUE(narrow.ContainsText("192.0.2.200"));
  EXPECT_FALSE(narrow.ContainsText("192.0.2.127"));
}

TEST(AddressListTest, Ipv6BracketedAndBare) {
  Diagnostics d;
  AddressList list = Parse({"[::1]/128", "[2001:db8::]/32", "fd00::/8", "[fe80::1]"}, d);
  EXPECT_TRUE(d.items().empty()) << d.items()[0].ToString();
  EXPECT_TRUE(list.ContainsText("::1"));
  EXPECT_FALSE(list.ContainsText("::2"));
  EXPECT_TRUE(list.ContainsText("2001:db8:1234::5"));
  EXPECT_FALSE(list.ContainsText("2001:db9::1"));
  EXPECT_TRUE(list.ContainsText("fdaa::1"));
  EXPECT_TRUE(list.ContainsText("fe80::1"));
  EXPECT_FALSE(list.ContainsText("fe80::2"));
  EXPECT_FALSE(list.ContainsText("127.0.0.1"));
}

TEST(AddressListTest, MappedIpv4MatchesIpv4RulesAndMappedIpv6Rules) {
  Diagnostics d;
  AddressList v4 = Parse({"127.0.0.0/8"}, d);
  EXPECT_TRUE(v4.ContainsText("::ffff:127.0.0.1"));
  EXPECT_FALSE(v4.ContainsText("::ffff:10.0.0.1"));
  AddressList mapped = Parse({"[::ffff:127.0.0.0]/104"}, d);
  EXPECT_TRUE(mapped.ContainsText("::ffff:127.0.0.1"));
  EXPECT_TRUE(d.items().empty());
}

TEST(AddressListTest, FirstMatchWinsWithNegation) {
  Diagnostics d;
  AddressList list = Parse({"!10.0.0.1", "10.0.0.0/8"}, d);
  EXPECT_TRUE(d.items().empty());
  EXPECT_FALSE(list.ContainsText("10.0.0.1"));
  EXPECT_TRUE(list.ContainsText("10.0.0.2"));
}

TEST(AddressListTest, SockaddrForms) {
  Diagnostics d;
  AddressList list = Parse({"127.0.0.0/8", "[::1]/128"}, d);
  sockaddr_storage ss{};
  auto* in = reinterpret_cast<sockaddr_in*>(&ss);
  in->sin_family = AF_INET;
  ASSERT_EQ(inet_pton(AF_INET, "127.0.0.9", &in->sin_addr), 1);
  EXPECT_TRUE(list.Contains(ss));
  ASSERT_EQ(inet_pton(AF_INET, "8.8.8.8", &in->sin_addr), 1);
  EXPECT_FALSE(list.Contains(ss));
  sockaddr_storage ss6{};
  auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss6);
  in6->sin6_family = AF_INET6;
  ASSERT_EQ(inet_pton(AF_INET6, "::1", &in6->sin6_addr), 1);
  EXPECT_TRUE(list.Contains(ss6));
  sockaddr_storage unix_address{};
  unix_address.ss_family = AF_UNIX;
  EXPECT_FALSE(list.Contains(unix_address));
}

TEST(AddressListTest, PrefixTooLongIsAnError) {
  Diagnostics d;
  AddressList list = Parse({"10.0.0.0/33", "[::1]/129", "10.0.0.0/x", "10.0.0.0/"}, d);
  EXPECT_EQ(list.rule_count(), 0u);
  ASSERT_EQ(d.errors(), 4);
  EXPECT_EQ(d.items()[0].ToString(),
            "main.cf:7: mynetworks: bad CIDR \"10.0.0.0/33\": the prefix length must be 0..32");
  EXPECT_NE(d.items()[1].message.find("0..128"), std::string::npos);
}

TEST(AddressListTest, NonZeroHostBitsAreAnError) {
  Diagnostics d;
  Parse({"10.0.0.1/8", "[2001:db8::1]/32"}, d);
  ASSERT_EQ(d.errors(), 2);
  EXPECT_EQ(d.items()[0].ToString(),
            "main.cf:7: mynetworks: bad CIDR \"10.0.0.1/8\": non-zero host bits after the /8 "
            "prefix");
}

TEST(AddressListTest, HostnamesAndGarbageAreErrors) {
  Diagnostics d;
  Parse({"mail.example.com", "1.2.3", "!", "256.1.1.1"}, d);
  EXPECT_EQ(d.errors(), 4);
}

TEST(AddressListTest, TablesAreKeptAsReferences) {
  Diagnostics d;
  AddressList list = Parse({"127.0.0.0/8", "cidr:/etc/moat/networks", "proxy:hash:/x"}, d);
  EXPECT_TRUE(d.items().empty());
  ASSERT_EQ(list.tables().size(), 2u);
  EXPECT_EQ(list.tables()[0].ToString(), "cidr:/etc/moat/networks");
  EXPECT_TRUE(list.tables()[1].proxied);
  EXPECT_EQ(list.rule_count(), 1u);
}

TEST(AddressListTest, FilesAreReadInPlaceWithTheirOwnLineNumbers) {
  testing::TempDir dir;
  std::string inner = dir.Write("inner", "# nested\n172.16.0.0/12\n");
  std::string outer = dir.Write("networks",
                                "# trusted networks\n192.0.2.0/24, 198.51.100.0/24 # lab\n\n" +
                                    inner + "\n10.0.0.1/8\n");
  Diagnostics d;
  AddressList list = Parse({outer, "[::1]/128"}, d);
  EXPECT_TRUE(list.ContainsText("192.0.2.1"));
  EXPECT_TRUE(list.ContainsText("198.51.100.1"));
  EXPECT_TRUE(list.ContainsText("172.20.0.1"));
  EXPECT_TRUE(list.ContainsText("::1"));
  ASSERT_EQ(d.errors(), 1);
  EXPECT_EQ(d.items()[0].file, outer);
  EXPECT_EQ(d.items()[0].line, 5);
  EXPECT_EQ(list.files(), (std::vector<std::string>{outer, inner}));
}

TEST(AddressListTest, MissingFileIsAnError) {
  Diagnostics d;
  Parse({"/nonexistent/moat/networks"}, d);
  ASSERT_EQ(d.errors(), 1);
  EXPECT_EQ(d.items()[0].line, 7);
  EXPECT_NE(d.items()[0].message.find("cannot open \"/nonexistent/moat/networks\""),
            std::string::npos);
}

TEST(AddressListTest, SelfIncludingFileStopsAtTheDepthLimit) {
  testing::TempDir dir;
  std::string path = dir.path() + "/loop";
  dir.Write("loop", path + "\n127.0.0.0/8\n");
  Diagnostics d;
  AddressList list = Parse({path}, d);
  EXPECT_EQ(d.errors(), 1);
  EXPECT_NE(d.items()[0].message.find("nested deeper"), std::string::npos);
  EXPECT_TRUE(list.ContainsText("127.0.0.1"));
}

}  // namespace
}  // namespace moat::config
