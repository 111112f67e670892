// core/server/queue_ops.h
//
// What queue administration needs from a shard's delivery side (the scheduler): flush,
// delete, hold, release, the status mark and last deferral reason of a message, and the
// delivery counters. Implemented by the delivery pipeline; every call runs on the shard's
// own thread (the control thread reaches it through ShardGroup::Post).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "core/server/admin.h"

namespace moat::server {

class ShardQueueOps {
 public:
  virtual ~ShardQueueOps() = default;
  // Every deferred message becomes eligible now (postqueue -f).
  virtual void Flush() = 0;
  // Removes the message (journaled, never delivered afterwards). False if unknown here.
  virtual bool Delete(std::string_view queue_id) = 0;
  // Removes every message of this shard; returns how many.
  virtual size_t DeleteAll() = 0;
  virtual bool Hold(std::string_view queue_id) = 0;
  virtual bool Release(std::string_view queue_id) = 0;
  // postqueue's mark: '*' active, '!' held, ' ' otherwise.
  virtual char StatusMark(std::string_view queue_id) const = 0;
  // The last deferral reason of one recipient (index into the spool envelope), or "".
  virtual std::string LastReason(std::string_view queue_id, size_t recipient) const = 0;
  // Adds this shard's delivered/deferred/bounced counters.
  virtual void AddCounters(DaemonStats* stats) const = 0;
};

}  // namespace moat::server
