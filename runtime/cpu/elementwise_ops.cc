// Element-wise ops, activations, softmax and dropout on the CPU. The formulas come from
// runtime/math.h, shared with the CUDA kernels.
#include <algorithm>
#include <cmath>

#include "runtime/cpu/cpu_backend.h"
#include "runtime/cpu/gemm.h"
#include "runtime/math.h"

namespace mowe::cpu {

template <typename T>
void softmax_row(T* x, int64_t n) {
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

template <typename T>
void softmax_row_backward(const T* y, const T* dy, T* dx, int64_t n) {
  T dot = 0;
  for (int64_t i = 0; i < n; ++i) dot += dy[i] * y[i];
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] * (dy[i] - dot);
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
  dispatch_float("fill", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    std::fill_n(x.ptr<T>(), x.numel(), static_cast<T>(value));
  });
}

void CpuBackend::axpy(const Context&, double alpha, const Tensor& x, const Tensor& y) {
  check_cpu("axpy", x);
  check_same_shape("axpy", x, y);
  dispatch_float("axpy", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.ptr<T>();
    T* py = y.ptr<T>();
    const T a = static_cast<T>(alpha);
    for (int64_t i = 0, n = x.numel(); i < n; ++i) py[i] += a * px[i];
  });
}

void CpuBackend::gelu_forward(const Context&, const Tensor& x, const Tensor& out) {
  check_cpu("gelu_forward", x);
  check_same_shape("gelu_forward", x, out);
  dispatch_float("gelu_forward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.ptr<T>();
    T* po = out.ptr<T>();
    for (int64_t i = 0, n = x.numel(); i < n; ++i) po[i] = math::gelu(px[i]);
  });
}

void CpuBackend::gelu_backward(const Context&, const Tensor& dout, const Tensor& x,
                               const Tensor& dx) {
  check_cpu("gelu_backward", x);
  check_same_shape("gelu_backward", dout, x);
  check_same_shape("gelu_backward", x, dx);
  dispatch_float("gelu_backward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *pd = dout.ptr<T>(), *px = x.ptr<T>();
    T* pdx = dx.ptr<T>();
    for (int64_t i = 0, n = x.numel(); i < n; ++i) pdx[i] = pd[i] * math::gelu_grad(px[i]);
  });
}

void CpuBackend::gated_gelu_forward(const Context&, const Tensor& gate, const Tensor& linear,
                                    const Tensor& out) {
  check_cpu("gated_gelu_forward", gate);
  check_same_shape("gated_gelu_forward", gate, linear);
  check_same_shape("gated_gelu_forward", gate, out);
  dispatch_float("gated_gelu_forward", gate.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *pg = gate.ptr<T>(), *pl = linear.ptr<T>();
    T* po = out.ptr<T>();
    for (int64_t i = 0, n = gate.numel(); i < n; ++i) po[i] = math::gelu(pg[i]) * pl[i];
  });
}

void CpuBackend::gated_gelu_backward(const Context&, const Tensor& dout, const Tensor& gate,
                                     const Tensor& linear, const Tensor& dgate,
                                     const Tensor& dlinear) {
  check_cpu("gated_gelu_backward", gate);
  for (const Tensor* t : {&dout, &linear, &dgate, &dlinear})
    check_same_shape("gated_gelu_backward", gate, *t);
  dispatch_float("gated_gelu_backward", gate.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T *pd = dout.ptr<T>(), *pg = gate.ptr<T>(), *pl = linear.ptr<T>();
    T *pdg = dgate.ptr<T>(), *pdl = dlinear.ptr<T>();
    for (int64_t i = 0, n = gate.numel(); i < n; ++i) {
      pdg[i] = pd[i] * pl[i] * math::gelu_grad(pg[i]);
      pdl[i] = pd[i] * math::gelu(pg[i]);
    }
  });
}

void CpuBackend::softmax_forward(const Context&, const Tensor& x, const Tensor& out) {
  check_cpu("softmax_forward", x);
  check_same_shape("softmax_forward", x, out);
  dispatch_float("softmax_forward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int64_t rows = x.rows(), n = x.cols();
    const T* px = x.ptr<T>();
    T* po = out.ptr<T>();
    if (po != px) std::copy_n(px, x.numel(), po);
    for (int64_t r = 0; r < rows; ++r) softmax_row(po + r * n, n);
  });
}

void CpuBackend::softmax_backward(const Context&, const Tensor& dout, const Tensor& out,
                                  const Tensor& dx) {
  check_cpu("softmax_backward", out);
  check_same_shape("softmax_backward", dout, out);
  check_same_shape("softmax_backward", out, dx);
  dispatch_float("softmax_backward", out.dtype, [&](auto zero) {
    using T = decltype(zero);
    const int64_t rows = out.rows(), n = out.cols();
    for (int64_t r = 0; r < rows; ++r) {
      softmax_row_backward(out.ptr<T>() + r * n, dout.ptr<T>() + r * n, dx.ptr<T>() + r * n, n);
    }
  });
}

namespace {
void check_rate(const char* op, float rate) {
  MOWE_CHECK(rate >= 0.0f && rate < 1.0f, "{}: dropout rate {} is outside [0, 1)", op, rate);
}
}  // namespace

void CpuBackend::dropout_forward(const Context&, const Tensor& x, const Tensor& out, float rate,
                                 uint64_t seed) {
  check_cpu("dropout_forward", x);
  check_same_shape("dropout_forward", x, out);
  check_rate("dropout_forward", rate);
  dispatch_float("dropout_forward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* px = x.ptr<T>();
    T* po = out.ptr<T>();
    for (int64_t i = 0, n = x.numel(); i < n; ++i)
      po[i] = px[i] * math::dropout_scale<T>(seed, static_cast<uint64_t>(i), rate);
  });
}

void CpuBackend::dropout_backward(const Context&, const Tensor& dout, const Tensor& dx, float rate,
                                  uint64_t seed) {
  check_cpu("dropout_backward", dout);
  check_same_shape("dropout_backward", dout, dx);
  check_rate("dropout_backward", rate);
  dispatch_float("dropout_backward", dout.dtype, [&](auto zero) {
    using T = decltype(zero);
    const T* pd = dout.ptr<T>();
    T* pdx = dx.ptr<T>();
    for (int64_t i = 0, n = dout.numel(); i < n; ++i)
      pdx[i] = pd[i] * math::dropout_scale<T>(seed, static_cast<uint64_t>(i), rate);
  });
}

}  // namespace mowe::cpu
