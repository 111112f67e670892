// queue/spool.cc: see spool.h and FORMAT.md. Owned by one shard; not thread-safe.
#include "queue/spool.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/random/random.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "xxhash.h"

#include "core/log/assert.h"
#include "core/log/log.h"

namespace moat::queue {
namespace {

constexpr char kZeros[kRecordAlign] = {};
constexpr char kSegmentSuffix[] = ".seg";
constexpr char kFreeSuffix[] = ".seg.free";
constexpr size_t kSegmentNameChars = 16 + sizeof(kSegmentSuffix) - 1;
static_assert(kRecordAlign <= sizeof(kZeros));

absl::Status ErrnoStatus(std::string_view what, std::string_view path, int err) {
  return absl::InternalError(absl::StrFormat("%s %s: %s", what, path, ErrnoText(err)));
}

// Parses "<16 hex>.seg".
bool ParseSegmentName(std::string_view name, uint64_t* number) {
  if (name.size() != kSegmentNameChars || name.substr(16) != kSegmentSuffix) {
    return false;
  }
  std::optional<uint64_t> v = ParseQueueId(name.substr(0, 16));  // same shape: 16 hex digits
  if (!v.has_value()) {
    return false;
  }
  *number = *v;
  return true;
}

// Copies into the O_DIRECT buffer with non-temporal stores where the CPU has them (SSE2, every
// x86-64). The device reads that buffer by DMA right after, so its lines are of no use in this
// CPU's cache; and rewriting lines a DMA has just read costs a read-for-ownership miss each
// (under a hypervisor the device is another core): a perf profile of W3 (100 KB messages) put
// 15% of the shard's CPU in this copy with memcpy. REQUIRES: StreamFence() before the write.
void StreamCopy(char* dst, const char* src, size_t n) {
#if defined(__SSE2__)
  constexpr size_t kLine = 64;
  const size_t head = std::min(n, (kLine - reinterpret_cast<uintptr_t>(dst) % kLine) % kLine);
  memcpy(dst, src, head);
  dst += head;
  src += head;
  n -= head;
  for (; n >= kLine; n -= kLine, dst += kLine, src += kLine) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 32));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 48), d);
  }
#endif
  memcpy(dst, src, n);
}

// Orders the streaming stores before the write that hands the buffer to the device.
void StreamFence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

int64_t NowUnixMicros() {
  return absl::ToUnixMicros(absl::Now());
}

}  // namespace

void CommitBatch::Consume(uint64_t n) {
  MOAT_CHECK(n <= bytes);
  bytes -= n;
  offset += n;
  size_t i = 0;
  while (i < iov.size() && n >= iov[i].iov_len) {
    n -= iov[i].iov_len;
    ++i;
  }
  iov.erase(iov.begin(), iov.begin() + static_cast<std::ptrdiff_t>(i));
  if (n > 0) {
    iov[0].iov_base = static_cast<char*>(iov[0].iov_base) + n;
    iov[0].iov_len -= n;
  }
}

Spool::Spool(const SpoolOptions& options) : options_(options), ids_(options.shard) {}

Spool::~Spool() {
  CloseSegment();
  if (spare_.fd >= 0) {
    close(spare_.fd);  // never written: remove it (recovery would only delete it anyway)
    unlink(SegmentPath(spare_.number).c_str());
  }
  if (directory_fd_ >= 0) {
    close(directory_fd_);
  }
}

std::string Spool::SegmentPath(uint64_t segment) const {
  return absl::StrFormat("%s/%016x%s", options_.directory, segment, kSegmentSuffix);
}

std::string Spool::FreeSegmentPath(const std::string& segment_path) {
  return segment_path.substr(0, segment_path.size() - strlen(kSegmentSuffix)) + kFreeSuffix;
}

bool Spool::Drained() const {
  return segment_.fd < 0 && spare_.fd < 0 && !spare_requested_ && pending_.empty() &&
         !in_flight_;
}

