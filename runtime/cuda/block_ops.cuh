// Device helpers shared by the kernels: launch sizes, block-wide reductions and the row softmax
// (forward and backward) that the softmax ops and attention share, as on the CPU.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace mowe::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements; the cap keeps the grid within limits and the
// loop covers the rest.
inline unsigned grid_for(int64_t n) {
  int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 65535 ? blocks : 65535);
}

// One block per row (grid-stride over rows); short rows get fewer threads, a multiple of 32.
inline unsigned grid_for_rows(int64_t rows) {
  return static_cast<unsigned>(rows < (int64_t{1} << 20) ? rows : (int64_t{1} << 20));
}
inline unsigned threads_for_row(int64_t n) {
  int64_t t = (n + 31) / 32 * 32;
  return static_cast<unsigned>(t < 32 ? 32 : (t > kThreads ? kThreads : t));
}

struct SumOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a + b;
  }
};
struct MaxOp {
  template <typename T>
  __device__ T operator()(T a, T b) const {
    return a > b ? a : b;
  }
};

template <typename T, typename Op>
__device__ T warp_reduce(T v, Op op) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Reduction over the block (blockDim.x a multiple of 32); every thread gets the result. All
// threads of the block must call it.
template <typename T, typename Op>
__device__ T block_reduce(T v, Op op, T identity) {
  __shared__ T partial[32];
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = warp_reduce(v, op);
  __syncthreads();  // a previous call may still be reading `partial`
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  v = lane < blockDim.x / 32 ? partial[lane] : identity;
  return warp_reduce(v, op);
}

// Softmax of one row of n values by the whole block; x and y may alias. Each thread touches the
// same elements in every pass, so passes need no barrier beyond the reductions.
template <typename T>
__device__ void softmax_row(const T* x, T* y, int64_t n) {
  T mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) mx = MaxOp{}(mx, x[i]);
  mx = block_reduce(mx, MaxOp{}, T(-INFINITY));
  T sum = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    y[i] = exp(x[i] - mx);
    sum += y[i];
  }
  const T inv = T(1) / block_reduce(sum, SumOp{}, T(0));
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) y[i] *= inv;
}

// dx = y * (dy - <dy, y>) for one row by the whole block; dx may alias dy.
template <typename T>
__device__ void softmax_row_backward(const T* y, const T* dy, T* dx, int64_t n) {
  T dot = 0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dot += dy[i] * y[i];
  dot = block_reduce(dot, SumOp{}, T(0));
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) dx[i] = y[i] * (dy[i] - dot);
}

}  // namespace mowe::cuda
