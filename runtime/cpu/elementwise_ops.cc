// Element-wise ops, activations, softmax and dropout on the CPU. The formulas come from
// runtime/math.h, shared with the CUDA kernels; f32 runs the vector kernels of simd_kernels.h on
// the thread pool, f64 (gradient checks) the scalar formulas.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/elementwise_grain.h"
#include "runtime/cpu/simd_kernels.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/math.h"
#include "runtime/op_checks.h"

namespace mowe::cpu {

template <typename T>
void softmax_row(T* x, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    simd::kernels().softmax_row(x, n);
  } else {
    T mx = x[0];
    for (int64_t i = 1; i < n; ++i) mx = std::max(mx, x[i]);
    T sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      x[i] = std::exp(x[i] - mx);
      sum += x[i];
    }
    T inv = T(1) / sum;
    for (int64_t i = 0; i < n; ++i) x[i] *= inv;
  }
}

template <typename T>
void softmax_row_backward(const T* y, const T* dy, T* dx, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    simd::kernels().softmax_row_backward(y, dy, dx, n);
  } else {
    T dot = 0;
    for (int64_t i = 0; i < n; ++i) dot += dy[i] * y[i];
    for (int64_t i = 0; i < n; ++i) dx[i] = y[i] * (dy[i] - dot);
  }
}

template void softmax_row<float>(float*, int64_t);
template void softmax_row<double>(double*, int64_t);
template void softmax_row_backward<float>(const float*, const float*, float*, int64_t);
template void softmax_row_backward<double>(const double*, const double*, double*, int64_t);

void CpuBackend::fill(const Context&, const Tensor& x, double value) {
  check_cpu("fill", x);
  if (x.dtype == DType::I32) {
    std::fill_n(x.ptr<int32_t>(), x.numel(), static_cast<int32_t>(value));
    return;
  }
  visit_dtype(Device::CPU, "fill", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    T* p = x.ptr<T>();
    parallel_for(x.numel(), kGrainStreaming, [&](int64_t b, int64_t e) {
      if constexpr (std::is_same_v<T, float>) {
        simd::kernels().fill(p + b, static_cast<float>(value), e - b);
      } else {
        std::fill(p + b, p + e, static_cast<T>(value));
      }
    });
  });
}

void CpuBackend::axpy(const Context&, double alpha, const Tensor& x, const Tensor& y) {
  check_cpu("axpy", x);
  check_same_shape("axpy", x, y);
  visit_dtype(Device::CPU, "axpy", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.ptr<T>();
    T* py = y.ptr<T>();
    const T a = static_cast<T>(alpha);
    parallel_for(x.numel(), kGrainStreaming, [&](int64_t b, int64_t e) {
      if constexpr (std::is_same_v<T, float>) {
        simd::kernels().axpy(a, px + b, py + b, e - b);
      } else {
        for (int64_t i = b; i < e; ++i) py[i] += a * px[i];
      }
    });
  });
}

void CpuBackend::gelu_forward(const Context&, const Tensor& x, const Tensor& out) {
  check_cpu("gelu_forward", x);
  check_same_shape("gelu_forward", x, out);
  visit_dtype(Device::CPU, "gelu_forward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.ptr<T>();
    T* po = out.ptr<T>();
    parallel_for(x.numel(), kGrainTranscendental, [&](int64_t b, int64_t e) {
      if constexpr (std::is_same_v<T, float>) {
        simd::kernels().gelu(px + b, po + b, e - b);
      } else {
        for (int64_t i = b; i < e; ++i) po[i] = math::gelu(px[i]);
      }
    });
  });
}

void CpuBackend::gelu_backward(const Context&, const Tensor& dout, const Tensor& x,
                               const Tensor& dx) {
  check_cpu("gelu_backward", x);
  check_unary_backward("gelu_backward", dout, x, dx);
  visit_dtype(Device::CPU, "gelu_backward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *pd = dout.ptr<T>(), *px = x.ptr<T>();
    T* pdx = dx.ptr<T>();
    parallel_for(x.numel(), kGrainTranscendental, [&](int64_t b, int64_t e) {
      if constexpr (std::is_same_v<T, float>) {
        simd::kernels().gelu_backward(pd + b, px + b, pdx + b, e - b);
      } else {
        for (int64_t i = b; i < e; ++i) pdx[i] = pd[i] * math::gelu_grad(px[i]);
      }
    });
  });
}

