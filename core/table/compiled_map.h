// core/table/compiled_map.h
//
// A compiled table (format.h) mapped read-only with mmap, or held in an anonymous mapping
// (texthash tables compiled at load). Opening validates the header (magic, version,
// checksum, sizes, offsets) and by default the index checksum, so a truncated, corrupted
// or foreign file is an error and is never used. Find() additionally bounds-checks every
// record it reads, so even an unverified file can never make it read out of bounds.
//
// Immutable after Open(): Find() is safe from any number of threads, lock-free and
// allocation-free. The mapping is released by the destructor; TableSet makes sure no
// shard still reads it then.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/table/format.h"
#include "core/table/map.h"

namespace moat::table {

class CompiledMap final : public Map {
 public:
  // Maps the compiled file at `path`. `spec` is what spec() returns.
  static absl::StatusOr<std::unique_ptr<CompiledMap>> Open(const std::string& path,
                                                           std::string spec,
                                                           const OpenOptions& options);
  // Copies a complete compiled table (CompileToMemory) into an anonymous mapping.
  static absl::StatusOr<std::unique_ptr<CompiledMap>> FromBytes(std::string_view bytes,
                                                                std::string spec);
  ~CompiledMap() override;

  std::optional<std::string_view> Find(std::string_view key) const override;
  void Prefetch(std::string_view key) const override;
  uint64_t size() const override { return rows_; }

  // Checks the data checksum (reads the whole file). For `moat check`, not for reload.
  absl::Status VerifyData() const;
  // Calls fn(key, value) for every entry, in index order (postmap -s, tests).
  template <typename Fn>
  void ForEach(Fn fn) const;

  uint64_t file_bytes() const { return bytes_; }
  uint64_t index_slots() const { return mask_ + 1; }

 private:
  CompiledMap(std::string spec, const char* base, uint64_t bytes);
  // Validates the header of [base_, base_ + bytes_) and fills the layout fields.
  absl::Status Validate(const std::string& name, bool verify_index);

  const char* base_;
  uint64_t bytes_;
  const uint64_t* slots_ = nullptr;
  uint64_t mask_ = 0;
  uint64_t seed_ = 0;
  uint64_t rows_ = 0;
  const char* data_begin_ = nullptr;
  const char* data_end_ = nullptr;
  uint64_t data_offset_ = 0;      // data_begin_ - base_
  uint64_t data_end_offset_ = 0;  // data_end_ - base_
  uint64_t data_checksum_ = 0;
};

template <typename Fn>
void CompiledMap::ForEach(Fn fn) const {
  for (uint64_t i = 0; i <= mask_; ++i) {
    uint64_t slot = slots_[i];
    if (slot == 0) {
      continue;
    }
    const uint64_t offset = slot & kOffsetMask;
    std::string_view key;
    std::string_view value;
    if (offset >= data_offset_ && offset < data_end_offset_ &&
        DecodeRecord(base_ + offset, data_end_, &key, &value)) {
      fn(key, value);
    }
  }
}

}  // namespace moat::table
