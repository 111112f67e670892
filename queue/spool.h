// queue/spool.h
//
// One shard's durable spool (DESIGN.md section 1, queue/FORMAT.md): append-only segment files,
// group commit, recovery and the queue index. Owned by one shard; not thread-safe. It does no I/O
// on the hot path itself: the shard's ring (or BlockingCommitter in tests and tools) drives it.
//
//   Stage(message)  -> Ticket        serialises the envelope, queues the record; NOT durable yet
//   PrepareCommit() -> CommitBatch*  once per loop turn when nothing is in flight: one file, one
//                                    offset, iovecs covering every record of the batch
//   (the driver)                     writev at batch.offset, fdatasync(batch.fd), and when
//                                    batch.directory_fd >= 0 also fsync(directory_fd), linked
//   OnCommitDone(result)             0: every ticket in the batch is durable; <0 (-errno): every
//                                    ticket in it failed, the segment is sealed
//   TakeResults()                    (sequence, error) per ticket: send 250 only for error == 0
//
// Nothing is durable before the OnCommitDone(0) that covers it: a session answers
// "250 2.0.0 Ok: queued as ID" only for a ticket whose result has error 0, "452 4.3.1
// Insufficient system storage" for ENOSPC and "451 4.3.0" for any other error.
//
// Lifetimes: Stage(envelope, std::string_view content) does not copy the content; the caller keeps
// those bytes alive and unchanged until TakeResults() has returned the ticket (the batch's iovecs
// point at them). Stage(envelope, std::string&& content) moves the buffer into the spool instead.
// The iovecs of a CommitBatch stay valid until OnCommitDone().
//
// Blocking calls: Open() (recovery), ReadContent() and ReclaimSegments() are control-side and
// block. PrepareCommit() blocks only when it starts a new segment, no spare segment was
// prepared (see WantsSpareSegment()) and inline creation is on; the directory fsync of a new
// segment is left to the driver (directory_fd). The shard turns inline creation off and drives
// segment creation and reclamation through its ring (core/server/shard_spool.h).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "queue/message_record.h"
#include "queue/queue_id.h"
#include "queue/queue_index.h"
#include "queue/record.h"
#include "queue/segment_reader.h"

namespace moat::queue {

struct SpoolOptions {
  std::string
      directory;  // this shard's directory, queue_directory/spool/<shard>; created if absent
  uint32_t shard = 0;
  uint64_t segment_bytes = uint64_t{64} << 20;  // soft limit, FORMAT.md "Files"
  bool preallocate = true;                      // fallocate new segments to segment_bytes
  // LevelDB-style batch limits: a batch stops growing past these (its first record always goes).
  uint64_t batch_bytes_max = uint64_t{8} << 20;
  size_t batch_records_max = 256;
  // For tools looking at a live daemon's spool: recovery reports damage but modifies nothing,
  // every Stage fails with EROFS, ReclaimSegments() refuses.
  bool read_only = false;
  // Write segments with O_DIRECT where the file system allows it (else through the page cache,
  // logged once). The bytes on disk are the same (FORMAT.md): a batch is copied into an aligned
  // buffer behind the current partial block's bytes, written from that block's start and
  // zero-filled to a block boundary; the next batch writes that block again, same bytes first.
  bool direct_io = false;
};

struct Ticket {
  uint64_t sequence = 0;
};

struct TicketResult {
  uint64_t sequence = 0;
  int error = 0;  // 0: durable; otherwise an errno (ENOSPC, EIO, EFBIG for an oversized record)
};

// One write + fdatasync. Owned by the Spool; valid until OnCommitDone().
struct CommitBatch {
  int fd = -1;
  uint64_t offset = 0;
  std::vector<iovec> iov;  // alloc: reused across batches; at most kIovecsMax entries
  uint64_t bytes = 0;
  uint64_t last_sequence = 0;
  int directory_fd = -1;  // >= 0: a new segment: fsync this directory before reporting success
  // One aligned iovec for an O_DIRECT fd: the driver may write it with RWF_DSYNC instead of a
  // write and an fdatasync (the same guarantee, data and the metadata needed to read it back).
  bool direct = false;

  // After a short write of `n` bytes: drops them from iov and advances offset, so the driver can
  // write the rest. REQUIRES: n <= bytes. (With O_DIRECT a short write that ends inside a block
  // leaves a rest the kernel refuses, EINVAL: the batch fails and its segment is sealed.)
  void Consume(uint64_t n);
};

// A batch holds at most 1 + 3 * batch_records_max iovecs (segment header; per record: header and
// envelope, content, padding), kept under IOV_MAX.
inline constexpr size_t kIovecsMax = 1024;
inline constexpr uint64_t kSegmentBytesMin = 1024;

struct RecoveryStats {
  uint64_t segments = 0;
  uint64_t unreadable_segments = 0;  // bad segment header etc.: reported and left in place
  uint64_t unused_segments = 0;      // never written (all zero, or recycled): removed
  uint64_t messages = 0;
  uint64_t outcomes = 0;
  uint64_t skipped_bytes = 0;  // damage in the middle of segments
  uint64_t dropped_bytes = 0;  // torn tails
  uint64_t stale_bytes = 0;    // recycled segments' bytes from their previous use
  uint64_t undecodable_records = 0;
};

class Spool {
 public:
  // Recovers the shard's spool from options.directory (FORMAT.md "Recovery"): verifies every
  // segment, drops torn tails (reported to `reporter`, which must outlive the call), rebuilds the
  // index. Control thread, at start-up; blocks.
  static absl::StatusOr<std::unique_ptr<Spool>> Open(const SpoolOptions& options,
                                                     Reporter& reporter);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // A fresh queue ID for a message this shard is about to accept (for the Received: header).
  std::string NewQueueId();

