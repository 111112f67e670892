// tests/sched/scheduler_test.cc: the delivery scheduler driven with a fake clock
// (queue/sched/scheduler.h). Owned by: outbound.
#include "queue/sched/scheduler.h"

#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace moat::sched {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

QueuedRecipient Rcpt(std::string address, std::string nexthop = "[mx.internal]:25",
                     std::string transport = "relay") {
  return QueuedRecipient{std::move(address), std::move(transport), std::move(nexthop), 0, ""};
}

QueuedMessage Msg(std::string id, std::vector<QueuedRecipient> rcpts, absl::Time arrival = kT0,
                  std::string sender = "alice@example.org") {
  return QueuedMessage{std::move(id), std::move(sender), arrival, std::move(rcpts)};
}

RecipientResult Sent() {
  return RecipientResult{DeliveryStatus::kSent, "2.0.0", "250 2.0.0 Ok", "250 2.0.0 Ok",
                         "mx.internal",         false,   false};
}
RecipientResult Deferred(bool site = false) {
  return RecipientResult{DeliveryStatus::kDeferred,
                         site ? "4.4.1" : "4.2.0",
                         site ? "connect to mx.internal[10.0.0.5]:25: Connection refused"
                              : "host mx.internal[10.0.0.5] said: 450 4.2.0 busy (in reply to "
                                "RCPT TO command)",
                         site ? "" : "450 4.2.0 busy",
                         site ? "" : "mx.internal",
                         site,
                         false};
}
RecipientResult Bounced() {
  return RecipientResult{DeliveryStatus::kBounced,
                         "5.1.1",
                         "host said 550",
                         "550 5.1.1 no",
                         "mx.internal",
                         false,
                         false};
}

std::vector<RecipientResult> All(const Job& job, const RecipientResult& r) {
  return std::vector<RecipientResult>(job.recipients.size(), r);
}

// Collects every job NextWork hands out right now.
std::vector<Job> Drain(Scheduler& s, absl::Time now, int max = 1000) {
  std::vector<Job> jobs;
  for (int i = 0; i < max; ++i) {
    auto j = s.NextWork(now);
    if (!j)
      break;
    jobs.push_back(std::move(*j));
  }
  return jobs;
}

TEST(SchedulerTest, PerShardLimitSplitsTheDestinationLimit) {
  EXPECT_EQ(PerShardLimit(20, 1), 20);
  EXPECT_EQ(PerShardLimit(20, 2), 10);
  EXPECT_EQ(PerShardLimit(20, 3), 7);
  EXPECT_EQ(PerShardLimit(1, 4), 1);
  EXPECT_EQ(PerShardLimit(0, 4), 1);
}

TEST(SchedulerTest, RecipientsAreGroupedPerDestinationUpToTheRecipientLimit) {
  SchedulerConfig c;
  c.destination_recipient_limit["relay"] = 2;
  Scheduler s(c);
  ASSERT_TRUE(
      s.Enqueue(Msg("M1", {Rcpt("a1@a", "[a]:25"), Rcpt("b1@b", "[b]:25"), Rcpt("a2@a", "[a]:25"),
                           Rcpt("a3@a", "[a]:25"), Rcpt("b2@b", "[b]:25"), Rcpt("a4@a", "[a]:25"),
                           Rcpt("a5@a", "[a]:25")}),
                kT0)
          .ok());
  auto jobs = Drain(s, kT0);
  std::map<std::string, std::vector<std::vector<std::string>>> by_dest;
  for (const Job& j : jobs) {
    EXPECT_EQ(j.message_id, "M1");
    std::vector<std::string> addrs;
    for (const auto& r : j.recipients)
      addrs.push_back(r.address);
    by_dest[j.destination].push_back(addrs);
  }
  using V = std::vector<std::vector<std::string>>;
  EXPECT_EQ(by_dest["relay:[a]:25"], (V{{"a1@a", "a2@a"}, {"a3@a", "a4@a"}, {"a5@a"}}));
  EXPECT_EQ(by_dest["relay:[b]:25"], (V{{"b1@b", "b2@b"}}));
  // The smtp transport keeps the default limit (50).
  EXPECT_EQ(s.RecipientLimit("smtp"), 50);
}

