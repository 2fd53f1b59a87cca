// Reductions and optimizer updates: the CUDA twins of runtime/cpu/optimizer_ops.cc, with the
// formulas from runtime/math.h. Every sum accumulates in double and combines its partial sums in
// a fixed order (no atomics), so a result is the same on every run.
#include <algorithm>

#include "runtime/cuda/block_ops.cuh"
#include "runtime/cuda/for_each.cuh"
#include "runtime/cuda/kernels.h"
#include "runtime/math.h"

namespace mowe::cuda {
namespace {

// ---- segmented sums ----------------------------------------------------------------------------
// store(s, sum_{i < len} load(s, i)) for every segment s < segments. Block (p, y) sums a strided
// share p of segments y, y + gridDim.y, ...; with one part per segment it stores the total
// itself, otherwise partial[s * parts + p] is written and finish_kernel adds the parts in order.
template <typename Load, typename Store>
__global__ void segment_sum_kernel(Load load, Store store, int64_t segments, int64_t len,
                                   double* partial) {
  const int64_t parts = gridDim.x, stride = parts * blockDim.x;
  for (int64_t s = blockIdx.y; s < segments; s += gridDim.y) {
    double acc = 0;
    for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < len; i += stride)
      acc += load(s, i);
    acc = block_reduce(acc, SumOp{}, 0.0);
    if (threadIdx.x == 0) {
      if (parts == 1) {
        store(s, acc);
      } else {
        partial[s * parts + blockIdx.x] = acc;
      }
    }
  }
}

template <typename Store>
__global__ void finish_kernel(Store store, const double* partial, int64_t segments, int64_t parts) {
  const int64_t stride = int64_t{blockDim.x} * gridDim.x;
  for (int64_t s = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; s < segments; s += stride) {
    double total = 0;
    for (int64_t p = 0; p < parts; ++p) total += partial[s * parts + p];
    store(s, total);
  }
}

// partial: kReductionPartials doubles.
template <typename Load, typename Store>
void segment_sum(Load load, Store store, int64_t segments, int64_t len, double* partial,
                 cudaStream_t stream) {
  if (segments == 0) return;
  // Enough parts to spread one long segment over the GPU, few enough for the partials buffer.
  const int64_t parts = std::max<int64_t>(
      1, std::min({(len + 4095) / 4096, int64_t{1024}, kReductionPartials / segments}));
  const dim3 grid(static_cast<unsigned>(parts),
                  static_cast<unsigned>(std::min<int64_t>(segments, 65535)));
  segment_sum_kernel<<<grid, kThreads, 0, stream>>>(load, store, segments, len, partial);
  if (parts > 1) {
    finish_kernel<<<grid_for(segments), kThreads, 0, stream>>>(store, partial, segments, parts);
  }
}

// Functors rather than lambdas: device lambdas in host functions need --extended-lambda.
template <typename T, bool kSquares>
struct LoadValue {
  const T* x;
  int64_t len;  // of a segment
  __device__ double operator()(int64_t s, int64_t i) const {
    const double v = x[s * len + i];
    return kSquares ? v * v : v;
  }
};
struct StoreValue {
  double* out;
  __device__ void operator()(int64_t s, double total) const { out[s] = total; }
};
// out[s] = count / total: the inverse of a mean over count elements.
struct StoreInverseMean {
  double* out;
  double count;
  __device__ void operator()(int64_t s, double total) const { out[s] = count / total; }
};

// ---- AdamW -------------------------------------------------------------------------------------
template <typename T>
struct AdamW {
  T *param, *m, *v;
  const T* grad;
  math::AdamWCoeffs<T> c;
  __device__ void operator()(int64_t i) const {
    math::adamw_update(param[i], m[i], v[i], grad[i], c);
  }
};

// ---- Adafactor ---------------------------------------------------------------------------------
// Element k of the scaled gradient g = grad_scale * grad, as on the CPU.
template <typename T>
struct ScaledGrad {
  const T* grad;
  T scale;
  __device__ T operator()(int64_t k) const { return grad[k] * scale; }
};

// Segment s = (b, r) of length C: row[s] from the mean of g^2 over the row.
template <typename T>
struct RowSquares {
  ScaledGrad<T> g;
  int64_t cols;
  __device__ double operator()(int64_t s, int64_t j) const {
    const double x = g(s * cols + j);
    return x * x;
  }
};
template <typename T>
struct StoreRowMoment {
  T* row;
  int64_t cols;
  math::AdafactorCoeffs c;
  __device__ void operator()(int64_t s, double total) const {
    row[s] = T(math::adafactor_moment<double>(row[s], total / double(cols), c.beta2,
                                              c.one_minus_beta2, c.eps1));
  }
};

// col[b, j] from the mean of g^2 over the rows of slice b. A block owns 32 columns; its kLanes
// lanes of rows are added in a fixed order. Reads of a row are coalesced across the 32 columns.
constexpr int kLanes = 8;

template <typename T>
__global__ void col_moment_kernel(ScaledGrad<T> g, T* col, SliceDims d, math::AdafactorCoeffs c) {
  __shared__ double partial[kLanes][33];  // 33: no bank conflicts on the column read
  const int64_t j = blockIdx.x * int64_t{32} + threadIdx.x;
  for (int64_t b = blockIdx.y; b < d.batch; b += gridDim.y) {
    double s = 0;
    if (j < d.cols) {
      for (int64_t r = threadIdx.y; r < d.rows; r += kLanes) {
        const double x = g((b * d.rows + r) * d.cols + j);
        s += x * x;
      }
    }
    partial[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && j < d.cols) {
      double total = 0;
      for (int lane = 0; lane < kLanes; ++lane) total += partial[lane][threadIdx.x];
      T& out = col[b * d.cols + j];
      out = T(math::adafactor_moment<double>(out, total / double(d.rows), c.beta2,
                                             c.one_minus_beta2, c.eps1));
    }
    __syncthreads();  // partial is reused by the next slice
  }
}

template <typename T>
struct VMoment {
  T* v;
  ScaledGrad<T> g;
  T beta2, one_minus_beta2, eps1;
  __device__ void operator()(int64_t k) const {
    const T x = g(k);
    v[k] = math::adafactor_moment(v[k], x * x, beta2, one_minus_beta2, eps1);
  }
};

// The normalised update y of element i of slice b, once the statistics are updated.
template <typename T>
struct NormalisedUpdate {
  ScaledGrad<T> g;
  const T *row, *col, *v;
  const double* inv_row_mean;  // [B]
  int64_t rows, cols;
  __device__ T operator()(int64_t b, int64_t i) const {
    const int64_t k = b * rows * cols + i;
    if (v != nullptr) return g(k) / sqrt(v[k]);
    return math::adafactor_factored_update(g(k), row[b * rows + i / cols], col[b * cols + i % cols],
                                           T(inv_row_mean[b]));
  }
};
template <typename T>
struct UpdateSquares {
  NormalisedUpdate<T> y;
  __device__ double operator()(int64_t b, int64_t i) const {
    const double x = y(b, i);
    return x * x;
  }
};
// size[b] = step size of slice b from its parameter and update mean squares.
struct StoreStepSize {
  const double* param_ss;
  double* size;
  double n;
  math::AdafactorCoeffs c;
  __device__ void operator()(int64_t b, double y_ss) const {
    size[b] = math::adafactor_step_size(param_ss[b] / n, y_ss / n, c);
  }
};
template <typename T>
struct ApplyUpdate {
  T* param;
  NormalisedUpdate<T> y;
  const double* size;
  int64_t n;  // elements per slice
  __device__ void operator()(int64_t k) const {
    const int64_t b = k / n;
    param[k] -= T(size[b]) * y(b, k - b * n);
  }
};

}  // namespace

