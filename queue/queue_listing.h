// queue/queue_listing.h
//
// `moat queue list` support: reads every shard's spool under queue_directory/spool/ read-only
// (nothing is truncated or deleted, so it is safe next to a running daemon; a torn tail being
// written right now is reported and skipped) and formats the pending messages the way Postfix's
// `postqueue -p` / `mailq` does, so operators' scripts keep working:
//
//   -Queue ID-       --Size-- ----Arrival Time---- -Sender/Recipient-------
//   65A1B2C3000001F4*    1234 Mon Nov 23 17:55:01  alice@example.net
//                                                  bob@example.com
//
//   -- 2 Kbytes in 1 Request.
//
// Blocking; for tools and the control thread. Thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

#include "queue/queue_index.h"
#include "queue/segment_reader.h"

namespace moat::queue {

struct ListedMessage {
  uint32_t shard = 0;
  QueuedMessage message;
};

// Every message with a recipient not yet final, from every spool/<shard>/ directory, ordered by
// arrival then queue ID. A missing spool directory is an empty queue.
absl::StatusOr<std::vector<ListedMessage>> ListQueue(const std::string& queue_directory,
                                                     Reporter& reporter);

// The postqueue -p text for `messages` ("Mail queue is empty" when there are none). Only
// recipients not yet final are listed. Times are shown in `zone`.
std::string FormatQueueListing(const std::vector<ListedMessage>& messages, absl::TimeZone zone);

}  // namespace moat::queue
