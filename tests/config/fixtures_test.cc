// The main.cf files of the operators' Postfix guides (tests/testdata/config, see its README)
// loaded through the library: each passes with warnings only for parameters moat does not
// implement (mx_policy is the documented exception), and the parameters it sets are exactly
// what `postconf -n` prints for the same file.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <cctype>
#include <set>
#include <sstream>

#include "core/config/config.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat::config {
namespace {

// Copies tests/testdata/config/NAME into `dir` with @DIR@ replaced by dir's path, and creates
// an empty FILE.moat next to each compiled-table source the main.cf names: a placeholder for
// the existence check only (compiling tables is the table area's job).
void CopyFixture(const std::string& name, const testing::TempDir& dir) {
  namespace fs = std::filesystem;
  fs::path root = fs::path(testing::SourceDir()) / "tests/testdata/config" / name;
  ASSERT_TRUE(fs::is_directory(root)) << root;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) {
      continue;
    }
    std::string text = testing::ReadFile(entry.path().string());
    for (size_t at = text.find("@DIR@"); at != std::string::npos; at = text.find("@DIR@", at)) {
      text.replace(at, 5, dir.path());
    }
    dir.Write(fs::relative(entry.path(), root).string(), text);
  }
  std::string main_cf = testing::ReadFile(dir.path() + "/main.cf");
  for (std::string type : {"hash:", "btree:", "cdb:", "lmdb:"}) {
    for (size_t at = main_cf.find(type); at != std::string::npos; at = main_cf.find(type, at + 1)) {
      bool word_start = at == 0 || !std::isalpha(static_cast<unsigned char>(main_cf[at - 1]));
      size_t start = at + type.size();
      if (!word_start || start >= main_cf.size() || main_cf[start] != '/') {
        continue;  // e.g. texthash:
      }
      size_t end = main_cf.find_first_of(" \t\n,", start);
      std::string source = main_cf.substr(start, end == std::string::npos ? end : end - start);
      ASSERT_EQ(source.rfind(dir.path(), 0), 0u) << source;
      dir.Write(source.substr(dir.path().size() + 1) + ".moat", "");
    }
  }
}

struct Outcome {
  std::set<std::string> unimplemented;  // names warned as "Postfix parameter ... not implement"
  std::vector<std::string> other_warnings;
  std::vector<std::string> errors;
};

Outcome Classify(const Diagnostics& diagnostics) {
  Outcome out;
  const std::string kPrefix = "parameter ";
  const std::string kSuffix = " is a Postfix parameter that moat does not implement; ignored";
  for (const Diagnostic& d : diagnostics.items()) {
    const std::string& m = d.message;
    if (d.IsError()) {
      out.errors.push_back(d.ToString());
    } else if (m.rfind(kPrefix, 0) == 0 && m.size() > kPrefix.size() + kSuffix.size() &&
               m.compare(m.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0) {
      out.unimplemented.insert(
          m.substr(kPrefix.size(), m.size() - kPrefix.size() - kSuffix.size()));
    } else {
      out.other_warnings.push_back(d.ToString());
    }
  }
  return out;
}

std::string Join(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines) {
    out += l + "\n";
  }
  return out;
}

struct Loaded {
  LoadResult result;
  Diagnostics all;  // load + file checks, as `moat check` reports them
};

Loaded LoadFixture(const std::string& name, const testing::TempDir& dir) {
  CopyFixture(name, dir);
  Loaded l;
  l.result = Config::LoadFile(dir.path() + "/main.cf");
  l.all = l.result.diagnostics;
  if (l.result.unchecked != nullptr) {
    l.all.Append(CheckFiles(*l.result.unchecked));
  }
  return l;
}

const std::set<std::string> kMxUnimplemented = {
    "alias_database", "append_dot_mydomain", "biff", "proxy_read_maps",
    "smtp_sasl_mechanism_filter", "smtp_tls_session_cache_database", "smtpd_sasl_auth_enable",
    "smtpd_tls_session_cache_database"};

