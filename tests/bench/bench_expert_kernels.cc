// Expert-product kernels for buckets of many small experts, side by side on the same buffers:
//   blas         one OpenBLAS GEMM per expert group, on the caller with the BLAS threads
//   gather       expert_gather_matmul / expert_gather_weight_grad over all rows, one thread
//   xsmm         one LIBXSMM JIT kernel per group, one thread
//   blas_pool    blas, groups split over the thread pool, OpenBLAS single-threaded meanwhile
//   gather_pool  gather, groups split over the thread pool
//   xsmm_pool    xsmm, groups split over the thread pool
// Shapes: C = 256, F in {8, 32, 64, 256}, every expert receiving the same number of rows
// (1, 2, 4, 16, 64), the six products of a GELU expert (forward, input gradient and weight
// gradient, through wi [C,F] and wo [F,C]). Variants are interleaved; best of --reps; GFLOP/s.
//   build/bin/mowe_bench_expert_kernels [--reps N] [--rows R] [--width F] [--group-rows g]
#include <cblas.h>
#include <fmt/format.h>
#include <libxsmm.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/cpu/blas_kernels.h"
#include "runtime/cpu/gemm.h"
#include "runtime/cpu/thread_pool.h"

namespace {

using namespace mowe;
using Clock = std::chrono::steady_clock;

constexpr int64_t kC = 256;
// Weights per matrix stay near 64 MB: beyond the last-level cache, as in training where a step
// touches far more expert weights than the cache holds.
constexpr int64_t kWeightFloats = int64_t{16} << 20;

enum class Kind { NN, NT, TN };  // out = in W; out = in W^T; dW += in^T g

struct Product {
  const char* name;
  Kind kind;
  bool k_is_c;  // K = C, M = F; otherwise K = F, M = C
};

constexpr Product kProducts[] = {
    {"fwd wi", Kind::NN, true}, {"fwd wo", Kind::NN, false}, {"dx wo", Kind::NT, true},
    {"dx wi", Kind::NT, false}, {"dw wo", Kind::TN, false},  {"dw wi", Kind::TN, true},
};

// One case: G groups of g rows, group i holds rows [i g, (i+1) g) and uses expert i.
// in [R,K]; g_or_out [R,M]; w and dw [G,K,M] (NN, TN) or [G,M,K] (NT).
struct Problem {
  Kind kind;
  int64_t groups, rows_per_group, k, m;
  float* in;
  float* out;  // NN, NT: the output; TN: the gradient g
  float* w;    // NN, NT: the weights; TN: the weight gradient (accumulated)
  const int32_t* row_expert;
  int64_t rows() const { return groups * rows_per_group; }
  double flops() const { return 2.0 * rows() * k * m; }
};

void blas_groups(const Problem& p, int64_t g0, int64_t g1) {
  const int64_t n = p.rows_per_group, k = p.k, m = p.m;
  for (int64_t i = g0; i < g1; ++i) {
    const int64_t r = i * n;
    float* w = p.w + i * k * m;
    switch (p.kind) {
      case Kind::NN:
        cpu::gemm(false, false, n, m, k, 1.f, p.in + r * k, k, w, m, 0.f, p.out + r * m, m);
        break;
      case Kind::NT:
        cpu::gemm(false, true, n, m, k, 1.f, p.in + r * k, k, w, k, 0.f, p.out + r * m, m);
        break;
      case Kind::TN:
        cpu::gemm(true, false, k, m, n, 1.f, p.in + r * k, k, p.out + r * m, m, 1.f, w, m);
        break;
    }
  }
}

void gather_groups(const Problem& p, int64_t g0, int64_t g1) {
  const int64_t r0 = g0 * p.rows_per_group, r1 = g1 * p.rows_per_group;
  const Context ctx{Device::CPU, nullptr, nullptr};
  const Tensor in(p.in + r0 * p.k, DType::F32, Device::CPU, {r1 - r0, p.k});
  const Tensor out(p.out + r0 * p.m, DType::F32, Device::CPU, {r1 - r0, p.m});
  const Tensor expert(const_cast<int32_t*>(p.row_expert + r0), DType::I32, Device::CPU, {r1 - r0});
  const Shape ws = p.kind == Kind::NT ? Shape{p.groups, p.m, p.k} : Shape{p.groups, p.k, p.m};
  const Tensor w(p.w, DType::F32, Device::CPU, ws);
  if (p.kind == Kind::TN) {
    cpu_backend().expert_gather_weight_grad(ctx, in, out, expert, w);
  } else {
    cpu_backend().expert_gather_matmul(ctx, in, w, expert, out, p.kind == Kind::NT, 0.f);
  }
}

// LIBXSMM is column-major: a row-major [a,b] matrix is its column-major [b,a] transpose.
//   NN: out^T [M,n] = W^T [M,K] in^T [K,n]      -> xsmm(m=M, n=rows, k=K), no flags
//   NT: out^T [M,n] = W [M,K] in^T             -> needs TRANS_A, which 1.17's JIT refuses: the
//       expert is transposed into a scratch [K,M] first, then NN
//   TN: dW^T [M,K] += g^T [M,n] in [n,K]        -> xsmm(m=M, n=K, k=rows), TRANS_B, beta 1
libxsmm_smmfunction xsmm_kernel(Kind kind, int64_t rows, int64_t k, int64_t m) {
  const float alpha = 1, beta = kind == Kind::TN ? 1.f : 0.f;
  const int flags = kind == Kind::TN ? LIBXSMM_GEMM_FLAG_TRANS_B : LIBXSMM_GEMM_FLAG_NONE;
  const libxsmm_blasint lda = m, ldb = kind == Kind::TN ? k : k, ldc = m;
  if (kind == Kind::TN)
    return libxsmm_smmdispatch(m, k, rows, &lda, &ldb, &ldc, &alpha, &beta, &flags, nullptr);
  return libxsmm_smmdispatch(m, rows, k, &lda, &ldb, &ldc, &alpha, &beta, &flags, nullptr);
}

void xsmm_groups(const Problem& p, int64_t g0, int64_t g1) {
  const int64_t n = p.rows_per_group, k = p.k, m = p.m;
  const libxsmm_smmfunction f = xsmm_kernel(p.kind, n, k, m);
  thread_local std::vector<float> wt;
  if (p.kind == Kind::NT) wt.resize(k * m);
  for (int64_t i = g0; i < g1; ++i) {
    const int64_t r = i * n;
    float* w = p.w + i * k * m;
    switch (p.kind) {
      case Kind::NN:
        f(w, p.in + r * k, p.out + r * m);
        break;
      case Kind::NT:
        libxsmm_otrans(wt.data(), w, sizeof(float), k, m, k, m);
        f(wt.data(), p.in + r * k, p.out + r * m);
        break;
      case Kind::TN:
        f(p.out + r * m, p.in + r * k, w);
        break;
    }
  }
}

// Groups per pool task: enough work (~2^20 flops) to pay the task's cost.
int64_t grain(const Problem& p) {
  return std::max<int64_t>(1, (int64_t{1} << 20) / (2 * p.rows_per_group * p.k * p.m));
}

using Variant = void (*)(const Problem&);
struct NamedVariant {
  const char* name;
  Variant run;
};

const NamedVariant kVariants[] = {
    {"blas", [](const Problem& p) { blas_groups(p, 0, p.groups); }},
    {"gather", [](const Problem& p) { gather_groups(p, 0, p.groups); }},
    {"xsmm", [](const Problem& p) { xsmm_groups(p, 0, p.groups); }},
    {"blas_pool",
     [](const Problem& p) {
       const int threads = openblas_get_num_threads();
       openblas_set_num_threads(1);
       cpu::parallel_for(p.groups, grain(p), [&](int64_t b, int64_t e) { blas_groups(p, b, e); });
       openblas_set_num_threads(threads);
     }},
    {"gather_pool",
     [](const Problem& p) {
       cpu::parallel_for(p.groups, grain(p), [&](int64_t b, int64_t e) { gather_groups(p, b, e); });
     }},
    {"xsmm_pool",
     [](const Problem& p) {
       cpu::parallel_for(p.groups, grain(p), [&](int64_t b, int64_t e) { xsmm_groups(p, b, e); });
     }},
};
constexpr int kNumVariants = sizeof(kVariants) / sizeof(kVariants[0]);

}  // namespace

