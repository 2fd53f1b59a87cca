// T5 RMSNorm on CUDA: validation in runtime/op_checks.cc, kernels in norm_ops.cu.
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"

namespace mowe::cuda {

void CudaBackend::rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& scale,
                                  const Tensor& out, const Tensor& rstd, double eps) {
  for (const Tensor* t : {&x, &scale, &out, &rstd}) check_cuda("rmsnorm_forward", *t);
  const RowsDims d = check_rmsnorm_forward(x, scale, out, rstd);
  visit_dtype(Device::CUDA, "rmsnorm_forward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_rmsnorm_forward(x.ptr<T>(), scale.ptr<T>(), out.ptr<T>(), rstd.ptr<T>(), d.rows, d.cols,
                           T(eps), stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::rmsnorm_backward(const Context& ctx, const Tensor& dout, const Tensor& x,
                                   const Tensor& scale, const Tensor& rstd, const Tensor& dx,
                                   const Tensor& dscale) {
  for (const Tensor* t : {&dout, &x, &scale, &rstd, &dx, &dscale})
    check_cuda("rmsnorm_backward", *t);
  const RowsDims d = check_rmsnorm_backward(dout, x, scale, rstd, dx, dscale);
  visit_dtype(Device::CUDA, "rmsnorm_backward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_rmsnorm_backward(dout.ptr<T>(), x.ptr<T>(), scale.ptr<T>(), rstd.ptr<T>(), dx.ptr<T>(),
                            dscale.ptr<T>(), d.rows, d.cols, stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

}  // namespace mowe::cuda
