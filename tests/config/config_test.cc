// Tests for core/config/config.h: loading main.cf into an immutable typed snapshot.
#include "core/config/config.h"

#include "core/log/log.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat::config {
namespace {

LoadResult Load(std::string_view text) { return Config::LoadText(text, "/etc/moat/main.cf"); }

// All diagnostics as "file:line: message" lines, for readable failures.
std::string Dump(const Diagnostics& d) {
  std::string out;
  for (const Diagnostic& x : d.items()) {
    out += (x.IsError() ? "error: " : "warning: ") + x.ToString() + "\n";
  }
  return out;
}

bool Has(const Diagnostics& d, bool error, const std::string& text) {
  for (const Diagnostic& x : d.items()) {
    if (x.IsError() == error && x.ToString() == text) {
      return true;
    }
  }
  return false;
}

TEST(ConfigTest, TypedValuesFromMainCf) {
  LoadResult r = Load(
      "myhostname = mx.example.com\n"
      "smtpd_helo_required = yes\n"
      "smtpd_recipient_limit = 100\n"
      "smtp_connect_timeout = 60s\n"
      "maximal_queue_lifetime = 2\n"
      "message_size_limit = 52428800\n"
      "relay_domains = example.com, example.net\n"
      "mynetworks = 127.0.0.0/8 12.34.56.0/24\n"
      "smtpd_recipient_restrictions =\n"
      "    permit_mynetworks\n"
      "    reject_unauth_destination\n"
      "relay_recipient_maps = hash:/etc/moat/relay_recipients\n"
      "moat_listen = 127.0.0.1:2525, [::1]:2525\n");
  ASSERT_NE(r.config, nullptr) << Dump(r.diagnostics);
  EXPECT_TRUE(r.diagnostics.items().empty()) << Dump(r.diagnostics);
  const Config& c = *r.config;
  EXPECT_EQ(c.Source(), "/etc/moat/main.cf");
  EXPECT_TRUE(c.Bool("smtpd_helo_required"));
  EXPECT_FALSE(c.Bool("disable_vrfy_command"));
  EXPECT_EQ(c.Int("smtpd_recipient_limit"), 100);
  EXPECT_EQ(c.Time("smtp_connect_timeout"), absl::Seconds(60));
  EXPECT_EQ(c.Time("maximal_queue_lifetime"), absl::Hours(48));  // bare number: days
  EXPECT_EQ(c.Size("message_size_limit"), 52428800);
  EXPECT_EQ(c.List("relay_domains"), (std::vector<std::string>{"example.com", "example.net"}));
  EXPECT_TRUE(c.Addresses("mynetworks").ContainsText("12.34.56.78"));
  EXPECT_FALSE(c.Addresses("mynetworks").ContainsText("12.34.57.1"));
  ASSERT_EQ(c.Restrictions("smtpd_recipient_restrictions").size(), 2u);
  EXPECT_EQ(c.Restrictions("smtpd_recipient_restrictions")[1].name, "reject_unauth_destination");
  ASSERT_EQ(c.Tables("relay_recipient_maps").size(), 1u);
  EXPECT_EQ(c.List("relay_recipient_maps"),
            (std::vector<std::string>{"hash:/etc/moat/relay_recipients"}));
  EXPECT_EQ(c.List("moat_listen"), (std::vector<std::string>{"127.0.0.1:2525", "[::1]:2525"}));
  EXPECT_TRUE(c.IsSet("myhostname"));
  EXPECT_EQ(c.Line("myhostname"), 1);
  EXPECT_EQ(c.Line("smtpd_recipient_restrictions"), 9);
  EXPECT_FALSE(c.IsSet("smtpd_timeout"));
  EXPECT_EQ(c.Line("smtpd_timeout"), 0);
}

TEST(ConfigTest, ExpansionIsLazyAndUsesLaterSettings) {
  LoadResult r = Load(
      "myorigin = $mydomain\n"
      "smtpd_banner = $myhostname ESMTP ${mail_name} at ${mydomain?$mydomain}\n"
      "mydomain = example.com\n"
      "myhostname = mx.$mydomain\n");
  ASSERT_NE(r.config, nullptr) << Dump(r.diagnostics);
  const Config& c = *r.config;
  EXPECT_EQ(c.String("myorigin"), "example.com");
  EXPECT_EQ(c.String("myhostname"), "mx.example.com");
  EXPECT_EQ(c.String("smtpd_banner"), "mx.example.com ESMTP moat at example.com");
  EXPECT_EQ(c.Raw("smtpd_banner"), "$myhostname ESMTP ${mail_name} at ${mydomain?$mydomain}");
  // The default of mydestination expands with the values set here.
  EXPECT_EQ(c.List("mydestination"),
            (std::vector<std::string>{"mx.example.com", "localhost.example.com", "localhost"}));
}

TEST(ConfigTest, MydomainDefaultFollowsMyhostname) {
  LoadResult r = Load("myhostname = mx.example.org\n");
  ASSERT_NE(r.config, nullptr);
  EXPECT_EQ(r.config->String("mydomain"), "example.org");
  LoadResult bare = Load("myhostname = localhost\n");
  EXPECT_EQ(bare.config->String("mydomain"), "localdomain");
  LoadResult set = Load("myhostname = mx.example.org\nmydomain = example.net\n");
  EXPECT_EQ(set.config->String("mydomain"), "example.net");
}

TEST(ConfigTest, UserDefinedVariablesAreAllowedWhenUsed) {
  LoadResult r = Load(
      "internal_nets = 10.0.0.0/8 192.168.0.0/16\n"
      "mynetworks = 127.0.0.0/8 $internal_nets\n");
  ASSERT_NE(r.config, nullptr);
  EXPECT_TRUE(r.diagnostics.items().empty()) << Dump(r.diagnostics);
  EXPECT_TRUE(r.config->Addresses("mynetworks").ContainsText("192.168.1.1"));
  ASSERT_EQ(r.config->SetParameters().size(), 2u);
  EXPECT_EQ(r.config->SetParameters()[0].name, "internal_nets");
}

TEST(ConfigTest, UnknownParameterWarnsWithLine) {
  LoadResult r = Load("myhostname = a.example\nfrobnicate = yes\n");
  ASSERT_NE(r.config, nullptr);
  EXPECT_EQ(r.diagnostics.errors(), 0);
  EXPECT_TRUE(Has(r.diagnostics, false,
                  "/etc/moat/main.cf:2: unknown parameter \"frobnicate\" (neither moat nor "
                  "Postfix has it, and no parameter uses it); ignored"))
      << Dump(r.diagnostics);
  // Not printed by `moat config -n`, like postconf.
  ASSERT_EQ(r.config->SetParameters().size(), 1u);
}

TEST(ConfigTest, UnimplementedPostfixParameterWarnsOnce) {
  LoadResult r = Load("biff = no\nbiff = yes\nappend_dot_mydomain = no\n");
  ASSERT_NE(r.config, nullptr);
  EXPECT_EQ(r.diagnostics.errors(), 0);
  EXPECT_TRUE(Has(r.diagnostics, false,
                  "/etc/moat/main.cf:2: parameter biff is a Postfix parameter that moat does "
                  "not implement; ignored"))
      << Dump(r.diagnostics);
  EXPECT_TRUE(Has(r.diagnostics, false,
                  "/etc/moat/main.cf:2: biff is set again (it was set on line 1); the last "
                  "setting wins"));
  EXPECT_TRUE(Has(r.diagnostics, false,
                  "/etc/moat/main.cf:3: parameter append_dot_mydomain is a Postfix parameter "
                  "that moat does not implement; ignored"));
  EXPECT_EQ(r.diagnostics.warnings(), 3) << Dump(r.diagnostics);
  // postconf -n prints them, and so does moat config -n.
  ASSERT_EQ(r.config->SetParameters().size(), 2u);
  EXPECT_EQ(r.config->SetParameters()[1].name, "biff");
  EXPECT_EQ(r.config->SetParameters()[1].value, "yes");
}

TEST(ConfigTest, SecurityRelevantParametersAreErrors) {
  LoadResult r = Load(
      "smtpd_sasl_auth_enable = yes\n"
      "smtpd_tls_auth_only = yes\n"
      "content_filter = smtp-amavis:[127.0.0.1]:10024\n"
      "smtpd_milters = inet:127.0.0.1:8891\n"
      "header_checks = regexp:/etc/postfix/header_checks\n");
  EXPECT_EQ(r.config, nullptr);
  EXPECT_NE(r.unchecked, nullptr);
  EXPECT_EQ(r.diagnostics.errors(), 5) << Dump(r.diagnostics);
  EXPECT_TRUE(Has(r.diagnostics, true,
                  "/etc/moat/main.cf:1: smtpd_sasl_auth_enable = yes is not supported: moat "
                  "does not implement SMTP AUTH (SASL); ignoring it would weaken security"))
      << Dump(r.diagnostics);
}

TEST(ConfigTest, SecurityParametersSetToTheirHarmlessValueOnlyWarn) {
  LoadResult r = Load("smtpd_sasl_auth_enable = no\ncontent_filter =\nsmtpd_milters =\n");
  ASSERT_NE(r.config, nullptr) << Dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.warnings(), 3);
}

