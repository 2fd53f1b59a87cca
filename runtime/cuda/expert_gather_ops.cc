// Expert products gathered by row on CUDA: validation shared with the CPU (runtime/op_checks.cc),
// except the expert ids, which live in device memory and are checked by the kernels.
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"

namespace mowe::cuda {

void CudaBackend::expert_gather_matmul(const Context& ctx, const Tensor& x, const Tensor& w,
                                       const Tensor& expert, const Tensor& out, bool trans_w,
                                       float beta) {
  const char* op = "expert_gather_matmul";
  for (const Tensor* t : {&x, &w, &expert, &out}) check_cuda(op, *t);
  const ExpertGatherDims d = check_expert_gather_matmul(x, w, expert, out, trans_w, beta);
  const ExpertGatherArgs a{d.rows, d.experts, d.k, d.m, trans_w, beta};
  visit_dtype(Device::CUDA, op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_expert_gather_matmul(x.ptr<T>(), w.ptr<T>(), expert.ptr<int32_t>(), out.ptr<T>(), a,
                                stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::expert_gather_weight_grad(const Context& ctx, const Tensor& x, const Tensor& g,
                                            const Tensor& expert, const Tensor& dw) {
  const char* op = "expert_gather_weight_grad";
  for (const Tensor* t : {&x, &g, &expert, &dw}) check_cuda(op, *t);
  const ExpertGatherDims d = check_expert_gather_weight_grad(x, g, expert, dw);
  const ExpertGatherArgs a{d.rows, d.experts, d.k, d.m, false, 1.0f};
  visit_dtype(Device::CUDA, op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_expert_gather_weight_grad(x.ptr<T>(), g.ptr<T>(), expert.ptr<int32_t>(), dw.ptr<T>(), a,
                                     stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

}  // namespace mowe::cuda
