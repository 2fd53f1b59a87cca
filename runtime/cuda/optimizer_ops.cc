// Reductions and optimizer updates on CUDA: host-side validation (runtime/op_checks.cc, shared
// with the CPU) and launches of the kernels in optimizer_ops.cu.
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/cuda/kernels.h"

namespace mowe::cuda {
namespace {

// Queues the sum (of squares) of x into a device scalar of ctx.scratch, then `then(scalar)` on
// the same stream, before the scratch is released; nothing for an empty x.
template <typename Then>
void queue_sum(const char* op, const Context& ctx, const Tensor& x, bool squares, Then then) {
  visit_dtype(Device::CUDA, op, x.dtype, [&](auto zero) {
    using T = decltype(zero);
    if (x.numel() == 0) return;
    Arena& scratch = cuda_scratch(op, ctx);
    ArenaScope scope(scratch);
    double* out = scratch.alloc({1 + kReductionPartials}, DType::F64).ptr<double>();
    launch_sum(x.ptr<T>(), x.numel(), squares, out, out + 1, stream_of(ctx));
    CUDA_CHECK_LAST();
    then(out);
  });
}

// The result goes to the host with a copy on ctx.stream, which waits for the work queued before
// it: the caller needs the number now.
double reduce(const char* op, const Context& ctx, const Tensor& x, bool squares) {
  check_cuda(op, x);
  check_reduction(op, x);
  double total = 0;
  queue_sum(op, ctx, x, squares, [&](const double* out) {
    CUDA_CHECK(
        cudaMemcpyAsync(&total, out, sizeof(double), cudaMemcpyDeviceToHost, stream_of(ctx)));
    CUDA_CHECK(cudaStreamSynchronize(stream_of(ctx)));
  });
  return total;
}

}  // namespace

double CudaBackend::sum(const Context& ctx, const Tensor& x) {
  return reduce("sum", ctx, x, false);
}

double CudaBackend::sum_squares(const Context& ctx, const Tensor& x) {
  return reduce("sum_squares", ctx, x, true);
}

void CudaBackend::accumulate_sum_squares(const Context& ctx, const Tensor& x, const Tensor& total) {
  const char* op = "accumulate_sum_squares";
  check_cuda(op, x);
  check_cuda(op, total);
  check_accumulate_sum_squares(x, total);
  queue_sum(op, ctx, x, true, [&](const double* out) {
    launch_add_scalar(total.ptr<double>(), out, stream_of(ctx));
    CUDA_CHECK_LAST();
  });
}

void CudaBackend::decay_toward(const Context& ctx, const Tensor& x, double floor, double factor) {
  check_cuda("decay_toward", x);
  visit_dtype(Device::CUDA, "decay_toward", x.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_decay_toward(x.ptr<T>(), x.numel(), floor, factor, stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::adamw_update(const Context& ctx, const Tensor& param, const Tensor& grad,
                               const Tensor& m, const Tensor& v, const AdamWStep& step) {
  for (const Tensor* t : {&param, &grad, &m, &v}) check_cuda("adamw_update", *t);
  check_adamw_update(param, grad, m, v, step);
  visit_dtype(Device::CUDA, "adamw_update", param.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_adamw_update(param.ptr<T>(), grad.ptr<T>(), m.ptr<T>(), v.ptr<T>(), param.numel(),
                        adamw_coeffs<T>(step), stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

void CudaBackend::adafactor_update(const Context& ctx, const Tensor& param, const Tensor& grad,
                                   const Tensor& row, const Tensor& col, const Tensor& v,
                                   const AdafactorStep& step) {
  for (const Tensor* t : {&param, &grad, &row, &col, &v}) check_cuda("adafactor_update", *t);
  const AdafactorDims d = check_adafactor_update(param, grad, row, col, v, step);
  if (d.batch == 0) return;
  Arena& scratch = cuda_scratch("adafactor_update", ctx);
  ArenaScope scope(scratch);
  double* stats = scratch.alloc({adafactor_scratch_doubles(d.batch)}, DType::F64).ptr<double>();
  visit_dtype(Device::CUDA, "adafactor_update", param.dtype, [&](auto zero) {
    using T = decltype(zero);
    launch_adafactor_update(param.ptr<T>(), grad.ptr<T>(), optional_ptr<T>(row),
                            optional_ptr<T>(col), optional_ptr<T>(v), {d.batch, d.rows, d.cols},
                            adafactor_coeffs(step), stats, stream_of(ctx));
  });
  CUDA_CHECK_LAST();
}

}  // namespace mowe::cuda