absl::StatusOr<std::unique_ptr<Spool>> Spool::Open(const SpoolOptions& options,
                                                   Reporter& reporter) {
  if (options.shard >= kShardsMax) {
    return absl::InvalidArgumentError(
        absl::StrFormat("spool: shard %d out of range", options.shard));
  }
  if (options.batch_records_max == 0 || 1 + 3 * options.batch_records_max > kIovecsMax) {
    return absl::InvalidArgumentError("spool: batch_records_max out of range");
  }
  if (options.segment_bytes < kSegmentBytesMin) {
    return absl::InvalidArgumentError("spool: segment_bytes below 1024");
  }
  std::error_code ec;
  bool created = std::filesystem::create_directories(options.directory, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrFormat("spool: create %s: %s", options.directory, ec.message()));
  }
  if (created) {
    // New directories must be durable before any segment in them is acknowledged: sync each
    // one and its parent, up to the root (a few fsyncs, once, at first start).
    std::filesystem::path start = std::filesystem::absolute(options.directory, ec);
    for (std::filesystem::path p = start; !p.empty(); p = p.parent_path()) {
      int fd = open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd >= 0) {
        fsync(fd);
        close(fd);
      }
      if (p == p.parent_path()) {
        break;
      }
    }
  }
  std::unique_ptr<Spool> spool(new Spool(options));
  spool->directory_fd_ = open(options.directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (spool->directory_fd_ < 0) {
    return ErrnoStatus("spool: open", options.directory, errno);
  }
  if (absl::Status status = spool->Recover(reporter); !status.ok()) {
    return status;
  }
  return spool;
}

