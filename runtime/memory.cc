#include "runtime/memory.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <sys/mman.h>

namespace mowe {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// Transparent huge pages for large buffers unless MOWE_HUGE_PAGES=0 (docs/performance.md).
bool huge_pages_wanted() {
  static const bool wanted = [] {
    const char* v = std::getenv("MOWE_HUGE_PAGES");
    return v == nullptr || std::strcmp(v, "0") != 0;
  }();
  return wanted;
}

class HostAllocator final : public DeviceAllocator {
 public:
  Device device() const override { return Device::CPU; }
  void* allocate(size_t bytes) override {
    // Buffers of 2 MiB and more (weights, gradients, optimizer state, the step's arenas) start
    // on a huge-page boundary and ask the kernel for transparent huge pages, which it grants
    // under the default "madvise" policy only when asked: the matrix products walk these
    // buffers row by row, and 4 KiB pages cost them TLB misses (3% of a dense training step
    // on this machine's measurements, docs/benchmarks.md). Only the address is aligned, so
    // memory grows by at most the tail of one huge page per buffer.
    const bool huge = bytes >= kHugePage && huge_pages_wanted();
    void* p = nullptr;
    const size_t rounded = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    const int err = posix_memalign(&p, huge ? kHugePage : 64, rounded);
    MOWE_CHECK(err == 0 && p != nullptr, "host allocation of {} bytes failed", bytes);
#ifdef MADV_HUGEPAGE
    // Advice only: a kernel without THP refuses it, and the buffer works as before.
    if (huge) madvise(p, rounded / kHugePage * kHugePage, MADV_HUGEPAGE);
#endif
    return p;
  }
  void deallocate(void* ptr) override {
    std::free(ptr);
  }
  void zero(void* ptr, size_t bytes) override {
    std::memset(ptr, 0, bytes);
  }
};

}  // namespace

DeviceAllocator& host_allocator() {
  // Never destroyed: buffers in other static or thread-local objects may be freed after this
  // function's statics would be, at exit.
  static HostAllocator* allocator = new HostAllocator;
  return *allocator;
}

Buffer::Buffer(DeviceAllocator& allocator, Shape shape, DType dtype) : allocator_(&allocator) {
  tensor_ = Tensor(nullptr, dtype, allocator.device(), shape);
  size_t bytes = tensor_.nbytes();
  tensor_.data = allocator.allocate(bytes);
  allocator.zero(tensor_.data, bytes);
}

Buffer::Buffer(Buffer&& other) noexcept : allocator_(other.allocator_), tensor_(other.tensor_) {
  other.allocator_ = nullptr;
  other.tensor_ = Tensor();
}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    if (allocator_ && tensor_.data) allocator_->deallocate(tensor_.data);
    allocator_ = other.allocator_;
    tensor_ = other.tensor_;
    other.allocator_ = nullptr;
    other.tensor_ = Tensor();
  }
  return *this;
}

Buffer::~Buffer() {
  if (allocator_ && tensor_.data) allocator_->deallocate(tensor_.data);
}

Arena::Arena(DeviceAllocator& allocator, size_t chunk_bytes)
    : allocator_(allocator), chunk_bytes_(chunk_bytes) {}

Arena::~Arena() {
  for (Chunk& c : chunks_) allocator_.deallocate(c.data);
}

void* Arena::alloc_bytes(size_t bytes, size_t alignment) {
  MOWE_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0,
             "arena alignment {} is not a power of two", alignment);
  while (true) {
    if (current_ < chunks_.size()) {
      // Align the address, not the offset: chunks are only 64-byte aligned.
      const uintptr_t base = reinterpret_cast<uintptr_t>(chunks_[current_].data);
      const size_t start = ((base + offset_ + alignment - 1) & ~(alignment - 1)) - base;
      if (start + bytes <= chunks_[current_].size) {
        offset_ = start + bytes;
        return chunks_[current_].data + start;
      }
      // Try the next kept chunk; skipped space is reused after the next rewind.
      if (current_ + 1 < chunks_.size()) {
        ++current_;
        offset_ = 0;
        continue;
      }
    }
    size_t size = std::max(chunk_bytes_, bytes + alignment);
    chunks_.push_back({static_cast<char*>(allocator_.allocate(size)), size});
    ++system_allocations_;
    current_ = chunks_.size() - 1;
    offset_ = 0;
  }
}

Tensor Arena::alloc(Shape shape, DType dtype) {
  Tensor t(nullptr, dtype, allocator_.device(), shape);
  t.data = alloc_bytes(t.nbytes());
  return t;
}

Tensor Arena::alloc_zeros(Shape shape, DType dtype) {
  Tensor t = alloc(shape, dtype);
  allocator_.zero(t.data, t.nbytes());
  return t;
}

void Arena::rewind(Mark mark) {
  MOWE_CHECK(mark.chunk < chunks_.size() || (mark.chunk == 0 && mark.offset == 0),
             "arena rewound to a mark it never gave out");
  current_ = mark.chunk;
  offset_ = mark.offset;
}

size_t Arena::bytes_in_use() const {
  size_t used = 0;
  for (size_t i = 0; i < current_ && i < chunks_.size(); ++i) used += chunks_[i].size;
  return used + offset_;
}

size_t Arena::capacity() const {
  size_t total = 0;
  for (const Chunk& c : chunks_) total += c.size;
  return total;
}

}  // namespace mowe
