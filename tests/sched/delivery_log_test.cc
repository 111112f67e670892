// tests/sched/delivery_log_test.cc: Postfix-shaped delivery log lines
// (queue/sched/delivery_log.h). Owned by: outbound.
#include "queue/sched/delivery_log.h"

#include "gtest/gtest.h"

namespace moat::sched {
namespace {

absl::Duration Us(int64_t us) {
  return absl::Microseconds(us);
}

// Postfix's own format_tv test vectors (src/util/format_tv.ref), with exact inputs.
TEST(DelayFormatTest, MatchesPostfixFormatTvVectors) {
  struct Case {
    int64_t us;
    int sig;
    const char* want;
  };
  const Case cases[] = {
      {1110000000, 2, "1110"}, {111000000, 2, "111"},   {11100000, 2, "11"}, {1110000, 2, "1.1"},
      {111000, 2, "0.11"},     {11100, 2, "0.011"},     {1110, 2, "0.0011"}, {111, 2, "0.00011"},
      {11, 2, "0.000011"},     {1000000000, 2, "1000"}, {10000000, 2, "10"}, {1000000, 2, "1"},
      {100000, 2, "0.1"},      {10000, 2, "0.01"},      {1000, 2, "0.001"},  {1, 2, "0.000001"},
      {996000000, 2, "996"},   {99600000, 2, "100"},    {9960000, 2, "10"},  {996000, 2, "1"},
      {99600, 2, "0.1"},       {9960, 2, "0.01"},       {996, 2, "0.001"},   {1110000, 1, "1"},
      {111000, 1, "0.1"},      {11100, 1, "0.01"},      {996000, 1, "1"},    {99600000, 1, "100"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FormatDelay(Us(c.us), c.sig, 6), c.want) << c.us << " sig " << c.sig;
  }
}

TEST(DelayFormatTest, DefaultResolutionIsTwoDecimals) {
  EXPECT_EQ(FormatDelay(Us(0)), "0");
  EXPECT_EQ(FormatDelay(Us(1000)), "0");  // 1 ms is below delay_logging_resolution_limit
  EXPECT_EQ(FormatDelay(Us(5000)), "0.01");
  EXPECT_EQ(FormatDelay(Us(260000)), "0.26");
  EXPECT_EQ(FormatDelay(Us(1234000)), "1.2");
  EXPECT_EQ(FormatDelay(Us(12345000)), "12");
  EXPECT_EQ(FormatDelay(Us(165276400000)), "165276");
  EXPECT_EQ(FormatDelay(-absl::Seconds(3)), "0");
}

TEST(DeliveryLineTest, SentLineLikePostfix) {
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  DeliveryLogEntry e;
  e.queue_id = "3F2A1C";
  e.recipient = "u@example.com";
  e.relay = FormatRelay("mx.internal", "10.0.0.5", 25);
  e.times.arrival = t0;
  e.times.active = t0 + absl::Milliseconds(100);
  e.times.handoff = t0 + absl::Milliseconds(100);
  e.times.conn_setup_done = t0 + absl::Milliseconds(600);
  e.times.done = t0 + absl::Milliseconds(1200);
  e.dsn = "2.0.0";
  e.status = "sent";
  e.reason = "250 2.0.0 Ok: queued as ABC";
  EXPECT_EQ(FormatDeliveryLine(e),
            "3F2A1C: to=<u@example.com>, relay=mx.internal[10.0.0.5]:25, delay=1.2, "
            "delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as ABC)");
  e.conn_use = 3;
  e.orig_recipient = "U@Example.com";  // same address, other case: no orig_to
  EXPECT_NE(FormatDeliveryLine(e).find("relay=mx.internal[10.0.0.5]:25, conn_use=3, delay="),
            std::string::npos);
  EXPECT_EQ(FormatDeliveryLine(e).find("orig_to"), std::string::npos);
  e.orig_recipient = "alias@example.com";
  EXPECT_NE(FormatDeliveryLine(e).find("to=<u@example.com>, orig_to=<alias@example.com>, relay="),
            std::string::npos);
}

TEST(DeliveryLineTest, DeferredWithoutConnectionLikePostfix) {
  // Postfix: "... relay=none, delay=4642, delays=4642/0.56/0/0.03, dsn=4.4.1,
  // status=deferred (delivery temporarily suspended: connect to ...)".
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  DeliveryLogEntry e;
  e.queue_id = "BC7941A2BBF";
  e.recipient = "to@email.com";
  e.relay = "none";
  e.times.arrival = t0;
  e.times.active = t0 + absl::Milliseconds(4641900);
  e.times.handoff = t0 + absl::Milliseconds(4642460);
  e.times.done = t0 + absl::Milliseconds(4642490);
  e.dsn = "4.4.1";
  e.status = "deferred";
  e.reason =
      "delivery temporarily suspended: connect to 24.200.177.247[24.200.177.247]:25: Connection "
      "timed out";
  EXPECT_EQ(FormatDeliveryLine(e),
            "BC7941A2BBF: to=<to@email.com>, relay=none, delay=4642, delays=4642/0.56/0/0.03, "
            "dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to "
            "24.200.177.247[24.200.177.247]:25: Connection timed out)");
}

TEST(DeliveryLineTest, MissingStampsFollowLogAdhoc) {
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  DeliveryLogEntry e;
  e.queue_id = "QID1";
  e.recipient = "r@d";
  e.relay = "none";
  e.dsn = "5.0.0";
  e.status = "bounced";
  e.reason = "no route";  // (a 1-char literal trips GCC 12 bug 105329 at -O3)
  e.times.arrival = t0;
  e.times.done = t0 + absl::Seconds(2);
  // No queue manager stamp: everything is "before queue manager".
  EXPECT_NE(FormatDeliveryLine(e).find("delay=2, delays=2/0/0/0,"), std::string::npos);
  // Active but never handed off: the rest is queue manager time.
  e.times.active = t0 + absl::Milliseconds(500);
  EXPECT_NE(FormatDeliveryLine(e).find("delay=2, delays=0.5/1.5/0/0,"), std::string::npos);
  // Clock went backwards: 0, never negative.
  e.times.done = t0 - absl::Seconds(1);
  EXPECT_NE(FormatDeliveryLine(e).find("delay=0, delays=0.5/0/0/0,"), std::string::npos);
}

TEST(DeliveryLineTest, OtherLines) {
  EXPECT_EQ(FormatExpiredLine("3F2A1C", "a@b"),
            "3F2A1C: from=<a@b>, status=expired, returned to sender");
  EXPECT_EQ(FormatNotificationLine("3F2A1C", "non-delivery", "4B7D2E"),
            "3F2A1C: sender non-delivery notification: 4B7D2E");
}

}  // namespace
}  // namespace moat::sched