absl::Status Spool::Recover(Reporter& reporter) {
  std::vector<uint64_t> numbers;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(options_.directory, ec), end; !ec && it != end;
       it.increment(ec)) {
    uint64_t number = 0;
    const std::string name = it->path().filename().native();
    if (ParseSegmentName(name, &number)) {
      numbers.push_back(number);
    } else if (name.ends_with(kFreeSuffix) && !options_.read_only) {
      // A recycled segment waiting for reuse: every record in it was final when it was
      // reclaimed (its old name is gone), so nothing in it is needed.
      unlink(it->path().c_str());
      ++recovery_stats_.unused_segments;
    }
  }
  if (ec) {
    return absl::InternalError(
        absl::StrFormat("spool: read directory %s: %s", options_.directory, ec.message()));
  }
  std::sort(numbers.begin(), numbers.end());

  uint64_t max_queue_id = 0;
  struct JournaledOutcome {
    uint64_t sequence;
    uint64_t segment;
    OutcomeRecord outcome;
  };
  // alloc: outcome records seen during recovery, applied once every message is indexed, so the
  // order in which segments are scanned cannot matter.
  std::vector<JournaledOutcome> outcomes;
  for (uint64_t number : numbers) {
    next_segment_number_ = std::max(next_segment_number_, number + 1);
    std::string path = SegmentPath(number);
    ++recovery_stats_.segments;
    auto visit = [&](const RecordHeader& header, uint64_t offset, std::string_view payload) {
      next_sequence_ = std::max(next_sequence_, header.sequence + 1);
      if (header.type == RecordType::kMessage) {
        std::string_view content;
        absl::StatusOr<MessageEnvelope> envelope = DecodeMessage(payload, &content);
        if (!envelope.ok()) {
          ++recovery_stats_.undecodable_records;
          reporter.Corruption(path, offset, RecordBytes(header.payload_bytes), envelope.status());
          return;
        }
        if (std::optional<uint64_t> id = ParseQueueId(envelope->queue_id); id.has_value()) {
          max_queue_id = std::max(max_queue_id, *id);
        }
        QueuedMessage m;
        m.sequence = header.sequence;
        m.location = {number, offset, RecordBytes(header.payload_bytes)};
        m.content_bytes = content.size();
        m.envelope = *std::move(envelope);
        index_.Add(std::move(m));
        ++recovery_stats_.messages;
      } else if (header.type == RecordType::kOutcome) {
        absl::StatusOr<OutcomeRecord> outcome = DecodeOutcome(payload);
        if (!outcome.ok()) {
          ++recovery_stats_.undecodable_records;
          reporter.Corruption(path, offset, RecordBytes(header.payload_bytes), outcome.status());
          return;
        }
        outcomes.push_back({header.sequence, number, *std::move(outcome)});
        ++recovery_stats_.outcomes;
      }
    };
    ScanOptions scan_options;
    // Never truncate: a recovered segment is never appended to again (the shard starts a new
    // one), so a torn tail costs nothing where it is, and bytes that fail verification (such as
    // an acknowledged record with a bad checksum) stay for the operator instead of being erased.
    scan_options.truncate_torn_tail = false;
    scan_options.expected_number = number;
    absl::StatusOr<SegmentScanResult> scan = ScanSegment(path, scan_options, reporter, visit);
    if (!scan.ok() && absl::IsNotFound(scan.status())) {
      // Never written (an unused spare, created or recycled just before a crash): nothing to
      // recover.
      ++recovery_stats_.unused_segments;
      if (!options_.read_only) {
        unlink(path.c_str());
      }
      continue;
    }
    if (!scan.ok()) {
      ++recovery_stats_.unreadable_segments;  // reported by ScanSegment; the file stays
      continue;
    }
    index_.AddSegment(number);
    salts_[number] = scan->header.salt;
    recovery_stats_.skipped_bytes += scan->skipped_bytes;
    recovery_stats_.dropped_bytes += scan->dropped_bytes;
    recovery_stats_.stale_bytes += scan->stale_bytes;
  }
  std::sort(
      outcomes.begin(), outcomes.end(),
      [](const JournaledOutcome& a, const JournaledOutcome& b) { return a.sequence < b.sequence; });
  for (const JournaledOutcome& o : outcomes) {
    index_.ApplyOutcome(o.outcome, o.segment);
  }
  if (max_queue_id != 0) {
    ids_.RaiseFloor(max_queue_id);
  }
  if (recovery_stats_.segments > 0) {
    log::Info("spool: shard %d: recovered %d messages (%d pending), %d outcomes from %d segments",
              options_.shard, recovery_stats_.messages, index_.pending_messages(),
              recovery_stats_.outcomes, recovery_stats_.segments);
  }
  return absl::OkStatus();
}

std::string Spool::NewQueueId() {
  return ids_.Next(absl::ToUnixSeconds(absl::Now()));
}

Ticket Spool::Stage(MessageEnvelope envelope, std::string_view content) {
  return StageMessage(std::move(envelope), content, nullptr);
}

Ticket Spool::Stage(MessageEnvelope envelope, std::string&& content) {
  return StageMessage(std::move(envelope), std::string_view(), &content);
}

Ticket Spool::StageMessage(MessageEnvelope&& envelope, std::string_view content,
                           std::string* owned) {
  MOAT_CHECK(!envelope.queue_id.empty());
  Pending p;
  p.type = RecordType::kMessage;
  // alloc: header + envelope of one staged message, freed when its batch completes.
  p.head.assign(kHeaderBytes, '\0');
  uint64_t content_bytes = owned != nullptr ? owned->size() : content.size();
  EncodeEnvelope(envelope, content_bytes, &p.head);
  p.payload_bytes = p.head.size() - kHeaderBytes + content_bytes;
  if (owned != nullptr) {
    p.owned_content = std::move(*owned);
    p.owns_content = true;
  } else {
    p.content = content;
  }
  p.envelope = std::move(envelope);
  return Enqueue(std::move(p));
}

