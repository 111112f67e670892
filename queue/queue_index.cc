// queue/queue_index.cc: see queue_index.h. Owned by one shard; not thread-safe.
#include "queue/queue_index.h"

#include <algorithm>

#include "absl/strings/string_view.h"

namespace moat::queue {
namespace {

RecipientStatus StatusOf(Outcome outcome) {
  switch (outcome) {
    case Outcome::kDelivered:
      return RecipientStatus::kDelivered;
    case Outcome::kBounced:
      return RecipientStatus::kBounced;
    case Outcome::kExpired:
      return RecipientStatus::kExpired;
    case Outcome::kDeferred:
      break;
  }
  return RecipientStatus::kPending;
}

}  // namespace

bool IsFinal(RecipientStatus status) {
  return status != RecipientStatus::kPending;
}

void QueueIndex::AddSegment(uint64_t segment) {
  segments_.try_emplace(segment);
}

bool QueueIndex::Add(QueuedMessage message) {
  auto it = messages_.find(message.envelope.queue_id);
  if (it != messages_.end()) {
    if (it->second.sequence >= message.sequence) {
      return false;
    }
    // The newer copy replaces the older one; the older stops counting as pending in its segment.
    QueuedMessage& old = it->second;
    if (!old.final()) {
      --pending_messages_;
      --segments_[old.location.segment].pending_messages;
    }
    messages_.erase(it);
  }
  message.recipients.assign(message.envelope.recipients.size(), RecipientStatus::kPending);
  message.pending_recipients = static_cast<uint32_t>(message.recipients.size());
  SegmentInfo& segment = segments_[message.location.segment];
  segment.queue_ids.push_back(message.envelope.queue_id);
  if (!message.final()) {
    ++pending_messages_;
    ++segment.pending_messages;
  }
  std::string key = message.envelope.queue_id;
  messages_.emplace(std::move(key), std::move(message));
  return true;
}

bool QueueIndex::ApplyOutcome(const OutcomeRecord& outcome, uint64_t segment) {
  auto it = messages_.find(outcome.queue_id);
  if (it == messages_.end() || it->second.sequence != outcome.message_sequence) {
    return false;
  }
  QueuedMessage& m = it->second;
  if (outcome.recipient_index >= m.recipients.size()) {
    return false;
  }
  segments_[segment].outcome_refs.insert(m.location.segment);
  RecipientStatus& status = m.recipients[outcome.recipient_index];
  RecipientStatus next = StatusOf(outcome.outcome);
  if (IsFinal(status) || !IsFinal(next)) {
    if (!IsFinal(next)) {
      m.state = MessageState::kDeferred;
    }
    return true;  // a final status never changes back
  }
  status = next;
  if (--m.pending_recipients == 0) {
    --pending_messages_;
    --segments_[m.location.segment].pending_messages;
  }
  return true;
}

const QueuedMessage* QueueIndex::Find(std::string_view queue_id) const {
  auto it = messages_.find(absl::string_view(queue_id.data(), queue_id.size()));
  return it == messages_.end() ? nullptr : &it->second;
}

QueuedMessage* QueueIndex::FindMutable(std::string_view queue_id) {
  auto it = messages_.find(absl::string_view(queue_id.data(), queue_id.size()));
  return it == messages_.end() ? nullptr : &it->second;
}

void QueueIndex::ForEachPending(absl::FunctionRef<void(const QueuedMessage&)> visit) const {
  for (const auto& [id, m] : messages_) {
    if (!m.final()) {
      visit(m);
    }
  }
}

std::vector<uint64_t> QueueIndex::ReclaimableSegments(uint64_t current_segment) const {
  std::vector<uint64_t> candidates;
  for (const auto& [number, info] : segments_) {
    if (number != current_segment && info.pending_messages == 0) {
      candidates.push_back(number);
    }
  }
  // Oldest first: outcomes only refer to messages in the same or older segments, so an older
  // segment reclaimed in this round counts as gone for the newer ones.
  std::sort(candidates.begin(), candidates.end());
  std::vector<uint64_t> out;
  for (uint64_t number : candidates) {
    const SegmentInfo& info = segments_.at(number);
    bool refs_gone =
        std::all_of(info.outcome_refs.begin(), info.outcome_refs.end(), [&](uint64_t ref) {
          return ref == number || !segments_.contains(ref) ||
                 std::binary_search(out.begin(), out.end(), ref);
        });
    if (refs_gone) {
      out.push_back(number);
    }
  }
  return out;
}

void QueueIndex::RemoveSegment(uint64_t segment) {
  auto it = segments_.find(segment);
  if (it == segments_.end()) {
    return;
  }
  if (!it->second.queue_ids.empty()) {
    removed_.push_back(Removed{segment, std::move(it->second.queue_ids), 0});
  }
  segments_.erase(it);
}

bool QueueIndex::TrimRemoved(size_t budget) {
  while (budget > 0 && !removed_.empty()) {
    Removed& r = removed_.front();
    for (; budget > 0 && r.next < r.queue_ids.size(); --budget, ++r.next) {
      auto m = messages_.find(r.queue_ids[r.next]);
      // Only the copy that lived in the removed segment (a newer copy elsewhere stays).
      if (m != messages_.end() && m->second.location.segment == r.segment) {
        if (!m->second.final()) {
          --pending_messages_;
        }
        messages_.erase(m);
      }
    }
    if (r.next == r.queue_ids.size()) {
      removed_.pop_front();
    }
  }
  return !removed_.empty();
}

}  // namespace moat::queue
