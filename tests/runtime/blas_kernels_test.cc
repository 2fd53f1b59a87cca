// The kernel-set choice against the CPU's flags as the kernel reports them (/proc/cpuinfo), an
// independent reading of what GCC's CPU checks see.
#include "runtime/cpu/blas_kernels.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

namespace mowe::cpu {
namespace {

std::set<std::string> cpu_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::set<std::string> flags;
    for (std::string w; words >> w;) flags.insert(w);
    return flags;
  }
  return {};
}

bool generic(const std::string& set) {
  for (const char* g :
       {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Sandybridge"})
    if (set == g) return true;
  return false;
}

// The set a restart would choose: only where OpenBLAS fell back, the best this CPU runs.
TEST(BlasKernels, BetterSetFollowsTheCpuFlags) {
  const std::set<std::string> f = cpu_flags();
  if (f.empty()) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  auto has = [&](const char* flag) { return f.count(flag) > 0; };
  std::string expected;
  if (generic(blas_kernel_set())) {
    if (has("avx512f") && has("avx512bw") && has("avx512dq") && has("avx512vl") && has("avx512cd"))
      expected = "SkylakeX";
    else if (has("avx2") && has("fma"))
      expected = "Haswell";
  }
  EXPECT_EQ(better_blas_kernel_set(), expected) << "OpenBLAS loaded " << blas_kernel_set();
}

// This test binary never restarts itself: the report says what runs and what was left unused.
TEST(BlasKernels, ReportSaysWhichSetRunsAndWhy) {
  const std::string set = blas_kernel_set();
  setenv("OPENBLAS_CORETYPE", set.c_str(), 1);
  EXPECT_EQ(blas_kernel_report(),
            "OpenBLAS kernels: " + set + " (OPENBLAS_CORETYPE=" + set + " in the environment)");
  EXPECT_FALSE(blas_kernels_fall_short());  // the user's choice is never second-guessed
  unsetenv("OPENBLAS_CORETYPE");
  setenv("MOWE_KEEP_BLAS_KERNELS", "1", 1);
  const std::string better = better_blas_kernel_set();
  if (better.empty()) {
    EXPECT_EQ(blas_kernel_report(), "OpenBLAS kernels: " + set + " (OpenBLAS's choice)");
    EXPECT_FALSE(blas_kernels_fall_short());
  } else {
    EXPECT_EQ(blas_kernel_report(),
              "OpenBLAS kernels: " + set + ", a generic set, though this CPU runs the faster " +
                  better + " set (MOWE_KEEP_BLAS_KERNELS is set); set OPENBLAS_CORETYPE=" + better +
                  " to use it");
    EXPECT_TRUE(blas_kernels_fall_short());
  }
  unsetenv("MOWE_KEEP_BLAS_KERNELS");
}

}  // namespace
}  // namespace mowe::cpu
