// queue/queue_index.h
//
// The per-shard queue index: every message in the shard's spool with the state of each recipient,
// and where its record lives (segment, offset) so the outbound side can read the content back.
// Rebuilt by recovery from the segments (messages, then outcome records applied in sequence
// order) and kept up to date by the Spool as commits complete. It also decides which segments may
// be deleted (FORMAT.md, "Reclaiming segments"). Owned by one shard (or the control thread during
// recovery); not thread-safe. Holds no untrusted input beyond what the spool decoded.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/functional/function_ref.h"

#include "queue/message_record.h"

namespace moat::queue {

enum class RecipientStatus : uint8_t {
  kPending = 0,  // not tried yet, or deferred (retry later)
  kDelivered,
  kBounced,
  kExpired,
};
bool IsFinal(RecipientStatus status);

enum class MessageState : uint8_t { kActive, kDeferred, kHold };

struct RecordLocation {
  uint64_t segment = 0;
  uint64_t offset = 0;        // of the record header in the segment file
  uint64_t record_bytes = 0;  // header + payload + padding
};

struct QueuedMessage {
  uint64_t sequence = 0;
  RecordLocation location;
  uint64_t content_bytes = 0;
  MessageEnvelope envelope;
  std::vector<RecipientStatus> recipients;  // parallel to envelope.recipients
  MessageState state = MessageState::kActive;
  uint32_t pending_recipients = 0;

  bool final() const { return pending_recipients == 0; }
};

class QueueIndex {
 public:
  QueueIndex() = default;
  QueueIndex(const QueueIndex&) = delete;
  QueueIndex& operator=(const QueueIndex&) = delete;
  QueueIndex(QueueIndex&&) = default;
  QueueIndex& operator=(QueueIndex&&) = default;

  // Adds a message with every recipient pending. A message with the same queue ID and a lower
  // sequence (an earlier copy, FORMAT.md "Reclaiming segments") is replaced; one with a higher
  // sequence wins and `message` is dropped. Returns whether `message` was kept.
  bool Add(QueuedMessage message);

  // Applies a delivery outcome journaled in segment `segment`. Returns false when the message is
  // unknown (its segment was already reclaimed) or the recipient index is out of range.
  bool ApplyOutcome(const OutcomeRecord& outcome, uint64_t segment);

  // Notes that segment `segment` exists (even if it holds no message yet).
  void AddSegment(uint64_t segment);

  const QueuedMessage* Find(std::string_view queue_id) const;
  QueuedMessage* FindMutable(std::string_view queue_id);

  // Messages with at least one recipient not final, in no particular order.
  void ForEachPending(absl::FunctionRef<void(const QueuedMessage&)> visit) const;
  size_t pending_messages() const { return pending_messages_; }
  size_t size() const { return messages_.size(); }

  // Segments that may be deleted now, oldest first (never `current_segment`).
  std::vector<uint64_t> ReclaimableSegments(uint64_t current_segment) const;
  // Forgets a deleted segment at once; its (final) messages are forgotten by TrimRemoved(), a
  // bounded number per call, so that reclaiming a 64 MiB segment of 12,000 messages does not
  // stall a shard for the 10-25 ms their erasure takes. Until then Find() may still return them.
  void RemoveSegment(uint64_t segment);
  // Forgets up to `budget` messages of removed segments. Returns true while more remain.
  bool TrimRemoved(size_t budget);
  bool HasRemoved() const { return !removed_.empty(); }

 private:
  struct SegmentInfo {
    uint32_t pending_messages = 0;               // messages in it not yet final
    absl::flat_hash_set<uint64_t> outcome_refs;  // segments of messages its outcomes finalise
    std::vector<std::string> queue_ids;          // messages whose live copy is in it
  };

  // alloc: one entry per queued message; bounded by the spool's size.
  absl::node_hash_map<std::string, QueuedMessage> messages_;
  absl::flat_hash_map<uint64_t, SegmentInfo> segments_;
  // Removed segments whose messages TrimRemoved() has not forgotten yet, oldest first.
  struct Removed {
    uint64_t segment = 0;
    std::vector<std::string> queue_ids;
    size_t next = 0;
  };
  std::deque<Removed> removed_;
  size_t pending_messages_ = 0;
};

}  // namespace moat::queue
