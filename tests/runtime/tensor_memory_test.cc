#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "runtime/memory.h"
#include "tests/util/expect_error.h"

namespace mowe {
namespace {

using testing::expect_error;

TEST(Shape, NumelStrAndWithDim) {
  Shape s{2, 3, 4};
  EXPECT_EQ(s.ndim(), 3);
  EXPECT_EQ(s.numel(), 24);
  EXPECT_EQ(s[-1], 4);
  EXPECT_EQ(s.str(), "[2, 3, 4]");
  EXPECT_EQ(s.with_dim(0, 5), (Shape{5, 3, 4}));
  EXPECT_EQ(Shape{}.numel(), 1);
  EXPECT_THROW((Shape{1, 2, 3, 4, 5, 6, 7}), Error);
}

TEST(Tensor, ReshapeRowsSliceAndTypedAccess) {
  Buffer buf(host_allocator(), {4, 3}, DType::F32);
  const Tensor& t = buf.tensor();
  for (int i = 0; i < 12; ++i) t.ptr<float>()[i] = static_cast<float>(i);
  EXPECT_EQ(t.rows(), 4);
  EXPECT_EQ(t.cols(), 3);
  Tensor slice = t.rows_slice(1, 3);
  EXPECT_EQ(slice.shape, (Shape{2, 3}));
  EXPECT_EQ(slice.ptr<float>()[0], 3.0f);
  EXPECT_EQ(t.reshape({2, 6}).shape, (Shape{2, 6}));
  EXPECT_THROW(t.reshape({5, 2}), Error);
  EXPECT_THROW(t.rows_slice(3, 5), Error);
  expect_error([&] { t.ptr<double>(); }, {"tensor of f32 accessed as f64"});
}

TEST(Buffer, ZeroFilledAndMovable) {
  Buffer a(host_allocator(), {5}, DType::F64);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(a.tensor().ptr<double>()[i], 0.0);
  void* data = a.tensor().data;
  Buffer b = std::move(a);
  EXPECT_EQ(b.tensor().data, data);
  EXPECT_TRUE(a.tensor().empty());
}

// The flags of the mapping that holds `p`, from /proc/self/smaps ("" when not found).
std::string vm_flags_of(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  const auto addr = reinterpret_cast<uintptr_t>(p);
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = lo <= addr && addr < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

TEST(HostAllocator, LargeBuffersStartOnAHugePageAndAskForTransparentHugePages) {
  if (std::getenv("MOWE_HUGE_PAGES") != nullptr) GTEST_SKIP() << "MOWE_HUGE_PAGES is set";
  DeviceAllocator& a = host_allocator();
  void* small = a.allocate(1000);
  void* large = a.allocate((size_t{5} << 20) + 8);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(small) % 64, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(large) % (size_t{2} << 20), 0u);
  std::ifstream thp("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string policy;
  std::getline(thp, policy);
  if (!policy.empty() && policy.find("[never]") == std::string::npos) {
    // MADV_HUGEPAGE marks the mapping "hg".
    EXPECT_NE(vm_flags_of(large).find(" hg"), std::string::npos) << vm_flags_of(large);
  }
  a.zero(large, (size_t{5} << 20) + 8);
  a.deallocate(small);
  a.deallocate(large);
}

TEST(Arena, AlignsAndRewinds) {
  Arena arena(host_allocator(), 1 << 16);
  void* p1 = arena.alloc_bytes(10, 256);
  void* p2 = arena.alloc_bytes(10, 256);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p1) % 256, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p2) % 256, 0u);
  EXPECT_EQ(static_cast<char*>(p2) - static_cast<char*>(p1), 256);
  Arena::Mark m = arena.mark();
  void* p3 = arena.alloc_bytes(100);
  arena.rewind(m);
  EXPECT_EQ(arena.alloc_bytes(100), p3);  // rewinding hands out the same memory again
  EXPECT_THROW(arena.alloc_bytes(8, 3), Error);
}

// The property the trainer relies on: after one step, the same sequence of allocations is served
// without touching the system allocator, including requests larger than a chunk.
TEST(Arena, SteadyStateMakesNoSystemAllocations) {
  Arena arena(host_allocator(), 4096);
  auto step = [&] {
    ArenaScope scope(arena);
    for (int i = 0; i < 50; ++i) arena.alloc({100}, DType::F32);
    arena.alloc({5000}, DType::F32);  // larger than a chunk
    Tensor z = arena.alloc_zeros({16}, DType::F64);
    for (int i = 0; i < 16; ++i) EXPECT_EQ(z.ptr<double>()[i], 0.0);
  };
  step();
  const size_t after_first = arena.system_allocations();
  EXPECT_GT(after_first, 1u);
  for (int s = 0; s < 5; ++s) step();
  EXPECT_EQ(arena.system_allocations(), after_first);
  EXPECT_EQ(arena.bytes_in_use(), 0u);
}

}  // namespace
}  // namespace mowe