int main(int argc, char** argv) {
  // The OpenBLAS kernels the trainer runs (runtime/cpu/blas_kernels.h).
  mowe::cpu::restart_with_better_blas_kernels(argv);
  int reps = 7;
  int64_t target_rows = 4096;
  std::vector<int64_t> widths = {8, 32, 64, 256}, group_rows = {1, 2, 4, 16, 64};
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--width") == 0 && i + 1 < argc) widths = {std::stoll(argv[++i])};
    if (std::strcmp(argv[i], "--group-rows") == 0 && i + 1 < argc)
      group_rows = {std::stoll(argv[++i])};
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::stoi(argv[++i]);
    if (std::strcmp(argv[i], "--rows") == 0 && i + 1 < argc) target_rows = std::stoll(argv[++i]);
  }
  libxsmm_init();
  fmt::print(
      "# expert products, f32, C = {}, {} OpenBLAS threads, pool of {}, LIBXSMM target {}, "
      "best of {}; GFLOP/s (max relative difference to blas)\n",
      kC, openblas_get_num_threads(), cpu::pool_threads(), libxsmm_get_target_arch(), reps);
  fmt::print("{:>4} {:>5} {:>6} {:>7}", "F", "rows", "groups", "product");
  for (const NamedVariant& v : kVariants) fmt::print(" {:>12}", v.name);
  fmt::print("\n");
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int64_t f : widths) {
    for (int64_t g : group_rows) {
      const int64_t groups =
          std::max<int64_t>(1, std::min(target_rows / g, kWeightFloats / (kC * f)));
      const int64_t rows = groups * g;
      std::vector<float> in(rows * kC), out(rows * kC), ref(rows * kC), w(groups * kC * f),
          w0(groups * kC * f);
      std::vector<int32_t> row_expert(rows);
      for (int64_t r = 0; r < rows; ++r) row_expert[r] = static_cast<int32_t>(r / g);
      for (float& x : in) x = u(rng);
      for (float& x : w0) x = u(rng);
      for (const Product& pr : kProducts) {
        Problem p{pr.kind,   groups,     g,        pr.k_is_c ? kC : f, pr.k_is_c ? f : kC,
                  in.data(), out.data(), w.data(), row_expert.data()};
        std::vector<double> best(kNumVariants, 0), diff(kNumVariants, 0);
        const std::vector<float>& result = pr.kind == Kind::TN ? w : out;
        for (int rep = 0; rep <= reps; ++rep) {
          for (int v = 0; v < kNumVariants; ++v) {
            // TN accumulates into w from a fixed start; NN/NT overwrite out (in-place g for TN).
            if (pr.kind == Kind::TN) {
              std::copy(w0.begin(), w0.end(), w.begin());
              for (int64_t i = 0; i < rows * p.m; ++i) out[i] = in[(i * 7) % (rows * kC)];
            } else {
              std::copy(w0.begin(), w0.end(), w.begin());
            }
            const auto t0 = Clock::now();
            kVariants[v].run(p);
            const double s = std::chrono::duration<double>(Clock::now() - t0).count();
            if (rep > 0) best[v] = std::max(best[v], p.flops() / s * 1e-9);
            if (rep == 0) {
              const size_t n = pr.kind == Kind::TN ? w.size() : size_t(rows * p.m);
              if (v == 0) ref.assign(result.begin(), result.begin() + n);
              double d = 0, scale = 0;
              for (size_t i = 0; i < n; ++i) {
                d = std::max(d, double(std::fabs(result[i] - ref[i])));
                scale = std::max(scale, double(std::fabs(ref[i])));
              }
              diff[v] = d / std::max(scale, 1e-30);
            }
          }
        }
        fmt::print("{:>4} {:>5} {:>6} {:>7}", f, g, groups, pr.name);
        for (int v = 0; v < kNumVariants; ++v) fmt::print(" {:>5.1f} ({:.0e})", best[v], diff[v]);
        fmt::print("\n");
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