  // Stages a message. REQUIRES: !envelope.queue_id.empty(). See the lifetime contract above.
  // A record over kPayloadBytesMax fails at once (EFBIG in its TicketResult).
  Ticket Stage(MessageEnvelope envelope, std::string_view content);
  Ticket Stage(MessageEnvelope envelope, std::string&& content);
  // Stages a delivery outcome (the journal); the index applies it when it is durable.
  Ticket StageOutcome(const OutcomeRecord& outcome);

  bool HasPending() const { return !pending_.empty(); }
  // Staged messages (not counting journal records): a driver may let a journal-only batch wait
  // for the next message batch (core/server/shard_spool.h).
  bool HasPendingMessages() const { return pending_messages_ > 0; }
  size_t pending_message_count() const { return pending_messages_; }
  uint64_t pending_message_bytes() const { return pending_message_bytes_; }  // their payloads
  bool CommitInFlight() const { return in_flight_; }

  // The next batch, or nullptr when nothing is staged or a commit is in flight. When no segment
  // can be created, every staged ticket fails (see TakeResults()) and nullptr is returned.
  const CommitBatch* PrepareCommit();
  // `result`: 0 when every byte of the batch was written and every sync succeeded, else -errno.
  void OnCommitDone(int result);
  // Moves the finished tickets (in sequence order) into `out` (cleared first).
  void TakeResults(std::vector<TicketResult>* out);

  // Spare segments, so a shard never blocks on open + fallocate when a segment fills up:
  //   if (spool.WantsSpareSegment()) {
  //     SpareRequest r = spool.RequestSpareSegment();                  // shard thread
  //     ... on the control thread: fd = Spool::CreateSegmentFile(r.path, r.bytes, r.preallocate);
  //     ... back on the shard: spool.AdoptSpareSegment(r.number, fd);
  //   }
  // Without a spare, PrepareCommit() creates the segment inline. The spare's directory entry is
  // made durable by the first batch written to it (CommitBatch::directory_fd).
  struct SpareRequest {
    uint64_t number = 0;
    std::string path;
    uint64_t bytes = 0;
    bool preallocate = true;
  };
  bool WantsSpareSegment() const;
  SpareRequest RequestSpareSegment();  // REQUIRES: WantsSpareSegment()
  // `recycled`: the file is a reclaimed segment renamed to r.path, its old bytes still in it
  // (FORMAT.md, "Recycled segments"); its header then says so.
  void AdoptSpareSegment(uint64_t number, absl::StatusOr<int> fd, bool recycled = false);
  // A driver that never lets PrepareCommit() block (the shard) turns inline creation off:
  // PrepareCommit() then returns nullptr while the next batch needs a new segment and no spare
  // is ready, and the staged records wait for AdoptSpareSegment(). An adopted failure then
  // fails them (ENOSPC or EIO), except a taken number (kAlreadyExists), which is skipped: the
  // driver asks again, at most 16 times in a row.
  void set_inline_segment_creation(bool on) { inline_segments_ = on; }
  // Staged records wait for a new segment and no spare is ready.
  bool NeedsSegment() const;
  // The driver should request a spare now: one is needed, or the current segment is half full
  // (once per segment: after a failed early spare it waits until one is needed, so a full disk
  // is not retried every loop turn). An idle spool never asks (no 64 MiB file waits on an
  // empty disk).
  bool ShouldPrepareSpare() const;
  // Creates (O_EXCL) and preallocates a segment file; returns its fd. Blocks; thread-safe.
  static absl::StatusOr<int> CreateSegmentFile(const std::string& path, uint64_t bytes,
                                               bool preallocate);

  const QueueIndex& index() const { return index_; }
  QueueIndex& index() { return index_; }
  const RecoveryStats& recovery_stats() const { return recovery_stats_; }
  uint64_t current_segment() const { return segment_.number; }
  // The current segment is written with O_DIRECT (SpoolOptions::direct_io).
  bool direct_io_active() const { return segment_.direct; }
  int directory_fd() const { return directory_fd_; }  // for the driver's directory fsyncs
  std::string SegmentPath(uint64_t segment) const;
  // Where a reclaimed segment waits, zeroed, to be reused as a spare: "<16 hex>.seg.free"
  // (FORMAT.md "Recycled segments"). Recovery deletes such files.
  static std::string FreeSegmentPath(const std::string& segment_path);
  uint64_t segment_bytes() const { return options_.segment_bytes; }
  bool preallocates() const { return options_.preallocate; }
  // No segment open, no spare, nothing staged or in flight: after a reclaim, the spool holds no
  // file and the driver should not keep recycled ones either.
  bool Drained() const;