TEST(FixturesTest, MailProxy) {
  testing::TempDir dir;
  Loaded l = LoadFixture("mail_proxy", dir);
  Outcome o = Classify(l.all);
  EXPECT_TRUE(o.errors.empty()) << Join(o.errors);
  EXPECT_TRUE(o.other_warnings.empty()) << Join(o.other_warnings);
  EXPECT_EQ(o.unimplemented, (std::set<std::string>{"alias_database"}));
  ASSERT_NE(l.result.config, nullptr);
  const Config& c = *l.result.config;
  EXPECT_TRUE(c.Addresses("mynetworks").ContainsText("192.0.2.25"));
  EXPECT_FALSE(c.Addresses("mynetworks").ContainsText("192.0.2.26"));
  EXPECT_EQ(c.List("relay_domains"),
            (std::vector<std::string>{"example.com", "example.net", "example.org"}));
  EXPECT_EQ(c.Size("message_size_limit"), 20480000);
}

TEST(FixturesTest, Gateway) {
  testing::TempDir dir;
  Loaded l = LoadFixture("gateway", dir);
  EXPECT_TRUE(l.all.items().empty()) << Join(Classify(l.all).other_warnings)
                                     << Join(Classify(l.all).errors);
  ASSERT_NE(l.result.config, nullptr);
  const Config& c = *l.result.config;
  EXPECT_TRUE(c.List("mydestination").empty());
  EXPECT_EQ(c.String("local_transport"), "error:local mail delivery is disabled");
  EXPECT_EQ(c.List("parent_domain_matches_subdomains"),
            (std::vector<std::string>{"debug_peer_list", "smtpd_access_maps"}));
  ASSERT_EQ(c.Restrictions("smtpd_recipient_restrictions").size(), 2u);
  EXPECT_EQ(c.Tables("relay_recipient_maps")[0].name, dir.path() + "/relay_recipients");
}

TEST(FixturesTest, MxPolicyFailsOnTheRestrictionsMoatCannotHonour) {
  testing::TempDir dir;
  Loaded l = LoadFixture("mx_policy", dir);
  Outcome o = Classify(l.all);
  EXPECT_EQ(l.result.config, nullptr);
  ASSERT_EQ(o.errors.size(), 4u) << Join(o.errors);
  std::string all_errors = Join(o.errors);
  for (const char* name : {"reject_unknown_sender_domain", "reject_unknown_recipient_domain",
                           "reject_unknown_reverse_client_hostname", "check_policy_service"}) {
    EXPECT_NE(all_errors.find(std::string("restriction \"") + name + "\""), std::string::npos)
        << name;
  }
  // All reported on the line smtpd_sender_restrictions starts on.
  for (const Diagnostic& d : l.all.items()) {
    if (d.IsError()) {
      EXPECT_NE(d.message.find("smtpd_sender_restrictions: "), std::string::npos);
    }
  }
  EXPECT_EQ(o.unimplemented, kMxUnimplemented);
  ASSERT_EQ(o.other_warnings.size(), 1u) << Join(o.other_warnings);
  EXPECT_NE(o.other_warnings[0].find("\"proxy:\" is ignored"), std::string::npos);
}

TEST(FixturesTest, MxPolicySupportedPassesWithWarningsOnly) {
  testing::TempDir dir;
  Loaded l = LoadFixture("mx_policy_supported", dir);
  Outcome o = Classify(l.all);
  EXPECT_TRUE(o.errors.empty()) << Join(o.errors);
  EXPECT_EQ(o.unimplemented, kMxUnimplemented);
  ASSERT_EQ(o.other_warnings.size(), 1u) << Join(o.other_warnings);
  ASSERT_NE(l.result.config, nullptr);
  const Config& c = *l.result.config;
  EXPECT_EQ(c.String("mydomain"), "my-reverse-dns.domain.tld");
  EXPECT_EQ(c.String("smtpd_banner"), "Hello and welcome to our mailserver");
  EXPECT_EQ(c.Time("smtpd_error_sleep_time"), absl::Seconds(5));
  EXPECT_EQ(c.Int("relay_destination_recipient_limit"), 1);
  const auto& sender = c.Restrictions("smtpd_sender_restrictions");
  ASSERT_EQ(sender.size(), 10u);
  EXPECT_EQ(sender[2].name, "check_client_access");
  EXPECT_EQ(sender[2].table.ToString(), "hash:" + dir.path() + "/hash/whitelist-ips");
  EXPECT_EQ(sender[9].name, "check_client_access");
}

