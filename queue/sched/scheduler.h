// queue/sched/scheduler.h
//
// Scheduler: one shard's delivery scheduler, Postfix's qmgr reduced to pure logic.
// PURE: no I/O and no clock: every call takes `now`, so the shard's io_uring loop drives
// it and tests drive it with a fake time. Owned by one shard; not thread-safe. Its inputs
// are our own spool index (not network bytes).
//
// Queues (Postfix's names):
//   incoming  new messages (Enqueue) waiting for room in the active queue
//   active    at most active_message_limit messages (qmgr_message_active_limit) whose
//             recipients sit in per-destination queues or are being delivered
//   deferred  messages waiting for their next attempt; scanned every queue_run_delay
//   held      messages on hold (Hold/Release), never scheduled
// A destination is "transport:nexthop" (e.g. "relay:[mx.internal]:25"). NextWork()
// hands out a Job: one transaction of at most the destination's recipient limit
// (relay_destination_recipient_limit, default_destination_recipient_limit), recipients of
// one message with the same destination grouped together, while the destination has
// fewer jobs in flight than its concurrency limit. Destinations are served round-robin.
//
// Concurrency limits are per destination and shared across shards by splitting: each of
// N shards gets ceil(limit / N) (PerShardLimit), so the node as a whole stays within
// limit + N - 1 connections and no cross-shard traffic is needed per delivery. (Messages
// to one destination are spread over shards by the client-IP steering of inbound mail.)
//
// Retries as Postfix: after an attempt with deferred recipients the message waits
//   clamp(time in queue, minimal_backoff_time, maximal_backoff_time)
// (so the wait about doubles each time) and is picked up by the first deferred-queue scan
// after that. When the time in queue reaches maximal_queue_lifetime (bounce_queue_lifetime
// for null-sender mail) after a failed attempt, the deferred recipients are returned to
// the sender ("status=expired, returned to sender"), keeping their last reason.
//
// Dead destinations (Postfix's throttling): when destination_failure_limit attempts in a
// row fail at the connection level (RecipientResult::site_failure: connect refused,
// greeting/HELO rejected, lost connection, timeout), the destination is suspended for
// minimal_backoff_time: its queued recipients are deferred at once, as a whole, with
// "delivery temporarily suspended: <reason>", and new ones likewise until the time is up
// or a delivery to it succeeds; then one job probes it again.
//
// Memory: the active queue is bounded (active_message_limit); incoming, deferred and held
// messages keep only their envelope here.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"

#include "queue/sched/dsn.h"

namespace moat::sched {

struct SchedulerConfig {
  int shard_count = 1;
  int default_destination_concurrency_limit = 20;
  // By transport name: "relay" -> relay_destination_concurrency_limit, "smtp" -> ...
  absl::flat_hash_map<std::string, int> destination_concurrency_limit;
  int default_destination_recipient_limit = 50;
  // By transport name: "relay" -> relay_destination_recipient_limit.
  absl::flat_hash_map<std::string, int> destination_recipient_limit;
  absl::Duration minimal_backoff_time = absl::Seconds(300);
  absl::Duration maximal_backoff_time = absl::Seconds(4000);
  absl::Duration maximal_queue_lifetime = absl::Hours(24 * 5);
  absl::Duration bounce_queue_lifetime = absl::Hours(24 * 5);
  absl::Duration queue_run_delay = absl::Seconds(300);
  absl::Duration delay_warning_time = absl::ZeroDuration();  // 0: no delay warnings
  // Connection-level failures in a row that make a destination dead; 0: never
  // (default_destination_concurrency_failed_cohort_limit x initial_destination_concurrency).
  int destination_failure_limit = 1;
  size_t active_message_limit = 20000;  // qmgr_message_active_limit
};

// ceil(limit / shards), at least 1.
int PerShardLimit(int limit, int shards);

struct QueuedRecipient {
  std::string address;
  std::string transport;  // "smtp", "relay", "error", "discard"
  std::string nexthop;    // "[mx.internal]:25", or the error text
  uint8_t notify = 0;     // NotifyFlag bits
  std::string orcpt;      // "rfc822;u@d" or ""
};

struct QueuedMessage {
  std::string id;      // queue id
  std::string sender;  // "" = null sender
  absl::Time arrival;
  // Only the recipients still to deliver (recovery passes the undelivered ones).
  std::vector<QueuedRecipient> recipients;
};

enum class DeliveryStatus { kSent, kDeferred, kBounced };
std::string_view DeliveryStatusName(DeliveryStatus status);  // "sent", "deferred", "bounced"

struct RecipientResult {
  DeliveryStatus status = DeliveryStatus::kDeferred;
  std::string dsn;            // "2.0.0", "4.4.1", "5.1.1"
  std::string reason;         // Postfix's text
  std::string reply;          // remote reply, "" when local
  std::string remote_mta;     // the server's host name, "" when no server answered
  bool site_failure = false;  // connection-level failure (dead-destination input)
  bool remote_dsn = false;    // the next hop took NOTIFY/ORCPT (it reports success itself)
};

struct JobRecipient {
  int index = 0;  // into QueuedMessage::recipients
  std::string address;
  uint8_t notify = 0;
  std::string orcpt;
};

struct Job {
  uint64_t id = 0;
  std::string message_id;
  std::string sender;
  std::string transport;
  std::string nexthop;
  std::string destination;  // "transport:nexthop"
  std::vector<JobRecipient> recipients;
  absl::Time arrival;  // for the log line's delays=
  absl::Time active;
  absl::Time handoff;
};

// A recipient the scheduler itself deferred (dead destination): the caller logs it
// (relay=none) and may journal it.
struct SchedulerEvent {
  std::string message_id;
  int recipient = 0;
  std::string address;
  RecipientResult result;
  absl::Time arrival;
  absl::Time active;
  absl::Time time;
};

struct FinalRecipient {
  int index = 0;
  std::string address;
  uint8_t notify = 0;
  std::string orcpt;
  RecipientResult result;  // kSent or kBounced
};

// A message every recipient of which is final: the caller reclaims its spool space and
// sends notifications (DsnRecipientsFor + ComposeDsn).
struct FinishedMessage {
  std::string id;
  std::string sender;
  absl::Time arrival;
  bool expired = false;  // log FormatExpiredLine
  std::vector<FinalRecipient> recipients;
};

// A message deferred for longer than delay_warning_time (once per message).
struct DelayWarning {
  std::string id;
  std::string sender;
  absl::Time arrival;
  std::vector<FinalRecipient> recipients;  // the deferred ones, with their last result
};

// The DSN recipients of a finished message for `kind`: bounced -> failed; sent with
// NOTIFY=SUCCESS to a next hop without DSN -> relayed. (ComposeDsn applies NOTIFY.)
std::vector<DsnRecipient> DsnRecipientsFor(const std::vector<FinalRecipient>& recipients,
                                           DsnKind kind);

class Scheduler {
 public:
  explicit Scheduler(SchedulerConfig config);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Adds a message (from the spool index: new or recovered). AlreadyExists for a known
  // id, InvalidArgument without recipients.
  absl::Status Enqueue(QueuedMessage message, absl::Time now);

