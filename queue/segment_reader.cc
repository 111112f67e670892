// queue/segment_reader.cc: see segment_reader.h and FORMAT.md. Control thread only.
#include "queue/segment_reader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_format.h"

#include "core/log/log.h"

namespace moat::queue {
namespace {

// A created segment's header payload; a recycled one's adds a u64 of flags (FORMAT.md).
constexpr uint32_t kSegmentHeaderPayloadBytes = 32;
constexpr uint32_t kSegmentHeaderWithFlagsBytes = 40;

absl::Status ErrnoStatus(const std::string& what, const std::string& path, int err) {
  return absl::InternalError(absl::StrFormat("%s %s: %s", what, path, ErrnoText(err)));
}

bool DecodeSegmentHeader(std::string_view payload, SegmentHeaderInfo* out) {
  if (payload.size() != kSegmentHeaderPayloadBytes &&
      payload.size() != kSegmentHeaderWithFlagsBytes) {
    return false;
  }
  out->format_version = GetU32(payload.data());
  out->shard = GetU32(payload.data() + 4);
  out->number = GetU64(payload.data() + 8);
  out->salt = GetU64(payload.data() + 16);
  out->created_unix_us = static_cast<int64_t>(GetU64(payload.data() + 24));
  out->flags = payload.size() == kSegmentHeaderWithFlagsBytes ? GetU64(payload.data() + 32) : 0;
  return out->format_version == kFormatVersion && (out->flags & ~kSegmentFlagsKnown) == 0;
}

// Reads the segment's bytes: a read-only private mapping (empty view for an empty file).
class Mapping {
 public:
  Mapping() = default;
  ~Mapping() {
    if (data_ != nullptr) {
      munmap(data_, size_);
    }
  }
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;

  absl::Status Map(int fd, size_t size, const std::string& path) {
    size_ = size;
    if (size == 0) {
      return absl::OkStatus();
    }
    void* p = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      return ErrnoStatus("mmap", path, errno);
    }
    data_ = p;
    return absl::OkStatus();
  }
  const char* data() const { return static_cast<const char*>(data_); }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

// The scan over one mapped segment.
class Scanner {
 public:
  Scanner(const char* data, uint64_t size, uint64_t seed) : data_(data), size_(size), seed_(seed) {}

  // A whole valid record at `pos` with a sequence above `last_sequence`?
  bool ValidAt(uint64_t pos, uint64_t last_sequence, RecordHeader* header) const {
    if (pos + kHeaderBytes > size_) {
      return false;
    }
    if (DecodeHeader(data_ + pos, seed_, header) != HeaderStatus::kOk) {
      return false;
    }
    if (header->payload_bytes > size_ - pos - kHeaderBytes) {
      return false;
    }
    if (header->sequence <= last_sequence && last_sequence != 0) {
      return false;
    }
    std::string_view payload(data_ + pos + kHeaderBytes, header->payload_bytes);
    return PayloadChecksum(payload, seed_) == header->payload_check;
  }

  // The next aligned offset after `pos` holding a valid record, or size_ if none.
  uint64_t Resync(uint64_t pos, uint64_t last_sequence) const {
    RecordHeader header;
    for (uint64_t q = pos + kRecordAlign; q + kHeaderBytes <= size_; q += kRecordAlign) {
      if (GetU32(data_ + q) == kMagic && ValidAt(q, last_sequence, &header)) {
        return q;
      }
    }
    return size_;
  }

  // One past the last non-zero byte at or after `pos` (== pos when all are zero).
  uint64_t NonZeroEnd(uint64_t pos) const {
    uint64_t end = size_;
    while (end > pos && data_[end - 1] == 0) {
      --end;
    }
    return end;
  }