TEST(FixturesTest, MultiDomainGateway) {
  testing::TempDir dir;
  Loaded l = LoadFixture("multi_domain_gateway", dir);
  EXPECT_TRUE(l.all.items().empty()) << Join(Classify(l.all).other_warnings);
  ASSERT_NE(l.result.config, nullptr);
  EXPECT_FALSE(l.result.config->Bool("show_user_unknown_table_name"));
}

TEST(FixturesTest, SecureGateway) {
  testing::TempDir dir;
  Loaded l = LoadFixture("secure_gateway", dir);
  Outcome o = Classify(l.all);
  EXPECT_TRUE(o.errors.empty()) << Join(o.errors);
  EXPECT_TRUE(o.other_warnings.empty()) << Join(o.other_warnings);
  EXPECT_EQ(o.unimplemented,
            (std::set<std::string>{"alias_database", "append_dot_mydomain", "biff",
                                   "mailbox_command", "mailbox_size_limit", "readme_directory",
                                   "smtp_tls_session_cache_database",
                                   "smtpd_tls_session_cache_database"}));
  ASSERT_NE(l.result.config, nullptr);
  const Config& c = *l.result.config;
  EXPECT_EQ(c.String("smtpd_banner"), "localhost ESMTP moat (Ubuntu)");
  EXPECT_EQ(c.List("mydestination"),
            (std::vector<std::string>{"localhost", "localhost.localdomain", "localdomain"}));
  EXPECT_TRUE(c.Addresses("mynetworks").ContainsText("::ffff:127.0.0.1"));
}

// `postconf -c DIR -n` and the parameters moat sees as set agree, value for value (postconf
// prints values unexpanded, with white space normalized; it adds config_directory because
// -c was given).
class PostconfAgreementTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PostconfAgreementTest, SetParametersMatchPostconfN) {
  if (access("/usr/sbin/postconf", X_OK) != 0) {
    GTEST_SKIP() << "postconf is not installed (deploy/install-deps.sh installs postfix)";
  }
  testing::TempDir dir;
  Loaded l = LoadFixture(GetParam(), dir);
  ASSERT_NE(l.result.unchecked, nullptr);
  std::string ours;
  for (const Config::SetParameter& p : l.result.unchecked->SetParameters()) {
    std::string value = NormalizeWhiteSpace(p.value);
    ours += p.name + (value.empty() ? " =" : " = " + value) + "\n";
  }
  // postconf knows $transport_destination_recipient_limit-style parameters (e.g.
  // relay_destination_recipient_limit) only for services in master.cf; moat has none.
  dir.Write("master.cf",
            "smtp      inet  n       -       y       -       -       smtpd\n"
            "smtp      unix  -       -       y       -       -       smtp\n"
            "relay     unix  -       -       y       -       -       smtp\n");
  testing::RunResult r = testing::Run({"/usr/sbin/postconf", "-c", dir.path(), "-n"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string theirs;
  std::istringstream lines(r.out);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("config_directory = ", 0) != 0) {
      theirs += line + "\n";
    }
  }
  EXPECT_EQ(ours, theirs);
  EXPECT_GT(std::count(ours.begin(), ours.end(), '\n'), 5);
}

INSTANTIATE_TEST_SUITE_P(Seeds, PostconfAgreementTest,
                         ::testing::Values("mail_proxy", "gateway", "mx_policy",
                                           "mx_policy_supported", "multi_domain_gateway",
                                           "secure_gateway"));

}  // namespace
}  // namespace moat::config
