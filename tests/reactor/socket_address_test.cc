// tests/reactor/socket_address_test.cc
//
// moat_listen address parsing (the accepted forms and the rejected ones), formatting,
// and the steering key the reuseport program computes.
#include "core/reactor/socket_address.h"

#include "core/reactor/listener.h"
#include "gtest/gtest.h"

namespace moat::reactor {
namespace {

TEST(SocketAddressTest, ParsesIpv4AndIpv6Forms) {
  absl::StatusOr<SocketAddress> v4 = SocketAddress::Parse("127.0.0.1:2525");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->family(), AF_INET);
  EXPECT_EQ(v4->port(), 2525);
  EXPECT_EQ(v4->ToString(), "127.0.0.1:2525");

  absl::StatusOr<SocketAddress> v6 = SocketAddress::Parse("[::1]:2525");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->family(), AF_INET6);
  EXPECT_EQ(v6->ToString(), "[::1]:2525");
  EXPECT_EQ(v6->HostString(), "::1");

  absl::StatusOr<SocketAddress> any = SocketAddress::Parse("*:25");
  ASSERT_TRUE(any.ok());
  EXPECT_EQ(any->ToString(), "0.0.0.0:25");
  absl::StatusOr<SocketAddress> any6 = SocketAddress::Parse("[::]:0");
  ASSERT_TRUE(any6.ok());
  EXPECT_EQ(any6->port(), 0);
}

TEST(SocketAddressTest, RejectsMalformedAddresses) {
  for (const char* bad : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:x",
                          "::1:25", "[::1]25", "[::1]:", "[::1", "300.0.0.1:25", "host:25",
                          "127.0.0.1:-1", "[127.0.0.1]:25"}) {
    EXPECT_FALSE(SocketAddress::Parse(bad).ok()) << bad;
  }
}

TEST(SocketAddressTest, SteeringKeyIsTheSourceWordInHostOrder) {
  absl::StatusOr<SocketAddress> a = SocketAddress::Parse("127.0.0.9:1");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->SteeringKey(), 0x7f000009u);
  EXPECT_EQ(ListenerSet::ShardForClient(*a, 4), static_cast<int>(0x7f000009u % 4));
  absl::StatusOr<SocketAddress> b = SocketAddress::Parse("[2001:db8::1:2]:1");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->SteeringKey(), 0x00010002u);  // the last 32 bits
}

TEST(SocketAddressTest, IpKeyIgnoresPortAndMapsIpv4) {
  absl::StatusOr<SocketAddress> a = SocketAddress::Parse("10.1.2.3:1000");
  absl::StatusOr<SocketAddress> b = SocketAddress::Parse("10.1.2.3:2000");
  absl::StatusOr<SocketAddress> c = SocketAddress::Parse("[::ffff:10.1.2.3]:3");
  absl::StatusOr<SocketAddress> d = SocketAddress::Parse("10.1.2.4:1000");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  EXPECT_EQ(a->ip_key(), b->ip_key());
  EXPECT_EQ(a->ip_key(), c->ip_key());
  EXPECT_FALSE(a->ip_key() == d->ip_key());
  EXPECT_EQ(c->HostString(), "10.1.2.3");
}

}  // namespace
}  // namespace moat::reactor
