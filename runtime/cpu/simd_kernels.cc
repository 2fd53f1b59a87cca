// Chooses the kernel set once per process.
#include "runtime/cpu/simd_kernels.h"

#include <cstdlib>
#include <cstring>

namespace mowe::cpu::simd {

bool avx2_supported() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // libgcc also checks that the OS saves the AVX registers.
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

const Kernels& kernels() {
  static const Kernels& chosen = []() -> const Kernels& {
    const char* forced = std::getenv("MOWE_CPU_SIMD");
    if (forced != nullptr && std::strcmp(forced, "sse2") == 0) return sse2_kernels();
    return avx2_supported() ? avx2_kernels() : sse2_kernels();
  }();
  return chosen;
}

}  // namespace mowe::cpu::simd
