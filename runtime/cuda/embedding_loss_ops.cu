// Embedding gather / scatter-add and softmax cross-entropy with z-loss: the CUDA twins of
// runtime/cpu/embedding_loss_ops.cc.
//
// Ids are checked on the device: an id out of range fails a device-side assert, which the next
// CUDA check reports as cudaErrorAssert (with the failing line printed by the driver). NDEBUG is
// lifted for that reason: the check is one compare per id, and a bad id must never read or
// write outside the table.
#undef NDEBUG
#include <cassert>

#include "runtime/cuda/block_ops.cuh"
#include "runtime/cuda/kernels.h"

namespace mowe::cuda {
namespace {

// out[n,:] = table[ids[n],:], one thread per output element.
template <typename T>
__global__ void embedding_forward_kernel(const T* table, const int32_t* ids, T* out, int64_t n,
                                         int64_t c, int64_t v) {
  const int64_t total = n * c, stride = int64_t{blockDim.x} * gridDim.x;
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < total; p += stride) {
    const int32_t id = ids[p / c];
    assert(id >= 0 && id < v);
    out[p] = table[id * c + p % c];
  }
}

template <typename T>
__global__ void embedding_backward_kernel(const T* dout, const int32_t* ids, T* dtable, int64_t n,
                                          int64_t c, int64_t v) {
  const int64_t total = n * c, stride = int64_t{blockDim.x} * gridDim.x;
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < total; p += stride) {
    const int32_t id = ids[p / c];
    assert(id >= 0 && id < v);
    atomicAdd(dtable + id * c + p % c, dout[p]);
  }
}

// One block per row: lse = max + log(sum exp(x - max));
// losses = w == 0 ? 0 : w * (lse - x[target] + z * lse^2).
template <typename T>
__global__ void cross_entropy_forward_kernel(const T* logits, const int32_t* targets,
                                             const T* weights, T* losses, T* lse, LossArgs a) {
  for (int64_t r = blockIdx.x; r < a.n; r += gridDim.x) {
    const T* row = logits + r * a.v;
    T mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < a.v; j += blockDim.x) mx = MaxOp{}(mx, row[j]);
    mx = block_reduce(mx, MaxOp{}, T(-INFINITY));
    T sum = 0;
    for (int64_t j = threadIdx.x; j < a.v; j += blockDim.x) sum += exp(row[j] - mx);
    sum = block_reduce(sum, SumOp{}, T(0));
    if (threadIdx.x == 0) {
      const T l = mx + log(sum);
      const int32_t t = targets[r];
      assert(t >= 0 && t < a.v);
      const T w = weights[r];
      lse[r] = l;
      losses[r] = w == T(0) ? T(0) : w * (l - row[t] + T(a.z_loss) * l * l);
    }
  }
}

// dlogits[r,j] = g p_j (1 + 2 z lse) - g [j == target], g = loss_scale * w; rows with g == 0
// are zero. One thread per element.
template <typename T>
__global__ void cross_entropy_backward_kernel(const T* logits, const int32_t* targets,
                                              const T* weights, const T* lse, T* dlogits,
                                              LossArgs a) {
  const int64_t total = a.n * a.v, stride = int64_t{blockDim.x} * gridDim.x;
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < total; p += stride) {
    const int64_t r = p / a.v, j = p % a.v;
    const int32_t t = targets[r];
    assert(t >= 0 && t < a.v);  // as on the CPU, also for rows of weight 0
    const T g = T(a.loss_scale) * weights[r];
    if (g == T(0)) {
      dlogits[p] = T(0);
      continue;
    }
    const T l = lse[r];
    const T k = g * (T(1) + T(2) * T(a.z_loss) * l);
    const T d = k * exp(logits[p] - l);
    dlogits[p] = j == t ? d - g : d;
  }
}

}  // namespace

template <typename T>
void launch_embedding_forward(const T* table, const int32_t* ids, T* out, int64_t n, int64_t c,
                              int64_t v, cudaStream_t stream) {
  if (n * c == 0) return;
  embedding_forward_kernel<<<grid_for(n * c), kThreads, 0, stream>>>(table, ids, out, n, c, v);
}

template <typename T>
void launch_embedding_backward(const T* dout, const int32_t* ids, T* dtable, int64_t n, int64_t c,
                               int64_t v, cudaStream_t stream) {
  if (n * c == 0) return;
  embedding_backward_kernel<<<grid_for(n * c), kThreads, 0, stream>>>(dout, ids, dtable, n, c, v);
}

template <typename T>
void launch_cross_entropy_forward(const T* logits, const int32_t* targets, const T* weights,
                                  T* losses, T* lse, const LossArgs& a, cudaStream_t stream) {
  if (a.n == 0) return;
  cross_entropy_forward_kernel<<<grid_for_rows(a.n), threads_for_row(a.v), 0, stream>>>(
      logits, targets, weights, losses, lse, a);
}

template <typename T>
void launch_cross_entropy_backward(const T* logits, const int32_t* targets, const T* weights,
                                   const T* lse, T* dlogits, const LossArgs& a,
                                   cudaStream_t stream) {
  if (a.n * a.v == 0) return;
  cross_entropy_backward_kernel<<<grid_for(a.n * a.v), kThreads, 0, stream>>>(
      logits, targets, weights, lse, dlogits, a);
}

#define MOWE_INSTANTIATE(T)                                                                        \
  template void launch_embedding_forward<T>(const T*, const int32_t*, T*, int64_t, int64_t,        \
                                            int64_t, cudaStream_t);                                \
  template void launch_embedding_backward<T>(const T*, const int32_t*, T*, int64_t, int64_t,       \
                                             int64_t, cudaStream_t);                               \
  template void launch_cross_entropy_forward<T>(const T*, const int32_t*, const T*, T*, T*,        \
                                                const LossArgs&, cudaStream_t);                    \
  template void launch_cross_entropy_backward<T>(const T*, const int32_t*, const T*, const T*, T*, \
                                                 const LossArgs&, cudaStream_t);
MOWE_INSTANTIATE(float)
MOWE_INSTANTIATE(double)
#undef MOWE_INSTANTIATE

}  // namespace mowe::cuda
