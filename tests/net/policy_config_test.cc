// tests/net/policy_config_test.cc
//
// BuildPolicySettings(): a real main.cf through config::Config, real tables through
// core/table (texthash: sources in a temporary directory), then the engine's decisions.
// Seed 001's gateway main.cf is the main case.
#include <memory>
#include <string>

#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "core/config/config.h"
#include "gtest/gtest.h"
#include "net/policy.h"
#include "net/policy_config.h"
#include "tests/testing/testing.h"

namespace moat::net {
namespace {

std::string Reply(const PolicyDecision& d) {
  if (d.action == PolicyAction::kReject || d.action == PolicyAction::kDefer) {
    return absl::StrFormat("%d %s %s", d.code, d.enhanced, d.text);
  }
  return "OK";
}

class PolicyConfigTest : public ::testing::Test {
 protected:
  // Loads main.cf text with @DIR@ replaced by the temporary directory.
  std::unique_ptr<PolicyEngine> Load(const std::string& main_cf) {
    std::string text = absl::StrReplaceAll(main_cf, {{"@DIR@", dir_.path()}});
    config::LoadResult loaded = config::Config::LoadText(text, dir_.path() + "/main.cf");
    for (const auto& d : loaded.diagnostics.items()) {
      ADD_FAILURE() << "unexpected diagnostic: " << d.ToString();
    }
    EXPECT_NE(loaded.config, nullptr);
    if (loaded.config == nullptr) {
      return nullptr;
    }
    absl::StatusOr<PolicySettings> settings = BuildPolicySettings(*loaded.config);
    EXPECT_TRUE(settings.ok()) << settings.status();
    if (!settings.ok()) {
      return nullptr;
    }
    absl::StatusOr<std::unique_ptr<PolicyEngine>> engine =
        PolicyEngine::Create(*std::move(settings));
    EXPECT_TRUE(engine.ok()) << engine.status();
    return engine.ok() ? *std::move(engine) : nullptr;
  }

  std::string Rcpt(PolicyEngine& engine, std::string_view client_ip, std::string_view rcpt) {
    PolicyRequest r;
    r.stage = PolicyStage::kRcpt;
    r.client_ip = client_ip;
    r.server_ip = "192.0.2.25";
    r.helo_name = "mail.example.org";
    r.sender = "sender@example.org";
    r.recipient = rcpt;
    return Reply(engine.Check(r));
  }