Ticket Spool::StageOutcome(const OutcomeRecord& outcome) {
  Pending p;
  p.type = RecordType::kOutcome;
  p.head.assign(kHeaderBytes, '\0');
  EncodeOutcome(outcome, &p.head);
  p.payload_bytes = p.head.size() - kHeaderBytes;
  p.outcome = outcome;
  return Enqueue(std::move(p));
}

Ticket Spool::Enqueue(Pending&& p) {
  p.sequence = next_sequence_++;
  Ticket ticket{p.sequence};
  if (options_.read_only) {
    results_.push_back({p.sequence, EROFS});
    return ticket;
  }
  if (p.payload_bytes > kPayloadBytesMax) {
    results_.push_back({p.sequence, EFBIG});
    return ticket;
  }
  if (p.type == RecordType::kMessage) {
    ++pending_messages_;
    pending_message_bytes_ += p.payload_bytes;
  }
  pending_.push_back(std::move(p));
  return ticket;
}

void Spool::CloseSegment() {
  if (segment_.fd >= 0) {
    close(segment_.fd);
    segment_.fd = -1;
  }
  segment_.sealed = true;
}

absl::StatusOr<int> Spool::CreateSegmentFile(const std::string& path, uint64_t bytes,
                                             bool preallocate) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    int err = errno;
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrFormat("create %s: %s", path, ErrnoText(err)));
  }
  if (preallocate && fallocate(fd, 0, 0, static_cast<off_t>(bytes)) != 0 && errno != EOPNOTSUPP) {
    int err = errno;
    close(fd);
    unlink(path.c_str());
    return absl::Status(absl::ErrnoToStatusCode(err),
                        absl::StrFormat("fallocate %s: %s", path, ErrnoText(err)));
  }
  return fd;
}

bool Spool::WantsSpareSegment() const {
  return !options_.read_only && spare_.fd < 0 && !spare_requested_;
}

Spool::SpareRequest Spool::RequestSpareSegment() {
  MOAT_CHECK(WantsSpareSegment());
  spare_requested_ = true;
  uint64_t number = next_segment_number_++;
  return {number, SegmentPath(number), options_.segment_bytes, options_.preallocate};
}

void Spool::AdoptSpareSegment(uint64_t number, absl::StatusOr<int> fd, bool recycled) {
  MOAT_CHECK(spare_requested_);
  spare_requested_ = false;
  if (!fd.ok()) {
    const bool taken = fd.status().code() == absl::StatusCode::kAlreadyExists;
    if (inline_segments_) {
      log::Warning("spool: shard %d: spare segment %d: %s", options_.shard, number,
                   std::string(fd.status().message()));
      return;  // the next roll-over creates its segment inline
    }
    // No inline creation: staged records wait for this file. A number left by an earlier run
    // (an unreadable segment) is skipped and the next one asked for, a bounded number of
    // times; any other failure fails what waits, as an inline creation would.
    if (taken && ++spare_failures_ < 16) {
      return;
    }
    spare_failures_ = 0;
    if (NeedsSegment()) {
      FailPending(fd.status());
    } else {
      spare_failed_ = true;
      log::Warning("spool: shard %d: spare segment %d: %s", options_.shard, number,
                   std::string(fd.status().message()));
    }
    return;
  }
  spare_failures_ = 0;
  if (number < segment_.number) {
    // A segment was created inline meanwhile; segments are used in number order, so this one
    // comes too late. Never written: remove it.
    close(*fd);
    unlink(SegmentPath(number).c_str());
    return;
  }
  spare_ = {number, *fd, recycled};
}