TEST(SchedulerTest, ConcurrencyLimitPerDestinationAndShard) {
  SchedulerConfig c;
  c.shard_count = 2;
  c.default_destination_concurrency_limit = 4;   // 2 per shard
  c.destination_concurrency_limit["relay"] = 2;  // 1 per shard
  Scheduler s(c);
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(s.Enqueue(Msg(absl::StrCat("S", i), {Rcpt("x@a", "[a]:25", "smtp")}), kT0).ok());
    ASSERT_TRUE(s.Enqueue(Msg(absl::StrCat("R", i), {Rcpt("x@b", "[b]:25", "relay")}), kT0).ok());
  }
  auto jobs = Drain(s, kT0);
  int smtp = 0;
  int relay = 0;
  for (const Job& j : jobs)
    (j.transport == "smtp" ? smtp : relay)++;
  EXPECT_EQ(smtp, 2);
  EXPECT_EQ(relay, 1);
  EXPECT_EQ(s.InFlight("smtp:[a]:25"), 2);
  EXPECT_EQ(s.InFlight("relay:[b]:25"), 1);
  // A result frees a slot for that destination only.
  const Job& first_relay =
      *std::find_if(jobs.begin(), jobs.end(), [](const Job& j) { return j.transport == "relay"; });
  s.OnResult(first_relay.id, All(first_relay, Sent()), kT0);
  auto more = Drain(s, kT0);
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0].transport, "relay");
  auto finished = s.TakeFinished();
  ASSERT_EQ(finished.size(), 1u);
  EXPECT_EQ(finished[0].recipients[0].result.status, DeliveryStatus::kSent);
}

TEST(SchedulerTest, BackoffFollowsTimeInQueueBetweenMinimalAndMaximal) {
  SchedulerConfig c;
  c.minimal_backoff_time = absl::Seconds(300);
  c.maximal_backoff_time = absl::Seconds(4000);
  c.queue_run_delay = absl::Seconds(1);
  Scheduler s(c);
  ASSERT_TRUE(s.Enqueue(Msg("M", {Rcpt("u@d")}), kT0).ok());
  absl::Time now = kT0;
  std::vector<int64_t> waits;
  for (int attempt = 0; attempt < 7; ++attempt) {
    auto job = s.NextWork(now);
    ASSERT_TRUE(job.has_value()) << attempt;
    EXPECT_EQ(job->handoff, now);
    s.OnResult(job->id, All(*job, Deferred()), now);
    auto view = s.Find("M");
    ASSERT_TRUE(view.has_value());
    ASSERT_EQ(view->where, Scheduler::Where::kDeferred);
    waits.push_back(absl::ToInt64Seconds(view->next_attempt - now));
    // Not before its time.
    EXPECT_FALSE(s.NextWork(view->next_attempt - absl::Seconds(1)).has_value());
    now = view->next_attempt;
  }
  EXPECT_EQ(waits, (std::vector<int64_t>{300, 300, 600, 1200, 2400, 4000, 4000}));
}

TEST(SchedulerTest, DeferredQueueIsScannedEveryQueueRunDelay) {
  SchedulerConfig c;
  c.queue_run_delay = absl::Seconds(1000);
  Scheduler s(c);
  ASSERT_TRUE(s.Enqueue(Msg("M", {Rcpt("u@d")}), kT0).ok());
  auto job = s.NextWork(kT0);
  ASSERT_TRUE(job);
  s.OnResult(job->id, All(*job, Deferred()), kT0);
  EXPECT_EQ(s.Find("M")->next_attempt, kT0 + absl::Seconds(300));
  EXPECT_FALSE(s.NextWork(kT0 + absl::Seconds(300)));  // due, but the scan runs at +1000
  EXPECT_EQ(s.NextWakeup(), kT0 + absl::Seconds(1000));
  EXPECT_TRUE(s.NextWork(kT0 + absl::Seconds(1000)));
}