  // The next delivery job, or nullopt when nothing may start now.
  std::optional<Job> NextWork(absl::Time now);
  // One result per job recipient, in the job's order. Unknown job ids are ignored (the
  // message may have been deleted).
  void OnResult(uint64_t job_id, const std::vector<RecipientResult>& results, absl::Time now);

  // When NextWork may have something new (next deferred scan, a dead destination coming
  // back); InfiniteFuture when only Enqueue/OnResult can create work.
  absl::Time NextWakeup() const;

  // moat queue flush: every deferred message is due now, dead destinations revive.
  void Flush(absl::Time now);
  // moat queue hold/release/delete. NotFound for unknown ids.
  absl::Status Hold(const std::string& id, absl::Time now);
  absl::Status Release(const std::string& id, absl::Time now);
  absl::Status Delete(const std::string& id, absl::Time now);

  std::vector<SchedulerEvent> TakeEvents();
  std::vector<FinishedMessage> TakeFinished();
  std::vector<DelayWarning> TakeDelayWarnings();

  // Introspection (queue list, metrics, tests).
  enum class Where { kIncoming, kActive, kDeferred, kHeld };
  struct MessageView {
    Where where;
    absl::Time next_attempt;  // kDeferred only
    int pending_recipients;
  };
  std::optional<MessageView> Find(const std::string& id) const;
  // moat queue list: every message (oldest arrival first) with its recipients still to
  // deliver and their last result (empty reason before the first attempt).
  struct ListedMessage {
    std::string id;
    std::string sender;
    absl::Time arrival;
    Where where;
    absl::Time next_attempt;  // kDeferred only
    std::vector<FinalRecipient> pending;
  };
  std::vector<ListedMessage> List() const;
  size_t incoming_count() const { return incoming_.size(); }
  size_t active_count() const { return active_count_; }
  size_t deferred_count() const { return deferred_.size(); }
  size_t held_count() const;
  int InFlight(const std::string& destination) const;
  bool IsDead(const std::string& destination, absl::Time now) const;
  int ConcurrencyLimit(const std::string& transport) const;
  int RecipientLimit(const std::string& transport) const;

 private:
  enum class RecipientState { kQueued, kInFlight, kWaiting, kDone };
  struct Message;
  struct Destination;
  struct Entry {
    std::string message_id;
    std::vector<int> recipients;
  };
  struct JobRecord {
    std::string message_id;
    std::string destination;
    std::vector<int> recipients;
  };

  void Admit(absl::Time now);
  void Activate(Message& m, absl::Time now);
  Destination& GetDestination(const std::string& transport, const std::string& nexthop);
  void Suspend(Destination& d, absl::Time now);
  // Removes `m`'s entries from every destination queue; their recipients go back to
  // kWaiting.
  void Unqueue(Message& m);
  // The active round of `m` is over when nothing is queued or in flight: finish, expire,
  // hold or defer it. May erase `m`.
  void MaybeFinishRound(const std::string& id, absl::Time now);
  void Finish(Message& m, bool expired);
  void Erase(const std::string& id);

  SchedulerConfig config_;
  absl::flat_hash_map<std::string, std::unique_ptr<Message>> messages_;
  std::deque<std::string> incoming_;
  std::set<std::pair<absl::Time, std::string>> deferred_;  // by next attempt
  absl::flat_hash_map<std::string, std::unique_ptr<Destination>> destinations_;
  std::vector<Destination*> rotation_;  // round-robin order
  size_t cursor_ = 0;
  absl::flat_hash_map<uint64_t, JobRecord> jobs_;
  uint64_t next_job_id_ = 1;
  size_t active_count_ = 0;
  absl::Time next_scan_ = absl::InfinitePast();
  std::vector<SchedulerEvent> events_;
  std::vector<FinishedMessage> finished_;
  std::vector<DelayWarning> warnings_;
};

}  // namespace moat::sched