absl::Status Spool::StartSegment() {
  CloseSegment();
  uint64_t number = 0;
  int fd = -1;
  bool recycled = false;
  if (spare_.fd >= 0) {
    number = spare_.number;
    fd = spare_.fd;
    recycled = spare_.recycled;
    spare_ = {};
  } else {
    // No spare ready: create one inline (blocks: open + fallocate).
    for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
      number = next_segment_number_++;
      absl::StatusOr<int> created =
          CreateSegmentFile(SegmentPath(number), options_.segment_bytes, options_.preallocate);
      if (created.ok()) {
        fd = *created;
      } else if (created.status().code() != absl::StatusCode::kAlreadyExists) {
        return created.status();
      }  // else a leftover (e.g. an unreadable segment): never reuse its number
    }
    if (fd < 0) {
      return absl::AlreadyExistsError("spool: no free segment number");
    }
  }
  spare_failed_ = false;  // a new segment: its own early spare may be tried
  segment_ = Segment();
  segment_.number = number;
  segment_.fd = fd;
  segment_.salt = absl::BitGen()();
  segment_.sealed = false;
  segment_.direct = options_.direct_io && !direct_refused_ && EnableDirectIo(fd);
  SegmentHeaderInfo info{kFormatVersion, options_.shard, number, segment_.salt, NowUnixMicros(),
                         recycled ? kSegmentRecycled : 0};
  std::string payload = EncodeSegmentHeader(info);
  RecordHeader header{RecordType::kSegmentHeader, static_cast<uint32_t>(payload.size()), 0,
                      PayloadChecksum(payload, 0)};
  segment_.header.assign(kHeaderBytes, '\0');
  EncodeHeader(header, 0, segment_.header.data());
  segment_.header += payload;
  segment_.header.append(PaddingBytes(payload.size()), '\0');
  salts_[number] = segment_.salt;
  index_.AddSegment(number);
  return absl::OkStatus();
}

bool Spool::NextBatchStartsSegment() const {
  if (pending_.empty()) {
    return false;
  }
  uint64_t first_bytes = RecordBytes(pending_.front().payload_bytes);
  bool segment_empty = !segment_.header_written || segment_.records == 0;
  return segment_.sealed || segment_.fd < 0 ||
         (!segment_empty && segment_.offset + first_bytes > options_.segment_bytes);
}

bool Spool::NeedsSegment() const {
  return !in_flight_ && spare_.fd < 0 && NextBatchStartsSegment();
}

bool Spool::ShouldPrepareSpare() const {
  if (!WantsSpareSegment()) {
    return false;
  }
  if (NeedsSegment()) {
    return true;
  }
  // Half way through the current segment: the next roll-over will find its file ready.
  return !spare_failed_ && !segment_.sealed && segment_.fd >= 0 &&
         segment_.offset * 2 >= options_.segment_bytes;
}

void Spool::FailPending(const absl::Status& status) {
  int err = status.code() == absl::StatusCode::kResourceExhausted ? ENOSPC : EIO;
  log::Error("spool: shard %d: %s: failing %d staged records", options_.shard,
             std::string(status.message()), pending_.size());
  for (const Pending& p : pending_) {
    results_.push_back({p.sequence, err});
  }
  pending_.clear();
  pending_messages_ = 0;
  pending_message_bytes_ = 0;
}

