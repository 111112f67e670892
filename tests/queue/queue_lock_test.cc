// QueueLock: one daemon per queue directory (queue/queue_lock.h). flock belongs to the open
// file description, so a second Acquire() in this process stands in for a second daemon; a
// child process checks that the lock really excludes another process and dies with it.
#include "queue/queue_lock.h"

#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/testing.h"

namespace moat::queue {
namespace {

TEST(QueueLockTest, SecondHolderIsRefusedWithTheFirstOnesPid) {
  testing::TempDir dir;
  absl::StatusOr<QueueLock> first = QueueLock::Acquire(dir.path());
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(testing::ReadFile(dir.path() + "/moat.pid"), absl::StrCat(getpid(), "\n"));
  absl::StatusOr<QueueLock> second = QueueLock::Acquire(dir.path());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find(absl::StrCat("pid ", getpid())), std::string::npos)
      << second.status();
  EXPECT_NE(second.status().message().find("in use by another moat"), std::string::npos);
  // The refused attempt did not overwrite the holder's PID.
  EXPECT_EQ(testing::ReadFile(dir.path() + "/moat.pid"), absl::StrCat(getpid(), "\n"));
}

TEST(QueueLockTest, ReleasedOnDestructionAndOnProcessDeath) {
  testing::TempDir dir;
  { ASSERT_TRUE(QueueLock::Acquire(dir.path()).ok()); }
  // Another process takes it and dies without cleaning up (as after kill -9).
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    absl::StatusOr<QueueLock> held = QueueLock::Acquire(dir.path());
    const char c = held.ok() ? 'y' : 'n';
    (void)!write(ready[1], &c, 1);
    pause();  // until killed
    _exit(0);
  }
  close(ready[1]);
  char c = 0;
  ASSERT_EQ(read(ready[0], &c, 1), 1);
  close(ready[0]);
  EXPECT_EQ(c, 'y');
  absl::StatusOr<QueueLock> while_held = QueueLock::Acquire(dir.path());
  EXPECT_FALSE(while_held.ok());
  EXPECT_NE(while_held.status().message().find(absl::StrCat("pid ", child)), std::string::npos)
      << while_held.status();
  kill(child, SIGKILL);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  absl::StatusOr<QueueLock> after = QueueLock::Acquire(dir.path());
  EXPECT_TRUE(after.ok()) << after.status();
}

TEST(QueueLockTest, UnwritableDirectoryIsAnError) {
  absl::StatusOr<QueueLock> lock = QueueLock::Acquire("/nonexistent/moat-queue");
  ASSERT_FALSE(lock.ok());
  EXPECT_NE(lock.status().message().find("/nonexistent/moat-queue/moat.pid"), std::string::npos);
}

}  // namespace
}  // namespace moat::queue
