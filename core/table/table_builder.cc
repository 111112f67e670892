// core/table/table_builder.cc: the table compiler (see table_builder.h and README.md).
#include "core/table/table_builder.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/log/assert.h"
#include "core/log/log.h"
#include "core/table/format.h"
#include "core/table/source_reader.h"
#include "xxhash.h"

namespace moat::table {
namespace {

absl::Status ErrnoError(std::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrFormat("%s %s: %s", what, path, strerror(errno)));
}

// A file written through a 1 MiB buffer.
class FileSink final : public TableSink {
 public:
  FileSink(int fd, std::string path) : fd_(fd), path_(std::move(path)) {
    buffer_.reserve(kBufferBytes);
  }
  absl::Status Append(const char* data, size_t n) override {
    if (buffer_.size() + n > kBufferBytes) {
      if (absl::Status s = Flush(); !s.ok()) {
        return s;
      }
      if (n > kBufferBytes) {
        return WriteAll(data, n, flushed_);
      }
    }
    buffer_.append(data, n);
    return absl::OkStatus();
  }
  absl::Status ReadAt(uint64_t offset, size_t n, char* out) override {
    if (absl::Status s = Flush(); !s.ok()) {
      return s;
    }
    size_t done = 0;
    while (done < n) {
      ssize_t got = pread(fd_, out + done, n - done, static_cast<off_t>(offset + done));
      if (got < 0 && errno == EINTR) {
        continue;
      }
      if (got <= 0) {
        return ErrnoError("read", path_);
      }
      done += static_cast<size_t>(got);
    }
    return absl::OkStatus();
  }
  absl::Status WriteAt(uint64_t offset, const char* data, size_t n) override {
    if (absl::Status s = Flush(); !s.ok()) {
      return s;
    }
    size_t done = 0;
    while (done < n) {
      ssize_t put = pwrite(fd_, data + done, n - done, static_cast<off_t>(offset + done));
      if (put < 0 && errno == EINTR) {
        continue;
      }
      if (put <= 0) {
        return ErrnoError("write", path_);
      }
      done += static_cast<size_t>(put);
    }
    return absl::OkStatus();
  }
  uint64_t size() const override { return flushed_ + buffer_.size(); }
  absl::Status Flush() {
    if (buffer_.empty()) {
      return absl::OkStatus();
    }
    absl::Status s = WriteAll(buffer_.data(), buffer_.size(), flushed_);
    buffer_.clear();
    return s;
  }

 private:
  static constexpr size_t kBufferBytes = 1u << 20;
  absl::Status WriteAll(const char* data, size_t n, uint64_t& at) {
    size_t done = 0;
    while (done < n) {
      ssize_t put = pwrite(fd_, data + done, n - done, static_cast<off_t>(at));
      if (put < 0 && errno == EINTR) {
        continue;
      }
      if (put <= 0) {
        return ErrnoError("write", path_);
      }
      done += static_cast<size_t>(put);
      at += static_cast<uint64_t>(put);
    }
    return absl::OkStatus();
  }
  int fd_;
  std::string path_;
  std::string buffer_;  // alloc: 1 MiB write buffer
  uint64_t flushed_ = 0;
};

class MemorySink final : public TableSink {
 public:
  absl::Status Append(const char* data, size_t n) override {
    bytes_.append(data, n);
    return absl::OkStatus();
  }
  absl::Status ReadAt(uint64_t offset, size_t n, char* out) override {
    MOAT_CHECK(offset + n <= bytes_.size());
    memcpy(out, bytes_.data() + offset, n);
    return absl::OkStatus();
  }
  absl::Status WriteAt(uint64_t offset, const char* data, size_t n) override {
    MOAT_CHECK(offset + n <= bytes_.size());
    memcpy(bytes_.data() + offset, data, n);
    return absl::OkStatus();
  }
  uint64_t size() const override { return bytes_.size(); }
  std::string Take() { return std::move(bytes_); }

