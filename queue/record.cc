// queue/record.cc: see record.h and FORMAT.md. Thread-safe pure functions.
#include "queue/record.h"

#include <cstring>

#include "xxhash.h"

#include "core/log/assert.h"

namespace moat::queue {
namespace {

// header_check covers bytes 0..11 and 16..31 (everything but the check itself).
uint32_t HeaderCheck(const char* header, uint64_t seed) {
  char buf[kHeaderBytes - 4];
  std::memcpy(buf, header, 12);
  std::memcpy(buf + 12, header + 16, 16);
  return static_cast<uint32_t>(XXH3_64bits_withSeed(buf, sizeof(buf), seed));
}

}  // namespace

std::string ErrnoText(int err) {
  char buf[128];
  // The GNU strerror_r returns a pointer to the text (in buf or a static string).
  return strerror_r(err, buf, sizeof(buf));
}

void PutU32(char* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) {
    out[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  }
}

void PutU64(char* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    out[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  }
}

uint32_t GetU32(const char* in) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) {
    v = (v << 8) | static_cast<uint8_t>(in[i]);
  }
  return v;
}

uint64_t GetU64(const char* in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) {
    v = (v << 8) | static_cast<uint8_t>(in[i]);
  }
  return v;
}

void EncodeHeader(const RecordHeader& header, uint64_t seed, char out[kHeaderBytes]) {
  MOAT_CHECK(header.payload_bytes <= kPayloadBytesMax);
  PutU32(out, kMagic);
  out[4] = static_cast<char>(header.type);
  out[5] = 0;
  out[6] = 0;
  out[7] = 0;
  PutU32(out + 8, header.payload_bytes);
  PutU64(out + 16, header.sequence);
  PutU64(out + 24, header.payload_check);
  PutU32(out + 12, HeaderCheck(out, seed));
}

HeaderStatus DecodeHeader(const char* bytes, uint64_t seed, RecordHeader* out) {
  if (GetU32(bytes) != kMagic) {
    for (size_t i = 0; i < kHeaderBytes; ++i) {
      if (bytes[i] != 0) {
        return HeaderStatus::kBadMagic;
      }
    }
    return HeaderStatus::kZero;
  }
  if (GetU32(bytes + 12) != HeaderCheck(bytes, seed)) {
    return HeaderStatus::kBadChecksum;
  }
  uint8_t type = static_cast<uint8_t>(bytes[4]);
  uint32_t payload_bytes = GetU32(bytes + 8);
  if (type < 1 || type > 3 || bytes[5] != 0 || bytes[6] != 0 || bytes[7] != 0 ||
      payload_bytes > kPayloadBytesMax) {
    return HeaderStatus::kBadChecksum;
  }
  out->type = static_cast<RecordType>(type);
  out->payload_bytes = payload_bytes;
  out->sequence = GetU64(bytes + 16);
  out->payload_check = GetU64(bytes + 24);
  return HeaderStatus::kOk;
}

uint64_t PayloadChecksum(std::string_view payload, uint64_t seed) {
  return XXH3_64bits_withSeed(payload.data(), payload.size(), seed);
}

}  // namespace moat::queue
