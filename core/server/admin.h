// core/server/admin.h
//
// Queue administration and statistics for the control socket: what `moat queue` and
// `moat stats` print, in the shapes operators know from Postfix (postqueue -p). The shard
// side (collecting a snapshot of each shard's queue on its own thread) lives in server.cc;
// this file holds the plain data and the formatting, so both are testable without a
// daemon. Control thread only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace moat::server {

struct QueueListRecipient {
  std::string address;
  std::string reason;  // the last deferral reason, "" when none
};

struct QueueListEntry {
  std::string queue_id;
  char status = ' ';  // '*' active, '!' on hold, ' ' deferred/waiting (postqueue's marks)
  uint64_t size = 0;
  int64_t arrival_unix_us = 0;
  std::string sender;
  std::vector<QueueListRecipient> recipients;  // the ones not yet final
};

// postqueue -p: a header line, one block per message (ID+status, size, arrival time, sender,
// then "(reason)" lines and recipients), and "-- N Kbytes in M Requests." — or "Mail queue
// is empty". Sorted by arrival time.
std::string FormatQueueList(std::vector<QueueListEntry> entries);

// An admin request, parsed: "list", "show ID", "flush", "delete ID|ALL", "hold ID",
// "release ID", "stats", "reload".
struct AdminRequest {
  enum class Verb { kList, kShow, kFlush, kDelete, kHold, kRelease, kStats, kReload };
  Verb verb = Verb::kList;
  std::string argument;  // queue ID, or "ALL" for delete
};
absl::StatusOr<AdminRequest> ParseAdminRequest(const std::string& line);

// Counters summed over the shards, printed by `moat stats` as "name: value" lines.
struct DaemonStats {
  uint64_t shards = 0;
  uint64_t connections_open = 0;
  uint64_t connections_total = 0;
  uint64_t connections_refused = 0;
  uint64_t messages_accepted = 0;
  uint64_t spool_commits = 0;
  uint64_t spool_journal_commits = 0;  // of those, commits of journal records only
  uint64_t spool_delayed_commits = 0;  // batches that waited for more (ShardSpool commit delay)
  // Segment files: made new (open + fallocate), reused after a reclaim (overwrites, no extent
  // conversion), and reclaimed (recycled or unlinked) once every message in them was final.
  uint64_t spool_segments_created = 0;
  uint64_t spool_segments_recycled = 0;
  uint64_t spool_segments_reclaimed = 0;
  uint64_t queue_messages = 0;  // messages with recipients not yet final
  uint64_t delivered = 0;
  uint64_t deferred = 0;
  uint64_t bounced = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t content_reads = 0;  // queued content read back from the spool (memory budget)
};
std::string FormatStats(const DaemonStats& stats);

}  // namespace moat::server
