#include "runtime/cpu/sgemm_peak.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace mowe::cpu {

double measure_sgemm_gflops(double seconds) {
  using Clock = std::chrono::steady_clock;
  // Large enough that packing and threading overheads are small next to the multiply, small
  // enough (12 MB) that a calibration costs a fraction of a second.
  constexpr int n = 1024;
  std::vector<float> a(size_t(n) * n), b(size_t(n) * n), c(size_t(n) * n);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>(i % 17) * 0.01f;
    b[i] = static_cast<float>(i % 13) * 0.02f;
  }
  const double flops = 2.0 * n * n * n;
  double best = 0;
  const auto start = Clock::now();
  for (int rep = 0;; ++rep) {
    const auto t0 = Clock::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    const auto t1 = Clock::now();
    best = std::max(best, flops / std::chrono::duration<double>(t1 - t0).count() / 1e9);
    // The first product warms caches and thread pools; at least three are timed.
    if (rep >= 3 && std::chrono::duration<double>(t1 - start).count() >= seconds) break;
  }
  return best;
}

}  // namespace mowe::cpu
