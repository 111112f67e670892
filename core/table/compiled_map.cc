// core/table/compiled_map.cc: the mmap reader of compiled tables (see compiled_map.h).
#include "core/table/compiled_map.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cstddef>
#include <utility>

#include "absl/strings/str_format.h"
#include "core/table/format.h"
#include "xxhash.h"

namespace moat::table {
namespace {

// Reads `bytes` of `fd` into a fresh anonymous mapping advised for transparent huge pages,
// then makes it read-only. The result is munmap()ed like a file mapping.
absl::StatusOr<void*> ReadIntoHugePages(int fd, const std::string& path, uint64_t bytes) {
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (base == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: mmap %d bytes: %s", path, bytes, strerror(errno)));
  }
  madvise(base, bytes, MADV_HUGEPAGE);  // advice only: 4 KiB pages if THP is off
  uint64_t done = 0;
  while (done < bytes) {
    ssize_t n = pread(fd, static_cast<char*>(base) + done, bytes - done,
                      static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      int e = n < 0 ? errno : 0;
      munmap(base, bytes);
      return absl::DataLossError(absl::StrFormat(
          "%s: read: %s", path, e != 0 ? strerror(e) : "file shrank while being read"));
    }
    done += static_cast<uint64_t>(n);
  }
  mprotect(base, bytes, PROT_READ);
  return base;
}

}  // namespace

CompiledMap::CompiledMap(std::string spec, const char* base, uint64_t bytes)
    : Map(std::move(spec)), base_(base), bytes_(bytes) {}

CompiledMap::~CompiledMap() {
  if (base_ != nullptr) {
    munmap(const_cast<char*>(base_), bytes_);
  }
}

absl::StatusOr<std::unique_ptr<CompiledMap>> CompiledMap::Open(const std::string& path,
                                                               std::string spec,
                                                               const OpenOptions& options) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    auto message = absl::StrFormat("open database %s: %s", path, strerror(e));
    return e == ENOENT ? absl::NotFoundError(message) : absl::PermissionDeniedError(message);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return absl::InternalError(absl::StrFormat("stat %s: %s", path, strerror(e)));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrFormat("%s: not a regular file", path));
  }
  auto bytes = static_cast<uint64_t>(st.st_size);
  if (bytes < kPageBytes) {
    close(fd);
    return absl::DataLossError(absl::StrFormat(
        "%s: truncated or not a moat table (%d bytes, a table has at least %d)", path, bytes,
        kPageBytes));
  }
  void* base = MAP_FAILED;
  int e = 0;
  if (options.huge_pages) {
    absl::StatusOr<void*> copy = ReadIntoHugePages(fd, path, bytes);
    close(fd);
    if (!copy.ok()) {
      return copy.status();
    }
    base = *copy;
  } else {
    int flags = MAP_SHARED | (options.populate ? MAP_POPULATE : 0);
    base = mmap(nullptr, bytes, PROT_READ, flags, fd, 0);
    e = errno;
    close(fd);
  }
  if (base == MAP_FAILED) {
    return absl::InternalError(absl::StrFormat("mmap %s: %s", path, strerror(e)));
  }
  std::unique_ptr<CompiledMap> map(
      new CompiledMap(std::move(spec), static_cast<const char*>(base), bytes));
  if (absl::Status s = map->Validate(path, options.verify_index); !s.ok()) {
    return s;
  }
  if (!options.populate && !options.huge_pages) {
    // Start asynchronous readahead of pages not yet cached, so that shard threads later
    // take minor faults at most (see README.md, "Page faults"). Advice only: errors ignored.
    madvise(base, bytes, MADV_WILLNEED);
  }
  return map;
}

absl::StatusOr<std::unique_ptr<CompiledMap>> CompiledMap::FromBytes(std::string_view bytes,
                                                                    std::string spec) {
  if (bytes.size() < kPageBytes) {
    return absl::DataLossError(absl::StrFormat("%s: truncated table", spec));
  }
  void* base = mmap(nullptr, bytes.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                    -1, 0);
  if (base == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrFormat("%s: mmap: %s", spec, strerror(errno)));
  }
  madvise(base, bytes.size(), MADV_HUGEPAGE);  // fewer TLB misses; advice only
  memcpy(base, bytes.data(), bytes.size());
  mprotect(base, bytes.size(), PROT_READ);
  std::string name = spec;
  std::unique_ptr<CompiledMap> map(
      new CompiledMap(std::move(spec), static_cast<const char*>(base), bytes.size()));
  if (absl::Status s = map->Validate(name, /*verify_index=*/true); !s.ok()) {
    return s;
  }
  return map;
}