TEST(ConfigTest, BadTypedValuesAreErrorsWithFileLineAndName) {
  LoadResult r = Load(
      "smtpd_timeout = 5x\n"
      "message_size_limit = 10M\n"
      "smtpd_helo_required = maybe\n"
      "smtpd_recipient_limit = lots\n"
      "mynetworks = 10.0.0.0/33\n"
      "smtpd_forbid_bare_newline = sometimes\n"
      "moat_listen = 127.0.0.1\n"
      "smtpd_recipient_limit = 0\n");
  EXPECT_EQ(r.config, nullptr);
  const Diagnostics& d = r.diagnostics;
  EXPECT_TRUE(Has(d, true,
                  "/etc/moat/main.cf:1: smtpd_timeout: bad time value \"5x\" (expected a number "
                  "with an optional unit s, m, h, d or w)"))
      << Dump(d);
  EXPECT_TRUE(Has(d, true,
                  "/etc/moat/main.cf:2: message_size_limit: bad size value \"10M\" (expected a "
                  "number of bytes)"));
  EXPECT_TRUE(Has(d, true,
                  "/etc/moat/main.cf:3: smtpd_helo_required: bad boolean value \"maybe\" "
                  "(expected yes or no)"));
  EXPECT_TRUE(Has(d, true,
                  "/etc/moat/main.cf:5: mynetworks: bad CIDR \"10.0.0.0/33\": the prefix length "
                  "must be 0..32"));
  EXPECT_TRUE(Has(d, true,
                  "/etc/moat/main.cf:6: smtpd_forbid_bare_newline: bad value \"sometimes\" "
                  "(expected one of: yes, no, normalize, reject)"));
  EXPECT_TRUE(Has(d, true,
                  "/etc/moat/main.cf:8: smtpd_recipient_limit: value 0 is too small (minimum "
                  "1)"));
  EXPECT_TRUE(Has(d, true,
                  "/etc/moat/main.cf:7: moat_listen: bad address:port \"127.0.0.1\": expected "
                  "ADDRESS:PORT, [IPV6]:PORT or *:PORT"));
  EXPECT_EQ(d.errors(), 7) << Dump(d);  // line 4 is overridden by line 8
}