template <typename T>
void launch_sum(const T* x, int64_t n, bool squares, double* out, double* partials,
                cudaStream_t stream) {
  if (squares) {
    segment_sum(LoadValue<T, true>{x, n}, StoreValue{out}, 1, n, partials, stream);
  } else {
    segment_sum(LoadValue<T, false>{x, n}, StoreValue{out}, 1, n, partials, stream);
  }
}

namespace {
__global__ void add_scalar_kernel(double* total, const double* value) {
  total[0] += value[0];
}
}  // namespace

void launch_add_scalar(double* total, const double* value, cudaStream_t stream) {
  add_scalar_kernel<<<1, 1, 0, stream>>>(total, value);
}

template <typename T>
struct DecayToward {
  T* x;
  double floor, factor;
  __device__ void operator()(int64_t i) const { x[i] = T(floor + (double(x[i]) - floor) * factor); }
};

template <typename T>
void launch_decay_toward(T* x, int64_t n, double floor, double factor, cudaStream_t stream) {
  for_each(n, stream, DecayToward<T>{x, floor, factor});
}

template <typename T>
void launch_adamw_update(T* param, const T* grad, T* m, T* v, int64_t n,
                         const math::AdamWCoeffs<T>& c, cudaStream_t stream) {
  for_each(n, stream, AdamW<T>{param, m, v, grad, c});
}