 private:
  std::string bytes_;
};

uint64_t RandomSeed() {
  uint64_t seed = 0;
  while (seed == 0) {
    if (getrandom(&seed, sizeof(seed), 0) != static_cast<ssize_t>(sizeof(seed))) {
      seed = static_cast<uint64_t>(time(nullptr)) * 0x9e3779b97f4a7c15ull;
    }
  }
  return seed;
}

absl::Status FeedSource(int source_fd, const std::string& source_name, bool fold,
                        TableBuilder* builder, CompileStats* stats) {
  SourceReader reader(source_fd, source_name, fold);
  SourceEntry entry;
  while (reader.Next(&entry)) {
    if (absl::Status s = builder->Add(entry.key, entry.value, entry.line); !s.ok()) {
      return s;
    }
  }
  stats->bad_lines = reader.bad_lines();
  stats->lines = reader.physical_lines();
  return reader.status();
}

}  // namespace

TableBuilder::TableBuilder(TableSink* sink, std::string source_name, uint64_t hash_seed,
                           bool keys_folded)
    : sink_(sink),
      source_name_(std::move(source_name)),
      hash_seed_(hash_seed),
      keys_folded_(keys_folded),
      data_hash_state_(XXH3_createState()) {
  MOAT_CHECK(data_hash_state_ != nullptr);
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(data_hash_state_));
}

TableBuilder::~TableBuilder() { XXH3_freeState(static_cast<XXH3_state_t*>(data_hash_state_)); }

void TableBuilder::Reserve(uint64_t rows) {
  constexpr uint64_t kReserveRowsMax = uint64_t{1} << 30;
  rows_.reserve(static_cast<size_t>(std::min(rows, kReserveRowsMax)));
}

absl::Status TableBuilder::Start() {
  started_ = true;
  MOAT_CHECK(sink_->size() == 0);
  std::string page(kPageBytes, '\0');  // the header is written last, by Finish()
  return sink_->Append(page.data(), page.size());
}

absl::Status TableBuilder::Add(std::string_view key, std::string_view value, uint64_t line) {
  if (!started_) {
    if (absl::Status s = Start(); !s.ok()) {
      return s;
    }
  }
  if (key.size() > kFieldBytesMax || value.size() > kFieldBytesMax) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s, line %d: key or value longer than 4 GiB", source_name_, line));
  }
  char lengths[10];
  size_t n = PutVarint32(static_cast<uint32_t>(key.size()), lengths);
  n += PutVarint32(static_cast<uint32_t>(value.size()), lengths + n);
  uint64_t offset = sink_->size();
  if (offset + n + key.size() + value.size() > kFileBytesMax / 2) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: table larger than %d bytes", source_name_, kFileBytesMax / 2));
  }
  auto* state = static_cast<XXH3_state_t*>(data_hash_state_);
  XXH3_64bits_update(state, lengths, n);
  XXH3_64bits_update(state, key.data(), key.size());
  XXH3_64bits_update(state, value.data(), value.size());
  absl::Status s = sink_->Append(lengths, n);
  if (s.ok()) {
    s = sink_->Append(key.data(), key.size());
  }
  if (s.ok()) {
    s = sink_->Append(value.data(), value.size());
  }
  if (!s.ok()) {
    return s;
  }
  rows_.push_back(Row{XXH3_64bits_withSeed(key.data(), key.size(), hash_seed_), offset, line});
  return absl::OkStatus();
}

absl::StatusOr<std::string> TableBuilder::ReadKey(uint64_t offset) {
  char head[10];
  uint64_t left = sink_->size() - offset;
  size_t head_bytes = static_cast<size_t>(std::min<uint64_t>(sizeof(head), left));
  if (absl::Status s = sink_->ReadAt(offset, head_bytes, head); !s.ok()) {
    return s;
  }
  const char* p = head;
  uint32_t key_bytes = 0;
  uint32_t value_bytes = 0;
  MOAT_CHECK(GetVarint32(&p, head + head_bytes, &key_bytes));
  MOAT_CHECK(GetVarint32(&p, head + head_bytes, &value_bytes));
  std::string key(key_bytes, '\0');  // alloc: duplicate candidates only (rare)
  if (absl::Status s = sink_->ReadAt(offset + (p - head), key_bytes, key.data()); !s.ok()) {
    return s;
  }
  return key;
}

