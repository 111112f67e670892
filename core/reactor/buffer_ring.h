// core/reactor/buffer_ring.h
//
// A provided-buffer ring (io_uring_register_buf_ring) shared by all multishot receives of
// one shard. The kernel picks a buffer only when data arrives and the connection hands it
// back right after its handler has seen the bytes, so an idle connection holds no receive
// buffer: memory is count x size per shard, whatever the number of connections. The
// buffers are one anonymous mapping made at start-up; pages are touched only as used.
// liburing 2.3 has no io_uring_setup_buf_ring, so the ring is mapped by hand
// (DEPENDENCIES.md section 3).
//
// Owner: one shard thread; not thread-safe. Holds network bytes but parses none.
#pragma once

#include <liburing.h>

#include <cstdint>
#include <memory>
#include <span>

#include "absl/status/statusor.h"

namespace moat::reactor {

class BufferRing {
 public:
  // REQUIRES: count a power of two in [1, 32768]; size > 0.
  static absl::StatusOr<std::unique_ptr<BufferRing>> Create(io_uring* ring, uint16_t group_id,
                                                             uint32_t count, uint32_t size);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  uint16_t group_id() const { return group_id_; }
  uint32_t count() const { return count_; }
  uint32_t buffer_bytes() const { return size_; }
  // Buffers currently owned by the kernel side (not lent to a connection).
  uint32_t available() const { return count_ - lent_; }

  // The bytes of buffer `id` as delivered by a CQE (`length` = its res). Marks it lent.
  std::span<const char> Take(uint16_t id, uint32_t length);
  // Gives buffer `id` back to the kernel.
  void Return(uint16_t id);

  // Buffer id carried by a CQE with IORING_CQE_F_BUFFER.
  static uint16_t IdFromFlags(uint32_t flags) {
    return static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
  }

 private:
  BufferRing(io_uring* ring, uint16_t group_id, uint32_t count, uint32_t size)
      : ring_(ring), group_id_(group_id), count_(count), size_(size) {}

  io_uring* ring_;
  const uint16_t group_id_;
  const uint32_t count_;
  const uint32_t size_;
  uint32_t lent_ = 0;
  io_uring_buf_ring* buf_ring_ = nullptr;
  size_t buf_ring_bytes_ = 0;
  char* base_ = nullptr;
  size_t base_bytes_ = 0;
  bool registered_ = false;
};

}  // namespace moat::reactor