const CommitBatch* Spool::PrepareCommit() {
  if (in_flight_ || pending_.empty()) {
    return nullptr;
  }
  if (NextBatchStartsSegment()) {
    if (spare_.fd < 0 && !inline_segments_) {
      return nullptr;  // the driver prepares a spare (ShouldPrepareSpare()); the records wait
    }
    if (absl::Status status = StartSegment(); !status.ok()) {
      FailPending(status);
      return nullptr;
    }
  }

  batch_.iov.clear();
  batch_.direct = false;
  batch_.fd = segment_.fd;
  batch_.offset = segment_.offset;
  batch_.bytes = 0;
  batch_.directory_fd = -1;
  if (!segment_.header_written) {
    batch_.iov.push_back({segment_.header.data(), segment_.header.size()});
    batch_.bytes += segment_.header.size();
    batch_.directory_fd = directory_fd_;
  }
  // Take records while they fit: in the segment (soft limit: the first always goes), the batch
  // byte budget and the record count.
  batch_records_.clear();
  while (!pending_.empty()) {
    uint64_t bytes = RecordBytes(pending_.front().payload_bytes);
    if (!batch_records_.empty() && (batch_.offset + batch_.bytes + bytes > options_.segment_bytes ||
                                    batch_.bytes + bytes > options_.batch_bytes_max ||
                                    batch_records_.size() >= options_.batch_records_max)) {
      break;
    }
    if (pending_.front().type == RecordType::kMessage) {
      --pending_messages_;
      pending_message_bytes_ -= pending_.front().payload_bytes;
    }
    batch_records_.push_back(std::move(pending_.front()));
    pending_.pop_front();
    batch_.bytes += bytes;
  }
  // Frame each record now that its segment (and so the checksum seed) is known. The content is
  // hashed in place and written from the caller's buffer: never copied.
  XXH3_state_t state;
  // REQUIRED for a state on the stack (xxhash.h): reset_withSeed() derives the secret from the
  // seed only when state.seed differs from it, so stack garbage equal to the salt (an earlier
  // batch's state in the same slot) kept a stale secret and wrote records whose checksum recovery
  // can never match (the kill -9 e2e test's lost messages; SpoolTest.RecordChecksums...).
  XXH3_INITSTATE(&state);
  for (Pending& p : batch_records_) {
    if (p.owns_content) {
      p.content = p.owned_content;
    }
    std::string_view envelope(p.head.data() + kHeaderBytes, p.head.size() - kHeaderBytes);
    XXH3_64bits_reset_withSeed(&state, segment_.salt);
    XXH3_64bits_update(&state, envelope.data(), envelope.size());
    XXH3_64bits_update(&state, p.content.data(), p.content.size());
    RecordHeader header{p.type, static_cast<uint32_t>(p.payload_bytes), p.sequence,
                        XXH3_64bits_digest(&state)};
    EncodeHeader(header, segment_.salt, p.head.data());
    batch_.iov.push_back({p.head.data(), p.head.size()});
    if (!p.content.empty()) {
      batch_.iov.push_back({const_cast<char*>(p.content.data()), p.content.size()});
    }
    if (size_t pad = PaddingBytes(p.payload_bytes); pad != 0) {
      batch_.iov.push_back({const_cast<char*>(kZeros), pad});
    }
    batch_.last_sequence = p.sequence;
  }
  MOAT_DCHECK(batch_.iov.size() <= kIovecsMax);
  if (segment_.direct) {
    CopyBatchForDirectIo();
  }
  in_flight_ = true;
  return &batch_;
}

bool Spool::EnableDirectIo(int fd) {
  // The alignment O_DIRECT needs here (statx STATX_DIOALIGN, Linux 6.1): 0 means none is
  // supported for this file. Without the answer, the page size, which any device accepts.
  uint64_t align = 4096;
#ifdef STATX_DIOALIGN
  struct statx stx {};
  if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 && (stx.stx_mask & STATX_DIOALIGN)) {
    if (stx.stx_dio_offset_align == 0) {
      errno = EOPNOTSUPP;
      align = 0;
    } else {
      align = std::max<uint64_t>({align, stx.stx_dio_offset_align, stx.stx_dio_mem_align});
    }
  }
#endif
  const int flags = fcntl(fd, F_GETFL);
  if (align != 0 && align <= (uint64_t{1} << 16) && (align & (align - 1)) == 0 && flags >= 0 &&
      ((flags & O_DIRECT) != 0 || fcntl(fd, F_SETFL, flags | O_DIRECT) == 0)) {
    direct_align_ = align;
    return true;
  }
  direct_refused_ = true;
  log::Info("spool: shard %d: %s: O_DIRECT not available (%s); segments are written through "
            "the page cache",
            options_.shard, options_.directory, ErrnoText(errno));
  return false;
}

