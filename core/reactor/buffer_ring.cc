// core/reactor/buffer_ring.cc
//
// See buffer_ring.h. Owner: one shard thread.
#include "core/reactor/buffer_ring.h"

#include <string.h>
#include <sys/mman.h>

#include <bit>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "core/log/assert.h"

namespace moat::reactor {

absl::StatusOr<std::unique_ptr<BufferRing>> BufferRing::Create(io_uring* ring,
                                                                uint16_t group_id,
                                                                uint32_t count, uint32_t size) {
  if (count == 0 || count > 32768 || !std::has_single_bit(count) || size == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("buffer ring: count %d must be a power of two <= 32768, size > 0",
                        count));
  }
  std::unique_ptr<BufferRing> self(new BufferRing(ring, group_id, count, size));
  self->buf_ring_bytes_ = size_t{count} * sizeof(io_uring_buf);
  void* ring_memory = mmap(nullptr, self->buf_ring_bytes_, PROT_READ | PROT_WRITE,
                           MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (ring_memory == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("buffer ring: mmap %d bytes: %s", self->buf_ring_bytes_,
                        strerror(errno)));
  }
  self->buf_ring_ = static_cast<io_uring_buf_ring*>(ring_memory);
  self->base_bytes_ = size_t{count} * size;
  void* base = mmap(nullptr, self->base_bytes_, PROT_READ | PROT_WRITE,
                    MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (base == MAP_FAILED) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "buffer ring: mmap %d bytes of buffers: %s", self->base_bytes_, strerror(errno)));
  }
  self->base_ = static_cast<char*>(base);
  io_uring_buf_ring_init(self->buf_ring_);
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(self->buf_ring_);
  reg.ring_entries = count;
  reg.bgid = group_id;
  int rc = io_uring_register_buf_ring(ring, &reg, 0);
  if (rc < 0) {
    return absl::UnavailableError(
        absl::StrFormat("io_uring_register_buf_ring: %s", strerror(-rc)));
  }
  self->registered_ = true;
  const int mask = io_uring_buf_ring_mask(count);
  for (uint32_t i = 0; i < count; ++i) {
    io_uring_buf_ring_add(self->buf_ring_, self->base_ + size_t{i} * size, size,
                          static_cast<uint16_t>(i), mask, static_cast<int>(i));
  }
  io_uring_buf_ring_advance(self->buf_ring_, static_cast<int>(count));
  return self;
}

BufferRing::~BufferRing() {
  if (registered_) {
    io_uring_unregister_buf_ring(ring_, group_id_);
  }
  if (base_ != nullptr) {
    munmap(base_, base_bytes_);
  }
  if (buf_ring_ != nullptr) {
    munmap(buf_ring_, buf_ring_bytes_);
  }
}

std::span<const char> BufferRing::Take(uint16_t id, uint32_t length) {
  MOAT_CHECK(id < count_);
  MOAT_CHECK(length <= size_);
  ++lent_;
  MOAT_DCHECK(lent_ <= count_);
  return {base_ + size_t{id} * size_, length};
}

void BufferRing::Return(uint16_t id) {
  MOAT_CHECK(id < count_);
  MOAT_CHECK(lent_ > 0);
  --lent_;
  io_uring_buf_ring_add(buf_ring_, base_ + size_t{id} * size_, size_, id,
                        io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(buf_ring_, 1);
}

}  // namespace moat::reactor