TEST(SchedulerTest, LifetimeExpiryReturnsDeferredRecipientsToTheSender) {
  SchedulerConfig c;
  c.maximal_queue_lifetime = absl::Hours(1);
  c.bounce_queue_lifetime = absl::Minutes(10);
  c.queue_run_delay = absl::Seconds(1);
  Scheduler s(c);
  ASSERT_TRUE(s.Enqueue(Msg("M", {Rcpt("sent@d"), Rcpt("slow@d")}), kT0).ok());
  ASSERT_TRUE(s.Enqueue(Msg("N", {Rcpt("x@d")}, kT0, ""), kT0).ok());  // null sender
  absl::Time now = kT0;
  bool first = true;
  for (int round = 0; round < 50 && (s.Find("M") || s.Find("N")); ++round) {
    for (const Job& job : Drain(s, now)) {
      std::vector<RecipientResult> results;
      for (const auto& r : job.recipients) {
        results.push_back(first && r.address == "sent@d" ? Sent() : Deferred());
      }
      s.OnResult(job.id, results, now);
    }
    first = false;
    now = std::min(s.Find("M") ? s.Find("M")->next_attempt : absl::InfiniteFuture(),
                   s.Find("N") ? s.Find("N")->next_attempt : absl::InfiniteFuture());
  }
  auto finished = s.TakeFinished();
  ASSERT_EQ(finished.size(), 2u);
  // The null-sender message expires first (bounce_queue_lifetime).
  EXPECT_EQ(finished[0].id, "N");
  EXPECT_TRUE(finished[0].expired);
  EXPECT_GE(now - kT0, absl::Hours(1));
  const FinishedMessage& m = finished[1];
  EXPECT_EQ(m.id, "M");
  EXPECT_TRUE(m.expired);
  ASSERT_EQ(m.recipients.size(), 2u);
  EXPECT_EQ(m.recipients[0].result.status, DeliveryStatus::kSent);
  EXPECT_EQ(m.recipients[1].result.status, DeliveryStatus::kBounced);
  EXPECT_EQ(m.recipients[1].result.dsn, "4.2.0");  // the last (temporary) status is kept
  EXPECT_EQ(m.recipients[1].result.reply, "450 4.2.0 busy");
  auto failed = DsnRecipientsFor(m.recipients, DsnKind::kFailure);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].address, "slow@d");
  EXPECT_EQ(failed[0].action, DsnAction::kFailed);
}

TEST(SchedulerTest, ZeroLifetimeMeansOneAttempt) {
  SchedulerConfig c;
  c.maximal_queue_lifetime = absl::ZeroDuration();
  Scheduler s(c);
  ASSERT_TRUE(s.Enqueue(Msg("M", {Rcpt("u@d")}), kT0).ok());
  auto job = s.NextWork(kT0);
  ASSERT_TRUE(job);
  s.OnResult(job->id, All(*job, Deferred()), kT0);
  auto finished = s.TakeFinished();
  ASSERT_EQ(finished.size(), 1u);
  EXPECT_TRUE(finished[0].expired);
}

TEST(SchedulerTest, PermanentFailuresFinishAtOnce) {
  Scheduler s(SchedulerConfig{});
  ASSERT_TRUE(s.Enqueue(Msg("M", {Rcpt("a@d"), Rcpt("b@d")}), kT0).ok());
  auto job = s.NextWork(kT0);
  ASSERT_TRUE(job);
  s.OnResult(job->id, {Sent(), Bounced()}, kT0);
  auto finished = s.TakeFinished();
  ASSERT_EQ(finished.size(), 1u);
  EXPECT_FALSE(finished[0].expired);
  EXPECT_EQ(finished[0].recipients[1].result.status, DeliveryStatus::kBounced);
  EXPECT_FALSE(s.Find("M"));
  EXPECT_EQ(s.active_count(), 0u);
}

