// tests/net/policy_resolve_test.cc
//
// Unit tests of PolicyEngine::Resolve(): recursive virtual alias expansion with Postfix's
// limits and loop handling, and next-hop resolution (address classes, relayhost,
// transport_maps search order, error:/discard:/retry: transports).
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "net/policy.h"
#include "net/policy_settings.h"

namespace moat::net {
namespace {

class ResolveTest : public ::testing::Test {
 protected:
  // Declares an in-memory table under `spec` with "key value" rows.
  void Table(const std::string& spec, const std::vector<std::pair<std::string, std::string>>& rows) {
    auto table = std::make_shared<MemoryMap>(spec);
    for (const auto& [key, value] : rows) {
      table->Add(key, value);
    }
    tables_[spec] = table;
  }

  void Set(const std::string& name, const std::string& value) {
    absl::Status status = ApplyPolicyParameter(
        &settings_, name, value, [this](std::string_view spec) -> absl::StatusOr<TablePtr> {
          auto it = tables_.find(std::string(spec));
          if (it == tables_.end()) {
            return absl::NotFoundError("no such table");
          }
          return it->second;
        });
    ASSERT_TRUE(status.ok()) << status;
  }

  PolicyEngine& Engine() {
    if (engine_ == nullptr) {
      absl::StatusOr<std::unique_ptr<PolicyEngine>> engine = PolicyEngine::Create(settings_);
      EXPECT_TRUE(engine.ok()) << engine.status();
      engine_ = *std::move(engine);
    }
    return *engine_;
  }

  // "address -> next_hop" lines, or the failure reply.
  std::vector<std::string> Resolve(const std::string& recipient) {
    PolicyDecision failure;
    std::vector<ResolvedRecipient> result = Engine().Resolve(recipient, &failure);
    std::vector<std::string> lines;
    if (result.empty()) {
      lines.push_back(absl::StrFormat("%d %s %s", failure.code, failure.enhanced, failure.text));
    }
    for (const ResolvedRecipient& r : result) {
      lines.push_back(r.address + " -> " + r.next_hop);
    }
    return lines;
  }

  using Lines = std::vector<std::string>;

