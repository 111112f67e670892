// core/table/live_tables.h
//
// The daemon's tables, reloaded without a config reload and without a lock on the lookup
// path (issue 3, item 5). Owned by the table area.
//
//   LiveTables tables(options);                       // control plane, before the shards
//   absl::StatusOr<std::shared_ptr<const Map>> m = tables.Open("hash:/etc/moat/relay_recipients");
//   // hand `m` to whatever looks up (net::PolicySettings lists); on each shard:
//   TableSetReader* reader = tables.RegisterReader();  // Quiesce() once per loop turn
//   tables.CheckForChanges();                          // control plane, every few seconds
//
// Open() returns a *live* map: a fixed object (the same one for the same spec, for the
// process lifetime) whose Find() does ONE atomic load of the currently published TableSet
// and forwards to the mapping in its slot. CheckForChanges() stats every file (inode,
// size, mtime), opens and validates the changed ones, and publishes ONE new TableSet with
// them (one atomic store); the old mappings are unmapped once every registered reader has
// passed a quiescent point (TableSetPublisher). A file that fails to open or validate is
// logged once per version (file, reason) and the previous mapping stays in use.
//
// Lifetime contract for lookups: a value returned by a live map's Find() (a view into a
// mapping) is valid until the calling shard's next TableSetReader::Quiesce(); callers copy
// what they keep. Lookups on a thread with no registered reader are safe only while no
// CheckForChanges() can run (e.g. under the same control-plane sequence that builds the
// config generation). Within one multi-key search (FindRecipient) successive keys may be
// answered by two versions of a file across a publish; each answer is from one version.
//
// Thread-safety: Open, CheckForChanges, Reclaim, StartWatching, StopWatching and the
// reader registration are control-plane calls serialized by an internal mutex. Find() of
// a live map is lock-free and allocation-free. Reads table files (operator input, validated
// by OpenMap); parses no network input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "core/table/map.h"
#include "core/table/table_set.h"

namespace moat::table {

// What identifies one version of a table file: a rename (moat postmap) changes the inode.
struct FileVersion {
  bool exists = false;
  uint64_t device = 0;
  uint64_t inode = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileVersion&) const = default;
};

// The file OpenMap(spec) reads (FILE.moat for hash: and the other compiled types, FILE for
// texthash: and cidr:), or "" when the spec reads no file (static:) or is malformed.
std::string WatchedPath(std::string_view spec);
FileVersion StatFile(const std::string& path);

class LiveTables {
 public:
  explicit LiveTables(OpenOptions options = {});
  // REQUIRES: no shard uses a live map or a reader any more. Stops the watcher.
  ~LiveTables();
  LiveTables(const LiveTables&) = delete;
  LiveTables& operator=(const LiveTables&) = delete;

  // The live map for `spec` (e.g. "proxy:hash:/etc/moat/relay_recipients"). The first call
  // for a spec opens it (errors as OpenMap's) and publishes a set that contains it; later
  // calls return the same map. The map stays valid while this LiveTables lives.
  absl::StatusOr<std::shared_ptr<const Map>> Open(std::string_view spec);

  // Stats every file; opens the changed ones; publishes one new set if any opened.
  // Logs "table SPEC reloaded (N rows)" per file, or the error (once per file version).
  // Returns how many tables were reloaded.
  size_t CheckForChanges();

  // Runs CheckForChanges() and Reclaim() every `interval` on a thread of its own; after a
  // publish it calls `after_publish` (the daemon wakes every shard with it, so that each
  // passes a quiescent point soon even when idle). `interval` <= 0: no thread.
  void StartWatching(absl::Duration interval, std::function<void()> after_publish);
  void StopWatching();

  // One per shard (see TableSetReader). Unregister a reader whose shard has stopped.
  TableSetReader* RegisterReader() { return publisher_.RegisterReader(); }
  void UnregisterReader(TableSetReader* reader) { publisher_.UnregisterReader(reader); }
  // Unmaps what every reader has passed; returns how many sets were destroyed.
  size_t Reclaim() { return publisher_.Reclaim(); }
  size_t RetiredCount() { return publisher_.RetiredCount(); }
  // The number of the current set: +1 per publish (the empty start set is 1).
  uint64_t generation() const { return publisher_.Current()->generation(); }

 private:
  struct Entry {
    std::string spec;  // canonical, as the map's spec()
    std::string path;  // WatchedPath(spec), "" when nothing to watch
    FileVersion version;  // of the mapping in use
    std::optional<FileVersion> failed;  // the last version that failed to open (logged once)
  };

  // Publishes a set made of `maps` (slot i = maps[i]). REQUIRES: mu_ held.
  void PublishLocked(const std::vector<std::shared_ptr<const Map>>& maps)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WatchLoop(absl::Duration interval);

  const OpenOptions options_;
  TableSetPublisher publisher_;
  absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<const Map>> live_ ABSL_GUARDED_BY(mu_);    // slot i's live map
  std::vector<std::shared_ptr<const Map>> mapped_ ABSL_GUARDED_BY(mu_);  // slot i's mapping

  absl::Mutex watch_mu_;
  bool stop_ ABSL_GUARDED_BY(watch_mu_) = false;
  std::function<void()> after_publish_;
  std::thread watcher_;
};

}  // namespace moat::table
