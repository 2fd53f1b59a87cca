// Embedding lookup and softmax cross-entropy (with z-loss) on CUDA: validation in
// runtime/op_checks.cc, as on the CPU, except the id ranges, which live in device memory and are
// checked by the kernels (device-side asserts, see kernels.h).
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"

namespace mowe::cuda {

void CudaBackend::embedding_forward(const Context& ctx, const Tensor& table, const Tensor& ids,
                                    const Tensor& out) {
  for (const Tensor* t : {&table, &ids, &out}) check_cuda("embedding_forward", *t);
  const EmbeddingDims d = check_embedding_forward(table, ids, out);
  visit_dtype(Device::CUDA, "embedding_forward", table.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_embedding_forward(table.ptr<T>(), ids.ptr<int32_t>(), out.ptr<T>(), d.n, d.cols, d.vocab,
                             stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::embedding_backward(const Context& ctx, const Tensor& dout, const Tensor& ids,
                                     const Tensor& dtable) {
  for (const Tensor* t : {&dout, &ids, &dtable}) check_cuda("embedding_backward", *t);
  const EmbeddingDims d = check_embedding_backward(dout, ids, dtable);
  visit_dtype(Device::CUDA, "embedding_backward", dtable.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_embedding_backward(dout.ptr<T>(), ids.ptr<int32_t>(), dtable.ptr<T>(), d.n, d.cols,
                              d.vocab, stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::cross_entropy_forward(const Context& ctx, const Tensor& logits,
                                        const Tensor& targets, const Tensor& weights, double z_loss,
                                        const Tensor& losses, const Tensor& lse) {
  for (const Tensor* t : {&logits, &targets, &weights, &losses, &lse})
    check_cuda("cross_entropy_forward", *t);
  const LossDims d = check_cross_entropy_forward(logits, targets, weights, losses, lse);
  const LossArgs a{d.n, d.v, z_loss, 0.0};
  visit_dtype(Device::CUDA, "cross_entropy_forward", logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_cross_entropy_forward(logits.ptr<T>(), targets.ptr<int32_t>(), weights.ptr<T>(),
                                 losses.ptr<T>(), lse.ptr<T>(), a, stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::cross_entropy_backward(const Context& ctx, const Tensor& logits,
                                         const Tensor& targets, const Tensor& weights,
                                         double z_loss, const Tensor& lse, double loss_scale,
                                         const Tensor& dlogits) {
  for (const Tensor* t : {&logits, &targets, &weights, &lse, &dlogits})
    check_cuda("cross_entropy_backward", *t);
  const LossDims d = check_cross_entropy_backward(logits, targets, weights, lse, dlogits);
  const LossArgs a{d.n, d.v, z_loss, loss_scale};
  visit_dtype(Device::CUDA, "cross_entropy_backward", logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_cross_entropy_backward(logits.ptr<T>(), targets.ptr<int32_t>(), weights.ptr<T>(),
                                  lse.ptr<T>(), dlogits.ptr<T>(), a, stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

}  // namespace mowe::cuda
