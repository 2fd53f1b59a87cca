// T5 relative position bias and the non-GEMM parts of attention (bias + mask + softmax rows, and
// their backward): the CUDA twins of runtime/cpu/attention_ops.cc. The products over heads are
// cuBLAS calls made from attention_ops.cc.
#include "runtime/cuda/block_ops.cuh"
#include "runtime/cuda/kernels.h"
#include "runtime/math.h"

namespace mowe::cuda {
namespace {

__device__ int bucket_of(int64_t i, int64_t j, const BiasDims& d) {
  return math::relative_position_bucket(static_cast<int>(j - i), d.bidirectional,
                                        static_cast<int>(d.buckets), d.max_distance);
}

// out[h,i,j] = table[bucket(j - i), h], one thread per output element.
template <typename T>
__global__ void position_bias_forward_kernel(const T* table, T* out, BiasDims d) {
  const int64_t n = d.heads * d.t * d.s, stride = int64_t{blockDim.x} * gridDim.x;
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < n; p += stride) {
    const int64_t h = p / (d.t * d.s), i = p / d.s % d.t, j = p % d.s;
    out[p] = table[bucket_of(i, j, d) * d.heads + h];
  }
}

// Many (i, j) share a bucket, so a block first sums into a copy of dtable in shared memory and
// then adds that copy to dtable: one global atomic per table entry and block. Tables too large
// for shared memory (kShared false) go straight to global atomics.
template <typename T, bool kShared>
__global__ void position_bias_backward_kernel(const T* dout, T* dtable, BiasDims d) {
  extern __shared__ __align__(sizeof(double)) unsigned char smem[];
  const int64_t entries = d.buckets * d.heads;
  T* acc = kShared ? reinterpret_cast<T*>(smem) : dtable;
  if (kShared) {
    for (int64_t e = threadIdx.x; e < entries; e += blockDim.x) acc[e] = T(0);
    __syncthreads();
  }
  const int64_t n = d.t * d.s, stride = int64_t{blockDim.x} * gridDim.x;
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < n; p += stride) {
    const int64_t i = p / d.s, j = p % d.s;
    T* row = acc + bucket_of(i, j, d) * d.heads;
    for (int64_t h = 0; h < d.heads; ++h) atomicAdd(row + h, dout[h * n + p]);
  }
  if (kShared) {
    __syncthreads();
    for (int64_t e = threadIdx.x; e < entries; e += blockDim.x) atomicAdd(dtable + e, acc[e]);
  }
}

// One block per row (b, h, i) of scores [B,H,T,S]: scores + bias, + mask_value where masked,
// then softmax. The two additions are separate, as on the CPU.
template <typename T>
__global__ void attention_softmax_kernel(T* scores, const T* bias, const int32_t* key_valid,
                                         ScoresDims d, bool causal, T mask_value) {
  const int64_t rows = d.b * d.h * d.t;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t b = r / (d.h * d.t), h = r / d.t % d.h, i = r % d.t;
    T* row = scores + r * d.s;
    for (int64_t j = threadIdx.x; j < d.s; j += blockDim.x) {
      T v = row[j];
      if (bias != nullptr) v += bias[(h * d.t + i) * d.s + j];
      const bool masked =
          (causal && j > i) || (key_valid != nullptr && key_valid[b * d.s + j] == 0);
      if (masked) v += mask_value;
      row[j] = v;
    }
    softmax_row(row, row, d.s);
  }
}

// One block per row of ds [H,T,S] for one batch entry. Batch entries run one after another on
// the stream, so each dbias element has a single writer at a time: no atomics, fixed order.
template <typename T>
__global__ void attention_softmax_backward_kernel(const T* probs, T* ds, T* dbias, int64_t rows,
                                                  int64_t s) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    softmax_row_backward(probs + r * s, ds + r * s, ds + r * s, s);
    if (dbias != nullptr) {
      for (int64_t j = threadIdx.x; j < s; j += blockDim.x) dbias[r * s + j] += ds[r * s + j];
    }
  }
}

}  // namespace

template <typename T>
void launch_position_bias_forward(const T* table, T* out, const BiasDims& d, cudaStream_t stream) {
  const int64_t n = d.heads * d.t * d.s;
  if (n == 0) return;
  position_bias_forward_kernel<<<grid_for(n), kThreads, 0, stream>>>(table, out, d);
}

template <typename T>
void launch_position_bias_backward(const T* dout, T* dtable, const BiasDims& d,
                                   cudaStream_t stream) {
  const int64_t n = d.t * d.s;
  if (n == 0 || d.heads == 0) return;
  // Few blocks: each flushes the whole table once.
  const unsigned blocks = grid_for(n) < 128 ? grid_for(n) : 128;
  const size_t table_bytes = static_cast<size_t>(d.buckets * d.heads) * sizeof(T);
  if (table_bytes <= 48 * 1024) {  // the default limit on dynamic shared memory per block
    position_bias_backward_kernel<T, true>
        <<<blocks, kThreads, table_bytes, stream>>>(dout, dtable, d);
  } else {
    position_bias_backward_kernel<T, false><<<blocks, kThreads, 0, stream>>>(dout, dtable, d);
  }
}

template <typename T>
void launch_attention_softmax(T* scores, const T* bias, const int32_t* key_valid,
                              const ScoresDims& d, bool causal, T mask_value, cudaStream_t stream) {
  const int64_t rows = d.b * d.h * d.t;
  if (rows == 0 || d.s == 0) return;
  attention_softmax_kernel<<<grid_for_rows(rows), threads_for_row(d.s), 0, stream>>>(
      scores, bias, key_valid, d, causal, mask_value);
}

template <typename T>
void launch_attention_softmax_backward(const T* probs, T* ds, T* dbias, int64_t rows, int64_t s,
                                       cudaStream_t stream) {
  if (rows == 0 || s == 0) return;
  attention_softmax_backward_kernel<<<grid_for_rows(rows), threads_for_row(s), 0, stream>>>(
      probs, ds, dbias, rows, s);
}

#define MOWE_INSTANTIATE(T)                                                                        \
  template void launch_position_bias_forward<T>(const T*, T*, const BiasDims&, cudaStream_t);      \
  template void launch_position_bias_backward<T>(const T*, T*, const BiasDims&, cudaStream_t);     \
  template void launch_attention_softmax<T>(T*, const T*, const int32_t*, const ScoresDims&, bool, \
                                            T, cudaStream_t);                                      \
  template void launch_attention_softmax_backward<T>(const T*, T*, T*, int64_t, int64_t,           \
                                                     cudaStream_t);
MOWE_INSTANTIATE(float)
MOWE_INSTANTIATE(double)
#undef MOWE_INSTANTIATE

}  // namespace mowe::cuda