void CpuBackend::gated_gelu_forward(const Context&, const Tensor& gate, const Tensor& linear,
                                    const Tensor& out) {
  check_cpu("gated_gelu_forward", gate);
  check_gated_gelu_forward(gate, linear, out);
  visit_dtype(Device::CPU, "gated_gelu_forward", gate.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *pg = gate.ptr<T>(), *pl = linear.ptr<T>();
    T* po = out.ptr<T>();
    parallel_for(gate.numel(), kGrainTranscendental, [&](int64_t b, int64_t e) {
      if constexpr (std::is_same_v<T, float>) {
        simd::kernels().gated_gelu(pg + b, pl + b, po + b, e - b);
      } else {
        for (int64_t i = b; i < e; ++i) po[i] = math::gelu(pg[i]) * pl[i];
      }
    });
  });
}

void CpuBackend::gated_gelu_backward(const Context&, const Tensor& dout, const Tensor& gate,
                                     const Tensor& linear, const Tensor& dgate,
                                     const Tensor& dlinear) {
  check_cpu("gated_gelu_backward", gate);
  check_gated_gelu_backward(dout, gate, linear, dgate, dlinear);
  visit_dtype(Device::CPU, "gated_gelu_backward", gate.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *pd = dout.ptr<T>(), *pg = gate.ptr<T>(), *pl = linear.ptr<T>();
    T *pdg = dgate.ptr<T>(), *pdl = dlinear.ptr<T>();
    parallel_for(gate.numel(), kGrainTranscendental, [&](int64_t b, int64_t e) {
      if constexpr (std::is_same_v<T, float>) {
        simd::kernels().gated_gelu_backward(pd + b, pg + b, pl + b, pdg + b, pdl + b, e - b);
      } else {
        for (int64_t i = b; i < e; ++i) {
          pdg[i] = pd[i] * pl[i] * math::gelu_grad(pg[i]);
          pdl[i] = pd[i] * math::gelu(pg[i]);
        }
      }
    });
  });
}

void CpuBackend::softmax_forward(const Context&, const Tensor& x, const Tensor& out) {
  check_cpu("softmax_forward", x);
  check_same_shape("softmax_forward", x, out);
  visit_dtype(Device::CPU, "softmax_forward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int64_t rows = x.rows(), n = x.cols();
    const T* px = x.ptr<T>();
    T* po = out.ptr<T>();
    if (n == 0) return;
    parallel_for(rows, rows_grain(n), [&](int64_t b, int64_t e) {
      if (po != px) std::copy(px + b * n, px + e * n, po + b * n);
      for (int64_t r = b; r < e; ++r) softmax_row(po + r * n, n);
    });
  });
}

void CpuBackend::softmax_backward(const Context&, const Tensor& dout, const Tensor& out,
                                  const Tensor& dx) {
  check_cpu("softmax_backward", out);
  check_unary_backward("softmax_backward", dout, out, dx);
  visit_dtype(Device::CPU, "softmax_backward", out.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int64_t rows = out.rows(), n = out.cols();
    if (n == 0) return;
    parallel_for(rows, rows_grain(n, kGrainStreaming), [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        softmax_row_backward(out.ptr<T>() + r * n, dout.ptr<T>() + r * n, dx.ptr<T>() + r * n, n);
      }
    });
  });
}

namespace {
// The mask depends only on (seed, index), so the forward and the backward are one loop.
void dropout(const char* op, const Tensor& x, const Tensor& out, float rate, uint64_t seed) {
  check_cpu(op, x);
  check_dropout(op, x, out, rate);
  visit_dtype(Device::CPU, op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.ptr<T>();
    T* po = out.ptr<T>();
    // The counter hash has 64-bit products, which AVX2 lacks: threads only.
    parallel_for(x.numel(), kGrainTranscendental, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i)
        po[i] = px[i] * math::dropout_scale<T>(seed, static_cast<uint64_t>(i), rate);
    });
  });
}
}  // namespace

void CpuBackend::dropout_forward(const Context&, const Tensor& x, const Tensor& out, float rate,
                                 uint64_t seed) {
  dropout("dropout_forward", x, out, rate, seed);
}

void CpuBackend::dropout_backward(const Context&, const Tensor& dout, const Tensor& dx, float rate,
                                  uint64_t seed) {
  dropout("dropout_backward", dout, dx, rate, seed);
}

}  // namespace mowe::cpu