 private:
  const char* data_;
  uint64_t size_;
  uint64_t seed_;
};

}  // namespace

void LogReporter::Corruption(std::string_view path, uint64_t offset, uint64_t bytes,
                             const absl::Status& reason) {
  log::Warning("spool: %s: offset %d: %d bytes: %s", path, offset, bytes,
               std::string(reason.message()));
}

std::string EncodeSegmentHeader(const SegmentHeaderInfo& info) {
  std::string out(info.flags == 0 ? kSegmentHeaderPayloadBytes : kSegmentHeaderWithFlagsBytes,
                  '\0');
  PutU32(out.data(), info.format_version);
  PutU32(out.data() + 4, info.shard);
  PutU64(out.data() + 8, info.number);
  PutU64(out.data() + 16, info.salt);
  PutU64(out.data() + 24, static_cast<uint64_t>(info.created_unix_us));
  if (info.flags != 0) {
    PutU64(out.data() + 32, info.flags);
  }
  return out;
}

absl::StatusOr<SegmentScanResult> ScanSegment(const std::string& path, const ScanOptions& options,
                                              Reporter& reporter, RecordVisitor visit) {
  int fd = open(path.c_str(), (options.truncate_torn_tail ? O_RDWR : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) {
    absl::Status status = ErrnoStatus("open", path, errno);
    reporter.Corruption(path, 0, 0, status);
    return status;
  }
  absl::Cleanup close_fd = [fd] { close(fd); };
  struct stat st;
  if (fstat(fd, &st) != 0) {
    absl::Status status = ErrnoStatus("fstat", path, errno);
    reporter.Corruption(path, 0, 0, status);
    return status;
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  Mapping mapping;
  if (absl::Status status = mapping.Map(fd, size, path); !status.ok()) {
    reporter.Corruption(path, 0, size, status);
    return status;
  }
  const char* data = mapping.data();

  // A file with no byte written (empty or only preallocated zeros) is an unused segment.
  if (Scanner(data, size, 0).NonZeroEnd(0) == 0) {
    return absl::NotFoundError("unused segment: nothing written");
  }
  // The segment header: seed 0, type 1, at offset 0.
  SegmentScanResult result;
  RecordHeader header;
  Scanner header_scanner(data, size, 0);
  if (!header_scanner.ValidAt(0, 0, &header) || header.type != RecordType::kSegmentHeader ||
      !DecodeSegmentHeader(std::string_view(data + kHeaderBytes, header.payload_bytes),
                           &result.header)) {
    absl::Status status =
        absl::DataLossError("missing or bad segment header: segment skipped and left in place");
    reporter.Corruption(path, 0, size, status);
    return status;
  }
  if (options.expected_number.has_value() && result.header.number != *options.expected_number) {
    // A recycled file renamed to this number whose first batch never landed: the header (and
    // every record after it) is from its previous use, all final when it was reclaimed, and
    // nothing was acknowledged in it under this name. Unused, like an all-zero spare.
    return absl::NotFoundError(absl::StrFormat(
        "unused segment: recycled from segment %d, never written as this one",
        result.header.number));
  }
  const bool recycled = (result.header.flags & kSegmentRecycled) != 0;

  Scanner scanner(data, size, result.header.salt);
  uint64_t pos = RecordBytes(header.payload_bytes);
  uint64_t last_sequence = 0;
  while (true) {
    if (scanner.ValidAt(pos, last_sequence, &header)) {
      if (header.type == RecordType::kSegmentHeader) {
        reporter.Corruption(path, pos, RecordBytes(header.payload_bytes),
                            absl::DataLossError("segment header record in the middle: skipped"));
        result.skipped_bytes += RecordBytes(header.payload_bytes);
      } else {
        visit(header, pos, std::string_view(data + pos + kHeaderBytes, header.payload_bytes));
        ++result.records;
        last_sequence = header.sequence;
      }
      pos += RecordBytes(header.payload_bytes);
      continue;
    }
    if (pos >= size) {
      break;  // the last record ended exactly at (or its padding beyond) the end of the file
    }
    uint64_t nonzero_end = scanner.NonZeroEnd(pos);
    if (nonzero_end == pos) {
      break;  // clean end: only zeros (or nothing) left
    }
    uint64_t next = scanner.Resync(pos, last_sequence);
    if (next < size) {
      reporter.Corruption(path, pos, next - pos,
                          absl::DataLossError("corrupt record(s) in the middle: skipped"));
      result.skipped_bytes += next - pos;
      pos = next;
      continue;
    }
    if (recycled) {
      // The records of the file's previous use (another salt: none of them can verify). A torn
      // tail here looks the same and was never acknowledged either: nothing to report.
      result.stale_bytes = nonzero_end - pos;
      break;
    }
    // Torn tail: nothing valid follows.
    result.dropped_bytes = nonzero_end - pos;
    reporter.Corruption(
        path, pos, result.dropped_bytes,
        absl::DataLossError(options.truncate_torn_tail ? "torn tail: dropped, file truncated"
                                                       : "torn tail: dropped, bytes left in place"));
    if (options.truncate_torn_tail) {
      if (ftruncate(fd, static_cast<off_t>(pos)) != 0 || fsync(fd) != 0) {
        return ErrnoStatus("truncate", path, errno);
      }
      result.truncated = true;
    }
    break;
  }
  result.end_offset = pos < size ? pos : size;
  result.last_sequence = last_sequence;
  return result;
}

}  // namespace moat::queue