absl::StatusOr<CompileStats> TableBuilder::Finish() {
  if (!started_) {
    if (absl::Status s = Start(); !s.ok()) {
      return s;
    }
  }
  CompileStats stats;
  const uint64_t data_end = sink_->size();
  const uint64_t index_offset = PageAlign(data_end);
  std::string zeros(index_offset - data_end, '\0');
  if (absl::Status s = sink_->Append(zeros.data(), zeros.size()); !s.ok()) {
    return s;
  }
  const uint64_t slots = IndexSlotsFor(rows_.size());
  const uint64_t mask = slots - 1;
  if (index_offset + slots * sizeof(uint64_t) > kFileBytesMax) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: table too large", source_name_));
  }
  // alloc: the index, 8 bytes per slot, written out once below.
  std::vector<uint64_t> index(slots, 0);
  constexpr size_t kPrefetchDistance = 16;  // rows ahead: hides the random index store
  for (size_t r = 0; r < rows_.size(); ++r) {
    if (r + kPrefetchDistance < rows_.size()) {
      __builtin_prefetch(&index[rows_[r + kPrefetchDistance].hash & mask], 1);
    }
    const Row& row = rows_[r];
    const uint64_t tag = row.hash >> kTagShift;
    uint64_t i = row.hash & mask;
    while (true) {
      const uint64_t slot = index[i];
      if (slot == 0) {
        index[i] = (tag << kTagShift) | row.offset;
        ++stats.rows;
        break;
      }
      if ((slot >> kTagShift) == tag) {
        absl::StatusOr<std::string> old_key = ReadKey(slot & kOffsetMask);
        if (!old_key.ok()) {
          return old_key.status();
        }
        absl::StatusOr<std::string> new_key = ReadKey(row.offset);
        if (!new_key.ok()) {
          return new_key.status();
        }
        if (*old_key == *new_key) {
          // Rows are in offset order: find the first occurrence for its line number.
          auto first = std::lower_bound(
              rows_.begin(), rows_.end(), slot & kOffsetMask,
              [](const Row& r, uint64_t offset) { return r.offset < offset; });
          log::Warning("%s, line %d: duplicate entry: \"%s\" (first at line %d, which is kept)",
                       source_name_, row.line, *new_key, first->line);
          ++stats.duplicates;
          break;
        }
      }
      i = (i + 1) & mask;
    }
  }
  rows_.clear();
  rows_.shrink_to_fit();

  const uint64_t index_bytes = slots * sizeof(uint64_t);
  const auto* index_data = reinterpret_cast<const char*>(index.data());
  if (absl::Status s = sink_->Append(index_data, index_bytes); !s.ok()) {
    return s;
  }
  FileHeader header;
  memset(&header, 0, sizeof(header));
  memcpy(header.magic, kMagic, sizeof(kMagic));
  header.version = kFormatVersion;
  header.header_bytes = kPageBytes;
  header.file_bytes = index_offset + index_bytes;
  header.row_count = stats.rows;
  header.hash_seed = hash_seed_;
  header.data_offset = kPageBytes;
  header.data_bytes = data_end - kPageBytes;
  header.index_offset = index_offset;
  header.index_slots = slots;
  header.data_checksum = XXH3_64bits_digest(static_cast<XXH3_state_t*>(data_hash_state_));
  header.index_checksum = XXH3_64bits(index_data, index_bytes);
  header.flags = keys_folded_ ? kFlagKeysFolded : 0;
  header.header_checksum = XXH3_64bits(&header, offsetof(FileHeader, header_checksum));
  if (absl::Status s = sink_->WriteAt(0, reinterpret_cast<const char*>(&header), sizeof(header));
      !s.ok()) {
    return s;
  }
  MOAT_CHECK(sink_->size() == header.file_bytes);
  stats.file_bytes = header.file_bytes;
  return stats;
}

