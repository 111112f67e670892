// core/server/shard_spool.h
//
// One shard's side of the durable spool: the net::MessageSink the SMTP sessions hand their
// messages to, and the group-commit driver that moves the spool's batches through the
// shard's io_uring (queue/spool.h describes the Stage/PrepareCommit/OnCommitDone protocol).
//
// Group commit: at the end of every loop turn (a reactor turn hook), when no commit is in
// flight and something is staged, the whole staged batch goes out as one writev + one
// fdatasync, linked on the ring, or, for an O_DIRECT segment, as one write with RWF_DSYNC
// (plus an fsync of the spool directory when the batch opens a new segment file). Messages
// staged while that commit runs form the next batch. A session's "250 2.0.0 Ok: queued as
// ID" is released only from the completion of the sync that covers its message
// (SmtpSession::OnQueued); a failed write or sync fails every message of its batch (451 4.3.0,
// or 452 4.3.1 for ENOSPC).
//
// Journal batches: a delivery outcome (the journal) must become durable, but nobody waits for it:
// at worst a crash before its commit delivers the message again (at-least-once, as after a
// crash in the middle of a delivery). So journal records do not start a commit of their own
// right away. They ride with the next batch of messages, or, when no message comes within
// journal_delay() (10 ms), go out on their own. Measured in W1 (5 KB messages, 20 sessions, two
// shards), 30% of the commits were journal-only before. Shutdown commits them at once
// (Flush()).
//
// Commit delay: each commit is a write and a flush on an io-wq worker, its fixed cost (about
// 35 us of CPU on this project's 2-vCPU test machine, most of it the worker's wake-ups and two
// virtio doorbells) paid per batch. Under load a small batch therefore waits up to
// commit_delay() (500 us) for more messages, until kCommitBatchTarget (8) are staged: like
// MySQL's binlog_group_commit_sync_delay, but only when the shard's recent arrival rate
// (messages staged in the last 10 ms window) says at least kCommitDelayMinArrivals (one) more is
// due within the delay. A lightly loaded shard never waits. Measured in W1 (5 KB, 20 sessions,
// two shards): 57% fewer commits and 13-16% less CPU per message at about the same throughput.
// With one expected arrival instead of two, W5 (a message per connection, about 3,200 msg/s per
// shard) waits too: 10-17% less CPU there, and at the open-loop rate of half W1's peak the p50
// goes up by 0.1-0.35 ms (full runs: 0.66-0.71 ms to 1.04-1.07 ms; the p99 did not move). A batch does not wait either when every session
// of the shard is waiting for its 250 already (no one else could add a message), or when it
// holds kCommitBatchBytes (64 KiB) of messages already: then its write, not the commit's fixed
// cost, is what it costs (one 100 KB message goes at once). Flush() ends all waiting (the
// shutdown barrier).
//
// Segment files never block the shard either: the spool's inline creation is off, and a new
// segment is made on the ring (openat O_EXCL, then fallocate) when the current one is half full,
// or when a batch waits for one (the first message after the spool emptied). Reclaiming fully
// delivered segments (Reclaim()) works on the ring, oldest first, one after the other, and
// then fsyncs the directory.
//
// Recycling: unlinking a written 64 MiB segment frees its blocks, and on a file system mounted
// with online discard that stalled every shard's fdatasync for up to 16-30 ms (measured: with
// unlinks, the open-loop p99 at half the peak rate went from about 2 ms to 7-8 ms). So up to
// kFreeSegmentsMax reclaimed segments are recycled instead: renamed to "<n>.seg.free" with their
// bytes left in them, and the next spare is renamed from there (RENAME_NOREPLACE) instead of
// being created and fallocated. Its blocks are written ones, so appending to it is an overwrite:
// a synchronous write then has no unwritten extent to convert (no extent metadata to write)
// (measured at 6,000 msg/s open loop: p50 0.73 ms instead of 0.90, p99 2.4-3.0 ms instead of
// 3.5-8.7). The old records cannot be mistaken for new ones (FORMAT.md, "Recycled segments"):
// they carry the old segment's salt, the new header says the segment is recycled, and a file
// whose header still names its old number (a crash before its first batch) is unused. Recovery
// deletes ".seg.free" files. The rest are unlinked as before. Once the spool is drained, the free
// files wait kFreeSegmentsLinger for the next burst, then they are unlinked too (an idle relay
// keeps no file). An oversized segment is unlinked.
//
// Owner: its shard thread; not thread-safe. Parses no untrusted input.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "core/reactor/operation.h"
#include "core/reactor/reactor.h"
#include "net/smtp_message.h"
#include "net/smtp_session.h"
#include "queue/spool.h"

namespace moat::server {

// The I/O side of a session, told when the session got its queue answer so it can flush
// the reply and resume reading.
class AnswerTarget {
 public:
  virtual ~AnswerTarget() = default;
  virtual void OnAnswered() = 0;
};

class ShardSpool final : public net::MessageSink {
 public:
  // Told once per message that became durable (the outbound side picks it up there).
  using DurableCallback = std::function<void(const queue::QueuedMessage& message,
                                             std::shared_ptr<const std::string> content)>;

