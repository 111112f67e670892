// tests/net/policy_robustness_test.cc
//
// The policy engine takes every string of a PolicyRequest from the network: arbitrary bytes
// (long, empty, NUL, 8-bit, many '@' and brackets) must give a well-formed answer, never a
// crash (run under ASan/UBSan in the Sanitize build). And one engine is shared by shard
// threads: concurrent Check()/Resolve() calls must agree with single-threaded ones.
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "net/policy.h"
#include "net/policy_settings.h"

namespace moat::net {
namespace {

std::unique_ptr<PolicyEngine> FullEngine() {
  std::map<std::string, TablePtr> tables;
  auto add = [&](const std::string& spec,
                 const std::vector<std::pair<std::string, std::string>>& rows) {
    auto t = std::make_shared<MemoryMap>(spec);
    for (const auto& [k, v] : rows) {
      t->Add(k, v);
    }
    tables[spec] = t;
  };
  add("hash:/access", {{"example.org", "REJECT"},
                       {"203.0.113", "DEFER"},
                       {"list@example.com", "permit_mynetworks, reject"},
                       {"x@example.com", "550 5.1.1 gone"}});
  add("hash:/virtual", {{"postmaster", "admin@example.com"},
                        {"a@example.com", "b@example.com, c@example.net"},
                        {"loop1@example.com", "loop2@example.com"},
                        {"loop2@example.com", "loop1@example.com"},
                        {"@wild.example", "@example.com"}});
  add("hash:/relay_recipients", {{"@example.com", "x"}, {"known@example.net", "x"}});
  add("hash:/transport", {{"example.com", "smtp:[10.0.0.1]:25"}, {"*", "relay:[10.0.0.2]"}});
  auto open = [&](std::string_view spec) -> absl::StatusOr<TablePtr> {
    auto it = tables.find(std::string(spec));
    if (it == tables.end()) {
      return absl::NotFoundError("no table");
    }
    return it->second;
  };
  PolicySettings s;
  const std::vector<std::pair<std::string, std::string>> params = {
      {"myorigin", "example.com"},
      {"mydestination", "mx.example.com"},
      {"inet_interfaces", "192.0.2.25"},
      {"mynetworks", "127.0.0.0/8 [::1]/128"},
      {"relay_domains", "example.com example.net"},
      {"recipient_delimiter", "+-"},
      {"virtual_alias_maps", "hash:/virtual"},
      {"relay_recipient_maps", "hash:/relay_recipients"},
      {"transport_maps", "hash:/transport"},
      {"smtpd_client_restrictions", "check_client_access hash:/access"},
      {"smtpd_helo_restrictions",
       "reject_invalid_helo_hostname reject_non_fqdn_helo_hostname "
       "check_helo_access hash:/access"},
      {"smtpd_sender_restrictions",
       "reject_non_fqdn_sender reject_unlisted_sender check_sender_access hash:/access"},
      {"smtpd_relay_restrictions",
       "permit_mynetworks permit_tls_all_clientcerts reject_unauth_destination"},
      {"smtpd_recipient_restrictions",
       "reject_non_fqdn_recipient reject_unauth_pipelining check_recipient_access "
       "hash:/access reject_unlisted_recipient"},
      {"smtpd_data_restrictions", "reject_unauth_pipelining"},
  };
  for (const auto& [name, value] : params) {
    absl::Status status = ApplyPolicyParameter(&s, name, value, open);
    EXPECT_TRUE(status.ok()) << status;
  }
  absl::StatusOr<std::unique_ptr<PolicyEngine>> engine = PolicyEngine::Create(std::move(s));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? *std::move(engine) : nullptr;
}

// Strings that stress parsers: fragments of addresses, brackets, separators, 8-bit bytes,
// NULs, and long runs.
std::string RandomField(std::mt19937& rng) {
  static const std::vector<std::string> kPieces = {
      "@", "[", "]", ".", "..", "+", "-", "%", "!", ":", "IPv6:", "example.com", "example.org",
      "postmaster", "a", "192.0.2.25", "203.0.113.7", "::1", "\xff", "\xc3\xa9", std::string(1, '\0'),
      " ", "\t", "<>", "loop1", "wild.example", std::string(300, 'x'), "x@example.com",
      "list@example.com", "owner-", "-request"};
  std::string out;
  int pieces = static_cast<int>(rng() % 8);
  for (int i = 0; i < pieces; ++i) {
    out += kPieces[rng() % kPieces.size()];
  }
  return out;
}

std::string Describe(const PolicyDecision& d) {
  return absl::StrFormat("%d|%d|%s|%s", static_cast<int>(d.action), d.code, d.enhanced, d.text);
}

TEST(PolicyRobustnessTest, ArbitraryRequestFieldsGiveWellFormedAnswers) {
  std::unique_ptr<PolicyEngine> engine = FullEngine();
  ASSERT_NE(engine, nullptr);
  std::mt19937 rng(12345);
  constexpr int kIterations = 4000;
  int rejected = 0;
  for (int i = 0; i < kIterations; ++i) {
    std::string client_ip = RandomField(rng);
    std::string client_name = RandomField(rng);
    std::string server_ip = RandomField(rng);
    std::string helo = RandomField(rng);
    std::string sender = RandomField(rng);
    std::string recipient = RandomField(rng);
    std::string fingerprint = RandomField(rng);
    PolicyRequest r;
    r.stage = static_cast<PolicyStage>(rng() % 6);
    r.client_ip = client_ip;
    r.client_name = client_name;
    r.server_ip = server_ip;
    r.helo_name = helo;
    r.sender = sender;
    r.recipient = r.stage == PolicyStage::kRcpt ? std::string_view(recipient) : "";
    r.tls = !fingerprint.empty();
    r.client_cert_fingerprint = fingerprint;
    r.unauth_pipelining = rng() % 2 == 0;
    PolicyDecision d = engine->Check(r);
    if (d.action == PolicyAction::kReject || d.action == PolicyAction::kDefer) {
      ++rejected;
      ASSERT_GE(d.code, 400);
      ASSERT_LE(d.code, 599);
      ASSERT_EQ(d.action == PolicyAction::kReject, d.code >= 500);
      ASSERT_EQ(d.enhanced[0], '0' + d.code / 100) << Describe(d);
      // One reply line: Postfix's printable() and 510-octet limit.
      ASSERT_LE(d.text.size() + d.enhanced.size() + 5, 512u) << Describe(d);
      for (char c : d.text) {
        ASSERT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f) << Describe(d);
      }
    }
    PolicyDecision failure;
    std::vector<ResolvedRecipient> resolved = engine->Resolve(recipient, &failure);
    if (resolved.empty()) {
      ASSERT_EQ(failure.action, PolicyAction::kDefer);
    }
    for (const ResolvedRecipient& rr : resolved) {
      ASSERT_NE(rr.next_hop.find(':'), std::string::npos) << rr.next_hop;
    }
  }
  // The generator must reach the reject paths, or the test checks nothing.
  EXPECT_GT(rejected, kIterations / 10);
}

TEST(PolicyRobustnessTest, ConcurrentChecksAgreeWithSequentialOnes) {
  std::unique_ptr<PolicyEngine> engine = FullEngine();
  ASSERT_NE(engine, nullptr);
  const std::vector<std::string> recipients = {
      "a@example.com",   "known@example.net", "unknown@example.net", "x@example.com",
      "list@example.com", "postmaster",        "z@elsewhere.example",
      "q@wild.example",  "postmaster@[192.0.2.25]"};
  const std::vector<std::string> clients = {"127.0.0.1", "203.0.113.7", "198.51.100.1", "::1"};
  auto run = [&](size_t i) {
    PolicyRequest r;
    r.stage = PolicyStage::kRcpt;
    r.client_ip = clients[i % clients.size()];
    r.server_ip = "192.0.2.25";
    r.helo_name = "mail.example.net";
    r.sender = "s@example.net";
    r.recipient = recipients[i % recipients.size()];
    std::string out = Describe(engine->Check(r));
    PolicyDecision failure;
    for (const ResolvedRecipient& rr : engine->Resolve(r.recipient, &failure)) {
      out += "|" + rr.address + ">" + rr.next_hop;
    }
    return out;
  };
  constexpr size_t kCases = 36;
  std::vector<std::string> expected;
  for (size_t i = 0; i < kCases; ++i) {
    expected.push_back(run(i));
  }
  constexpr int kThreads = 4;
  constexpr int kRounds = 25;
  std::vector<int> mismatches(kThreads, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < kRounds; ++round) {
        for (size_t i = 0; i < kCases; ++i) {
          if (run(i) != expected[i]) {
            ++mismatches[t];
          }
        }
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(mismatches[t], 0) << "thread " << t;
  }
}

}  // namespace
}  // namespace moat::net