absl::StatusOr<CompileStats> CompileToFile(int source_fd, const std::string& source_name,
                                           const std::string& output_path,
                                           const CompileOptions& options) {
  std::string temp_path = output_path + ".tmpXXXXXX";
  int fd = mkstemp(temp_path.data());
  if (fd < 0) {
    return ErrnoError("create", temp_path);
  }
  auto fail = [&](absl::Status s) {
    close(fd);
    unlink(temp_path.c_str());
    return s;
  };
  if (fchmod(fd, 0644) != 0) {
    return fail(ErrnoError("chmod", temp_path));
  }
  CompileStats stats;
  FileSink sink(fd, temp_path);
  {
    TableBuilder builder(&sink, source_name,
                         options.hash_seed != 0 ? options.hash_seed : RandomSeed(),
                         options.fold_keys);
    struct stat source_stat;
    if (fstat(source_fd, &source_stat) == 0 && S_ISREG(source_stat.st_mode)) {
      // About one row per 32 source bytes: saves the vector's regrowth copies.
      builder.Reserve(static_cast<uint64_t>(source_stat.st_size) / 32);
    }
    if (absl::Status s = FeedSource(source_fd, source_name, options.fold_keys, &builder, &stats);
        !s.ok()) {
      return fail(s);
    }
    absl::StatusOr<CompileStats> built = builder.Finish();
    if (!built.ok()) {
      return fail(built.status());
    }
    stats.rows = built->rows;
    stats.duplicates = built->duplicates;
    stats.file_bytes = built->file_bytes;
  }
  if (absl::Status s = sink.Flush(); !s.ok()) {
    return fail(s);
  }
  if (options.sync && fsync(fd) != 0) {
    return fail(ErrnoError("fsync", temp_path));
  }
  if (close(fd) != 0) {
    fd = -1;
    unlink(temp_path.c_str());
    return ErrnoError("close", temp_path);
  }
  if (rename(temp_path.c_str(), output_path.c_str()) != 0) {
    absl::Status s = ErrnoError("rename to", output_path);
    unlink(temp_path.c_str());
    return s;
  }
  if (options.sync) {
    size_t slash = output_path.rfind('/');
    std::string dir = slash == std::string::npos ? "." : output_path.substr(0, slash + 1);
    int dir_fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd >= 0) {
      fsync(dir_fd);
      close(dir_fd);
    }
  }
  return stats;
}

absl::StatusOr<CompileStats> CompileFile(const std::string& source_path,
                                         const std::string& output_path,
                                         const CompileOptions& options) {
  int fd = open(source_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(
        absl::StrFormat("open source file %s: %s", source_path, strerror(errno)));
  }
  absl::StatusOr<CompileStats> stats = CompileToFile(fd, source_path, output_path, options);
  close(fd);
  return stats;
}

absl::StatusOr<std::string> CompileToMemory(int source_fd, const std::string& source_name,
                                            const CompileOptions& options,
                                            CompileStats* stats) {
  MemorySink sink;
  CompileStats local;
  TableBuilder builder(&sink, source_name,
                       options.hash_seed != 0 ? options.hash_seed : RandomSeed(),
                       options.fold_keys);
  if (absl::Status s = FeedSource(source_fd, source_name, options.fold_keys, &builder, &local);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<CompileStats> built = builder.Finish();
  if (!built.ok()) {
    return built.status();
  }
  local.rows = built->rows;
  local.duplicates = built->duplicates;
  local.file_bytes = built->file_bytes;
  if (stats != nullptr) {
    *stats = local;
  }
  return sink.Take();
}

}  // namespace moat::table