void Spool::CopyBatchForDirectIo() {
  // [bytes of the partial block already on disk][this batch][zeros to a block boundary]
  const uint64_t tail = segment_.offset % direct_align_;
  const uint64_t padded = (tail + batch_.bytes + direct_align_ - 1) / direct_align_ * direct_align_;
  if (padded > direct_capacity_) {
    const size_t capacity = static_cast<size_t>(std::max<uint64_t>(padded, 256 * 1024));
    char* grown = static_cast<char*>(aligned_alloc(direct_align_, capacity));
    MOAT_CHECK(grown != nullptr);
    if (tail > 0) {
      memcpy(grown, direct_buffer_.get(), tail);
    }
    direct_buffer_.reset(grown);
    direct_capacity_ = capacity;
  }
  char* out = direct_buffer_.get() + tail;
  for (const iovec& v : batch_.iov) {
    StreamCopy(out, static_cast<const char*>(v.iov_base), v.iov_len);
    out += v.iov_len;
  }
  memset(out, 0, static_cast<size_t>(direct_buffer_.get() + padded - out));
  StreamFence();
  batch_.iov.assign(1, iovec{direct_buffer_.get(), static_cast<size_t>(padded)});
  batch_.offset = segment_.offset - tail;
  batch_.bytes = padded;
  batch_.direct = true;
}

void Spool::KeepDirectTail(uint64_t written_from) {
  // The block the next batch starts in is in the buffer already, at its place in this write.
  const uint64_t block = segment_.offset - segment_.offset % direct_align_;
  const uint64_t tail = segment_.offset - block;
  if (tail > 0 && block > written_from) {
    memmove(direct_buffer_.get(), direct_buffer_.get() + (block - written_from), tail);
  }
}

void Spool::OnCommitDone(int result) {
  MOAT_CHECK(in_flight_);
  in_flight_ = false;
  if (result != 0) {
    int err = result < 0 ? -result : EIO;
    log::Error("spool: shard %d: commit of %d records to %s failed: %s; segment sealed",
               options_.shard, batch_records_.size(), SegmentPath(segment_.number), ErrnoText(err));
    for (const Pending& p : batch_records_) {
      results_.push_back({p.sequence, err});
    }
    batch_records_.clear();
    if (segment_.direct && err == EINVAL && !direct_refused_) {
      // The file system took O_DIRECT on the fd but refused the write: the next segments go
      // through the page cache, rather than every batch failing the same way.
      direct_refused_ = true;
      log::Warning("spool: shard %d: an O_DIRECT write was refused; segments are written "
                   "through the page cache from now on",
                   options_.shard);
    }
    CloseSegment();
    return;
  }
  uint64_t offset = segment_.offset;
  const uint64_t written_from = offset - offset % direct_align_;  // the batch's first block
  if (!segment_.header_written) {
    offset += segment_.header.size();
    segment_.header_written = true;
    segment_.header.clear();
  }
  for (Pending& p : batch_records_) {
    uint64_t bytes = RecordBytes(p.payload_bytes);
    if (p.type == RecordType::kMessage) {
      QueuedMessage m;
      m.sequence = p.sequence;
      m.location = {segment_.number, offset, bytes};
      m.content_bytes = p.content.size();
      m.envelope = std::move(p.envelope);
      index_.Add(std::move(m));
    } else {
      index_.ApplyOutcome(p.outcome, segment_.number);
    }
    results_.push_back({p.sequence, 0});
    offset += bytes;
    ++segment_.records;
  }
  segment_.offset = offset;
  if (segment_.direct) {
    KeepDirectTail(written_from);
  }
  batch_records_.clear();
}

void Spool::TakeResults(std::vector<TicketResult>* out) {
  out->clear();
  out->swap(results_);
  std::sort(out->begin(), out->end(),
            [](const TicketResult& a, const TicketResult& b) { return a.sequence < b.sequence; });
}

