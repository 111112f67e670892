// queue/segment_reader.h
//
// Reads one spool segment back at recovery (queue/FORMAT.md, "Recovery"): verifies the segment
// header, every record's header and payload checksum and the growing sequence, resyncs past damage
// in the middle, and drops a torn tail (optionally truncating the file there). Every byte it skips
// or drops is reported to a Reporter: never silently. Runs on the control thread at start-up (and
// in tools); not thread-safe per call, but independent calls may run concurrently. It parses bytes
// from disk that may be damaged, never trusting a length before its checksum matched.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

#include "queue/record.h"

namespace moat::queue {

// Where recovery reports damage (LevelDB's log::Reader::Reporter).
class Reporter {
 public:
  virtual ~Reporter() = default;
  // `bytes` bytes at `offset` of the segment file `path` were skipped or dropped for `reason`.
  virtual void Corruption(std::string_view path, uint64_t offset, uint64_t bytes,
                          const absl::Status& reason) = 0;
};

// The default: one "warning:" log line per report.
class LogReporter : public Reporter {
 public:
  void Corruption(std::string_view path, uint64_t offset, uint64_t bytes,
                  const absl::Status& reason) override;
};

// Segment header flags (FORMAT.md, type 1).
inline constexpr uint64_t kSegmentRecycled = 1;  // the file held an earlier segment's records
inline constexpr uint64_t kSegmentFlagsKnown = kSegmentRecycled;

struct SegmentHeaderInfo {
  uint32_t format_version = 0;
  uint32_t shard = 0;
  uint64_t number = 0;
  uint64_t salt = 0;
  int64_t created_unix_us = 0;
  uint64_t flags = 0;  // 0: the 32-byte payload of a created segment; else 40 bytes
};

// Encodes a segment header payload (FORMAT.md, type 1).
std::string EncodeSegmentHeader(const SegmentHeaderInfo& info);

struct SegmentScanResult {
  SegmentHeaderInfo header;
  uint64_t records = 0;        // valid records after the segment header
  uint64_t end_offset = 0;     // where the valid data ends (aligned)
  uint64_t skipped_bytes = 0;  // damage skipped in the middle
  uint64_t dropped_bytes = 0;  // torn tail dropped (non-zero bytes after end_offset)
  uint64_t stale_bytes = 0;    // a recycled segment: its previous use's bytes after end_offset
  uint64_t last_sequence = 0;
  bool truncated = false;  // the file was truncated at end_offset
};

struct ScanOptions {
  // Truncate the file at the end of the valid data when a torn tail is found (recovery does;
  // read-only tools do not).
  bool truncate_torn_tail = true;
  // The number in the file's name. A segment header with another number is a recycled file
  // whose first batch never landed: NotFound (unused), as for an all-zero file.
  std::optional<uint64_t> expected_number;
};

// Called for each valid record (not the segment header) with its offset and payload; the payload
// view is valid only during the call.
using RecordVisitor =
    absl::FunctionRef<void(const RecordHeader& header, uint64_t offset, std::string_view payload)>;

// Scans the segment at `path`. NotFound: the file is empty or all zero, or (with
// expected_number) a recycled file never written under its name (unused; not reported). In a
// recycled segment the bytes after the last valid record are its previous use's: counted in
// stale_bytes, not reported. Any other error means the segment could not be read or verified at all (unreadable,
// missing or bad segment header): it was reported and nothing in it was visited.
absl::StatusOr<SegmentScanResult> ScanSegment(const std::string& path, const ScanOptions& options,
                                              Reporter& reporter, RecordVisitor visit);

}  // namespace moat::queue