TEST(ConfigTest, ExpansionErrorsNameTheParameter) {
  LoadResult r = Load("a_var = $b_var\nb_var = ${a_var}\nmyorigin = $a_var\n"
                      "smtpd_banner = ${myhostname\n");
  EXPECT_EQ(r.config, nullptr);
  EXPECT_TRUE(Has(r.diagnostics, true,
                  "/etc/moat/main.cf:3: myorigin: expansion loop: a_var -> b_var -> a_var"))
      << Dump(r.diagnostics);
  EXPECT_TRUE(Has(r.diagnostics, true,
                  "/etc/moat/main.cf:4: smtpd_banner: unterminated \"${\" in \"${myhostname\""));
}

TEST(ConfigTest, LoopBetweenTwoMoatParameters) {
  LoadResult r = Load("myhostname = $mydomain\nmydomain = $myhostname\n");
  EXPECT_EQ(r.config, nullptr);
  EXPECT_TRUE(Has(r.diagnostics, true,
                  "/etc/moat/main.cf:1: myhostname: expansion loop: myhostname -> mydomain -> "
                  "myhostname"))
      << Dump(r.diagnostics);
}

TEST(ConfigTest, UndefinedNamesWarnAndExpandToNothing) {
  LoadResult r = Load("smtpd_banner = $myhostname $nosuch_thing ESMTP\n");
  ASSERT_NE(r.config, nullptr);
  EXPECT_TRUE(Has(r.diagnostics, false,
                  "/etc/moat/main.cf:1: smtpd_banner: undefined parameter \"$nosuch_thing\" "
                  "expands to nothing"))
      << Dump(r.diagnostics);
  EXPECT_EQ(r.config->String("smtpd_banner"), r.config->String("myhostname") + "  ESMTP");
}