absl::StatusOr<std::string> Spool::ReadContent(const QueuedMessage& message) const {
  if (!salts_.contains(message.location.segment)) {
    return absl::NotFoundError("spool: segment not known");
  }
  std::string path = SegmentPath(message.location.segment);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return ErrnoStatus("spool: open", path, errno);
  }
  std::string record(message.location.record_bytes, '\0');
  size_t done = 0;
  while (done < record.size()) {
    ssize_t n = pread(fd, record.data() + done, record.size() - done,
                      static_cast<off_t>(message.location.offset + done));
    if (n == 0) {
      break;  // end of file: a recovered last record may lack its padding
    }
    if (n < 0) {
      int err = errno;
      close(fd);
      return ErrnoStatus("spool: read", path, err);
    }
    done += static_cast<size_t>(n);
  }
  close(fd);
  record.resize(done);
  return DecodeContent(message, record);
}

absl::StatusOr<std::string> Spool::DecodeContent(const QueuedMessage& message,
                                                 std::string_view record) const {
  auto salt = salts_.find(message.location.segment);
  if (salt == salts_.end()) {
    return absl::NotFoundError("spool: segment not known");
  }
  const std::string path = SegmentPath(message.location.segment);
  RecordHeader header;
  if (record.size() < kHeaderBytes ||
      DecodeHeader(record.data(), salt->second, &header) != HeaderStatus::kOk ||
      header.sequence != message.sequence || kHeaderBytes + header.payload_bytes > record.size()) {
    return absl::DataLossError(absl::StrFormat("spool: %s: bad record header at offset %d", path,
                                               message.location.offset));
  }
  std::string_view payload(record.data() + kHeaderBytes, header.payload_bytes);
  if (PayloadChecksum(payload, salt->second) != header.payload_check) {
    return absl::DataLossError(absl::StrFormat("spool: %s: checksum mismatch at offset %d", path,
                                               message.location.offset));
  }
  std::string_view content;
  if (absl::StatusOr<MessageEnvelope> envelope = DecodeMessage(payload, &content); !envelope.ok()) {
    return envelope.status();
  }
  return std::string(content);
}

std::vector<std::string> Spool::TakeReclaimableSegments(bool include_current) {
  std::vector<std::string> paths;
  if (options_.read_only) {
    return paths;
  }
  // The current segment too, when nothing is staged or in flight: an idle relay with an empty
  // queue then holds no segment at all, and the next message opens a new one.
  const bool busy = in_flight_ || !pending_.empty() || !include_current;
  std::vector<uint64_t> segments =
      index_.ReclaimableSegments(segment_.sealed || !busy ? 0 : segment_.number);
  bool current_gone = false;
  for (uint64_t number : segments) {
    if (number == segment_.number && busy) {
      continue;
    }
    if (number == segment_.number) {
      CloseSegment();  // sealed: the next batch starts a new segment
      current_gone = true;
    }
    paths.push_back(SegmentPath(number));
    index_.RemoveSegment(number);
    salts_.erase(number);
  }
  if (current_gone && spare_.fd >= 0) {
    // Idle and empty: no preallocated spare sits on the disk either. The next message's
    // segment is created when it comes.
    close(spare_.fd);
    paths.push_back(SegmentPath(spare_.number));
    spare_ = {};
  }
  return paths;
}

absl::StatusOr<size_t> Spool::ReclaimSegments() {
  if (options_.read_only) {
    return absl::FailedPreconditionError("spool: opened read-only");
  }
  std::vector<std::string> paths = TakeReclaimableSegments();
  index_.TrimRemoved(SIZE_MAX);  // the blocking caller may wait for all of it
  for (const std::string& path : paths) {
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      return ErrnoStatus("spool: unlink", path, errno);
    }
  }
  if (!paths.empty() && fsync(directory_fd_) != 0) {
    return ErrnoStatus("spool: fsync", options_.directory, errno);
  }
  return paths.size();
}

}  // namespace moat::queue