TEST(SchedulerTest, DeadDestinationIsSuspendedAsAWholeAndRecovers) {
  SchedulerConfig c;
  c.default_destination_concurrency_limit = 1;
  c.minimal_backoff_time = absl::Seconds(300);
  c.queue_run_delay = absl::Seconds(10);
  Scheduler s(c);
  ASSERT_TRUE(s.Enqueue(Msg("M1", {Rcpt("u1@a", "[a]:25")}), kT0).ok());
  ASSERT_TRUE(s.Enqueue(Msg("M2", {Rcpt("u2@a", "[a]:25")}), kT0).ok());
  ASSERT_TRUE(s.Enqueue(Msg("B1", {Rcpt("v@b", "[b]:25")}), kT0).ok());
  auto jobs = Drain(s, kT0);
  ASSERT_EQ(jobs.size(), 2u);  // one per destination (limit 1)
  const Job& a_job = jobs[0].destination == "relay:[a]:25" ? jobs[0] : jobs[1];
  const Job& b_job = jobs[0].destination == "relay:[a]:25" ? jobs[1] : jobs[0];
  s.OnResult(a_job.id, All(a_job, Deferred(true)), kT0);
  EXPECT_TRUE(s.IsDead("relay:[a]:25", kT0));
  // M2, queued for the dead destination, is deferred at once as a whole.
  auto events = s.TakeEvents();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].message_id, "M2");
  EXPECT_EQ(events[0].result.status, DeliveryStatus::kDeferred);
  EXPECT_EQ(events[0].result.dsn, "4.4.1");
  EXPECT_EQ(events[0].result.reason,
            "delivery temporarily suspended: connect to mx.internal[10.0.0.5]:25: Connection "
            "refused");
  EXPECT_EQ(s.Find("M2")->where, Scheduler::Where::kDeferred);
  // A new message for it is suspended too, without a connection attempt; B still works.
  ASSERT_TRUE(s.Enqueue(Msg("M3", {Rcpt("u3@a", "[a]:25")}), kT0 + absl::Seconds(1)).ok());
  EXPECT_FALSE(s.NextWork(kT0 + absl::Seconds(1)));
  EXPECT_EQ(s.TakeEvents().size(), 1u);
  s.OnResult(b_job.id, All(b_job, Sent()), kT0 + absl::Seconds(1));
  EXPECT_FALSE(s.IsDead("relay:[b]:25", kT0));
  // After minimal_backoff_time the destination is probed again.
  const absl::Time later = kT0 + absl::Seconds(300);
  EXPECT_FALSE(s.IsDead("relay:[a]:25", later));
  auto probe = s.NextWork(later);
  ASSERT_TRUE(probe);
  EXPECT_EQ(probe->destination, "relay:[a]:25");
  EXPECT_FALSE(s.NextWork(later));  // one at a time (limit 1)
  s.OnResult(probe->id, All(*probe, Sent()), later);
  EXPECT_FALSE(s.IsDead("relay:[a]:25", later));
  // The others keep their own backoff (M3 was deferred a second later); the next scan
  // delivers them.
  for (absl::Time t : {later, later + absl::Seconds(10)}) {
    for (const Job& j : Drain(s, t))
      s.OnResult(j.id, All(j, Sent()), t);
  }
  EXPECT_EQ(s.TakeFinished().size(), 4u);
}

TEST(SchedulerTest, RecipientLevelFailuresDoNotKillTheDestination) {
  Scheduler s(SchedulerConfig{});
  ASSERT_TRUE(s.Enqueue(Msg("M", {Rcpt("a@d"), Rcpt("b@d")}), kT0).ok());
  ASSERT_TRUE(s.Enqueue(Msg("N", {Rcpt("c@d")}), kT0).ok());
  auto jobs = Drain(s, kT0);
  ASSERT_EQ(jobs.size(), 2u);
  s.OnResult(jobs[0].id, All(jobs[0], Deferred(false)), kT0);
  EXPECT_FALSE(s.IsDead(jobs[0].destination, kT0));
  EXPECT_TRUE(s.TakeEvents().empty());
}

TEST(SchedulerTest, FailureLimitAboveOneNeedsConsecutiveFailures) {
  SchedulerConfig c;
  c.destination_failure_limit = 2;
  Scheduler s(c);
  for (const char* id : {"M1", "M2", "M3"}) {
    ASSERT_TRUE(s.Enqueue(Msg(id, {Rcpt("u@a")}), kT0).ok());
  }
  auto jobs = Drain(s, kT0);
  ASSERT_EQ(jobs.size(), 3u);
  s.OnResult(jobs[0].id, All(jobs[0], Deferred(true)), kT0);
  EXPECT_FALSE(s.IsDead(jobs[0].destination, kT0));
  s.OnResult(jobs[1].id, All(jobs[1], Sent()), kT0);  // resets the count
  s.OnResult(jobs[2].id, All(jobs[2], Deferred(true)), kT0);
  EXPECT_FALSE(s.IsDead(jobs[0].destination, kT0));
}

// default_destination_concurrency_failed_cohort_limit = 0 (Postfix: "Specify zero to disable
// this feature"): connection failures defer the message, never the whole destination.
TEST(SchedulerTest, FailureLimitZeroNeverMarksADestinationDead) {
  SchedulerConfig c;
  c.destination_failure_limit = 0;
  Scheduler s(c);
  for (const char* id : {"M1", "M2", "M3"}) {
    ASSERT_TRUE(s.Enqueue(Msg(id, {Rcpt("u@a")}), kT0).ok());
  }
  auto jobs = Drain(s, kT0);
  ASSERT_EQ(jobs.size(), 3u);
  for (const auto& job : jobs) {
    s.OnResult(job.id, All(job, Deferred(true)), kT0);
    EXPECT_FALSE(s.IsDead(job.destination, kT0));
  }
}