  testing::TempDir dir_;
};

constexpr char kGatewayMainCf[] = R"(# Seed 001: the email firewall/gateway.
myhostname = mx.example.com
myorigin = example.com
mydestination =
local_recipient_maps =
local_transport = error:local mail delivery is disabled
virtual_alias_maps = texthash:@DIR@/virtual
inet_interfaces = 192.0.2.25
mynetworks = 127.0.0.0/8 12.34.56.0/24
relay_domains = example.com
parent_domain_matches_subdomains =
    debug_peer_list smtpd_access_maps
smtpd_recipient_restrictions =
    permit_mynetworks reject_unauth_destination
relay_recipient_maps = texthash:@DIR@/relay_recipients
transport_maps = texthash:@DIR@/transport
)";

TEST_F(PolicyConfigTest, GatewaySeedFromMainCf) {
  dir_.Write("virtual", "postmaster      postmaster@example.com\nabuse abuse@example.com\n");
  dir_.Write("relay_recipients", "user1@example.com   x\nuser2@example.com   x\n");
  dir_.Write("transport", "example.com   smtp:[inside-gateway.example.com]\n");
  std::unique_ptr<PolicyEngine> engine = Load(kGatewayMainCf);
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(Rcpt(*engine, "203.0.113.7", "user1@example.com"), "OK");
  EXPECT_EQ(Rcpt(*engine, "203.0.113.7", "unknown@example.com"),
            "550 5.1.1 <unknown@example.com>: Recipient address rejected: User unknown in "
            "relay recipient table");
  EXPECT_EQ(Rcpt(*engine, "203.0.113.7", "user1@anything.example.com"),
            "454 4.7.1 <user1@anything.example.com>: Relay access denied");
  EXPECT_EQ(Rcpt(*engine, "203.0.113.7", "postmaster@[192.0.2.25]"), "OK");
  EXPECT_EQ(Rcpt(*engine, "203.0.113.7", "nobody@[192.0.2.25]"),
            "550 5.1.1 <nobody@[192.0.2.25]>: Recipient address rejected: local mail "
            "delivery is disabled");
  EXPECT_EQ(Rcpt(*engine, "12.34.56.7", "anyone@example.net"), "OK");

  PolicyDecision failure;
  std::vector<ResolvedRecipient> resolved = engine->Resolve("postmaster@[192.0.2.25]", &failure);
  ASSERT_EQ(resolved.size(), 1u);
  EXPECT_EQ(resolved[0].address, "postmaster@example.com");
  EXPECT_EQ(resolved[0].next_hop, "smtp:[inside-gateway.example.com]");
}

TEST_F(PolicyConfigTest, PostfixDefaultsWithoutMainCfSettings) {
  std::unique_ptr<PolicyEngine> engine = Load("myhostname = mx.example.com\n");
  ASSERT_NE(engine, nullptr);
  // relay_domains is empty and smtpd_relay_restrictions is Postfix's default: mail to
  // other domains is deferred as relaying; local mail (mydestination) is accepted.
  EXPECT_EQ(Rcpt(*engine, "203.0.113.7", "x@example.net"),
            "454 4.7.1 <x@example.net>: Relay access denied");
  EXPECT_EQ(Rcpt(*engine, "127.0.0.1", "x@example.net"), "OK");
  EXPECT_EQ(Rcpt(*engine, "203.0.113.7", "x@mx.example.com"), "OK");
  EXPECT_EQ(engine->settings().myorigin, "mx.example.com");
}

TEST_F(PolicyConfigTest, AccessTablesNamedInRestrictionsAreOpened) {
  dir_.Write("access", "203.0.113.7  REJECT go away\n");
  std::unique_ptr<PolicyEngine> engine = Load(
      "myhostname = mx.example.com\nrelay_domains = example.com\n"
      "smtpd_client_restrictions = check_client_access texthash:@DIR@/access\n");
  ASSERT_NE(engine, nullptr);
  EXPECT_EQ(Rcpt(*engine, "203.0.113.7", "x@example.com"),
            "554 5.7.1 <unknown[203.0.113.7]>: Client host rejected: go away");
  EXPECT_EQ(Rcpt(*engine, "203.0.113.8", "x@example.com"), "OK");
}

TEST_F(PolicyConfigTest, MissingTableIsAnError) {
  std::string text = absl::StrReplaceAll(
      "myhostname = mx.example.com\nrelay_recipient_maps = texthash:@DIR@/absent\n",
      {{"@DIR@", dir_.path()}});
  config::LoadResult loaded = config::Config::LoadText(text, dir_.path() + "/main.cf");
  ASSERT_NE(loaded.config, nullptr);
  absl::StatusOr<PolicySettings> settings = BuildPolicySettings(*loaded.config);
  ASSERT_FALSE(settings.ok());
  EXPECT_NE(std::string(settings.status().message()).find("relay_recipient_maps"),
            std::string::npos)
      << settings.status();
}

TEST_F(PolicyConfigTest, InetInterfacesAllListsThisHostsAddresses) {
  std::unique_ptr<PolicyEngine> engine = Load("myhostname = mx.example.com\n");
  ASSERT_NE(engine, nullptr);
  // Every Linux host has 127.0.0.1 on lo: its literal is local without a server address.
  AddressResolution r = engine->ResolveAddress("postmaster@[127.0.0.1]", "");
  EXPECT_EQ(r.address_class, AddressClass::kLocal);
}

TEST_F(PolicyConfigTest, MynetworksStyleWhenMynetworksIsNotSet) {
  std::unique_ptr<PolicyEngine> engine =
      Load("myhostname = mx.example.com\nmynetworks_style = subnet\n");
  ASSERT_NE(engine, nullptr);
  // lo is 127.0.0.0/8: any 127.x address is in the subnet; 203.0.113.7 is not.
  EXPECT_EQ(Rcpt(*engine, "127.1.2.3", "x@example.net"), "OK");
  EXPECT_EQ(Rcpt(*engine, "203.0.113.7", "x@example.net"),
            "454 4.7.1 <x@example.net>: Relay access denied");
}

}  // namespace
}  // namespace moat::net