absl::Status CompiledMap::Validate(const std::string& name, bool verify_index) {
  FileHeader h;
  memcpy(&h, base_, sizeof(h));
  auto corrupt = [&](std::string_view what) {
    return absl::DataLossError(absl::StrFormat("%s: %s", name, what));
  };
  if (memcmp(h.magic, kMagic, sizeof(kMagic)) != 0) {
    return corrupt("not a moat table (bad magic); compile it with `moat postmap`");
  }
  if (XXH3_64bits(base_, offsetof(FileHeader, header_checksum)) != h.header_checksum) {
    return corrupt("corrupt table: header checksum mismatch");
  }
  if (h.version != kFormatVersion) {
    return corrupt(absl::StrFormat("unsupported table format version %d (this moat reads %d)",
                                   h.version, kFormatVersion));
  }
  if (h.file_bytes != bytes_) {
    return corrupt(absl::StrFormat("truncated: header says %d bytes, file has %d", h.file_bytes,
                                   bytes_));
  }
  // Every size and offset is checked against the file, without overflow.
  if (h.header_bytes != kPageBytes || h.data_offset != kPageBytes || h.reserved != 0 ||
      h.file_bytes > kFileBytesMax || h.data_bytes > h.file_bytes - h.data_offset ||
      h.index_offset % kPageBytes != 0 || h.index_offset < h.data_offset + h.data_bytes ||
      h.index_offset > h.file_bytes || !std::has_single_bit(h.index_slots) ||
      h.index_slots > (h.file_bytes - h.index_offset) / sizeof(uint64_t) ||
      h.index_offset + h.index_slots * sizeof(uint64_t) != h.file_bytes ||
      h.row_count >= h.index_slots) {
    return corrupt("corrupt table: inconsistent sizes in the header");
  }
  const char* index = base_ + h.index_offset;
  if (verify_index &&
      XXH3_64bits(index, h.index_slots * sizeof(uint64_t)) != h.index_checksum) {
    return corrupt("corrupt table: index checksum mismatch");
  }
  slots_ = reinterpret_cast<const uint64_t*>(index);
  mask_ = h.index_slots - 1;
  seed_ = h.hash_seed;
  rows_ = h.row_count;
  data_begin_ = base_ + h.data_offset;
  data_end_ = data_begin_ + h.data_bytes;
  data_offset_ = h.data_offset;
  data_end_offset_ = h.data_offset + h.data_bytes;
  data_checksum_ = h.data_checksum;
  return absl::OkStatus();
}

absl::Status CompiledMap::VerifyData() const {
  if (XXH3_64bits(data_begin_, static_cast<size_t>(data_end_ - data_begin_)) != data_checksum_) {
    return absl::DataLossError(absl::StrFormat("%s: corrupt table: data checksum mismatch",
                                               spec()));
  }
  return absl::OkStatus();
}

void CompiledMap::Prefetch(std::string_view key) const {
  const uint64_t hash = XXH3_64bits_withSeed(key.data(), key.size(), seed_);
  __builtin_prefetch(&slots_[hash & mask_]);
}

std::optional<std::string_view> CompiledMap::Find(std::string_view key) const {
  const uint64_t hash = XXH3_64bits_withSeed(key.data(), key.size(), seed_);
  const uint64_t tag = hash >> kTagShift;
  uint64_t i = hash & mask_;
  // Bounded by the slot count: a valid index always has an empty slot (rows < slots), and a
  // corrupt unverified one cannot make this loop forever.
  for (uint64_t probes = 0; probes <= mask_; ++probes) {
    const uint64_t slot = slots_[i];
    if (slot == 0) {
      return std::nullopt;
    }
    if ((slot >> kTagShift) == tag) {
      const uint64_t offset = slot & kOffsetMask;
      std::string_view stored_key;
      std::string_view value;
      if (offset >= data_offset_ && offset < data_end_offset_ &&
          DecodeRecord(base_ + offset, data_end_, &stored_key, &value) && stored_key == key) {
        return value;
      }
    }
    i = (i + 1) & mask_;
  }
  return std::nullopt;
}

}  // namespace moat::table