TEST(SchedulerTest, FlushMakesEverythingDueAndRevivesDestinations) {
  SchedulerConfig c;
  c.queue_run_delay = absl::Hours(1);
  Scheduler s(c);
  ASSERT_TRUE(s.Enqueue(Msg("M", {Rcpt("u@a")}), kT0).ok());
  auto job = s.NextWork(kT0);
  ASSERT_TRUE(job);
  s.OnResult(job->id, All(*job, Deferred(true)), kT0);
  EXPECT_TRUE(s.IsDead(job->destination, kT0));
  const absl::Time t = kT0 + absl::Seconds(5);
  EXPECT_FALSE(s.NextWork(t));
  s.Flush(t);
  EXPECT_FALSE(s.IsDead(job->destination, t));
  auto again = s.NextWork(t);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->message_id, "M");
}

TEST(SchedulerTest, HoldReleaseDelete) {
  SchedulerConfig c;
  c.queue_run_delay = absl::Seconds(1);
  Scheduler s(c);
  ASSERT_TRUE(s.Enqueue(Msg("H", {Rcpt("u@a")}), kT0).ok());
  ASSERT_TRUE(s.Enqueue(Msg("D", {Rcpt("v@a")}), kT0).ok());
  ASSERT_TRUE(s.Enqueue(Msg("A", {Rcpt("w@a")}), kT0).ok());
  EXPECT_EQ(s.Hold("nope", kT0).code(), absl::StatusCode::kNotFound);
  // Held while active and queued: pulled out of the destination queue.
  ASSERT_TRUE(s.Hold("H", kT0).ok());
  EXPECT_EQ(s.held_count(), 1u);
  ASSERT_TRUE(s.Delete("D", kT0).ok());
  EXPECT_FALSE(s.Find("D"));
  auto jobs = Drain(s, kT0);
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0].message_id, "A");
  // Delete while in flight: the late result is ignored, nothing is reported.
  ASSERT_TRUE(s.Delete("A", kT0).ok());
  EXPECT_FALSE(s.Find("A"));
  s.OnResult(jobs[0].id, All(jobs[0], Sent()), kT0);
  EXPECT_TRUE(s.TakeFinished().empty());
  EXPECT_EQ(s.active_count(), 0u);
  // Held messages are not flushed; release makes them due.
  s.Flush(kT0 + absl::Seconds(10));
  EXPECT_FALSE(s.NextWork(kT0 + absl::Seconds(10)));
  EXPECT_EQ(s.Release("A", kT0).code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(s.Release("H", kT0 + absl::Seconds(10)).ok());
  EXPECT_EQ(s.Release("H", kT0).code(), absl::StatusCode::kFailedPrecondition);
  auto h = s.NextWork(kT0 + absl::Seconds(10));
  ASSERT_TRUE(h);
  EXPECT_EQ(h->message_id, "H");
  // Hold while in flight: the message goes to hold when its job reports back.
  ASSERT_TRUE(s.Hold("H", kT0 + absl::Seconds(10)).ok());
  s.OnResult(h->id, All(*h, Deferred()), kT0 + absl::Seconds(11));
  EXPECT_EQ(s.Find("H")->where, Scheduler::Where::kHeld);
  EXPECT_FALSE(s.NextWork(kT0 + absl::Hours(10)));
}