TEST(ConfigTest, UnsupportedRestrictionIsAnErrorWithLine) {
  LoadResult r = Load(
      "smtpd_sender_restrictions = permit_mynetworks,\n"
      "  reject_unknown_sender_domain\n"
      "  check_policy_service inet:127.0.0.1:15000\n");
  EXPECT_EQ(r.config, nullptr);
  EXPECT_EQ(r.diagnostics.errors(), 2) << Dump(r.diagnostics);
  for (const Diagnostic& d : r.diagnostics.items()) {
    EXPECT_EQ(d.line, 1);
  }
}

TEST(ConfigTest, ProxyPrefixWarnsOnce) {
  LoadResult r = Load(
      "relay_domains = proxy:hash:/etc/moat/domains\n"
      "relay_recipient_maps = proxy:hash:/etc/moat/addresses\n");
  ASSERT_NE(r.config, nullptr) << Dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.warnings(), 1) << Dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].line, 1);
  EXPECT_EQ(r.config->Tables("relay_domains")[0].ToString(), "hash:/etc/moat/domains");
}

TEST(ConfigTest, DomainListReadsFilesAndKeepsTables) {
  testing::TempDir dir;
  std::string file = dir.Write("relaydomains", "# ours\nexample.com\nexample.net, example.org\n");
  LoadResult r = Load("relay_domains = " + file + " texthash:/etc/moat/more example.info\n");
  ASSERT_NE(r.config, nullptr) << Dump(r.diagnostics);
  EXPECT_EQ(r.config->List("relay_domains"),
            (std::vector<std::string>{"example.com", "example.net", "example.org",
                                      "example.info"}));
  ASSERT_EQ(r.config->Tables("relay_domains").size(), 1u);
  EXPECT_EQ(r.config->IncludedFiles(), (std::vector<std::string>{file}));
}

TEST(ConfigTest, DomainListWithMissingFileIsAnError) {
  LoadResult r = Load("relay_domains = /nonexistent/moat/relaydomains\n");
  EXPECT_EQ(r.config, nullptr);
  EXPECT_EQ(r.diagnostics.errors(), 1);
}

TEST(ConfigTest, TableTypesMoatCannotReadAreErrors) {
  LoadResult r = Load("transport_maps = ldap:/etc/postfix/ldap-transport.cf\n");
  EXPECT_EQ(r.config, nullptr);
  EXPECT_EQ(r.diagnostics.errors(), 1) << Dump(r.diagnostics);
}

TEST(ConfigTest, MynetworksStyleIsAcceptedForThePolicyEngine) {
  // net/policy_config.cc derives mynetworks from the interfaces when only the style is set.
  LoadResult r = Load("mynetworks_style = subnet\n");
  ASSERT_NE(r.config, nullptr);
  EXPECT_TRUE(r.diagnostics.items().empty()) << Dump(r.diagnostics);
  EXPECT_EQ(r.config->String("mynetworks_style"), "subnet");
  EXPECT_FALSE(Load("mynetworks_style = wide\n").diagnostics.items().empty());
}

TEST(ConfigTest, DiagnosticsAreInLineOrder) {
  LoadResult r = Load("zzz_unknown = 1\nsmtpd_timeout = bad\nbiff = no\n");
  ASSERT_EQ(r.diagnostics.items().size(), 3u) << Dump(r.diagnostics);
  EXPECT_EQ(r.diagnostics.items()[0].line, 1);
  EXPECT_EQ(r.diagnostics.items()[1].line, 2);
  EXPECT_EQ(r.diagnostics.items()[2].line, 3);
}

TEST(ConfigTest, SetParametersAreSortedAndUnexpanded) {
  LoadResult r = Load("myorigin = $mydomain\nmydomain = example.com\n");
  ASSERT_NE(r.config, nullptr);
  const auto& set = r.config->SetParameters();
  ASSERT_EQ(set.size(), 2u);
  EXPECT_EQ(set[0].name, "mydomain");
  EXPECT_EQ(set[1].name, "myorigin");
  EXPECT_EQ(set[1].value, "$mydomain");
  EXPECT_EQ(set[1].line, 1);
}

TEST(ConfigTest, LoadFileReportsAMissingFile) {
  LoadResult r = Config::LoadFile("/nonexistent/moat/main.cf");
  EXPECT_EQ(r.config, nullptr);
  EXPECT_EQ(r.unchecked, nullptr);
  ASSERT_EQ(r.diagnostics.errors(), 1);
  EXPECT_NE(r.diagnostics.items()[0].message.find("cannot open"), std::string::npos);
}

