// `moat check` and `moat config` end to end: usage errors, the seed main.cf fixtures
// (tests/testdata/config, see its README), file:line diagnostics, and `moat config -n` output
// compared with `postconf -c DIR -n` on the same file.
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <cctype>
#include <set>
#include <sstream>

#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat {
namespace {

using testing::RunMoat;

// Copies tests/testdata/config/NAME into `dir` with @DIR@ replaced by dir's path. With
// `placeholders`, creates an empty FILE.moat next to each compiled-table source main.cf names:
// only so that moat check's existence check passes (compiling is `moat postmap`'s job).
void CopyFixture(const std::string& name, const testing::TempDir& dir, bool placeholders = true) {
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
  if (!placeholders) {
    return;
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

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
  }
  return lines;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(ConfigCliTest, HelpTextsExitZero) {
  auto check = RunMoat({"check", "--help"});
  EXPECT_EQ(check.exit_code, 0);
  EXPECT_TRUE(Contains(check.out, "usage: moat check [-c CONFIG_DIR]")) << check.out;
  auto config = RunMoat({"config", "-h"});
  EXPECT_EQ(config.exit_code, 0);
  EXPECT_TRUE(Contains(config.out, "usage: moat config [-c CONFIG_DIR] [-n | -d] [-x] [NAME...]"))
      << config.out;
}

TEST(ConfigCliTest, UsageErrorsExitTwo) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{"check", "-q"}, "moat check: unknown option '-q'"},
      {{"check", "-c"}, "moat check: option -c needs a directory"},
      {{"check", "extra"}, "moat check: unexpected argument 'extra'"},
      {{"config", "--frobnicate"}, "moat config: unknown option '--frobnicate'"},
      {{"config", "-n", "-d"}, "moat config: -n and -d cannot be used together"},
      {{"config", "-c"}, "moat config: option -c needs a directory"},
  };
  for (const Case& c : cases) {
    auto r = RunMoat(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args[1];
    EXPECT_TRUE(Contains(r.err, c.message)) << r.err;
    EXPECT_TRUE(Contains(r.err, "--help")) << r.err;
  }
}

TEST(ConfigCliTest, CheckWithConfigDirButNoMainCfFails) {
  testing::TempDir dir;
  auto r = RunMoat({"check", "-c", dir.path()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "error: " + dir.path() + "/main.cf does not exist")) << r.err;
  auto c = RunMoat({"config", "-c", dir.path()});
  EXPECT_EQ(c.exit_code, 1);
}

