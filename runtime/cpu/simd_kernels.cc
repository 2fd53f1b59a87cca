// Selects the kernel set once per process (select_kernels).
#include "runtime/cpu/simd_kernels.h"

#include <cstdlib>
#include <cstring>

#include "runtime/check.h"

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

bool avx512_supported() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // libgcc reports AVX-512F only when the OS also saves the 512-bit registers.
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

namespace {

// The kernel set for this process: the widest the CPU supports, within MOWE_CPU_SIMD's cap (a job
// mixing CPUs must run one set on every rank).
const Kernels& select_kernels() {
  const char* cap = std::getenv("MOWE_CPU_SIMD");
  MOWE_REQUIRE(cap == nullptr || std::strcmp(cap, "avx512") == 0 || std::strcmp(cap, "avx2") == 0 ||
                   std::strcmp(cap, "sse2") == 0,
               "MOWE_CPU_SIMD={} is not an instruction set of the CPU kernels: use avx512, avx2 "
               "or sse2, or unset it to take the widest this CPU has",
               cap);
  const bool allow512 = cap == nullptr || std::strcmp(cap, "avx512") == 0;
  const bool allow2 = allow512 || std::strcmp(cap, "avx2") == 0;
  if (allow512 && avx512_supported()) return avx512_kernels();
  if (allow2 && avx2_supported()) return avx2_kernels();
  return sse2_kernels();
}

}  // namespace

const Kernels& kernels() {
  static const Kernels& selected = select_kernels();
  return selected;
}

}  // namespace mowe::cpu::simd
