// `moat postmap` end to end: compile, query, -i from stdin, warnings with line numbers,
// exit codes 0/1/2, and the source-newer-than-table warning.
#include <fcntl.h>
#include <sys/stat.h>

#include <ctime>
#include <filesystem>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat {
namespace {

using ::testing::HasSubstr;
using testing::RunMoat;

class PostmapCliTest : public ::testing::Test {
 protected:
  testing::TempDir dir_;
};

TEST_F(PostmapCliTest, CompileThenQuery) {
  std::string path = dir_.Write("relay_recipients",
                                "# from the guide\n"
                                "user1@example.com   x\n"
                                "User2@Example.com   OK\n"
                                "@example.net        x\n");
  auto r = RunMoat({"postmap", "hash:" + path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(std::filesystem::exists(path + ".moat"));

  r = RunMoat({"postmap", "-q", "USER2@example.COM", "hash:" + path});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "OK\n");
  r = RunMoat({"postmap", "-q", "user3@example.com", "hash:" + path});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  // -q is an exact key lookup, like postmap: no @domain fallback.
  r = RunMoat({"postmap", "-q", "someone@example.net", "hash:" + path});
  EXPECT_EQ(r.exit_code, 1);
  r = RunMoat({"postmap", "-q", "@example.net", "lmdb:" + path});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "x\n");
  // Without TYPE: hash.
  r = RunMoat({"postmap", "-q", "user1@example.com", path});
  EXPECT_EQ(r.out, "x\n");
}

TEST_F(PostmapCliTest, StdinSourceWithDashI) {
  std::string path = dir_.path() + "/from_ldap";
  auto r = RunMoat({"postmap", "-i", "hash:" + path}, "a@example.com OK\nb@example.com OK\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(path)) << "-i writes only the compiled file";
  r = RunMoat({"postmap", "-q", "b@example.com", "hash:" + path});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "OK\n");
}

TEST_F(PostmapCliTest, QueryKeysFromStdinAndShowAll) {
  std::string path = dir_.Write("t", "a 1\nb 2\n");
  ASSERT_EQ(RunMoat({"postmap", path}).exit_code, 0);
  auto r = RunMoat({"postmap", "-q", "-", "hash:" + path}, "a\nzz\nB\n");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "a\t1\nB\t2\n");
  r = RunMoat({"postmap", "-s", "hash:" + path});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("a\t1\n"));
  EXPECT_THAT(r.out, HasSubstr("b\t2\n"));
}

TEST_F(PostmapCliTest, WarningsCarryLineNumbersAndFirstDuplicateWins) {
  std::string path = dir_.Write("dups",
                                "key first\n"
                                "lonely\n"
                                "KEY second\n");
  auto r = RunMoat({"postmap", "hash:" + path});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("warning: " + path + ", line 2: expected format: key "
                               "whitespace value"));
  EXPECT_THAT(r.err, HasSubstr("warning: " + path + ", line 3: duplicate entry: \"key\""));
  r = RunMoat({"postmap", "-q", "key", "hash:" + path});
  EXPECT_EQ(r.out, "first\n");
}

TEST_F(PostmapCliTest, TexthashAndCidrAreQueriedFromTheSource) {
  std::string text = dir_.Write("text", "k v\n");
  auto r = RunMoat({"postmap", "-q", "K", "texthash:" + text});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "v\n");
  std::string cidr = dir_.Write("nets", "192.0.2.0/24 REJECT test net\n");
  r = RunMoat({"postmap", "-q", "192.0.2.77", "cidr:" + cidr});
  EXPECT_EQ(r.out, "REJECT test net\n");
  r = RunMoat({"postmap", "cidr:" + cidr});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("does not support bulk-mode creation"));
}

TEST_F(PostmapCliTest, ErrorsAndUsage) {
  auto r = RunMoat({"postmap"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("missing TYPE:FILE"));
  r = RunMoat({"postmap", "-x", "hash:/x"});
  EXPECT_EQ(r.exit_code, 2);
  r = RunMoat({"postmap", "-q"});
  EXPECT_EQ(r.exit_code, 2);
  r = RunMoat({"postmap", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("usage: moat postmap"));
  r = RunMoat({"postmap", "hash:" + dir_.path() + "/no-such-source"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no-such-source"));
  r = RunMoat({"postmap", "-q", "k", "hash:" + dir_.path() + "/never-compiled"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("never-compiled.moat: No such file"));
  std::string junk = dir_.Write("junk.moat", std::string(5000, 'j'));
  r = RunMoat({"postmap", "-q", "k", "hash:" + dir_.path() + "/junk"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("not a moat table"));
}

TEST_F(PostmapCliTest, SourceNewerThanTableWarns) {
  std::string path = dir_.Write("stale", "k v\n");
  ASSERT_EQ(RunMoat({"postmap", path}).exit_code, 0);
  struct timespec times[2] = {{0, UTIME_OMIT}, {0, 0}};
  clock_gettime(CLOCK_REALTIME, &times[1]);
  times[1].tv_sec += 5;
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  auto r = RunMoat({"postmap", "-q", "k", path});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "v\n");
  EXPECT_THAT(r.err, HasSubstr("is older than source file " + path));
}

}  // namespace
}  // namespace moat