  PolicySettings settings_;
  std::map<std::string, TablePtr> tables_;
  std::unique_ptr<PolicyEngine> engine_;
};

TEST_F(ResolveTest, DefaultClassGoesToDefaultTransportAndDomain) {
  EXPECT_EQ(Resolve("user@Example.NET"), Lines({"user@example.net -> smtp:example.net"}));
}

TEST_F(ResolveTest, RelayDomainUsesRelayTransport) {
  Set("relay_domains", "example.com");
  EXPECT_EQ(Resolve("a@example.com"), Lines({"a@example.com -> relay:example.com"}));
  // relay_domains is in parent_domain_matches_subdomains by default.
  EXPECT_EQ(Resolve("a@sub.example.com"), Lines({"a@sub.example.com -> relay:sub.example.com"}));
  Set("parent_domain_matches_subdomains", "");
  engine_.reset();
  EXPECT_EQ(Resolve("a@sub.example.com"), Lines({"a@sub.example.com -> smtp:sub.example.com"}));
}

TEST_F(ResolveTest, RelayhostOverridesTheDomainForOffHostClasses) {
  Set("relay_domains", "example.com");
  Set("relayhost", "[10.0.0.5]:2525");
  EXPECT_EQ(Resolve("a@example.com"), Lines({"a@example.com -> relay:[10.0.0.5]:2525"}));
  EXPECT_EQ(Resolve("a@example.net"), Lines({"a@example.net -> smtp:[10.0.0.5]:2525"}));
}

TEST_F(ResolveTest, TransportNexthopInMainCfOverridesRelayhost) {
  Set("relay_domains", "example.com");
  Set("relayhost", "[10.0.0.5]");
  Set("relay_transport", "relay:[10.9.9.9]:26");
  EXPECT_EQ(Resolve("a@example.com"), Lines({"a@example.com -> relay:[10.9.9.9]:26"}));
}

TEST_F(ResolveTest, LocalClassUsesLocalTransport) {
  Set("mydestination", "mx.example.com");
  Set("local_transport", "error:local mail delivery is disabled");
  Set("inet_interfaces", "192.0.2.25");
  EXPECT_EQ(Resolve("a@mx.example.com"),
            Lines({"a@mx.example.com -> error:local mail delivery is disabled"}));
  EXPECT_EQ(Resolve("a@[192.0.2.25]"),
            Lines({"a@[192.0.2.25] -> error:local mail delivery is disabled"}));
  // Not our address: an ordinary remote literal.
  EXPECT_EQ(Resolve("a@[198.51.100.1]"), Lines({"a@[198.51.100.1] -> smtp:[198.51.100.1]"}));
}

TEST_F(ResolveTest, TransportMapsSearchOrder) {
  Set("relay_domains", "example.com");
  Table("hash:/t", {{"user@example.com", "smtp:[user-host]"},
                    {"example.com", "smtp:[domain-host]"},
                    {".example.com", "smtp:[sub-host]"},
                    {"*", "smtp:[wildcard-host]"}});
  Set("transport_maps", "hash:/t");
  EXPECT_EQ(Resolve("user@example.com"), Lines({"user@example.com -> smtp:[user-host]"}));
  EXPECT_EQ(Resolve("other@example.com"), Lines({"other@example.com -> smtp:[domain-host]"}));
  EXPECT_EQ(Resolve("x@a.b.example.com"), Lines({"x@a.b.example.com -> smtp:[sub-host]"}));
  EXPECT_EQ(Resolve("x@example.org"), Lines({"x@example.org -> smtp:[wildcard-host]"}));
}

TEST_F(ResolveTest, TransportMapsMatchTheAddressWithoutItsExtension) {
  Set("recipient_delimiter", "+");
  Table("hash:/t", {{"user@example.com", "smtp:[user-host]"}});
  Set("transport_maps", "hash:/t");
  EXPECT_EQ(Resolve("user+tag@example.com"), Lines({"user+tag@example.com -> smtp:[user-host]"}));
}

TEST_F(ResolveTest, TransportMapsParentStyleFollowsParentDomainMatchesSubdomains) {
  Table("hash:/t", {{"example.com", "smtp:[domain-host]"}});
  Set("transport_maps", "hash:/t");
  EXPECT_EQ(Resolve("x@sub.example.com"), Lines({"x@sub.example.com -> smtp:sub.example.com"}));
  Set("parent_domain_matches_subdomains", "transport_maps");
  engine_.reset();
  EXPECT_EQ(Resolve("x@sub.example.com"), Lines({"x@sub.example.com -> smtp:[domain-host]"}));
}

TEST_F(ResolveTest, TransportEntriesWithoutNexthopOrTransport) {
  Set("relayhost", "[10.0.0.5]");
  Table("hash:/t", {{"a.example", "relay"},
                    {"b.example", ":[only-host]"},
                    {"c.example", ":"},
                    {"d.example", "error:5.1.1 mailbox gone"},
                    {"e.example", "error"},
                    {"f.example", "discard:"},
                    {"g.example", "retry:4.3.0 busy"},
                    {"h.example", "smtp:[::1]:2526"}});
  Set("transport_maps", "hash:/t");
  // A transport without nexthop resets the nexthop to the domain (even over relayhost).
  EXPECT_EQ(Resolve("x@a.example"), Lines({"x@a.example -> relay:a.example"}));
  // ":nexthop" keeps the transport, changes the nexthop.
  EXPECT_EQ(Resolve("x@b.example"), Lines({"x@b.example -> smtp:[only-host]"}));
  // ":" changes nothing.
  EXPECT_EQ(Resolve("x@c.example"), Lines({"x@c.example -> smtp:[10.0.0.5]"}));
  EXPECT_EQ(Resolve("x@d.example"), Lines({"x@d.example -> error:5.1.1 mailbox gone"}));
  EXPECT_EQ(Resolve("x@e.example"), Lines({"x@e.example -> error:Address is undeliverable"}));
  EXPECT_EQ(Resolve("x@f.example"), Lines({"x@f.example -> discard:f.example"}));
  EXPECT_EQ(Resolve("x@g.example"), Lines({"x@g.example -> retry:4.3.0 busy"}));
  EXPECT_EQ(Resolve("x@h.example"), Lines({"x@h.example -> smtp:[::1]:2526"}));
}

TEST_F(ResolveTest, VirtualAliasExpandsRecursively) {
  Table("hash:/v", {{"a@example.com", "b@example.com"},
                    {"b@example.com", "c@example.net, d@example.net"},
                    {"d@example.net", "e@example.org"}});
  Set("virtual_alias_maps", "hash:/v");
  EXPECT_EQ(Resolve("a@example.com"), Lines({"c@example.net -> smtp:example.net",
                                             "e@example.org -> smtp:example.org"}));
}

TEST_F(ResolveTest, VirtualAliasSelfReferenceIsExpandedOnce) {
  // "a -> a, b" keeps a and adds b (Postfix: an address may expand into itself once).
  Table("hash:/v", {{"a@example.com", "a@example.com, b@example.com"}});
  Set("virtual_alias_maps", "hash:/v");
  EXPECT_EQ(Resolve("a@example.com"),
            Lines({"a@example.com -> smtp:example.com", "b@example.com -> smtp:example.com"}));
}

TEST_F(ResolveTest, VirtualAliasLoopDefersLikePostfix) {
  Table("hash:/v", {{"a@example.com", "b@example.com"}, {"b@example.com", "a@example.com"}});
  Set("virtual_alias_maps", "hash:/v");
  EXPECT_EQ(Resolve("a@example.com"), Lines({"451 4.6.0 Alias expansion error"}));
  PolicyDecision failure;
  EXPECT_TRUE(Engine().Resolve("a@example.com", &failure).empty());
  EXPECT_EQ(failure.action, PolicyAction::kDefer);
}

TEST_F(ResolveTest, VirtualAliasRecursionLimit) {
  // A chain of 5 hops takes 6 lookups (the last one finds nothing); as in Postfix's
  // cleanup_map1n() each counts against the limit: 6 works, 5 fails.
  Table("hash:/v", {{"h0@example.com", "h1@example.com"},
                    {"h1@example.com", "h2@example.com"},
                    {"h2@example.com", "h3@example.com"},
                    {"h3@example.com", "h4@example.com"},
                    {"h4@example.com", "h5@example.com"}});
  Set("virtual_alias_maps", "hash:/v");
  Set("virtual_alias_recursion_limit", "6");
  EXPECT_EQ(Resolve("h0@example.com"), Lines({"h5@example.com -> smtp:example.com"}));
  Set("virtual_alias_recursion_limit", "5");
  engine_.reset();
  EXPECT_EQ(Resolve("h0@example.com"), Lines({"451 4.6.0 Alias expansion error"}));
}

TEST_F(ResolveTest, VirtualAliasExpansionLimit) {
  Table("hash:/v", {{"list@example.com", "a@x.example b@x.example c@x.example d@x.example"}});
  Set("virtual_alias_maps", "hash:/v");
  Set("virtual_alias_expansion_limit", "4");
  EXPECT_EQ(Resolve("list@example.com").size(), 4u);
  Set("virtual_alias_expansion_limit", "3");
  engine_.reset();
  EXPECT_EQ(Resolve("list@example.com"), Lines({"451 4.6.0 Alias expansion error"}));
}

TEST_F(ResolveTest, VirtualAliasLookupForms) {
  Set("myorigin", "example.com");
  Set("mydestination", "mx.example.com");
  Set("inet_interfaces", "192.0.2.25");
  Set("recipient_delimiter", "+");
  Table("hash:/v", {{"postmaster", "admin@inside.example"},
                    {"@catch.example", "bucket@inside.example"},
                    {"@rename.example", "@inside.example"},
                    {"joe@example.net", "joseph@inside.example"}});
  Set("virtual_alias_maps", "hash:/v");
  // "user" matches only in $myorigin, $mydestination and our address literals.
  EXPECT_EQ(Resolve("postmaster@[192.0.2.25]"),
            Lines({"admin@inside.example -> smtp:inside.example"}));
  EXPECT_EQ(Resolve("postmaster@mx.example.com"),
            Lines({"admin@inside.example -> smtp:inside.example"}));
  EXPECT_EQ(Resolve("postmaster"), Lines({"admin@inside.example -> smtp:inside.example"}));
  EXPECT_EQ(Resolve("postmaster@example.org"), Lines({"postmaster@example.org -> smtp:example.org"}));
  // @domain catch-all, and "@domain" results keep the user part.
  EXPECT_EQ(Resolve("anyone@catch.example"), Lines({"bucket@inside.example -> smtp:inside.example"}));
  EXPECT_EQ(Resolve("ann@rename.example"), Lines({"ann@inside.example -> smtp:inside.example"}));
  // An unmatched extension is propagated to the result.
  EXPECT_EQ(Resolve("joe+news@example.net"),
            Lines({"joseph+news@inside.example -> smtp:inside.example"}));
}

TEST_F(ResolveTest, DuplicateResultsAreDeliveredOnce) {
  Table("hash:/v", {{"team@example.com", "a@example.net, A@example.net, b@example.net"}});
  Set("virtual_alias_maps", "hash:/v");
  EXPECT_EQ(Resolve("team@example.com"),
            Lines({"a@example.net -> smtp:example.net", "b@example.net -> smtp:example.net"}));
}

TEST_F(ResolveTest, VirtualAliasDomainWithoutEntryIsUserUnknown) {
  Table("hash:/v", {{"valias.example", "whatever"}, {"known@valias.example", "k@example.net"}});
  Set("virtual_alias_maps", "hash:/v");
  EXPECT_EQ(Resolve("known@valias.example"), Lines({"k@example.net -> smtp:example.net"}));
  EXPECT_EQ(Resolve("other@valias.example"),
            Lines({"other@valias.example -> error:5.1.1 User unknown in virtual alias table"}));
}

TEST_F(ResolveTest, ClassifiesAddresses) {
  Set("mydestination", "mx.example.com");
  Set("relay_domains", "example.com");
  Set("inet_interfaces", "192.0.2.25");
  PolicyEngine& engine = Engine();
  EXPECT_EQ(engine.ResolveAddress("a@mx.example.com", "").address_class, AddressClass::kLocal);
  EXPECT_EQ(engine.ResolveAddress("a@[198.51.100.1]", "198.51.100.1").address_class,
            AddressClass::kLocal);
  EXPECT_EQ(engine.ResolveAddress("a@[IPv6:2001:db8::1]", "2001:db8:0::1").address_class,
            AddressClass::kLocal);
  EXPECT_EQ(engine.ResolveAddress("a@example.com", "").address_class, AddressClass::kRelay);
  EXPECT_EQ(engine.ResolveAddress("a@example.org", "").address_class, AddressClass::kDefault);
  EXPECT_TRUE(engine.ResolveAddress("a%b@example.com", "").routed);
  EXPECT_FALSE(engine.ResolveAddress("a@example.com", "").routed);
  EXPECT_TRUE(engine.ResolveAddress("a@bad_domain!", "").bad_syntax);
  EXPECT_TRUE(engine.ResolveAddress("a@[300.1.1.1]", "").bad_syntax);
  EXPECT_EQ(engine.ResolveAddress("Bob@Example.COM.", "").address, "Bob@example.com");
}

}  // namespace
}  // namespace moat::net