TEST(ConfigCliTest, CheckWithoutAnyMainCfChecksTheEmbeddedDefault) {
  if (access("/etc/moat/main.cf", F_OK) == 0) {
    GTEST_SKIP() << "/etc/moat/main.cf exists on this machine";
  }
  auto r = RunMoat({"check"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Contains(r.err, "checking the embedded default configuration")) << r.err;
  EXPECT_TRUE(Contains(r.err, "moat check: <embedded default>: 0 errors, 0 warnings")) << r.err;
  auto c = RunMoat({"config", "-n", "moat_listen", "relay_domains", "relayhost"});
  EXPECT_EQ(c.exit_code, 0) << c.err;
  EXPECT_EQ(c.out,
            "moat_listen = 127.0.0.1:2525\nrelay_domains = example.com\n"
            "relayhost = [127.0.0.1]:2526\n");
}

TEST(ConfigCliTest, CheckNamesFileAndLineOfEveryProblem) {
  testing::TempDir dir;
  std::string path = dir.Write("main.cf",
                               "myhostname = mx.example.com\n"
                               "smtpd_timeout = 5x\n"
                               "frobnicate = 1\n"
                               "mynetworks = 10.0.0.1/8\n"
                               "smtpd_sasl_auth_enable = yes\n"
                               "smtpd_banner = ${myhostname\n");
  auto r = RunMoat({"check", "-c", dir.path()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(Contains(r.err, "error: " + path + ":2: smtpd_timeout: bad time value \"5x\""))
      << r.err;
  EXPECT_TRUE(Contains(r.err, "warning: " + path + ":3: unknown parameter \"frobnicate\""));
  EXPECT_TRUE(Contains(r.err, "error: " + path + ":4: mynetworks: bad CIDR \"10.0.0.1/8\""));
  EXPECT_TRUE(Contains(r.err, "error: " + path + ":5: smtpd_sasl_auth_enable = yes is not"));
  EXPECT_TRUE(Contains(r.err, "error: " + path + ":6: smtpd_banner: unterminated \"${\""));
  EXPECT_TRUE(Contains(r.err, "moat check: " + path + ": 4 errors, 1 warning\n")) << r.err;
}

TEST(ConfigCliTest, CheckNamesTheMissingCompiledTableAndThePostmapCommand) {
  testing::TempDir dir;
  CopyFixture("gateway", dir, /*placeholders=*/false);
  auto r = RunMoat({"check", "-c", dir.path()});
  EXPECT_EQ(r.exit_code, 1);
  const std::string& d = dir.path();
  EXPECT_TRUE(Contains(r.err, "error: " + d + "/main.cf:17: relay_recipient_maps: table " + d +
                                  "/relay_recipients.moat does not exist: run \"moat postmap "
                                  "hash:" + d + "/relay_recipients\""))
      << r.err;
  EXPECT_TRUE(Contains(r.err, "3 errors, 0 warnings")) << r.err;
}

struct SeedCase {
  std::string name;
  int exit_code;
  std::set<std::string> unimplemented;  // parameters warned as not implemented by moat
  int other_warnings;
  int errors;
};

class SeedCheckTest : public ::testing::TestWithParam<SeedCase> {};

TEST_P(SeedCheckTest, CheckPassesWithWarningsOnlyForUnimplementedParameters) {
  const SeedCase& c = GetParam();
  testing::TempDir dir;
  CopyFixture(c.name, dir);
  auto r = RunMoat({"check", "-c", dir.path()});
  EXPECT_EQ(r.exit_code, c.exit_code) << r.err;
  const std::string main_cf = dir.path() + "/main.cf:";
  const std::string kSuffix = " is a Postfix parameter that moat does not implement; ignored";
  std::set<std::string> warned;
  int other_warnings = 0;
  int errors = 0;
  for (const std::string& line : Lines(r.err)) {
    size_t param = line.find(": parameter ");
    bool unimplemented = Contains(line, ": warning: " + main_cf) && param != std::string::npos &&
                         line.size() > kSuffix.size() &&
                         line.compare(line.size() - kSuffix.size(), kSuffix.size(), kSuffix) == 0;
    if (unimplemented) {
      size_t start = param + std::string(": parameter ").size();
      warned.insert(line.substr(start, line.size() - kSuffix.size() - start));
    } else if (Contains(line, ": warning: ")) {
      ++other_warnings;
    } else if (Contains(line, ": error: ")) {
      // "error: DIR/main.cf:LINE: ..."
      size_t at = line.find("error: " + main_cf);
      ASSERT_NE(at, std::string::npos) << line;
      size_t digits = at + std::string("error: ").size() + main_cf.size();
      EXPECT_TRUE(digits < line.size() && std::isdigit(static_cast<unsigned char>(line[digits])))
          << line;
      ++errors;
    }
  }
  EXPECT_EQ(warned, c.unimplemented) << r.err;
  EXPECT_EQ(other_warnings, c.other_warnings) << r.err;
  EXPECT_EQ(errors, c.errors) << r.err;
}

const std::set<std::string> kMxUnimplemented = {
    "alias_database", "append_dot_mydomain", "biff", "proxy_read_maps",
    "smtp_sasl_mechanism_filter", "smtp_tls_session_cache_database", "smtpd_sasl_auth_enable",
    "smtpd_tls_session_cache_database"};

INSTANTIATE_TEST_SUITE_P(
    Seeds, SeedCheckTest,
    ::testing::Values(
        SeedCase{"mail_proxy", 0, {"alias_database"}, 0, 0},
        SeedCase{"gateway", 0, {}, 0, 0},
        // The documented exception: four sender restrictions moat cannot honour (see the
        // fixture's header). The other warning is "proxy: is ignored".
        SeedCase{"mx_policy", 1, kMxUnimplemented, 1, 4},
        SeedCase{"mx_policy_supported", 0, kMxUnimplemented, 1, 0},
        SeedCase{"multi_domain_gateway", 0, {}, 0, 0},
        SeedCase{"secure_gateway",
                 0,
                 {"alias_database", "append_dot_mydomain", "biff", "mailbox_command",
                  "mailbox_size_limit", "readme_directory", "smtp_tls_session_cache_database",
                  "smtpd_tls_session_cache_database"},
                 0,
                 0}),
    [](const ::testing::TestParamInfo<SeedCase>& info) { return info.param.name; });

class SeedConfigTest : public ::testing::TestWithParam<std::string> {};

// `moat config -n` prints exactly the parameters the file sets: the names a plain reading
// of main.cf finds (a line starting with "name ="), once each, sorted.
TEST_P(SeedConfigTest, ConfigNPrintsExactlyTheParametersSet) {
  testing::TempDir dir;
  CopyFixture(GetParam(), dir);
  std::set<std::string> expected;
  for (const std::string& line : Lines(testing::ReadFile(dir.path() + "/main.cf"))) {
    size_t end = 0;
    while (end < line.size() &&
           (std::isalnum(static_cast<unsigned char>(line[end])) || line[end] == '_')) {
      ++end;
    }
    size_t eq = line.find_first_not_of(" \t", end);
    if (end > 0 && eq != std::string::npos && line[eq] == '=') {
      expected.insert(line.substr(0, end));
    }
  }
  auto r = RunMoat({"config", "-c", dir.path(), "-n"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> printed;
  for (const std::string& line : Lines(r.out)) {
    size_t eq = line.find(" =");
    ASSERT_NE(eq, std::string::npos) << line;
    printed.push_back(line.substr(0, eq));
  }
  EXPECT_TRUE(std::is_sorted(printed.begin(), printed.end()));
  EXPECT_EQ(std::set<std::string>(printed.begin(), printed.end()), expected);
  EXPECT_EQ(printed.size(), expected.size());
}

// The same output as postconf's for the same file (postconf adds config_directory when -c is
// given, and needs the relay service in master.cf to know relay_destination_recipient_limit).
TEST_P(SeedConfigTest, ConfigNMatchesPostconfN) {
  if (access("/usr/sbin/postconf", X_OK) != 0) {
    GTEST_SKIP() << "postconf is not installed (deploy/install-deps.sh installs postfix)";
  }
  testing::TempDir dir;
  CopyFixture(GetParam(), dir);
  auto ours = RunMoat({"config", "-c", dir.path(), "-n"});
  ASSERT_EQ(ours.exit_code, 0) << ours.err;
  dir.Write("master.cf",
            "smtp      inet  n       -       y       -       -       smtpd\n"
            "smtp      unix  -       -       y       -       -       smtp\n"
            "relay     unix  -       -       y       -       -       smtp\n");
  auto theirs = testing::Run({"/usr/sbin/postconf", "-c", dir.path(), "-n"});
  ASSERT_EQ(theirs.exit_code, 0) << theirs.err;
  std::string expected;
  for (const std::string& line : Lines(theirs.out)) {
    if (line.rfind("config_directory = ", 0) != 0) {
      expected += line + "\n";
    }
  }
  EXPECT_EQ(ours.out, expected);
}

INSTANTIATE_TEST_SUITE_P(Seeds, SeedConfigTest,
                         ::testing::Values("mail_proxy", "gateway", "mx_policy",
                                           "mx_policy_supported", "multi_domain_gateway",
                                           "secure_gateway"));

TEST(ConfigCliTest, ConfigDefaultsAndNames) {
  auto r = RunMoat({"config", "-d", "smtpd_relay_restrictions", "message_size_limit",
                    "smtpd_timeout", "mail_name", "moat_listen"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
            "defer_unauth_destination\n"
            "message_size_limit = 10240000\n"
            "smtpd_timeout = 300s\n"
            "mail_name = moat\n"
            "moat_listen = 0.0.0.0:25 [::]:25\n");
}

TEST(ConfigCliTest, ConfigUnknownNameWarnsAndExitsOne) {
  testing::TempDir dir;
  dir.Write("main.cf", "myhostname = mx.example.com\n");
  auto r = RunMoat({"config", "-c", dir.path(), "myhostname", "no_such_parameter"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "myhostname = mx.example.com\n");
  EXPECT_TRUE(Contains(r.err, "moat config: warning: no_such_parameter: unknown parameter"))
      << r.err;
}

TEST(ConfigCliTest, ConfigShowsRawValuesAndExpandsWithX) {
  testing::TempDir dir;
  dir.Write("main.cf",
            "mydomain = example.com\nmyhostname = mx.$mydomain\nsmtpd_banner = $myhostname   "
            "ESMTP\n  ready\n");
  auto raw = RunMoat({"config", "-c", dir.path(), "myhostname", "smtpd_banner", "myorigin"});
  EXPECT_EQ(raw.exit_code, 0) << raw.err;
  EXPECT_EQ(raw.out,
            "myhostname = mx.$mydomain\nsmtpd_banner = $myhostname ESMTP ready\n"
            "myorigin = $myhostname\n");
  auto x = RunMoat({"config", "-c", dir.path(), "-x", "myhostname", "smtpd_banner", "myorigin"});
  EXPECT_EQ(x.exit_code, 0) << x.err;
  EXPECT_EQ(x.out,
            "myhostname = mx.example.com\nsmtpd_banner = mx.example.com ESMTP ready\n"
            "myorigin = mx.example.com\n");
}

TEST(ConfigCliTest, ConfigWithoutFlagsPrintsEveryParameterSorted) {
  testing::TempDir dir;
  dir.Write("main.cf", "biff = no\nmessage_size_limit = 5000\n");
  auto r = RunMoat({"config", "-c", dir.path()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> lines = Lines(r.out);
  EXPECT_GT(lines.size(), 100u);
  EXPECT_TRUE(std::is_sorted(lines.begin(), lines.end()));
  EXPECT_NE(std::find(lines.begin(), lines.end(), "biff = no"), lines.end());
  EXPECT_NE(std::find(lines.begin(), lines.end(), "message_size_limit = 5000"), lines.end());
  EXPECT_NE(std::find(lines.begin(), lines.end(), "smtpd_timeout = 300s"), lines.end());
}

}  // namespace
}  // namespace moat
