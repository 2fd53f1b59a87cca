// The row-gathered expert products on the CPU (runtime/backend_ops.def, expert_gather_matmul):
// the lookup-table path for experts that receive very few tokens, one pass over the rows with
// each row multiplied by its own expert's weights.
#include "runtime/cpu/cpu_backend.h"
#include "runtime/op_checks.h"

namespace mowe::cpu {
namespace {

// The block kernels are plain loops: built for AVX-512 and AVX2 as well as the x86-64 baseline,
// the loader picking the best the CPU runs (GCC's function multi-versioning); dot and axpy are
// inlined into each. The file is built with -ffp-contract=off, so no clone fuses a multiply and an
// add: every clone rounds exactly as the baseline one, and results do not depend on the CPU.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MOWE_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define MOWE_VECTOR_CLONES
#endif

// Eight independent partial sums: without them the compiler may not reorder a float sum, so the
// loop would be one long dependency chain.
template <typename T>
[[gnu::always_inline]] inline T dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  T s[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) s[j] += a[i + j] * b[i + j];
  T total = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

// y[N] = a * x + (accumulate ? y : 0), in blocks of 8 for the same reason as dot: GCC's default
// cost model at -O2 vectorises straight-line blocks but not loops with a runtime trip count.
template <typename T>
[[gnu::always_inline]] inline void axpy(T a, const T* __restrict x, T* __restrict y, int64_t n,
                                        bool accumulate = true) {
  int64_t i = 0;
  if (accumulate) {
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) y[i + j] += a * x[i + j];
    for (; i < n; ++i) y[i] += a * x[i];
  } else {
    for (; i + 8 <= n; i += 8)
      for (int j = 0; j < 8; ++j) y[i + j] = a * x[i + j];
    for (; i < n; ++i) y[i] = a * x[i];
  }
}

// The kernels below take a block of nb consecutive rows that share one expert, so that the
// expert's weights are read from memory once per block and reused from L1 for the other rows
// (with one row per block, each row would stream the whole expert again).
constexpr int kMaxBlock = 8;

// o[r] (+)= x[r] @ W for the nb rows: x [nb,K], W [K,M], o [nb,M].
template <typename T>
MOWE_VECTOR_CLONES void block_times(const T* x, const T* w, T* o, int nb, int64_t k, int64_t m,
                                    bool accumulate) {
  if (m == 1) {  // one output per row: dot products over K
    for (int r = 0; r < nb; ++r) o[r] = (accumulate ? o[r] : T(0)) + dot(x + r * k, w, k);
    return;
  }
  for (int64_t i = 0; i < k; ++i)
    for (int r = 0; r < nb; ++r) axpy(x[r * k + i], w + i * m, o + r * m, m, accumulate || i > 0);
}

// o[r] (+)= x[r] @ W^T for the nb rows: x [nb,K], W [M,K], o [nb,M]. Dot products over the
// contiguous rows of W, or, when those are too short to pay (K < 8: tiny experts), updates
// along M.
template <typename T>
MOWE_VECTOR_CLONES void block_times_transposed(const T* x, const T* w, T* o, int nb, int64_t k,
                                               int64_t m, bool accumulate) {
  if (k >= 8) {
    for (int64_t j = 0; j < m; ++j)
      for (int r = 0; r < nb; ++r)
        o[r * m + j] = (accumulate ? o[r * m + j] : T(0)) + dot(x + r * k, w + j * k, k);
    return;
  }
  for (int r = 0; r < nb; ++r) {
    for (int64_t i = 0; i < k; ++i) {
      // W^T row i is strided; with K < 8 the whole expert is a few cache lines anyway.
      T* orow = o + r * m;
      const T xi = x[r * k + i];
      const bool acc = accumulate || i > 0;
      for (int64_t j = 0; j < m; ++j) orow[j] = (acc ? orow[j] : T(0)) + xi * w[j * k + i];
    }
  }
}

// dW += x^T g for the nb rows: x [nb,K], g [nb,M], dW [K,M].
template <typename T>
MOWE_VECTOR_CLONES void block_outer_accumulate(const T* x, const T* g, T* dw, int nb, int64_t k,
                                               int64_t m) {
  if (m == 1) {  // one column: vector updates along K
    for (int r = 0; r < nb; ++r) axpy(g[r], x + r * k, dw, k);
    return;
  }
  for (int64_t i = 0; i < k; ++i)
    for (int r = 0; r < nb; ++r) axpy(x[r * k + i], g + r * m, dw + i * m, m);
}

// Calls f(first_row, rows) for each block of at most kMaxBlock consecutive rows with one expert.
template <typename F>
void for_each_block(const int32_t* expert, int64_t rows, F&& f) {
  for (int64_t r = 0; r < rows;) {
    int nb = 1;
    while (nb < kMaxBlock && r + nb < rows && expert[r + nb] == expert[r]) ++nb;
    f(r, nb);
    r += nb;
  }
}

// Expert ids are in host memory here: checked, as embedding ids are.
void check_expert_ids(const char* op, const Tensor& expert, int64_t experts) {
  const int32_t* e = expert.ptr<int32_t>();
  for (int64_t r = 0; r < expert.numel(); ++r)
    MOWE_CHECK(e[r] >= 0 && e[r] < experts, "{}: expert {} of row {} is outside [0, {})", op,
               e[r], r, experts);
}

}  // namespace

void CpuBackend::expert_gather_matmul(const Context&, const Tensor& x, const Tensor& w,
                                      const Tensor& expert, const Tensor& out, bool trans_w,
                                      float beta) {
  const char* op = "expert_gather_matmul";
  for (const Tensor* t : {&x, &w, &expert, &out}) check_cpu(op, *t);
  const ExpertGatherDims d = check_expert_gather_matmul(x, w, expert, out, trans_w, beta);
  check_expert_ids(op, expert, d.experts);
  visit_dtype(Device::CPU, op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int32_t* e = expert.ptr<int32_t>();
    const T* px = x.ptr<T>();
    const T* pw = w.ptr<T>();
    T* po = out.ptr<T>();
    for_each_block(e, d.rows, [&](int64_t r, int nb) {
      const T* we = pw + e[r] * d.k * d.m;
      if (trans_w) {
        block_times_transposed(px + r * d.k, we, po + r * d.m, nb, d.k, d.m, beta != 0.0f);
      } else {
        block_times(px + r * d.k, we, po + r * d.m, nb, d.k, d.m, beta != 0.0f);
      }
    });
  });
}

void CpuBackend::expert_gather_weight_grad(const Context&, const Tensor& x, const Tensor& g,
                                           const Tensor& expert, const Tensor& dw) {
  const char* op = "expert_gather_weight_grad";
  for (const Tensor* t : {&x, &g, &expert, &dw}) check_cpu(op, *t);
  const ExpertGatherDims d = check_expert_gather_weight_grad(x, g, expert, dw);
  check_expert_ids(op, expert, d.experts);
  visit_dtype(Device::CPU, op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int32_t* e = expert.ptr<int32_t>();
    for_each_block(e, d.rows, [&](int64_t r, int nb) {
      block_outer_accumulate(x.ptr<T>() + r * d.k, g.ptr<T>() + r * d.m,
                             dw.ptr<T>() + e[r] * d.k * d.m, nb, d.k, d.m);
    });
  });
}

}  // namespace mowe::cpu