TEST(ConfigTest, LoadReturnsStatusWithTheFirstError) {
  testing::TempDir dir;
  std::string path = dir.Write("main.cf", "smtpd_timeout = 5x\n");
  std::string log;
  moat::log::CaptureForTest(&log);
  auto c = Config::Load(path);
  moat::log::CaptureForTest(nullptr);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find(path + ":1: smtpd_timeout: bad time value"),
            std::string::npos);
  EXPECT_NE(log.find("error: " + path + ":1: smtpd_timeout"), std::string::npos) << log;

  std::string good = dir.Write("good/main.cf", "myhostname = mx.example.com\n");
  auto ok = Config::Load(good);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->String("myhostname"), "mx.example.com");
}

TEST(ConfigTest, EmbeddedDefaultIsTheDesignDemo) {
  LoadResult r = Config::LoadEmbeddedDefault("/tmp/moat-test-spool");
  ASSERT_NE(r.config, nullptr) << Dump(r.diagnostics);
  EXPECT_TRUE(r.diagnostics.items().empty()) << Dump(r.diagnostics);
  const Config& c = *r.config;
  EXPECT_EQ(c.Source(), "<embedded default>");
  EXPECT_EQ(c.List("moat_listen"), (std::vector<std::string>{"127.0.0.1:2525"}));
  EXPECT_EQ(c.List("relay_domains"), (std::vector<std::string>{"example.com"}));
  EXPECT_EQ(c.String("relayhost"), "[127.0.0.1]:2526");
  EXPECT_TRUE(c.List("relay_recipient_maps").empty());
  EXPECT_EQ(c.String("queue_directory"), "/tmp/moat-test-spool");
  EXPECT_EQ(c.String("moat_control_socket"), "/tmp/moat-test-spool/control");
  EXPECT_TRUE(c.Addresses("mynetworks").ContainsText("127.0.0.1"));
  EXPECT_NE(EmbeddedDefaultText().find("queue_directory = /tmp/moat-demo\n"), std::string::npos);
}

TEST(ConfigTest, LocateMainCf) {
  testing::TempDir dir;
  MainCfLocation missing = LocateMainCf(dir.path());
  EXPECT_FALSE(missing.error.empty());
  EXPECT_NE(missing.error.find(dir.path() + "/main.cf does not exist"), std::string::npos);
  dir.Write("main.cf", "");
  MainCfLocation found = LocateMainCf(dir.path() + "/");
  EXPECT_TRUE(found.error.empty());
  EXPECT_EQ(found.path, dir.path() + "/main.cf");
  EXPECT_FALSE(found.use_embedded_default);
}

TEST(ConfigTest, CheckFilesNamesMissingTablesAndThePostmapCommand) {
  testing::TempDir dir;
  std::string present = dir.Write("present.moat", "");
  dir.Write("present", "");
  dir.Write("networks", "");
  LoadResult r = Load(
      "relay_recipient_maps = hash:" + dir.path() + "/present, hash:" + dir.path() +
      "/missing\n"
      "smtpd_client_restrictions = check_client_access cidr:" + dir.path() +
      "/networks, check_client_access texthash:" + dir.path() + "/nothere\n"
      "smtpd_tls_cert_file = " + dir.path() + "/cert.pem\n");
  ASSERT_NE(r.config, nullptr) << Dump(r.diagnostics);
  Diagnostics d = CheckFiles(*r.config);
  EXPECT_EQ(d.errors(), 3) << Dump(d);
  EXPECT_TRUE(Has(d, true,
                  "/etc/moat/main.cf:1: relay_recipient_maps: table " + dir.path() +
                      "/missing.moat does not exist: run \"moat postmap hash:" + dir.path() +
                      "/missing\""))
      << Dump(d);
  EXPECT_TRUE(Has(d, true,
                  "/etc/moat/main.cf:2: smtpd_client_restrictions: table " + dir.path() +
                      "/nothere does not exist"));
  EXPECT_TRUE(Has(d, true,
                  "/etc/moat/main.cf:3: smtpd_tls_cert_file: file " + dir.path() +
                      "/cert.pem does not exist"));
}

TEST(ConfigDeathTest, UnregisteredNameIsAProgrammerError) {
  LoadResult r = Load("");
  ASSERT_NE(r.config, nullptr);
  EXPECT_DEATH(r.config->Bool("no_such_parameter"), "not a registered parameter");
  EXPECT_DEATH(r.config->Bool("smtpd_timeout"), "check failed");
}

}  // namespace
}  // namespace moat::config
