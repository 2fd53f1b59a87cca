// The element-wise kernel launcher shared by the CUDA ops: a grid-stride loop that calls a
// functor for every index.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "runtime/cuda/block_ops.cuh"

namespace mowe::cuda {

// Grid-stride loop over [0, n): calls f(i) for every index.
template <typename F>
__global__ void for_each_kernel(int64_t n, F f) {
  const int64_t stride = int64_t{blockDim.x} * gridDim.x;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += stride) f(i);
}

// Launches for_each_kernel on `stream`; nothing when n is 0.
template <typename F>
void for_each(int64_t n, cudaStream_t stream, F f) {
  if (n > 0) for_each_kernel<<<grid_for(n), kThreads, 0, stream>>>(n, f);
}

}  // namespace mowe::cuda
