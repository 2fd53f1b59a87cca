// Expert products gathered by row: the CUDA twins of runtime/cpu/expert_gather_ops.cc. The
// simplest correct form, one thread per output element (and an atomic add per product for the
// weight gradient, so its sums are not reproducible bit for bit between runs); grouped GEMMs
// replace them for speed. Expert ids are checked on the device, as embedding ids are.
#undef NDEBUG
#include <cassert>

#include "runtime/cuda/for_each.cuh"
#include "runtime/cuda/kernels.h"

namespace mowe::cuda {
namespace {

// out[r,j] = sum_i x[r,i] w[e][i,j] (w[e][j,i] when transposed) + beta out[r,j].
template <typename T>
struct GatherTimes {
  const T* x;
  const T* w;
  const int32_t* expert;
  T* out;
  ExpertGatherArgs a;
  __device__ void operator()(int64_t p) const {
    const int64_t r = p / a.m, j = p % a.m;
    const int32_t e = expert[r];
    assert(e >= 0 && e < a.experts);
    const T* we = w + e * a.k * a.m;
    T s = 0;
    for (int64_t i = 0; i < a.k; ++i)
      s += x[r * a.k + i] * (a.trans_w ? we[j * a.k + i] : we[i * a.m + j]);
    out[p] = a.beta != 0.0f ? out[p] + s : s;
  }
};

// dw[e][i,j] += x[r,i] g[r,j] for every row r of expert e.
template <typename T>
struct GatherOuter {
  const T* x;
  const T* g;
  const int32_t* expert;
  T* dw;
  ExpertGatherArgs a;
  __device__ void operator()(int64_t p) const {
    const int64_t r = p / (a.k * a.m), ij = p % (a.k * a.m), i = ij / a.m, j = ij % a.m;
    const int32_t e = expert[r];
    assert(e >= 0 && e < a.experts);
    atomicAdd(dw + e * a.k * a.m + ij, x[r * a.k + i] * g[r * a.m + j]);
  }
};

}  // namespace

template <typename T>
void launch_expert_gather_matmul(const T* x, const T* w, const int32_t* expert, T* out,
                                 const ExpertGatherArgs& a, cudaStream_t stream) {
  for_each(a.rows * a.m, stream, GatherTimes<T>{x, w, expert, out, a});
}

template <typename T>
void launch_expert_gather_weight_grad(const T* x, const T* g, const int32_t* expert, T* dw,
                                      const ExpertGatherArgs& a, cudaStream_t stream) {
  for_each(a.rows * a.k * a.m, stream, GatherOuter<T>{x, g, expert, dw, a});
}

#define MOWE_INSTANTIATE(T)                                                                 \
  template void launch_expert_gather_matmul<T>(const T*, const T*, const int32_t*, T*,      \
                                               const ExpertGatherArgs&, cudaStream_t);      \
  template void launch_expert_gather_weight_grad<T>(const T*, const T*, const int32_t*, T*, \
                                                    const ExpertGatherArgs&, cudaStream_t);
MOWE_INSTANTIATE(float)
MOWE_INSTANTIATE(double)
#undef MOWE_INSTANTIATE

}  // namespace mowe::cuda
