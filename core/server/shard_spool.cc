// core/server/shard_spool.cc: see shard_spool.h.
#include "core/server/shard_spool.h"

#include <liburing.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "core/log/assert.h"
#include "core/log/log.h"

namespace moat::server {

queue::MessageEnvelope ToEnvelope(net::AcceptedMessage& m) {
  queue::MessageEnvelope e;
  e.queue_id = m.queue_id;
  e.arrival_unix_us = absl::ToUnixMicros(m.arrival);
  e.client_ip = std::move(m.client_ip);
  e.client_name = std::move(m.client_name);
  e.helo = std::move(m.helo_name);
  e.protocol = std::move(m.protocol);
  e.sender = m.sender;
  if (m.body == net::BodyType::k8BitMime) {
    e.flags |= queue::kBody8BitMime;
  }
  if (m.smtputf8) {
    e.flags |= queue::kSmtpUtf8;
  }
  if (m.dsn_ret == net::DsnRet::kFull) {
    e.flags |= queue::kRetFull;
  } else if (m.dsn_ret == net::DsnRet::kHdrs) {
    e.flags |= queue::kRetHdrs;
  }
  e.envid = std::move(m.dsn_envid);
  for (net::AcceptedRecipient& r : m.recipients) {
    uint8_t notify = 0;
    if ((r.dsn_notify & net::kDsnNotifyNever) != 0) {
      notify |= queue::kNotifyNever;
    }
    if ((r.dsn_notify & net::kDsnNotifySuccess) != 0) {
      notify |= queue::kNotifySuccess;
    }
    if ((r.dsn_notify & net::kDsnNotifyFailure) != 0) {
      notify |= queue::kNotifyFailure;
    }
    if ((r.dsn_notify & net::kDsnNotifyDelay) != 0) {
      notify |= queue::kNotifyDelay;
    }
    std::string orcpt;
    if (!r.orcpt.empty()) {
      orcpt = (r.orcpt_type.empty() ? std::string("rfc822") : r.orcpt_type) + ";" + r.orcpt;
    }
    // One spool recipient per final address: virtual alias expansion may fan one RCPT out.
    if (r.resolved.empty()) {
      e.recipients.push_back({r.address, orcpt, notify, r.address, ""});
    }
    for (net::ResolvedRecipient& res : r.resolved) {
      e.recipients.push_back(
          {r.address, orcpt, notify, std::move(res.address), std::move(res.next_hop)});
    }
  }
  return e;
}

ShardSpool::ShardSpool(std::unique_ptr<queue::Spool> spool) : spool_(std::move(spool)) {
  MOAT_CHECK(spool_ != nullptr);
  spool_->set_inline_segment_creation(false);  // segments are made on the ring
}

ShardSpool::~ShardSpool() {
  // Shutdown waits for the last commit (the shard's barrier); if the disk hung past the
  // barrier's bound, the batch's sessions never got their 250: nothing acknowledged is lost.
  if (batch_ != nullptr) {
    log::Error("spool: exiting with a commit still in flight; its messages were not acknowledged");
  }
}

void ShardSpool::Register(const net::SmtpSession* session, AnswerTarget* target) {
  targets_[session] = target;
}

void ShardSpool::Attach(reactor::Reactor* reactor, DurableCallback on_durable) {
  reactor_ = reactor;
  on_durable_ = std::move(on_durable);
  reactor_->AddTurnHook([this] { OnTurn(); });
}

std::string ShardSpool::NewQueueId() { return spool_->NewQueueId(); }

void ShardSpool::Submit(net::AcceptedMessage message, net::SmtpSession& session) {
  Waiter w;
  w.session = &session;
  w.content = std::make_shared<const std::string>(std::move(message.content));
  queue::MessageEnvelope envelope = ToEnvelope(message);
  StageMessage(std::move(envelope), std::move(w));
}

void ShardSpool::SubmitInternal(queue::MessageEnvelope envelope, std::string content) {
  Waiter w;
  w.content = std::make_shared<const std::string>(std::move(content));
  StageMessage(std::move(envelope), std::move(w));
}

void ShardSpool::StageMessage(queue::MessageEnvelope envelope, Waiter w) {
  w.queue_id = envelope.queue_id;
  w.sender = envelope.sender;
  w.size = w.content->size();
  w.recipients = envelope.recipients.size();
  // A view: the waiter keeps the bytes alive until TakeResults() returns the ticket.
  queue::Ticket ticket = spool_->Stage(std::move(envelope), std::string_view(*w.content));
  if (w.session != nullptr) {
    by_session_[w.session] = ticket.sequence;
  }
  waiters_.emplace(ticket.sequence, std::move(w));
  if (reactor_ != nullptr) {
    CountArrival();
    reactor_->RequestTurn();  // the turn hook starts the commit in this very turn
  }
}

void ShardSpool::StageOutcome(const queue::OutcomeRecord& outcome) {
  spool_->StageOutcome(outcome);
  if (reactor_ != nullptr) {
    reactor_->RequestTurn();
  }
}

void ShardSpool::Flush() {
  if (!flushing_) {
    flushing_ = true;
    if (reactor_ != nullptr) {
      reactor_->RequestTurn();
    }
  }
}

void ShardSpool::Abandon(std::string_view /*queue_id*/) {
  // Nothing was staged for a transaction that never reached Submit().
}

void ShardSpool::Detach(const net::SmtpSession* session) {
  targets_.erase(session);
  auto it = by_session_.find(session);
  if (it == by_session_.end()) {
    return;
  }
  auto w = waiters_.find(it->second);
  if (w != waiters_.end()) {
    w->second.session = nullptr;
  }
  by_session_.erase(it);
}

bool ShardSpool::Idle() const {
  return batch_ == nullptr && !spool_->HasPending() && !spare_in_flight_ && !reclaim_in_flight_ &&
         !delay_armed_;
}

void ShardSpool::OnTurn() {
  // The messages of reclaimed segments leave the index a few hundred per turn (about 1 us
  // each): all at once, two segments' 24,000 took 20-26 ms of one turn.
  constexpr size_t kIndexTrimPerTurn = 256;
  if (spool_->index().HasRemoved() && spool_->index().TrimRemoved(kIndexTrimPerTurn)) {
    reactor_->RequestTurn();
  }
  MaybePrepareSpare();
  MaybeStartCommit();
}

void ShardSpool::CountArrival() {
  const int64_t now = reactor_->NowNs();
  if (now - window_start_ns_ >= kRateWindowNs) {
    last_window_messages_ = now - window_start_ns_ < 2 * kRateWindowNs ? window_messages_ : 0;
    window_start_ns_ = now;
    window_messages_ = 0;
  }
  ++window_messages_;
}

bool ShardSpool::HoldBatch() {
  if (delay_over_ || flushing_ || commit_delay_ <= absl::ZeroDuration() ||
      spool_->pending_message_count() >= kCommitBatchTarget ||
      spool_->pending_message_bytes() >= kCommitBatchBytes) {
    return false;
  }
  // Every session of the shard waits for its 250 already (by_session_: the staged ones): no one
  // else can add a message, so waiting would only add latency (10 sessions of 100 KB on a shard
  // would each wait the full delay).
  if (targets_.size() <= by_session_.size()) {
    return false;
  }
  const int64_t delay_ns = absl::ToInt64Nanoseconds(commit_delay_);
  const int64_t now = reactor_->NowNs();
  // The rate of the last full window, if it is the one just before this one (so a batch also
  // stops waiting once no message came for a window: the load went away).
  const uint64_t recent = now - window_start_ns_ < 2 * kRateWindowNs ? last_window_messages_ : 0;
  if (static_cast<double>(recent) * static_cast<double>(delay_ns) <
      kCommitDelayMinArrivals * static_cast<double>(kRateWindowNs)) {
    return false;  // fewer messages expected within the delay than are worth the wait
  }
  if (delay_armed_) {
    // This batch waits already, or an earlier batch's cancelled timeout is still on the ring
    // (then this one goes now rather than wait for that).
    return delay_batch_ == batches_started_;
  }
  delay_armed_ = true;
  delay_batch_ = batches_started_;
  ++delayed_batches_;
  delay_ts_.tv_sec = delay_ns / 1'000'000'000;
  delay_ts_.tv_nsec = delay_ns % 1'000'000'000;
  io_uring_sqe* sqe = reactor_->GetSqe();
  io_uring_prep_timeout(sqe, &delay_ts_, 0, 0);
  io_uring_sqe_set_data(sqe, &delay_op_);
  return true;
}

void ShardSpool::MaybeStartCommit() {
  if (batch_ != nullptr || !spool_->HasPending() || spool_->NeedsSegment()) {
    return;
  }
  if (spool_->HasPendingMessages() && HoldBatch()) {
    return;
  }
  if (spool_->HasPendingMessages() || journal_due_ || flushing_ ||
      journal_delay_ <= absl::ZeroDuration()) {
    StartCommit();
    return;
  }
  if (!journal_waits_) {  // journal records only: wait for messages to ride with
    journal_waits_ = true;
    reactor_->ArmTimer(journal_timer_, journal_delay_);
  }
}

void ShardSpool::StartCommit() {
  const bool journal_only = !spool_->HasPendingMessages();
  batch_ = spool_->PrepareCommit();
  if (journal_waits_) {
    journal_waits_ = false;
    reactor_->CancelTimer(journal_timer_);
  }
  journal_due_ = false;  // what is staged later waits again
  delay_over_ = false;
  if (delay_armed_ && delay_batch_ == batches_started_) {
    reactor_->Cancel(&delay_op_);  // this batch goes before its delay ran out
  }
  ++batches_started_;
  if (batch_ == nullptr) {
    // Nothing to write, a new segment is still on its way, or no segment could be created (the
    // tickets failed already).
    DeliverResults();
    MaybePrepareSpare();
    return;
  }
  if (journal_only) {
    ++journal_only_commits_;
  }
  write_error_ = 0;
  short_write_ = false;
  SubmitWriteAndSync();
}

void ShardSpool::SubmitWriteAndSync() {
  if (batch_->direct) {
    // O_DIRECT: one write with RWF_DSYNC, durable (data, and the extent conversion of a new
    // segment) when it completes; no fsync op, which io_uring always hands to an io-wq worker.
    // Measured with 200 KB writes to a written file: 20 us of CPU per commit instead of 30-43,
    // 161-189 us of wall time instead of 191-205 (16 KiB: 17-22 us instead of 36).
    io_uring_sqe* sqe = reactor_->Writev(&write_op_, batch_->fd, batch_->iov.data(),
                                         static_cast<uint32_t>(batch_->iov.size()),
                                         batch_->offset);
    sqe->rw_flags = RWF_DSYNC;
    return;
  }
  // The write and its fdatasync must go to the kernel in the same submission: a link that ends
  // at a submission boundary is cut there, the fdatasync would then run beside the write (both
  // on io-wq) and could complete first, acknowledging bytes not yet written. Reactor::GetSqe()
  // submits when the SQ is full, so make room for both first (as Reactor::WriteThenDatasync).
  if (io_uring_sq_space_left(reactor_->ring()) < 2) {
    io_uring_submit(reactor_->ring());
  }
  io_uring_sqe* sqe = reactor_->Writev(&write_op_, batch_->fd, batch_->iov.data(),
                                       static_cast<uint32_t>(batch_->iov.size()), batch_->offset);
  sqe->flags |= IOSQE_IO_LINK;
  reactor_->Datasync(&sync_op_, batch_->fd);
}

void ShardSpool::OnDataDurable() {
  if (batch_->directory_fd >= 0) {
    // A new segment file: its directory entry must be durable before any 250 from it.
    io_uring_sqe* sqe = reactor_->GetSqe();
    io_uring_prep_fsync(sqe, batch_->directory_fd, 0);
    io_uring_sqe_set_data(sqe, &directory_op_);
  } else {
    FinishCommit(0);
  }
}

void ShardSpool::MaybePrepareSpare() {
  if (spare_in_flight_ || reactor_ == nullptr || !spool_->ShouldPrepareSpare()) {
    return;
  }
  spare_request_ = spool_->RequestSpareSegment();
  spare_in_flight_ = true;
  if (!free_paths_.empty()) {
    // A recycled segment: already allocated (and its blocks written: an overwrite needs no
    // extent conversion at fdatasync); never replaces a file in the way.
    spare_from_ = std::move(free_paths_.front());
    free_paths_.erase(free_paths_.begin());
    io_uring_sqe* sqe = reactor_->GetSqe();
    io_uring_prep_renameat(sqe, AT_FDCWD, spare_from_.c_str(), AT_FDCWD,
                           spare_request_.path.c_str(), RENAME_NOREPLACE);
    io_uring_sqe_set_data(sqe, &spare_rename_op_);
    return;
  }
  reactor_->Openat(&open_op_, AT_FDCWD, spare_request_.path.c_str(),
                   O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
}

void ShardSpool::OnSegmentOpened(int32_t res) {
  if (res < 0) {
    AdoptSpare(absl::Status(absl::ErrnoToStatusCode(-res),
                            absl::StrFormat("create %s: %s", spare_request_.path, strerror(-res))));
    return;
  }
  if (!spare_request_.preallocate || spare_recycled_) {
    AdoptSpare(res);
    return;
  }
  spare_fd_ = res;
  io_uring_sqe* sqe = reactor_->GetSqe();
  io_uring_prep_fallocate(sqe, spare_fd_, 0, 0, static_cast<off_t>(spare_request_.bytes));
  io_uring_sqe_set_data(sqe, &allocate_op_);
}

void ShardSpool::OnSegmentAllocated(int32_t res) {
  const int fd = spare_fd_;
  spare_fd_ = -1;
  if (res < 0 && res != -EOPNOTSUPP) {
    // Never written: close and remove it on the ring, nobody waits for either.
    reactor_->Close(nullptr, fd);
    discard_path_ = spare_request_.path;
    io_uring_sqe* sqe = reactor_->GetSqe();
    io_uring_prep_unlinkat(sqe, AT_FDCWD, discard_path_.c_str(), 0);
    AdoptSpare(absl::Status(absl::ErrnoToStatusCode(-res),
                            absl::StrFormat("fallocate %s: %s", discard_path_, strerror(-res))));
    return;
  }
  AdoptSpare(fd);
}

void ShardSpool::AdoptSpare(absl::StatusOr<int> fd) {
  spare_in_flight_ = false;
  const bool recycled = spare_recycled_;
  if (fd.ok()) {
    ++(recycled ? segments_recycled_ : segments_created_);
  }
  spare_recycled_ = false;
  spool_->AdoptSpareSegment(spare_request_.number, std::move(fd), recycled);
  DeliverResults();  // a failed creation failed the records that waited for it
  reactor_->RequestTurn();  // the waiting batch goes out (or the next number is asked for)
}

void ShardSpool::Reclaim(bool include_current) {
  if (reclaim_in_flight_ || reactor_ == nullptr) {
    return;
  }
  reclaim_paths_ = spool_->TakeReclaimableSegments(include_current);
  reclaim_extra_ = 0;
  releasing_free_ = false;
  StartReclaim();
}

void ShardSpool::ReleaseFreeSegments() {
  // Drained for free_segments_linger: no file stays, recycled ones included. (A reclaim in
  // flight re-arms the timer when it ends; traffic that came back takes the files instead.)
  if (reclaim_in_flight_ || reactor_ == nullptr || free_paths_.empty() || !spool_->Drained()) {
    return;
  }
  reclaim_paths_ = std::move(free_paths_);
  free_paths_.clear();
  reclaim_extra_ = reclaim_paths_.size();
  releasing_free_ = true;
  StartReclaim();
}

void ShardSpool::StartReclaim() {
  if (reclaim_paths_.empty()) {
    return;
  }
  reclaim_in_flight_ = true;
  reclaim_next_ = 0;
  reclaim_failed_ = 0;
  UnlinkNext();
}

void ShardSpool::UnlinkNext() {
  if (reclaim_next_ < reclaim_paths_.size()) {
    // One at a time, oldest first: a crash in the middle leaves only newer segments, whose
    // outcome records then refer to messages already gone (never the other way round, which
    // would deliver those messages again). Renaming a segment to ".seg.free" to recycle it
    // retires its records just as unlinking does, so the same order holds.
    const std::string& path = reclaim_paths_[reclaim_next_];
    if (spool_->preallocates() && !releasing_free_ &&
        free_paths_.size() < kFreeSegmentsMax && path.ends_with(".seg")) {
      reactor_->Openat(&recycle_open_op_, AT_FDCWD, path.c_str(), O_RDWR | O_CLOEXEC, 0);
      return;
    }
    UnlinkCurrent();
    return;
  }
  io_uring_sqe* sqe = reactor_->GetSqe();
  io_uring_prep_fsync(sqe, spool_->directory_fd(), 0);
  io_uring_sqe_set_data(sqe, &reclaim_sync_op_);
}

void ShardSpool::UnlinkCurrent() {
  io_uring_sqe* sqe = reactor_->GetSqe();
  io_uring_prep_unlinkat(sqe, AT_FDCWD, reclaim_paths_[reclaim_next_].c_str(), 0);
  io_uring_sqe_set_data(sqe, &unlink_op_);
}

void ShardSpool::OnRecycleStep(Step step, int32_t res) {
  const std::string& path = reclaim_paths_[reclaim_next_];
  switch (step) {
    case Step::kRecycleOpen: {
      if (res < 0) {
        UnlinkCurrent();  // ENOENT counts as gone there
        return;
      }
      // fstat on an open descriptor never waits for the disk. An oversized segment is not
      // reused: a spare must be exactly segment_bytes.
      struct stat st {};
      const bool fits = fstat(res, &st) == 0 &&
                        static_cast<uint64_t>(st.st_size) == spool_->segment_bytes();
      reactor_->Close(nullptr, res);
      if (!fits) {
        UnlinkCurrent();
        return;
      }
      // Its records stay in it: the new name is what retires them (recovery deletes every
      // ".seg.free"), as an unlink would, and in the same order.
      recycle_to_ = queue::Spool::FreeSegmentPath(path);
      io_uring_sqe* sqe = reactor_->GetSqe();
      io_uring_prep_renameat(sqe, AT_FDCWD, path.c_str(), AT_FDCWD, recycle_to_.c_str(), 0);
      io_uring_sqe_set_data(sqe, &recycle_rename_op_);
      return;
    }
    case Step::kRecycleRename:
      if (res < 0) {
        log::Warning("spool: rename %s to %s: %s; unlinking it", path, recycle_to_,
                     strerror(-res));
        UnlinkCurrent();
        return;
      }
      free_paths_.push_back(std::move(recycle_to_));
      ++reclaim_next_;
      UnlinkNext();
      return;
    default:
      return;
  }
}

void ShardSpool::OnFileStep(Step step, int32_t res) {
  switch (step) {
    case Step::kRecycleOpen:
    case Step::kRecycleRename:
      OnRecycleStep(step, res);
      return;
    case Step::kSpareRename:
      if (res == 0) {
        spare_recycled_ = true;
        reactor_->Openat(&open_op_, AT_FDCWD, spare_request_.path.c_str(), O_RDWR | O_CLOEXEC,
                         0);
      } else if (res == -EEXIST) {
        // The number is taken (a leftover file): the free one waits for the next number.
        free_paths_.insert(free_paths_.begin(), std::move(spare_from_));
        AdoptSpare(absl::AlreadyExistsError(
            absl::StrFormat("create %s: %s", spare_request_.path, strerror(EEXIST))));
      } else {
        // Left where it is (recovery deletes ".seg.free" files); a new file is made instead.
        log::Warning("spool: rename %s to %s: %s", spare_from_, spare_request_.path,
                     strerror(-res));
        reactor_->Openat(&open_op_, AT_FDCWD, spare_request_.path.c_str(),
                         O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      }
      return;
    case Step::kOpenSegment:
      OnSegmentOpened(res);
      return;
    case Step::kAllocateSegment:
      OnSegmentAllocated(res);
      return;
    case Step::kUnlinkSegment:
      if (res < 0 && res != -ENOENT) {
        if (reclaim_next_ < reclaim_paths_.size() - reclaim_extra_) {
          ++reclaim_failed_;  // a segment; the free files at the end are not counted
        }
        log::Warning("spool: unlink %s: %s", reclaim_paths_[reclaim_next_], strerror(-res));
      }
      ++reclaim_next_;
      UnlinkNext();
      return;
    case Step::kReclaimSync: {
      reclaim_in_flight_ = false;
      const size_t removed = reclaim_paths_.size() - reclaim_failed_ - reclaim_extra_;
      segments_reclaimed_ += removed;
      reclaim_paths_.clear();
      if (res < 0) {
        log::Warning("spool: fsync of the spool directory after reclaiming: %s", strerror(-res));
      }
      if (removed > 0) {
        log::Info("spool: %d segments reclaimed", removed);
      }
      if (!free_paths_.empty() && spool_->Drained()) {
        reactor_->ArmTimer(release_timer_, free_segments_linger_);
      }
      return;
    }
    default:
      return;
  }
}

void ShardSpool::OnStep(Step step, int32_t res, uint32_t /*flags*/) {
  if (step == Step::kCommitDelay) {
    delay_armed_ = false;
    if (res == -ETIME && delay_batch_ == batches_started_) {
      delay_over_ = true;
      reactor_->RequestTurn();
    }
    return;
  }
  if (step != Step::kWrite && step != Step::kSync && step != Step::kDirectorySync) {
    OnFileStep(step, res);
    return;
  }
  MOAT_CHECK(batch_ != nullptr);
  switch (step) {
    case Step::kWrite:
      if (batch_->direct) {  // RWF_DSYNC: no fdatasync follows
        if (res < 0) {
          FinishCommit(res);
        } else if (static_cast<uint64_t>(res) < batch_->bytes) {
          // What was written is durable; the rest is written again from there (a rest that
          // starts inside a block is refused with EINVAL and fails the batch).
          const_cast<queue::CommitBatch*>(batch_)->Consume(static_cast<uint64_t>(res));
          SubmitWriteAndSync();
        } else {
          OnDataDurable();
        }
        return;
      }
      if (res < 0) {
        write_error_ = res;
      } else if (static_cast<uint64_t>(res) < batch_->bytes) {
        // A short write breaks the link: the fdatasync completes with -ECANCELED and the
        // rest is written again from there.
        const_cast<queue::CommitBatch*>(batch_)->Consume(static_cast<uint64_t>(res));
        short_write_ = true;
      } else {
        const_cast<queue::CommitBatch*>(batch_)->Consume(static_cast<uint64_t>(res));
      }
      return;
    case Step::kSync:
      if (write_error_ != 0) {
        FinishCommit(write_error_);
      } else if (short_write_) {
        short_write_ = false;
        SubmitWriteAndSync();
      } else if (res < 0) {
        FinishCommit(res);
      } else {
        OnDataDurable();
      }
      return;
    case Step::kDirectorySync:
      FinishCommit(res < 0 ? res : 0);
      return;
    default:
      return;
  }
}

void ShardSpool::FinishCommit(int result) {
  MOAT_CHECK(batch_ != nullptr);
  spool_->OnCommitDone(result);
  batch_ = nullptr;
  ++commits_;
  if (result < 0) {
    log::Warning("spool: commit to %s failed: %s", spool_->SegmentPath(spool_->current_segment()),
                 strerror(-result));
  }
  DeliverResults();
  MaybePrepareSpare();  // the segment may be half full now
  MaybeStartCommit();   // what was staged during this commit: the next group
}

void ShardSpool::DeliverResults() {
  spool_->TakeResults(&results_);
  for (const queue::TicketResult& r : results_) {
    auto it = waiters_.find(r.sequence);
    if (it == waiters_.end()) {
      continue;  // an outcome record (journal), not a message
    }
    Waiter w = std::move(it->second);
    waiters_.erase(it);
    if (r.error == 0) {
      ++committed_messages_;
      log::Info("%s: from=<%s>, size=%d, nrcpt=%d (queue active)", w.queue_id, w.sender,
                w.size, w.recipients);
    }
    if (w.session != nullptr) {
      by_session_.erase(w.session);
      if (r.error == 0) {
        w.session->OnQueued(w.queue_id);
      } else {
        w.session->OnQueueFailed(r.error == ENOSPC ? net::QueueError::kNoSpace
                                                   : net::QueueError::kWriteError);
      }
      auto target = targets_.find(w.session);
      if (target != targets_.end()) {
        target->second->OnAnswered();
      }
    }
    if (r.error == 0 && on_durable_) {
      if (const queue::QueuedMessage* m = spool_->index().Find(w.queue_id)) {
        on_durable_(*m, std::move(w.content));
      }
    }
  }
  results_.clear();
}

}  // namespace moat::server
