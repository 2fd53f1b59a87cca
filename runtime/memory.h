// Device memory: allocators, owning Buffers (parameters, optimizer state) and the Arena that
// serves a training step's activations and scratch without calling the system allocator per op.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "runtime/tensor.h"

namespace mowe {

class DeviceAllocator {
 public:
  virtual ~DeviceAllocator() = default;
  virtual Device device() const = 0;
  virtual void* allocate(size_t bytes) = 0;  // throws Error when out of memory
  virtual void deallocate(void* ptr) = 0;
  virtual void zero(void* ptr, size_t bytes) = 0;
};

DeviceAllocator& host_allocator();  // 64-byte aligned host memory

// One owning allocation, zero-filled, released on destruction.
class Buffer {
 public:
  Buffer() = default;
  Buffer(DeviceAllocator& allocator, Shape shape, DType dtype);
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  const Tensor& tensor() const { return tensor_; }
  operator const Tensor&() const { return tensor_; }

 private:
  DeviceAllocator* allocator_ = nullptr;
  Tensor tensor_;
};

// Bump allocator over large chunks. A training step takes a mark, allocates freely and rewinds;
// chunks are kept, so from the second step on no system allocation happens.
class Arena {
 public:
  struct Mark {
    size_t chunk = 0;
    size_t offset = 0;
  };

  explicit Arena(DeviceAllocator& allocator, size_t chunk_bytes = size_t{64} << 20);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  void* alloc_bytes(size_t bytes, size_t alignment = 256);
  Tensor alloc(Shape shape, DType dtype);        // uninitialised
  Tensor alloc_zeros(Shape shape, DType dtype);  // zero-filled

  Mark mark() const { return {current_, offset_}; }
  void rewind(Mark mark);
  void reset() { rewind(Mark{}); }

  size_t bytes_in_use() const;
  size_t capacity() const;
  size_t system_allocations() const { return system_allocations_; }
  Device device() const { return allocator_.device(); }

 private:
  struct Chunk {
    char* data;
    size_t size;
  };
  DeviceAllocator& allocator_;
  size_t chunk_bytes_;
  std::vector<Chunk> chunks_;
  size_t current_ = 0;  // index of the chunk being filled
  size_t offset_ = 0;   // bytes used in that chunk
  size_t system_allocations_ = 0;
};

// Rewinds an arena when leaving a scope: ops take scratch this way.
class ArenaScope {
 public:
  explicit ArenaScope(Arena& arena) : arena_(arena), mark_(arena.mark()) {}
  ~ArenaScope() { arena_.rewind(mark_); }
  ArenaScope(const ArenaScope&) = delete;
  ArenaScope& operator=(const ArenaScope&) = delete;

 private:
  Arena& arena_;
  Arena::Mark mark_;
};

// Allocations laid back to back (64-byte aligned) in large chunks of a backing allocator, kept
// until the slab is destroyed: deallocate() does nothing. The parameter store takes the dense
// gradients from one, so that gradients registered one after another tile one range of memory
// and the data-parallel allreduce reduces them in place (comm/grad_allreduce.h) instead of
// copying them through a staging buffer every step. Must outlive every Buffer it served.
class SlabAllocator final : public DeviceAllocator {
 public:
  explicit SlabAllocator(DeviceAllocator& backing, size_t chunk_bytes = size_t{256} << 20)
      : backing_(backing), arena_(backing, chunk_bytes) {}
  Device device() const override { return backing_.device(); }
  void* allocate(size_t bytes) override { return arena_.alloc_bytes(bytes, 64); }
  void deallocate(void*) override {}
  void zero(void* ptr, size_t bytes) override { backing_.zero(ptr, bytes); }

 private:
  DeviceAllocator& backing_;
  Arena arena_;
};

}  // namespace mowe
