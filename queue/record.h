// queue/record.h
//
// Framing of spool records (queue/FORMAT.md): a 32-byte header with magic, type, payload length,
// per-shard sequence number and two xxh3 checksums (header and payload), then the payload, then
// zero padding to an 8-byte boundary. Pure functions, thread-safe. DecodeHeader() is applied to
// bytes read back from disk, which may be torn or corrupt: it validates and never trusts a length
// before its checksum matched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moat::queue {

enum class RecordType : uint8_t {
  kSegmentHeader = 1,
  kMessage = 2,
  kOutcome = 3,
};

inline constexpr size_t kHeaderBytes = 32;
inline constexpr size_t kRecordAlign = 8;
inline constexpr uint32_t kMagic = 0x54414F4D;  // "MOAT" as little-endian bytes
inline constexpr uint32_t kPayloadBytesMax = 1u << 30;
inline constexpr uint32_t kFormatVersion = 1;
static_assert(kHeaderBytes % kRecordAlign == 0);

struct RecordHeader {
  RecordType type = RecordType::kMessage;
  uint32_t payload_bytes = 0;
  uint64_t sequence = 0;
  uint64_t payload_check = 0;
};

// Bytes of padding after a payload of `payload_bytes` so the next record is aligned.
constexpr size_t PaddingBytes(uint64_t payload_bytes) {
  return (kRecordAlign - payload_bytes % kRecordAlign) % kRecordAlign;
}
// Whole record size on disk: header + payload + padding.
constexpr uint64_t RecordBytes(uint64_t payload_bytes) {
  return kHeaderBytes + payload_bytes + PaddingBytes(payload_bytes);
}

// Writes the 32 header bytes (with magic and header_check under `seed`) into `out`.
// REQUIRES: header.payload_bytes <= kPayloadBytesMax.
void EncodeHeader(const RecordHeader& header, uint64_t seed, char out[kHeaderBytes]);

enum class HeaderStatus {
  kOk,
  kZero,  // 32 zero bytes: preallocated, never written space
  kBadMagic,
  kBadChecksum,  // header_check mismatch (or unknown type / reserved bits set)
};

// Validates `bytes` (at least kHeaderBytes) as a record header under `seed`; fills `out` on kOk.
HeaderStatus DecodeHeader(const char* bytes, uint64_t seed, RecordHeader* out);

// xxh3-64 of a payload under `seed`.
uint64_t PayloadChecksum(std::string_view payload, uint64_t seed);

// strerror() without its shared buffer (thread-safe), for log lines and Status messages.
std::string ErrnoText(int err);

// Little-endian helpers shared by the payload codecs.
void PutU32(char* out, uint32_t v);
void PutU64(char* out, uint64_t v);
uint32_t GetU32(const char* in);
uint64_t GetU64(const char* in);

}  // namespace moat::queue
