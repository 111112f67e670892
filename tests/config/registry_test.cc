// Tests for core/config/registry.h: the parameter table and its Postfix defaults.
#include "core/config/registry.h"

#include <unistd.h>

#include <map>
#include <sstream>

#include "core/config/config.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat::config {
namespace {

TEST(RegistryTest, SortedAndUnique) {
  auto params = Registry();
  ASSERT_FALSE(params.empty());
  for (size_t i = 1; i < params.size(); ++i) {
    EXPECT_LT(params[i - 1].name, params[i].name) << params[i].name;
  }
}

TEST(RegistryTest, HoldsEveryParameterTheDesignNames) {
  // DESIGN.md section 4, "At least:", plus the moat_* parameters and the ones the issues use.
  const char* names[] = {
      "myhostname", "mydomain", "myorigin", "mydestination", "mynetworks", "mynetworks_style",
      "inet_interfaces", "inet_protocols", "smtpd_banner", "relay_domains",
      "relay_recipient_maps", "parent_domain_matches_subdomains", "transport_maps", "relayhost",
      "relay_transport", "default_transport", "local_transport", "local_recipient_maps",
      "virtual_alias_maps", "alias_maps", "recipient_delimiter", "message_size_limit",
      "smtpd_recipient_limit", "smtpd_timeout", "smtpd_helo_required", "disable_vrfy_command",
      "smtpd_error_sleep_time", "smtpd_soft_error_limit", "smtpd_hard_error_limit",
      "smtpd_delay_reject", "smtpd_client_restrictions", "smtpd_helo_restrictions",
      "smtpd_sender_restrictions", "smtpd_relay_restrictions", "smtpd_recipient_restrictions",
      "smtpd_data_restrictions", "show_user_unknown_table_name", "smtpd_forbid_bare_newline",
      "smtpd_client_connection_count_limit", "smtpd_client_connection_rate_limit",
      "smtpd_client_message_rate_limit", "smtpd_tls_security_level", "smtpd_tls_cert_file",
      "smtpd_tls_key_file", "smtpd_tls_received_header", "smtpd_tls_ask_ccert",
      "relay_clientcerts", "smtp_tls_security_level", "smtp_tls_CAfile", "smtp_connect_timeout",
      "relay_destination_recipient_limit", "default_destination_concurrency_limit",
      "minimal_backoff_time", "maximal_backoff_time", "maximal_queue_lifetime",
      "bounce_queue_lifetime", "queue_directory", "moat_listen", "moat_shards",
      "moat_dns_servers", "moat_metrics_listen", "moat_control_socket",
      "moat_proxy_protocol_networks", "smtpd_forbid_unauth_pipelining", "mail_name",
      "queue_run_delay", "delay_warning_time", "smtp_helo_timeout", "smtp_data_done_timeout",
      "smtpd_tls_protocols", "smtpd_tls_ciphers", "smtp_tls_protocols", "smtp_tls_ciphers",
      "smtp_tls_mandatory_protocols", "smtp_tls_wrappermode", "smtpd_tls_wrappermode",
      "smtpd_tls_CAfile"};
  for (const char* name : names) {
    EXPECT_NE(FindParam(name), nullptr) << name;
  }
  EXPECT_EQ(FindParam("no_such_parameter"), nullptr);
}

TEST(RegistryTest, NamesArePostfixNamesOrMoatNames) {
  for (const ParamSpec& spec : Registry()) {
    bool moat_only = spec.name.substr(0, 5) == "moat_";
    EXPECT_NE(moat_only, IsPostfixParameter(spec.name)) << spec.name;
    if (moat_only) {
      EXPECT_FALSE(spec.note.empty()) << spec.name << ": moat_* parameters say what they are";
    }
  }
  EXPECT_TRUE(IsPostfixParameter("biff"));
  EXPECT_TRUE(IsPostfixParameter("smtpd_sasl_auth_enable"));
  EXPECT_FALSE(IsPostfixParameter("moat_listen"));
  EXPECT_FALSE(IsPostfixParameter("no_such_parameter"));
}

TEST(RegistryTest, SecurityRulesNameUnimplementedPostfixParameters) {
  ASSERT_FALSE(SecurityRules().empty());
  for (const SecurityRule& rule : SecurityRules()) {
    EXPECT_TRUE(IsPostfixParameter(rule.name)) << rule.name;
    EXPECT_EQ(FindParam(rule.name), nullptr) << rule.name;
    EXPECT_EQ(FindSecurityRule(rule.name), &rule);
  }
  ASSERT_NE(FindSecurityRule("smtpd_sasl_auth_enable"), nullptr);
  EXPECT_EQ(FindSecurityRule("smtpd_sasl_auth_enable")->when, SecurityRule::When::kIfYes);
  EXPECT_EQ(FindSecurityRule("biff"), nullptr);
}

TEST(RegistryTest, ComputedDefaultsFollowPostfix) {
  std::string host = ComputedDefault("myhostname");
  ASSERT_NE(host.find('.'), std::string::npos);
  EXPECT_EQ(ComputedDefault("mydomain"), host.substr(host.find('.') + 1));
}

TEST(RegistryTest, DefaultsAreValidValues) {
  LoadResult r = Config::LoadText("", "main.cf");
  for (const Diagnostic& d : r.diagnostics.items()) {
    ADD_FAILURE() << d.ToString();
  }
  ASSERT_NE(r.config, nullptr);
}

TEST(RegistryTest, DesignedMoatDefaults) {
  LoadResult r = Config::LoadText("", "main.cf");
  ASSERT_NE(r.config, nullptr);
  const Config& c = *r.config;
  EXPECT_EQ(c.List("moat_listen"), (std::vector<std::string>{"0.0.0.0:25", "[::]:25"}));
  EXPECT_EQ(c.Int("moat_shards"), 0);
  EXPECT_TRUE(c.List("moat_dns_servers").empty());
  EXPECT_TRUE(c.List("moat_metrics_listen").empty());
  EXPECT_EQ(c.String("moat_control_socket"), "/var/spool/moat/control");
  EXPECT_EQ(c.Addresses("moat_proxy_protocol_networks").rule_count(), 0u);
  EXPECT_EQ(c.String("mail_name"), "moat");
  EXPECT_EQ(c.Size("message_size_limit"), 10240000);
  EXPECT_EQ(c.Time("smtpd_timeout"), absl::Seconds(300));
  EXPECT_EQ(c.Time("maximal_queue_lifetime"), absl::Hours(24 * 5));
  EXPECT_EQ(c.Int("relay_destination_recipient_limit"), 50);
  EXPECT_EQ(c.String("smtpd_banner"), c.String("myhostname") + " ESMTP moat");
  ASSERT_EQ(c.Restrictions("smtpd_relay_restrictions").size(), 3u);
  EXPECT_EQ(c.Restrictions("smtpd_relay_restrictions")[2].name, "defer_unauth_destination");
  EXPECT_TRUE(c.Addresses("mynetworks").ContainsText("127.0.0.1"));
  EXPECT_TRUE(c.Addresses("mynetworks").ContainsText("::1"));
  EXPECT_FALSE(c.Addresses("mynetworks").ContainsText("192.0.2.1"));
}

// The inbound session and policy parameters (issue 4): registered, with Postfix's values.
TEST(RegistryTest, InboundSessionAndPolicyParameters) {
  LoadResult r = Config::LoadText("", "main.cf");
  ASSERT_NE(r.config, nullptr);
  const Config& c = *r.config;
  EXPECT_EQ(c.Int("smtpd_junk_command_limit"), 100);
  EXPECT_EQ(c.Int("smtpd_recipient_overshoot_limit"), 1000);
  EXPECT_TRUE(c.Bool("smtputf8_enable"));
  EXPECT_EQ(c.Int("virtual_alias_expansion_limit"), 1000);
  EXPECT_EQ(c.Int("virtual_alias_recursion_limit"), 1000);
  EXPECT_EQ(c.Int("access_map_reject_code"), 554);
  EXPECT_EQ(c.Int("access_map_defer_code"), 450);
  EXPECT_EQ(c.Int("unknown_virtual_alias_reject_code"), 550);
  EXPECT_EQ(c.Int("non_fqdn_reject_code"), 504);
  EXPECT_EQ(c.Int("invalid_hostname_reject_code"), 501);
  // A reply code must be 4xx or 5xx.
  LoadResult bad = Config::LoadText("access_map_reject_code = 250\n", "main.cf");
  EXPECT_TRUE(bad.diagnostics.HasErrors());
}

// Every default equals `postconf -d` of the installed Postfix 3.7, except the parameters whose
// entry has a note saying why moat differs (and myhostname/mydomain, computed the same way).
TEST(RegistryTest, DefaultsMatchPostconf) {
  if (access("/usr/sbin/postconf", X_OK) != 0) {
    GTEST_SKIP() << "postconf is not installed (deploy/install-deps.sh installs postfix)";
  }
  std::vector<std::string> argv = {"/usr/sbin/postconf", "-d"};
  for (const ParamSpec& spec : Registry()) {
    if (spec.note.empty()) {
      argv.emplace_back(spec.name);
    }
  }
  testing::RunResult r = testing::Run(argv);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, std::string> postconf;
  std::istringstream lines(r.out);
  std::string line;
  while (std::getline(lines, line)) {
    size_t eq = line.find(" =");
    ASSERT_NE(eq, std::string::npos) << line;
    std::string value = eq + 2 < line.size() ? line.substr(eq + 3) : "";
    postconf[line.substr(0, eq)] = value;
  }
  int compared = 0;
  for (const ParamSpec& spec : Registry()) {
    if (!spec.note.empty()) {
      continue;
    }
    auto it = postconf.find(std::string(spec.name));
    ASSERT_NE(it, postconf.end()) << spec.name;
    // postconf prints lists with single spaces; compare without white space after commas.
    std::string ours(spec.default_value);
    EXPECT_EQ(ours, it->second) << spec.name;
    ++compared;
  }
  EXPECT_GT(compared, 80);
}

}  // namespace
}  // namespace moat::config
