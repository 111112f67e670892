// The `moat` command line: usage errors exit 2 with a clear message, --help exits 0.
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat {
namespace {

using testing::RunMoat;

TEST(CliTest, NoCommandIsAUsageError) {
  auto r = RunMoat({});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("usage: moat COMMAND"), std::string::npos) << r.err;
}

TEST(CliTest, UnknownCommandIsAUsageError) {
  auto r = RunMoat({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("unknown command 'frobnicate'"), std::string::npos) << r.err;
}

TEST(CliTest, HelpListsEveryCommand) {
  auto r = RunMoat({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* c : {"serve", "check", "config", "postmap", "reload", "queue", "stats"}) {
    EXPECT_NE(r.out.find(std::string("moat ") + c), std::string::npos) << c;
  }
}

}  // namespace
}  // namespace moat
