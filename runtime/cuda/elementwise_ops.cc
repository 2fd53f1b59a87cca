// Element-wise ops, activations, softmax and dropout on CUDA: host-side validation
// (runtime/op_checks.cc, shared with the CPU) and launches of the kernels in elementwise_ops.cu.
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"

namespace mowe::cuda {

void CudaBackend::fill(const Context& ctx, const Tensor& x, double value) {
  check_cuda("fill", x);
  if (x.dtype == DType::I32) {
    launch_fill(x.ptr<int32_t>(), x.numel(), static_cast<int32_t>(value), stream_of(ctx));
  } else {
    visit_dtype(Device::CUDA, "fill", x.dtype, [&](auto zero) {
      using T = decltype(zero);
      launch_fill(x.ptr<T>(), x.numel(), static_cast<T>(value), stream_of(ctx));
    });
  }
  CUDA_CHECK_LAST();
}

void CudaBackend::axpy(const Context& ctx, double alpha, const Tensor& x, const Tensor& y) {
  for (const Tensor* t : {&x, &y}) check_cuda("axpy", *t);
  check_same_shape("axpy", x, y);
  visit_dtype(Device::CUDA, "axpy", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_axpy(static_cast<T>(alpha), x.ptr<T>(), y.ptr<T>(), x.numel(), stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::gelu_forward(const Context& ctx, const Tensor& x, const Tensor& out) {
  for (const Tensor* t : {&x, &out}) check_cuda("gelu_forward", *t);
  check_same_shape("gelu_forward", x, out);
  visit_dtype(Device::CUDA, "gelu_forward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_gelu_forward(x.ptr<T>(), out.ptr<T>(), x.numel(), stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::gelu_backward(const Context& ctx, const Tensor& dout, const Tensor& x,
                                const Tensor& dx) {
  for (const Tensor* t : {&dout, &x, &dx}) check_cuda("gelu_backward", *t);
  check_unary_backward("gelu_backward", dout, x, dx);
  visit_dtype(Device::CUDA, "gelu_backward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_gelu_backward(dout.ptr<T>(), x.ptr<T>(), dx.ptr<T>(), x.numel(), stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::gated_gelu_forward(const Context& ctx, const Tensor& gate, const Tensor& linear,
                                     const Tensor& out) {
  for (const Tensor* t : {&gate, &linear, &out}) check_cuda("gated_gelu_forward", *t);
  check_gated_gelu_forward(gate, linear, out);
  visit_dtype(Device::CUDA, "gated_gelu_forward", gate.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_gated_gelu_forward(gate.ptr<T>(), linear.ptr<T>(), out.ptr<T>(), gate.numel(),
                              stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::gated_gelu_backward(const Context& ctx, const Tensor& dout, const Tensor& gate,
                                      const Tensor& linear, const Tensor& dgate,
                                      const Tensor& dlinear) {
  for (const Tensor* t : {&dout, &gate, &linear, &dgate, &dlinear})
    check_cuda("gated_gelu_backward", *t);
  check_gated_gelu_backward(dout, gate, linear, dgate, dlinear);
  visit_dtype(Device::CUDA, "gated_gelu_backward", gate.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_gated_gelu_backward(dout.ptr<T>(), gate.ptr<T>(), linear.ptr<T>(), dgate.ptr<T>(),
                               dlinear.ptr<T>(), gate.numel(), stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::softmax_forward(const Context& ctx, const Tensor& x, const Tensor& out) {
  for (const Tensor* t : {&x, &out}) check_cuda("softmax_forward", *t);
  check_same_shape("softmax_forward", x, out);
  visit_dtype(Device::CUDA, "softmax_forward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_softmax_forward(x.ptr<T>(), out.ptr<T>(), x.rows(), x.cols(), stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::softmax_backward(const Context& ctx, const Tensor& dout, const Tensor& out,
                                   const Tensor& dx) {
  for (const Tensor* t : {&dout, &out, &dx}) check_cuda("softmax_backward", *t);
  check_unary_backward("softmax_backward", dout, out, dx);
  visit_dtype(Device::CUDA, "softmax_backward", out.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_softmax_backward(dout.ptr<T>(), out.ptr<T>(), dx.ptr<T>(), out.rows(), out.cols(),
                            stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

namespace {
// The mask depends only on (seed, index), so the forward and the backward are one kernel.
void dropout(const char* op, const Context& ctx, const Tensor& x, const Tensor& out, float rate,
             uint64_t seed) {
  for (const Tensor* t : {&x, &out}) check_cuda(op, *t);
  check_dropout(op, x, out, rate);
  visit_dtype(Device::CUDA, op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_dropout(x.ptr<T>(), out.ptr<T>(), x.numel(), rate, seed, stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}
}  // namespace

void CudaBackend::dropout_forward(const Context& ctx, const Tensor& x, const Tensor& out,
                                  float rate, uint64_t seed) {
  dropout("dropout_forward", ctx, x, out, rate, seed);
}

void CudaBackend::dropout_backward(const Context& ctx, const Tensor& dout, const Tensor& dx,
                                   float rate, uint64_t seed) {
  dropout("dropout_backward", ctx, dout, dx, rate, seed);
}

}  // namespace mowe::cuda
