// tests/client/next_hop_test.cc: next hop parsing (net/client/next_hop.h). Owned by: outbound.
#include "net/client/next_hop.h"

#include "gtest/gtest.h"

namespace moat::client {
namespace {

TEST(NextHopTest, BracketedIpv4WithPort) {
  auto hop = ParseNextHop("smtp:[10.0.0.5]:2525");
  ASSERT_TRUE(hop.ok()) << hop.status();
  EXPECT_EQ(hop->kind, TransportKind::kSmtp);
  EXPECT_EQ(hop->host, "10.0.0.5");
  EXPECT_EQ(hop->port, 2525);
  EXPECT_FALSE(hop->needs_mx);
  EXPECT_TRUE(hop->is_literal);
  EXPECT_FALSE(hop->is_ipv6);
  EXPECT_EQ(hop->Key(), "smtp:[10.0.0.5]:2525");
  EXPECT_TRUE(ResolveForDelivery(*hop).ok());
}

TEST(NextHopTest, RelayBracketedHostDefaultsToPort25) {
  auto hop = ParseNextHop("relay:[mx.internal]");
  ASSERT_TRUE(hop.ok()) << hop.status();
  EXPECT_EQ(hop->kind, TransportKind::kRelay);
  EXPECT_EQ(hop->transport, "relay");
  EXPECT_EQ(hop->host, "mx.internal");
  EXPECT_EQ(hop->port, 25);
  EXPECT_FALSE(hop->needs_mx);
  EXPECT_FALSE(hop->is_literal);
  EXPECT_EQ(hop->Key(), "relay:[mx.internal]:25");
}

TEST(NextHopTest, Ipv6Literal) {
  auto hop = ParseNextHop("smtp:[ipv6:2001:db8::1]:2526");
  ASSERT_TRUE(hop.ok()) << hop.status();
  EXPECT_EQ(hop->host, "2001:db8::1");
  EXPECT_TRUE(hop->is_ipv6);
  EXPECT_EQ(hop->port, 2526);
  EXPECT_EQ(hop->Key(), "smtp:[ipv6:2001:db8::1]:2526");
  auto bare = ParseNextHop("[::1]");
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->host, "::1");
  EXPECT_TRUE(bare->is_ipv6);
  EXPECT_EQ(bare->transport, "smtp");
}

TEST(NextHopTest, RelayhostFormUsesDefaultTransport) {
  auto hop = ParseNextHop("[127.0.0.1]:2526", "relay");
  ASSERT_TRUE(hop.ok()) << hop.status();
  EXPECT_EQ(hop->kind, TransportKind::kRelay);
  EXPECT_EQ(hop->port, 2526);
}

TEST(NextHopTest, UnbracketedHostNeedsMxAndSaysSoClearly) {
  auto hop = ParseNextHop("smtp:example.com");
  ASSERT_TRUE(hop.ok()) << hop.status();
  EXPECT_TRUE(hop->needs_mx);
  const absl::Status s = ResolveForDelivery(*hop);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_NE(s.message().find("MX lookup for example.com is not available yet"),
            absl::string_view::npos)
      << s.message();
  EXPECT_NE(s.message().find("smtp:[example.com]:25"), absl::string_view::npos) << s.message();
}

TEST(NextHopTest, EmptyNextHopMeansRecipientDomainWithMx) {
  auto hop = ParseNextHop("smtp:", "smtp", "example.org");
  ASSERT_TRUE(hop.ok()) << hop.status();
  EXPECT_EQ(hop->host, "example.org");
  EXPECT_TRUE(hop->needs_mx);
  EXPECT_FALSE(ParseNextHop("smtp:").ok());
}

TEST(NextHopTest, ErrorAndDiscard) {
  auto err = ParseNextHop("error:5.1.1 mailbox unavailable");
  ASSERT_TRUE(err.ok());
  EXPECT_EQ(err->kind, TransportKind::kError);
  EXPECT_EQ(err->text, "5.1.1 mailbox unavailable");
  EXPECT_EQ(ErrorTransportDsn(*err), "5.1.1");
  auto soft = ParseNextHop("error:4.3.2 try later");
  ASSERT_TRUE(soft.ok());
  EXPECT_EQ(ErrorTransportDsn(*soft), "4.3.2");
  auto plain = ParseNextHop("error:no such user");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(ErrorTransportDsn(*plain), "5.0.0");
  auto discard = ParseNextHop("discard:");
  ASSERT_TRUE(discard.ok());
  EXPECT_EQ(discard->kind, TransportKind::kDiscard);
  EXPECT_EQ(discard->text, "");
  EXPECT_TRUE(ResolveForDelivery(*discard).ok());
}

TEST(NextHopTest, LocalTransportOutcomesLikeErrorAndDiscardAgents) {
  auto hard = LocalTransportOutcome(*ParseNextHop("error:5.1.1 mailbox gone"));
  ASSERT_TRUE(hard.has_value());
  EXPECT_EQ(hard->kind, LocalOutcome::Kind::kBounced);
  EXPECT_EQ(hard->dsn, "5.1.1");
  EXPECT_EQ(hard->reason, "mailbox gone");
  auto soft = LocalTransportOutcome(*ParseNextHop("error:4.7.1 later"));
  ASSERT_TRUE(soft.has_value());
  EXPECT_EQ(soft->kind, LocalOutcome::Kind::kDeferred);
  EXPECT_EQ(soft->reason, "later");
  auto plain = LocalTransportOutcome(*ParseNextHop("error:User unknown"));
  EXPECT_EQ(plain->dsn, "5.0.0");
  EXPECT_EQ(plain->reason, "User unknown");
  auto discard = LocalTransportOutcome(*ParseNextHop("discard:silently"));
  ASSERT_TRUE(discard.has_value());
  EXPECT_EQ(discard->kind, LocalOutcome::Kind::kSent);
  EXPECT_EQ(discard->dsn, "2.0.0");
  EXPECT_EQ(discard->reason, "silently");
  EXPECT_EQ(LocalTransportOutcome(*ParseNextHop("discard:"))->reason, "discarded");
  EXPECT_FALSE(LocalTransportOutcome(*ParseNextHop("smtp:[10.0.0.1]")).has_value());
}

TEST(NextHopTest, MalformedSpecsAreErrorsNotCrashes) {
  for (const char* spec :
       {"smtp:[10.0.0.5", "smtp:[10.0.0.5]:", "smtp:[10.0.0.5]:0", "smtp:[10.0.0.5]:65536",
        "smtp:[10.0.0.5]:25x", "smtp:[10.0.0.5]x", "smtp:[ipv6:not-an-address]", "lmtp:[h]",
        "smtp:[bad host]", "smtp:host:", "smtp:ho st", "smtp:[]"}) {
    EXPECT_FALSE(ParseNextHop(spec).ok()) << spec;
  }
}

}  // namespace
}  // namespace moat::client
