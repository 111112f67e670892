// core/table/map.h
//
// A lookup table as main.cf names it (`hash:/etc/moat/relay_recipients`), and OpenMap(),
// which opens one from its spec. Maps are immutable once opened: Find() is const, takes no
// lock and allocates nothing, so any number of shard threads may call it at once. Results
// are views into the map (for compiled tables: into the read-only mapping) and stay valid
// as long as the map lives (see TableSet for how long that is during a reload).
//
// Spec types (Postfix names):
//   hash: btree: cdb: lmdb: dbm: sdbm:  the compiled file FILE.moat (`moat postmap FILE`)
//   texthash:FILE   the source FILE, compiled in memory when opened
//   cidr:FILE       Postfix cidr_table(5) rules, first match wins (a pattern table)
//   static:VALUE    every key maps to VALUE
//   proxy:TYPE:FILE the same as TYPE:FILE (moat has no proxymap process)
// Fixed-string tables (all but cidr:) hold keys folded to lower case; Find() wants the key
// already folded (lookup.h folds queries). Opening reads files: control plane only.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace moat::table {

class Map {
 public:
  virtual ~Map() = default;
  Map(const Map&) = delete;
  Map& operator=(const Map&) = delete;

  // The value for exactly `key`, or nullopt. Never allocates, never blocks (beyond a page
  // fault on a table that was not populated, see README.md).
  virtual std::optional<std::string_view> Find(std::string_view key) const = 0;
  // A hint that Find(key) follows soon: starts loading the memory it will touch (a
  // compiled table prefetches the key's home index slot). Lets a search order overlap the
  // cache misses of its candidate keys. Never allocates; no effect on the result.
  virtual void Prefetch(std::string_view /*key*/) const {}
  // True for pattern tables (cidr:), which are queried once with the whole string and not
  // with the partial keys (parent domains, `user@`, network prefixes) of fixed tables.
  virtual bool IsPattern() const { return false; }
  // Number of entries (keys or rules).
  virtual uint64_t size() const = 0;

  // The spec the map was opened with, without `proxy:` (for logs and
  // show_user_unknown_table_name), e.g. "hash:/etc/moat/relay_recipients".
  const std::string& spec() const { return spec_; }

 protected:
  explicit Map(std::string spec) : spec_(std::move(spec)) {}

 private:
  std::string spec_;
};

struct OpenOptions {
  // Check the index checksum when a compiled file is opened (O(index size), about 25 ms per
  // 10 M rows; it also faults the index in). Off: O(1) open, header checks only.
  bool verify_index = true;
  // Map compiled files with MAP_POPULATE: every page is faulted in at open (on the control
  // thread) so lookups on shard threads never wait for disk nor fault. Off: the open only
  // asks the kernel for asynchronous readahead (MADV_WILLNEED); lookups may take minor
  // faults, and major ones only while that readahead of a cold file is still running.
  bool populate = false;
  // Copy compiled files into anonymous memory backed by transparent huge pages (2 MiB)
  // instead of mapping the page cache: a lookup's cache misses then cost no 4 KiB page walk
  // (measured: one DRAM miss 324 -> 168 ns, see README.md). Costs a private copy of the
  // file (the page cache copy may be evicted) and an O(size) read at open; implies that
  // every page is resident, as populate does. Falls back to 4 KiB pages when THP is off.
  bool huge_pages = false;
  // Warn (moat::log) when the source FILE is newer than FILE.moat, as Postfix does.
  bool warn_if_source_newer = true;
};

// Opens the table named by `spec`. Errors name the file and the problem, e.g.
// "open database /etc/moat/x.moat: No such file or directory" or
// "/etc/moat/x.moat: truncated: header says 8192 bytes, file has 4096".
absl::StatusOr<std::unique_ptr<Map>> OpenMap(std::string_view spec,
                                             const OpenOptions& options = {});

// Splits "proxy:hash:/p" into type "hash" and name "/p". Returns false without a colon.
bool SplitSpec(std::string_view spec, std::string_view* type, std::string_view* name);
// True for the types that resolve to a compiled FILE.moat (hash, btree, cdb, lmdb, ...).
bool IsCompiledType(std::string_view type);

}  // namespace moat::table