// Statistics first, then the step size of each slice, then the update: the same order as the CPU
// twin. scratch: param_ss [B], inv_row_mean [B], size [B], then the reduction partials.
template <typename T>
void launch_adafactor_update(T* param, const T* grad, T* row, T* col, T* v, const SliceDims& d,
                             const math::AdafactorCoeffs& c, double* scratch, cudaStream_t stream) {
  const int64_t n = d.rows * d.cols;
  if (d.batch == 0 || n == 0) return;
  double *param_ss = scratch, *inv_row_mean = scratch + d.batch, *size = scratch + 2 * d.batch;
  double* partials = scratch + 3 * d.batch;
  const ScaledGrad<T> g{grad, T(c.grad_scale)};
  segment_sum(LoadValue<T, true>{param, n}, StoreValue{param_ss}, d.batch, n, partials, stream);
  if (v == nullptr) {
    segment_sum(RowSquares<T>{g, d.cols}, StoreRowMoment<T>{row, d.cols, c}, d.batch * d.rows,
                d.cols, partials, stream);
    const dim3 grid(static_cast<unsigned>((d.cols + 31) / 32),
                    static_cast<unsigned>(std::min<int64_t>(d.batch, 65535)));
    col_moment_kernel<<<grid, dim3(32, kLanes), 0, stream>>>(g, col, d, c);
    segment_sum(LoadValue<T, false>{row, d.rows}, StoreInverseMean{inv_row_mean, double(d.rows)},
                d.batch, d.rows, partials, stream);
  } else {
    for_each(d.batch * n, stream, VMoment<T>{v, g, T(c.beta2), T(c.one_minus_beta2), T(c.eps1)});
  }
  const NormalisedUpdate<T> y{g, row, col, v, inv_row_mean, d.rows, d.cols};
  segment_sum(UpdateSquares<T>{y}, StoreStepSize{param_ss, size, double(n), c}, d.batch, n,
              partials, stream);
  for_each(d.batch * n, stream, ApplyUpdate<T>{param, y, size, n});
}

#define MOWE_INSTANTIATE(T)                                                                        \
  template void launch_sum<T>(const T*, int64_t, bool, double*, double*, cudaStream_t);            \
  template void launch_decay_toward<T>(T*, int64_t, double, double, cudaStream_t);                 \
  template void launch_adamw_update<T>(T*, const T*, T*, T*, int64_t, const math::AdamWCoeffs<T>&, \
                                       cudaStream_t);                                              \
  template void launch_adafactor_update<T>(T*, const T*, T*, T*, T*, const SliceDims&,             \
                                           const math::AdafactorCoeffs&, double*, cudaStream_t);
MOWE_INSTANTIATE(float)
MOWE_INSTANTIATE(double)
#undef MOWE_INSTANTIATE

}  // namespace mowe::cuda
