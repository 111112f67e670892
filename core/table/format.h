// core/table/format.h
//
// The on-disk layout of a compiled lookup table, `FILE.moat` (see core/table/README.md for
// the full description). Owned by the table area; plain data and pure functions, safe from
// any thread. The bytes described here come from files an operator ships, so every reader
// of this format treats them as untrusted: sizes and offsets are validated before use.
//
//   offset 0            FileHeader, zero-padded to kPageBytes
//   data_offset         records: varint key_bytes, varint value_bytes, key, value (no padding)
//   index_offset        index_slots x uint64 (page-aligned), open addressing, linear probing
//   file_bytes          end of file (index_offset + 8 * index_slots)
//
// A slot is 0 (empty) or (hash >> 40) << 40 | record_offset, where hash is
// XXH3_64bits_withSeed(key, hash_seed), the home slot is hash & (index_slots - 1), and
// record_offset is an absolute file offset (< 2^40). All integers are little-endian.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace moat::table {

static_assert(std::endian::native == std::endian::little, "the table format is little-endian");

inline constexpr char kMagic[8] = {'M', 'O', 'A', 'T', 'T', 'B', 'L', '\n'};
inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint64_t kPageBytes = 4096;
// Record offsets live in the low 40 bits of a slot; the top 24 bits hold a hash tag.
inline constexpr int kTagShift = 40;
inline constexpr uint64_t kOffsetMask = (uint64_t{1} << kTagShift) - 1;
inline constexpr uint64_t kFileBytesMax = kOffsetMask;  // 1 TiB
// Keys and values are at most 2^32 - 1 bytes each (varints of at most 5 bytes).
inline constexpr uint64_t kFieldBytesMax = 0xffffffffu;
inline constexpr uint32_t kFlagKeysFolded = 1u << 0;

struct FileHeader {
  char magic[8];
  uint32_t version;
  uint32_t header_bytes;  // kPageBytes
  uint64_t file_bytes;
  uint64_t row_count;
  uint64_t hash_seed;
  uint64_t data_offset;  // kPageBytes
  uint64_t data_bytes;
  uint64_t index_offset;  // page-aligned, >= data_offset + data_bytes
  uint64_t index_slots;   // a power of two, > row_count
  uint64_t data_checksum;   // XXH3_64bits of the data bytes (checked by Verify, not at load)
  uint64_t index_checksum;  // XXH3_64bits of the index bytes (checked at load)
  uint32_t flags;           // kFlag*
  uint32_t reserved;        // 0
  uint64_t header_checksum;  // XXH3_64bits of every byte of this struct before this field
};
static_assert(sizeof(FileHeader) == 104);
static_assert(offsetof(FileHeader, header_checksum) == 96);
static_assert(sizeof(FileHeader) <= kPageBytes);

// Number of index slots for `rows` rows: a power of two with a load factor of 1/3 to 2/3.
inline uint64_t IndexSlotsFor(uint64_t rows) {
  uint64_t want = rows + rows / 2 + 1;
  return want < 16 ? 16 : std::bit_ceil(want);
}

inline uint64_t PageAlign(uint64_t n) { return (n + kPageBytes - 1) & ~(kPageBytes - 1); }

// Appends the LEB128 encoding of `v` to out (at most 5 bytes); returns the bytes written.
inline size_t PutVarint32(uint32_t v, char* out) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out[n++] = static_cast<char>(v);
  return n;
}

// Decodes a LEB128 varint from [*p, end). Returns false (and leaves *p unspecified) when
// the bytes run out or the value does not fit 32 bits.
inline bool GetVarint32(const char** p, const char* end, uint32_t* v) {
  uint32_t result = 0;
  for (int shift = 0; shift <= 28; shift += 7) {
    if (*p >= end) {
      return false;
    }
    auto byte = static_cast<uint8_t>(**p);
    ++*p;
    if (shift == 28 && byte > 0x0f) {
      return false;
    }
    result |= static_cast<uint32_t>(byte & 0x7f) << shift;
    if ((byte & 0x80) == 0) {
      *v = result;
      return true;
    }
  }
  return false;
}

// Decodes the record at `record` within [record, end): key and value views into it.
// Returns false if the record does not fit.
inline bool DecodeRecord(const char* record, const char* end, std::string_view* key,
                         std::string_view* value) {
  const char* p = record;
  uint32_t key_bytes = 0;
  uint32_t value_bytes = 0;
  if (!GetVarint32(&p, end, &key_bytes) || !GetVarint32(&p, end, &value_bytes)) {
    return false;
  }
  auto left = static_cast<uint64_t>(end - p);
  if (uint64_t{key_bytes} + value_bytes > left) {
    return false;
  }
  *key = std::string_view(p, key_bytes);
  *value = std::string_view(p + key_bytes, value_bytes);
  return true;
}

}  // namespace moat::table
