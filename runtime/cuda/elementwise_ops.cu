// Element-wise kernels, activations, softmax and dropout: the CUDA twins of
// runtime/cpu/elementwise_ops.cc, with the formulas from runtime/math.h.
#include "runtime/cuda/block_ops.cuh"
#include "runtime/cuda/for_each.cuh"
#include "runtime/cuda/kernels.h"
#include "runtime/math.h"

namespace mowe::cuda {
namespace {

// Functors rather than lambdas: device lambdas in host functions need --extended-lambda.
template <typename T>
struct Fill {
  T* x;
  T value;
  __device__ void operator()(int64_t i) const { x[i] = value; }
};
template <typename T>
struct Axpy {
  T alpha;
  const T* x;
  T* y;
  __device__ void operator()(int64_t i) const { y[i] += alpha * x[i]; }
};
template <typename T>
struct Gelu {
  const T* x;
  T* out;
  __device__ void operator()(int64_t i) const { out[i] = math::gelu(x[i]); }
};
template <typename T>
struct GeluGrad {
  const T *dout, *x;
  T* dx;
  __device__ void operator()(int64_t i) const { dx[i] = dout[i] * math::gelu_grad(x[i]); }
};
template <typename T>
struct GatedGelu {
  const T *gate, *linear;
  T* out;
  __device__ void operator()(int64_t i) const { out[i] = math::gelu(gate[i]) * linear[i]; }
};
template <typename T>
struct GatedGeluGrad {
  const T *dout, *gate, *linear;
  T *dgate, *dlinear;
  __device__ void operator()(int64_t i) const {
    dgate[i] = dout[i] * linear[i] * math::gelu_grad(gate[i]);
    dlinear[i] = dout[i] * math::gelu(gate[i]);
  }
};
template <typename T>
struct Dropout {
  const T* x;
  T* out;
  float rate;
  uint64_t seed;
  __device__ void operator()(int64_t i) const {
    out[i] = x[i] * math::dropout_scale<T>(seed, static_cast<uint64_t>(i), rate);
  }
};

template <typename T>
__global__ void softmax_kernel(const T* x, T* out, int64_t rows, int64_t n) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) softmax_row(x + r * n, out + r * n, n);
}

template <typename T>
__global__ void softmax_backward_kernel(const T* dout, const T* out, T* dx, int64_t rows,
                                        int64_t n) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    softmax_row_backward(out + r * n, dout + r * n, dx + r * n, n);
}

}  // namespace

template <typename T>
void launch_fill(T* x, int64_t n, T value, cudaStream_t stream) {
  for_each(n, stream, Fill<T>{x, value});
}

template <typename T>
void launch_axpy(T alpha, const T* x, T* y, int64_t n, cudaStream_t stream) {
  for_each(n, stream, Axpy<T>{alpha, x, y});
}

template <typename T>
void launch_gelu_forward(const T* x, T* out, int64_t n, cudaStream_t stream) {
  for_each(n, stream, Gelu<T>{x, out});
}

template <typename T>
void launch_gelu_backward(const T* dout, const T* x, T* dx, int64_t n, cudaStream_t stream) {
  for_each(n, stream, GeluGrad<T>{dout, x, dx});
}

template <typename T>
void launch_gated_gelu_forward(const T* gate, const T* linear, T* out, int64_t n,
                               cudaStream_t stream) {
  for_each(n, stream, GatedGelu<T>{gate, linear, out});
}

template <typename T>
void launch_gated_gelu_backward(const T* dout, const T* gate, const T* linear, T* dgate, T* dlinear,
                                int64_t n, cudaStream_t stream) {
  for_each(n, stream, GatedGeluGrad<T>{dout, gate, linear, dgate, dlinear});
}

template <typename T>
void launch_softmax_forward(const T* x, T* out, int64_t rows, int64_t n, cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  softmax_kernel<<<grid_for_rows(rows), threads_for_row(n), 0, stream>>>(x, out, rows, n);
}

template <typename T>
void launch_softmax_backward(const T* dout, const T* out, T* dx, int64_t rows, int64_t n,
                             cudaStream_t stream) {
  if (rows == 0 || n == 0) return;
  softmax_backward_kernel<<<grid_for_rows(rows), threads_for_row(n), 0, stream>>>(dout, out, dx,
                                                                                  rows, n);
}

template <typename T>
void launch_dropout(const T* x, T* out, int64_t n, float rate, uint64_t seed, cudaStream_t stream) {
  for_each(n, stream, Dropout<T>{x, out, rate, seed});
}

template void launch_fill<int32_t>(int32_t*, int64_t, int32_t, cudaStream_t);

#define MOWE_INSTANTIATE(T)                                                                  \
  template void launch_fill<T>(T*, int64_t, T, cudaStream_t);                                \
  template void launch_axpy<T>(T, const T*, T*, int64_t, cudaStream_t);                      \
  template void launch_gelu_forward<T>(const T*, T*, int64_t, cudaStream_t);                 \
  template void launch_gelu_backward<T>(const T*, const T*, T*, int64_t, cudaStream_t);      \
  template void launch_gated_gelu_forward<T>(const T*, const T*, T*, int64_t, cudaStream_t); \
  template void launch_gated_gelu_backward<T>(const T*, const T*, const T*, T*, T*, int64_t, \
                                              cudaStream_t);                                 \
  template void launch_softmax_forward<T>(const T*, T*, int64_t, int64_t, cudaStream_t);     \
  template void launch_softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t,         \
                                           cudaStream_t);                                    \
  template void launch_dropout<T>(const T*, T*, int64_t, float, uint64_t, cudaStream_t);
MOWE_INSTANTIATE(float)
MOWE_INSTANTIATE(double)
#undef MOWE_INSTANTIATE

}  // namespace mowe::cuda
