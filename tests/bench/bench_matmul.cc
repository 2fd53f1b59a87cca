// Matmul micro-benchmark: the backend's matmul against raw cblas_sgemm on the same shapes and
// buffers, interleaved (alternating which goes first) so both see the same machine state. Prints
// GFLOP/s and the wrapper cost.
//   build/bin/mowe_bench_matmul [--reps N]
#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/cpu/blas_kernels.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Case {
  int64_t m, n, k;
  bool ta, tb;
};

}  // namespace

int main(int argc, char** argv) {
  // The OpenBLAS kernels the trainer runs (runtime/cpu/blas_kernels.h).
  mowe::cpu::restart_with_better_blas_kernels(argv);
  int reps = 20;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::stoi(argv[++i]);
  const std::vector<Case> cases = {{512, 512, 512, false, false}, {512, 512, 512, false, true},
                                   {128, 128, 128, false, false}, {2048, 512, 512, false, false},
                                   {4096, 128, 512, true, false}, {1024, 2048, 512, false, true}};
  fmt::print(
      "# matmul: backend wrapper vs raw cblas_sgemm, fp32, {} threads, best of {} reps\n"
      "# {}\n",
      openblas_get_num_threads(), reps, mowe::cpu::blas_kernel_report());
  fmt::print("{:>6} {:>6} {:>6} {:>3} {:>3} {:>12} {:>12} {:>9}\n", "M", "N", "K", "tA", "tB",
             "raw GF/s", "wrap GF/s", "overhead");
  mowe::Backend& backend = mowe::cpu_backend();
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1, 1);
  for (const Case& c : cases) {
    std::vector<float> a(c.m * c.k), b(c.k * c.n), out(c.m * c.n);
    for (float& x : a) x = dist(rng);
    for (float& x : b) x = dist(rng);
    using mowe::Shape;
    mowe::Tensor ta(a.data(), mowe::DType::F32, mowe::Device::CPU,
                    c.ta ? Shape{c.k, c.m} : Shape{c.m, c.k});
    mowe::Tensor tb(b.data(), mowe::DType::F32, mowe::Device::CPU,
                    c.tb ? Shape{c.n, c.k} : Shape{c.k, c.n});
    mowe::Tensor tc(out.data(), mowe::DType::F32, mowe::Device::CPU, Shape{c.m, c.n});
    const int lda = c.ta ? c.m : c.k, ldb = c.tb ? c.k : c.n;
    auto raw = [&] {
      cblas_sgemm(CblasRowMajor, c.ta ? CblasTrans : CblasNoTrans, c.tb ? CblasTrans : CblasNoTrans,
                  c.m, c.n, c.k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f, out.data(), c.n);
    };
    auto wrapped = [&] { backend.matmul({}, ta, tb, tc, c.ta, c.tb); };
    raw();
    wrapped();  // warm-up: thread pool, caches
    double best_raw = 1e30, best_wrap = 1e30;
    const auto timed = [](auto& product, double& best) {
      const auto t0 = Clock::now();
      product();
      best = std::min(best, seconds_since(t0));
    };
    // Each goes first every other rep, so neither always runs on the caches the other left.
    for (int r = 0; r < reps; ++r) {
      if (r % 2 == 0) {
        timed(raw, best_raw);
        timed(wrapped, best_wrap);
      } else {
        timed(wrapped, best_wrap);
        timed(raw, best_raw);
      }
    }
    const double flops = 2.0 * c.m * c.n * c.k;
    fmt::print("{:>6} {:>6} {:>6} {:>3} {:>3} {:>12.1f} {:>12.1f} {:>8.2f}%\n", c.m, c.n, c.k,
               c.ta ? "T" : "N", c.tb ? "T" : "N", flops / best_raw * 1e-9,
               flops / best_wrap * 1e-9, (best_wrap / best_raw - 1) * 100);
  }
  return 0;
}