  explicit ShardSpool(std::unique_ptr<queue::Spool> spool);
  ~ShardSpool() override;
  ShardSpool(const ShardSpool&) = delete;
  ShardSpool& operator=(const ShardSpool&) = delete;

  // Binds to the shard's reactor and installs the end-of-turn hook. Shard thread.
  void Attach(reactor::Reactor* reactor, DurableCallback on_durable);

  // A session's I/O side registers itself for the answers to the session's messages, and
  // unregisters (Detach) before it goes away.
  void Register(const net::SmtpSession* session, AnswerTarget* target);

  // net::MessageSink
  std::string NewQueueId() override;
  void Submit(net::AcceptedMessage message, net::SmtpSession& session) override;
  void Abandon(std::string_view queue_id) override;

  // A message the daemon makes itself (a bounce): staged like a session's, no one waits.
  void SubmitInternal(queue::MessageEnvelope envelope, std::string content);
  // A delivery outcome for the journal: group-committed with the next batch of messages, or
  // on its own once it has waited journal_delay() (see "Journal batches" above).
  void StageOutcome(const queue::OutcomeRecord& outcome);
  // From now on nothing staged waits: journal records and small batches are committed at once
  // (the shutdown barrier).
  void Flush();
  // Zero: every batch goes at once.
  void set_commit_delay(absl::Duration delay) { commit_delay_ = delay; }
  absl::Duration commit_delay() const { return commit_delay_; }
  static constexpr absl::Duration kCommitDelay = absl::Microseconds(500);
  static constexpr size_t kCommitBatchTarget = 8;
  // A batch waits only when the last rate window predicts at least this many more messages
  // within the delay (then the wait saves a commit about two times in three).
  static constexpr double kCommitDelayMinArrivals = 1.0;
  // A batch this large goes at once: its write, not the commit's fixed cost, is what it costs.
  static constexpr uint64_t kCommitBatchBytes = uint64_t{64} << 10;
  void set_journal_delay(absl::Duration delay) { journal_delay_ = delay; }
  absl::Duration journal_delay() const { return journal_delay_; }
  static constexpr absl::Duration kJournalDelay = absl::Milliseconds(10);

  // The session is going away (its connection closed), maybe before its answer: forget it. The
  // message itself still becomes durable (the client never saw a 250 and will retry: a
  // possible duplicate, never a loss).
  void Detach(const net::SmtpSession* session);

  // Starts reclaiming the segments whose every message is final (Spool::
  // TakeReclaimableSegments()), unless a reclaim is still running. Shard thread; never blocks.
  // `include_current` false: under load, the segment being written stays open (see there).
  void Reclaim(bool include_current = true);
  bool reclaim_in_flight() const { return reclaim_in_flight_; }
  // How long a drained spool keeps its recycled segments for the next burst before it unlinks
  // them too (default kFreeSegmentsLinger).
  void set_free_segments_linger(absl::Duration linger) { free_segments_linger_ = linger; }
  static constexpr absl::Duration kFreeSegmentsLinger = absl::Seconds(10);

  // Nothing staged, no commit in flight and no file operation on the ring (the shutdown
  // barrier).
  bool Idle() const;

  queue::Spool& spool() { return *spool_; }
  uint64_t commits() const { return commits_; }
  uint64_t journal_only_commits() const { return journal_only_commits_; }
  uint64_t delayed_batches() const { return delayed_batches_; }  // batches that waited
  uint64_t segments_created() const { return segments_created_; }
  uint64_t segments_reclaimed() const { return segments_reclaimed_; }
  uint64_t segments_recycled() const { return segments_recycled_; }
  size_t free_segments() const { return free_paths_.size(); }
  static constexpr size_t kFreeSegmentsMax = 2;
  uint64_t committed_messages() const { return committed_messages_; }

 private:
  struct Waiter {
    net::SmtpSession* session = nullptr;  // null once detached, or for internal messages
    // The content: the spool's batch points into it until the commit; then it goes on to
    // the delivery side (no copy, no re-read).
    std::shared_ptr<const std::string> content;
    std::string queue_id;
    std::string sender;
    uint64_t size = 0;
    size_t recipients = 0;
  };
  enum class Step : uint8_t {
    kWrite,
    kSync,
    kDirectorySync,
    kOpenSegment,
    kAllocateSegment,
    kUnlinkSegment,
    kReclaimSync,
    kRecycleOpen,
    kRecycleRename,
    kSpareRename,
    kCommitDelay,
  };

