// T5 RMSNorm kernels: the CUDA twins of runtime/cpu/norm_ops.cc (same formulas, same order of
// products, so the two agree to rounding).
#include "runtime/cuda/block_ops.cuh"
#include "runtime/cuda/kernels.h"

namespace mowe::cuda {
namespace {

// One block per row: x, out [N,C]; scale [C]; rstd [N].
template <typename T>
__global__ void rmsnorm_forward_kernel(const T* x, const T* scale, T* out, T* rstd, int64_t rows,
                                       int64_t c, T eps) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* row = x + r * c;
    T ss = 0;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) ss += row[i] * row[i];
    ss = block_reduce(ss, SumOp{}, T(0));
    const T inv = T(1) / sqrt(ss / T(c) + eps);
    if (threadIdx.x == 0) rstd[r] = inv;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) out[r * c + i] = row[i] * inv * scale[i];
  }
}

// dx_i = r * (g_i s_i) - x_i * r^3 / C * sum_j (g_j s_j x_j), one block per row.
template <typename T>
__global__ void rmsnorm_dx_kernel(const T* dout, const T* x, const T* scale, const T* rstd, T* dx,
                                  int64_t rows, int64_t c) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T *g = dout + r * c, *xr = x + r * c;
    const T inv = rstd[r];
    T dot = 0;
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x) dot += g[i] * scale[i] * xr[i];
    dot = block_reduce(dot, SumOp{}, T(0));
    const T k = dot * inv * inv * inv / T(c);
    for (int64_t i = threadIdx.x; i < c; i += blockDim.x)
      dx[r * c + i] = inv * g[i] * scale[i] - xr[i] * k;
  }
}

// dscale_i += sum_r g_ri x_ri r_r. A block owns 32 columns and kLanes row lanes; lanes are summed
// in a fixed order, so unlike atomics the result is the same on every run.
constexpr int kLanes = 8;

template <typename T>
__global__ void rmsnorm_dscale_kernel(const T* dout, const T* x, const T* rstd, T* dscale,
                                      int64_t rows, int64_t c) {
  __shared__ T partial[kLanes][33];  // 33: no bank conflicts on the column read
  const int64_t col = blockIdx.x * int64_t{32} + threadIdx.x;
  T sum = 0;
  if (col < c) {
    for (int64_t r = threadIdx.y; r < rows; r += kLanes)
      sum += dout[r * c + col] * x[r * c + col] * rstd[r];
  }
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y == 0 && col < c) {
    T total = 0;
    for (int lane = 0; lane < kLanes; ++lane) total += partial[lane][threadIdx.x];
    dscale[col] += total;
  }
}

}  // namespace

template <typename T>
void launch_rmsnorm_forward(const T* x, const T* scale, T* out, T* rstd, int64_t rows, int64_t c,
                            T eps, cudaStream_t stream) {
  if (rows == 0) return;
  rmsnorm_forward_kernel<<<grid_for_rows(rows), threads_for_row(c), 0, stream>>>(
      x, scale, out, rstd, rows, c, eps);
}

template <typename T>
void launch_rmsnorm_backward(const T* dout, const T* x, const T* scale, const T* rstd, T* dx,
                             T* dscale, int64_t rows, int64_t c, cudaStream_t stream) {
  if (rows == 0 || c == 0) return;
  rmsnorm_dx_kernel<<<grid_for_rows(rows), threads_for_row(c), 0, stream>>>(dout, x, scale, rstd,
                                                                            dx, rows, c);
  const unsigned col_blocks = static_cast<unsigned>((c + 31) / 32);
  rmsnorm_dscale_kernel<<<col_blocks, dim3(32, kLanes), 0, stream>>>(dout, x, rstd, dscale, rows,
                                                                     c);
}

#define MOWE_INSTANTIATE(T)                                                                \
  template void launch_rmsnorm_forward<T>(const T*, const T*, T*, T*, int64_t, int64_t, T, \
                                          cudaStream_t);                                   \
  template void launch_rmsnorm_backward<T>(const T*, const T*, const T*, const T*, T*, T*, \
                                           int64_t, int64_t, cudaStream_t);
MOWE_INSTANTIATE(float)
MOWE_INSTANTIATE(double)
#undef MOWE_INSTANTIATE

}  // namespace mowe::cuda
