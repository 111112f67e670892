// Log lines have Postfix's shape: "PROGRAM[pid]: LEVEL: message", info without a level.
#include "core/log/log.h"

#include <unistd.h>

#include <string>

#include "gtest/gtest.h"

namespace moat::log {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override { CaptureForTest(&captured_); }
  void TearDown() override {
    CaptureForTest(nullptr);
    SetDebug(false);
    SetProgramName("moat");
  }
  std::string Pid() { return std::to_string(getpid()); }
  std::string captured_;
};

TEST_F(LogTest, InfoHasNoLevelWord) {
  SetProgramName("moat/smtpd");
  Info("connect from %s[%s]", "host.example", "192.0.2.1");
  EXPECT_EQ(captured_, "moat/smtpd[" + Pid() + "]: connect from host.example[192.0.2.1]\n");
}

TEST_F(LogTest, WarningAndErrorCarryTheirLevel) {
  Warning("%s:%d: unknown parameter %s", "main.cf", 3, "foo");
  Error("bad");
  EXPECT_EQ(captured_, "moat[" + Pid() + "]: warning: main.cf:3: unknown parameter foo\n" +
                           "moat[" + Pid() + "]: error: bad\n");
}

TEST_F(LogTest, DebugOnlyWhenSwitchedOn) {
  Debug("hidden %d", 1);
  EXPECT_EQ(captured_, "");
  SetDebug(true);
  Debug("shown %d", 2);
  EXPECT_EQ(captured_, "moat[" + Pid() + "]: debug: shown 2\n");
}

TEST(LogDeathTest, FatalExitsWithStatusOne) {
  EXPECT_EXIT(Fatal("cannot open %s", "/nonexistent"), ::testing::ExitedWithCode(1),
              "fatal: cannot open /nonexistent");
}

}  // namespace
}  // namespace moat::log