  void OnTurn();
  void MaybeStartCommit();
  bool HoldBatch();
  void CountArrival();
  void StartCommit();
  void SubmitWriteAndSync();
  void OnDataDurable();
  void OnStep(Step step, int32_t res, uint32_t flags);
  void FinishCommit(int result);
  void DeliverResults();
  void StageMessage(queue::MessageEnvelope envelope, Waiter waiter);
  void MaybePrepareSpare();
  void OnSegmentOpened(int32_t res);
  void OnSegmentAllocated(int32_t res);
  void AdoptSpare(absl::StatusOr<int> fd);
  void ReleaseFreeSegments();
  void StartReclaim();
  void UnlinkNext();
  void UnlinkCurrent();
  void OnRecycleStep(Step step, int32_t res);
  void OnFileStep(Step step, int32_t res);

  std::unique_ptr<queue::Spool> spool_;
  reactor::Reactor* reactor_ = nullptr;
  DurableCallback on_durable_;
  const queue::CommitBatch* batch_ = nullptr;
  int write_error_ = 0;
  bool short_write_ = false;
  using Op = reactor::MemberOperation<ShardSpool, Step, &ShardSpool::OnStep>;
  Op write_op_{this, Step::kWrite};
  Op sync_op_{this, Step::kSync};
  Op directory_op_{this, Step::kDirectorySync};
  Op open_op_{this, Step::kOpenSegment};
  Op allocate_op_{this, Step::kAllocateSegment};
  Op unlink_op_{this, Step::kUnlinkSegment};
  Op reclaim_sync_op_{this, Step::kReclaimSync};
  Op recycle_open_op_{this, Step::kRecycleOpen};
  Op recycle_rename_op_{this, Step::kRecycleRename};
  Op spare_rename_op_{this, Step::kSpareRename};
  // The spare segment being made on the ring (one at a time). The paths stay alive until the
  // kernel has taken them: openat and unlinkat copy the name when the SQE is submitted.
  bool spare_in_flight_ = false;
  queue::Spool::SpareRequest spare_request_;
  int spare_fd_ = -1;
  std::string discard_path_;  // a spare whose fallocate failed: unlinked, result unwatched
  // Reclaim: paths oldest first, unlinked one at a time, then one directory fsync.
  bool reclaim_in_flight_ = false;
  std::vector<std::string> reclaim_paths_;
  size_t reclaim_next_ = 0;
  size_t reclaim_failed_ = 0;
  size_t reclaim_extra_ = 0;      // free files among reclaim_paths_ (not counted as reclaimed)
  bool releasing_free_ = false;    // this "reclaim" unlinks the free files: nothing is recycled
  // Recycling (see the header comment): reclaimed segments waiting to become spares, oldest
  // first.
  std::vector<std::string> free_paths_;
  absl::Duration free_segments_linger_ = kFreeSegmentsLinger;
  reactor::Timer release_timer_{[this] { ReleaseFreeSegments(); }};
  // Journal batches: the journal records staged while no message is waiting go out when this
  // timer fires (or with the next message, whichever comes first).
  absl::Duration journal_delay_ = kJournalDelay;
  bool journal_due_ = false;    // the timer fired: commit the journal records now
  bool journal_waits_ = false;  // the timer is armed
  bool flushing_ = false;  // shutdown: no more waiting
  reactor::Timer journal_timer_{[this] {
    journal_waits_ = false;
    journal_due_ = true;
    reactor_->RequestTurn();
  }};
  uint64_t journal_only_commits_ = 0;
  // Commit delay (see above). The timeout on the ring belongs to the batch numbered
  // delay_batch_; a batch that starts before it fires cancels it.
  absl::Duration commit_delay_ = kCommitDelay;
  Op delay_op_{this, Step::kCommitDelay};
  __kernel_timespec delay_ts_{};
  bool delay_armed_ = false;  // a timeout is on the ring (maybe being cancelled)
  bool delay_over_ = false;   // this batch waited its delay: it goes now
  uint64_t batches_started_ = 0;
  uint64_t delayed_batches_ = 0;
  uint64_t delay_batch_ = 0;
  static constexpr int64_t kRateWindowNs = 10'000'000;
  int64_t window_start_ns_ = 0;
  uint64_t window_messages_ = 0;
  uint64_t last_window_messages_ = 0;
  std::string recycle_to_;    // a ".seg.free" name (alive until the rename completes)
  std::string spare_from_;    // the free file being renamed to the spare
  bool spare_recycled_ = false;
  uint64_t segments_recycled_ = 0;
  uint64_t segments_created_ = 0;
  uint64_t segments_reclaimed_ = 0;
  // alloc: one entry per message waiting for its fdatasync; bounded by the shard's sessions.
  absl::flat_hash_map<uint64_t, Waiter> waiters_;
  absl::flat_hash_map<const net::SmtpSession*, uint64_t> by_session_;
  // alloc: one entry per open session of the shard.
  absl::flat_hash_map<const net::SmtpSession*, AnswerTarget*> targets_;
  std::vector<queue::TicketResult> results_;
  uint64_t commits_ = 0;
  uint64_t committed_messages_ = 0;
};

// Converts what the session accepted into the spool's envelope (moves the strings).
queue::MessageEnvelope ToEnvelope(net::AcceptedMessage& message);

}  // namespace moat::server