  // Reads a queued message's content back from its segment and verifies its checksum.
  // Control side; blocks.
  absl::StatusOr<std::string> ReadContent(const QueuedMessage& message) const;
  // The non-blocking half of ReadContent(): verifies a message's record as read from its
  // segment (location.record_bytes at location.offset; a recovered last record may be short of
  // its padding) and returns the content. The shard reads the record on its ring.
  absl::StatusOr<std::string> DecodeContent(const QueuedMessage& message,
                                            std::string_view record) const;
  // Deletes every segment the index says is reclaimable; returns how many. The current segment
  // counts too when nothing is staged or in flight (it is sealed first, so the next batch opens
  // a new one): an idle spool with every message final holds no file. Blocks (unlink + fsync of
  // the directory): for tools and tests; the shard uses TakeReclaimableSegments() on its ring.
  absl::StatusOr<size_t> ReclaimSegments();
  // The non-blocking half of ReclaimSegments(): forgets the reclaimable segments (and an unused
  // spare once the spool is empty) and returns their paths, oldest first, for the driver to
  // unlink in that order and then fsync the directory (the shard does both on its ring).
  // `include_current` false: the current segment stays even when it is idle and final (a relay
  // under load reclaims behind itself without closing the segment it writes to).
  std::vector<std::string> TakeReclaimableSegments(bool include_current = true);

 private:
  struct Pending {
    uint64_t sequence = 0;
    RecordType type = RecordType::kMessage;
    std::string head;  // kHeaderBytes reserved for the header, then the envelope (or outcome)
    std::string_view content;
    std::string owned_content;
    bool owns_content = false;
    uint64_t payload_bytes = 0;
    MessageEnvelope envelope;  // for the index
    OutcomeRecord outcome;
  };
  struct Segment {
    uint64_t number = 0;
    int fd = -1;
    uint64_t salt = 0;
    uint64_t offset = 0;   // where the next batch goes (everything before is durable)
    uint64_t records = 0;  // durable records after the header
    bool header_written = false;
    bool sealed = true;  // no segment yet, or a failed batch sealed it
    bool direct = false;  // its fd has O_DIRECT: batches go through direct_buffer_
    std::string header;  // the encoded segment header record until it is durable
  };
  bool EnableDirectIo(int fd);
  void CopyBatchForDirectIo();
  void KeepDirectTail(uint64_t written_from);

  explicit Spool(const SpoolOptions& options);
  absl::Status Recover(Reporter& reporter);
  Ticket StageMessage(MessageEnvelope&& envelope, std::string_view content, std::string* owned);
  Ticket Enqueue(Pending&& pending);
  absl::Status StartSegment();
  bool NextBatchStartsSegment() const;
  void FailPending(const absl::Status& status);
  void CloseSegment();

  SpoolOptions options_;
  QueueIdGenerator ids_;
  QueueIndex index_;
  RecoveryStats recovery_stats_;
  int directory_fd_ = -1;
  uint64_t next_sequence_ = 1;
  uint64_t next_segment_number_ = 1;
  Segment segment_;
  struct Spare {
    uint64_t number = 0;
    int fd = -1;
    bool recycled = false;
  };
  Spare spare_;
  // O_DIRECT batches (SpoolOptions::direct_io): an aligned buffer whose first
  // segment_.offset % direct_align_ bytes are those of the segment's last, partial block.
  struct FreeDeleter {
    void operator()(char* p) const { free(p); }
  };
  std::unique_ptr<char, FreeDeleter> direct_buffer_;  // alloc: grows to the largest batch
  size_t direct_capacity_ = 0;
  uint64_t direct_align_ = 4096;
  bool direct_refused_ = false;  // the file system said no once: buffered from then on
  bool spare_requested_ = false;
  bool inline_segments_ = true;
  int spare_failures_ = 0;
  // An early (half-full) spare failed: not asked for again before this segment is full.
  bool spare_failed_ = false;
  absl::flat_hash_map<uint64_t, uint64_t> salts_;  // segment number -> salt
  // alloc: staged records; bounded by the sessions waiting for their 250 on this shard.
  std::deque<Pending> pending_;
  size_t pending_messages_ = 0;  // the kMessage records in pending_
  uint64_t pending_message_bytes_ = 0;  // and their payload bytes
  std::vector<Pending> batch_records_;  // the records of the batch in flight
  CommitBatch batch_;
  bool in_flight_ = false;
  std::vector<TicketResult> results_;
};

}  // namespace moat::queue
