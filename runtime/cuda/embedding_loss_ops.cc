// Embedding lookup and softmax cross-entropy (with z-loss) on CUDA: validation as in
// runtime/cpu/embedding_loss_ops.cc except the id ranges, which live in device memory and are
// checked by the kernels (device-side asserts, see kernels.h).
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"

namespace mowe::cuda {

void CudaBackend::embedding_forward(const Context& ctx, const Tensor& table, const Tensor& ids,
                                    const Tensor& out) {
  for (const Tensor* t : {&table, &ids, &out}) check_cuda("embedding_forward", *t);
  const int64_t v = table.rows(), c = table.cols(), n = ids.numel();
  check_dtype("embedding_forward", "ids", ids, DType::I32);
  MOWE_CHECK(out.rows() == n && out.cols() == c && out.dtype == table.dtype,
             "embedding_forward: out {} does not match ids {} and table {}", out.str(), ids.str(),
             table.str());
  dispatch_float("embedding_forward", table.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_embedding_forward(table.ptr<T>(), ids.ptr<int32_t>(), out.ptr<T>(), n, c, v,
                             stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::embedding_backward(const Context& ctx, const Tensor& dout, const Tensor& ids,
                                     const Tensor& dtable) {
  for (const Tensor* t : {&dout, &ids, &dtable}) check_cuda("embedding_backward", *t);
  const int64_t v = dtable.rows(), c = dtable.cols(), n = ids.numel();
  check_dtype("embedding_backward", "ids", ids, DType::I32);
  MOWE_CHECK(dout.rows() == n && dout.cols() == c && dout.dtype == dtable.dtype,
             "embedding_backward: dout {} does not match ids {} and dtable {}", dout.str(),
             ids.str(), dtable.str());
  dispatch_float("embedding_backward", dtable.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_embedding_backward(dout.ptr<T>(), ids.ptr<int32_t>(), dtable.ptr<T>(), n, c, v,
                              stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

namespace {
void check_loss_args(const char* op, const Tensor& logits, const Tensor& targets,
                     const Tensor& weights, const Tensor& lse) {
  for (const Tensor* t : {&logits, &targets, &weights, &lse}) check_cuda(op, *t);
  const int64_t n = logits.rows();
  check_dtype(op, "targets", targets, DType::I32);
  MOWE_CHECK(targets.numel() == n, "{}: {} targets for {} rows of logits", op, targets.numel(), n);
  check_shape(op, "weights", weights, {n});
  check_shape(op, "lse", lse, {n});
  check_dtype(op, "weights", weights, logits.dtype);
  check_dtype(op, "lse", lse, logits.dtype);
}
}  // namespace

void CudaBackend::cross_entropy_forward(const Context& ctx, const Tensor& logits,
                                        const Tensor& targets, const Tensor& weights, double z_loss,
                                        const Tensor& losses, const Tensor& lse) {
  check_loss_args("cross_entropy_forward", logits, targets, weights, lse);
  check_cuda("cross_entropy_forward", losses);
  check_shape("cross_entropy_forward", "losses", losses, {logits.rows()});
  const LossArgs a{logits.rows(), logits.cols(), z_loss, 0.0};
  dispatch_float("cross_entropy_forward", logits.dtype, [&](auto zero) {
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
  check_loss_args("cross_entropy_backward", logits, targets, weights, lse);
  check_cuda("cross_entropy_backward", dlogits);
  check_same_shape("cross_entropy_backward", logits, dlogits);
  const LossArgs a{logits.rows(), logits.cols(), z_loss, loss_scale};
  dispatch_float("cross_entropy_backward", logits.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_cross_entropy_backward(logits.ptr<T>(), targets.ptr<int32_t>(), weights.ptr<T>(),
                                  lse.ptr<T>(), dlogits.ptr<T>(), a, stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

}  // namespace mowe::cuda