TEST(SchedulerTest, ActiveQueueIsBounded) {
  SchedulerConfig c;
  c.active_message_limit = 2;
  Scheduler s(c);
  for (const char* id : {"M1", "M2", "M3"}) {
    ASSERT_TRUE(s.Enqueue(Msg(id, {Rcpt("u@a")}), kT0).ok());
  }
  EXPECT_EQ(s.active_count(), 2u);
  EXPECT_EQ(s.incoming_count(), 1u);
  EXPECT_EQ(s.Find("M3")->where, Scheduler::Where::kIncoming);
  auto jobs = Drain(s, kT0);
  ASSERT_EQ(jobs.size(), 2u);
  s.OnResult(jobs[0].id, All(jobs[0], Sent()), kT0);
  auto third = s.NextWork(kT0);
  ASSERT_TRUE(third);
  EXPECT_EQ(third->message_id, "M3");
  EXPECT_EQ(s.Enqueue(Msg("M2", {Rcpt("u@a")}), kT0).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(s.Enqueue(Msg("E", {}), kT0).code(), absl::StatusCode::kInvalidArgument);
}

TEST(SchedulerTest, DelayWarningOncePerMessage) {
  SchedulerConfig c;
  c.delay_warning_time = absl::Hours(1);
  c.queue_run_delay = absl::Seconds(1);
  Scheduler s(c);
  ASSERT_TRUE(s.Enqueue(Msg("M", {Rcpt("u@a")}), kT0).ok());
  absl::Time now = kT0;
  int warnings = 0;
  for (int i = 0; i < 6; ++i) {
    auto job = s.NextWork(now);
    ASSERT_TRUE(job);
    s.OnResult(job->id, All(*job, Deferred()), now);
    for (const DelayWarning& w : s.TakeDelayWarnings()) {
      ++warnings;
      EXPECT_GE(now - kT0, absl::Hours(1));
      ASSERT_EQ(w.recipients.size(), 1u);
      EXPECT_EQ(DsnRecipientsFor(w.recipients, DsnKind::kDelay).size(), 1u);
    }
    now = s.Find("M")->next_attempt;
  }
  EXPECT_EQ(warnings, 1);
}

TEST(SchedulerTest, SuccessNotificationOnlyWhenTheNextHopDidNotTakeNotify) {
  std::vector<FinalRecipient> rs(2);
  rs[0].address = "a@d";
  rs[0].notify = kNotifySuccess;
  rs[0].result = Sent();
  rs[1].address = "b@d";
  rs[1].notify = kNotifySuccess;
  rs[1].result = Sent();
  rs[1].result.remote_dsn = true;
  auto d = DsnRecipientsFor(rs, DsnKind::kSuccess);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].address, "a@d");
  EXPECT_EQ(d[0].action, DsnAction::kRelayed);
}

TEST(SchedulerTest, ListShowsPendingRecipientsWithTheirLastReason) {
  SchedulerConfig c;
  c.queue_run_delay = absl::Seconds(1);
  Scheduler s(c);
  ASSERT_TRUE(s.Enqueue(Msg("M2", {Rcpt("a@d"), Rcpt("b@d")}, kT0 + absl::Seconds(5)),
                        kT0 + absl::Seconds(5))
                  .ok());
  ASSERT_TRUE(s.Enqueue(Msg("M1", {Rcpt("c@d")}), kT0 + absl::Seconds(5)).ok());
  for (const Job& j : Drain(s, kT0 + absl::Seconds(5))) {
    if (j.message_id == "M2") {
      s.OnResult(j.id, {Sent(), Deferred()}, kT0 + absl::Seconds(6));
    }
  }
  auto list = s.List();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].id, "M1");  // oldest first
  EXPECT_EQ(list[0].where, Scheduler::Where::kActive);
  ASSERT_EQ(list[0].pending.size(), 1u);
  EXPECT_EQ(list[0].pending[0].result.reason, "");
  EXPECT_EQ(list[1].id, "M2");
  EXPECT_EQ(list[1].where, Scheduler::Where::kDeferred);
  EXPECT_EQ(list[1].next_attempt, kT0 + absl::Seconds(306));
  ASSERT_EQ(list[1].pending.size(), 1u);
  EXPECT_EQ(list[1].pending[0].address, "b@d");
  EXPECT_EQ(list[1].pending[0].result.dsn, "4.2.0");
}

TEST(SchedulerTest, RoundRobinAcrossDestinations) {
  SchedulerConfig c;
  c.default_destination_concurrency_limit = 100;
  Scheduler s(c);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(s.Enqueue(Msg(absl::StrCat("A", i), {Rcpt("u@a", "[a]:25")}), kT0).ok());
  }
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(s.Enqueue(Msg(absl::StrCat("B", i), {Rcpt("u@b", "[b]:25")}), kT0).ok());
  }
  auto jobs = Drain(s, kT0);
  ASSERT_EQ(jobs.size(), 8u);
  for (size_t i = 1; i < jobs.size(); ++i) {
    EXPECT_NE(jobs[i].destination, jobs[i - 1].destination) << i;
  }
}

}  // namespace
}  // namespace moat::sched
