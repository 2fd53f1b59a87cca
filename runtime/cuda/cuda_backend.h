// The CUDA backend: cuBLAS for products, kernels for the rest (kernels.h). Every op validates
// shapes on the host with the checks its CPU twin uses (runtime/op_checks.h), then queues work on
// ctx.stream and returns without synchronising. Constructing the backend does not touch the GPU:
// the cuBLAS handle of each device is created on first use.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <map>
#include <mutex>

#include "runtime/backend.h"
#include "runtime/memory.h"
#include "runtime/op_checks.h"

namespace mowe {

Backend& cuda_backend();
// cudaMalloc / cudaFree; zero() is a synchronous cudaMemset.
DeviceAllocator& cuda_allocator();
// True when the CUDA runtime finds at least one device; never throws.
bool cuda_device_available();

namespace cuda {

class CudaBackend final : public Backend {
 public:
  Device device() const override { return Device::CUDA; }
  const char* name() const override { return "cuda"; }

  // The current device's cuBLAS handle, bound to ctx.stream.
  cublasHandle_t cublas(const Context& ctx);

  void matmul(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
              bool trans_b, float alpha, float beta) override;
  void batched_matmul(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& c,
                      bool trans_a, bool trans_b, float alpha, float beta) override;

  void fill(const Context& ctx, const Tensor& x, double value) override;
  void axpy(const Context& ctx, double alpha, const Tensor& x, const Tensor& y) override;

  void rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& scale, const Tensor& out,
                       const Tensor& rstd, double eps) override;
  void rmsnorm_backward(const Context& ctx, const Tensor& dout, const Tensor& x,
                        const Tensor& scale, const Tensor& rstd, const Tensor& dx,
                        const Tensor& dscale) override;

  void gelu_forward(const Context& ctx, const Tensor& x, const Tensor& out) override;
  void gelu_backward(const Context& ctx, const Tensor& dout, const Tensor& x,
                     const Tensor& dx) override;
  void gated_gelu_forward(const Context& ctx, const Tensor& gate, const Tensor& linear,
                          const Tensor& out) override;
  void gated_gelu_backward(const Context& ctx, const Tensor& dout, const Tensor& gate,
                           const Tensor& linear, const Tensor& dgate,
                           const Tensor& dlinear) override;
  void softmax_forward(const Context& ctx, const Tensor& x, const Tensor& out) override;
  void softmax_backward(const Context& ctx, const Tensor& dout, const Tensor& out,
                        const Tensor& dx) override;
  void dropout_forward(const Context& ctx, const Tensor& x, const Tensor& out, float rate,
                       uint64_t seed) override;
  void dropout_backward(const Context& ctx, const Tensor& dout, const Tensor& dx, float rate,
                        uint64_t seed) override;

  void position_bias_forward(const Context& ctx, const Tensor& table, const Tensor& out,
                             bool bidirectional, int max_distance) override;
  void position_bias_backward(const Context& ctx, const Tensor& dout, const Tensor& dtable,
                              bool bidirectional, int max_distance) override;
  void attention_forward(const Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v,
                         const Tensor& bias, const Tensor& key_valid, const AttentionArgs& args,
                         const Tensor& probs, const Tensor& out) override;
  void attention_backward(const Context& ctx, const Tensor& dout, const Tensor& q, const Tensor& k,
                          const Tensor& v, const Tensor& probs, const Tensor& dq, const Tensor& dk,
                          const Tensor& dv, const Tensor& dbias,
                          const AttentionDropout& dropout) override;

  void embedding_forward(const Context& ctx, const Tensor& table, const Tensor& ids,
                         const Tensor& out) override;
  void embedding_backward(const Context& ctx, const Tensor& dout, const Tensor& ids,
                          const Tensor& dtable) override;
  void cross_entropy_forward(const Context& ctx, const Tensor& logits, const Tensor& targets,
                             const Tensor& weights, double z_loss, const Tensor& losses,
                             const Tensor& lse) override;
  void cross_entropy_backward(const Context& ctx, const Tensor& logits, const Tensor& targets,
                              const Tensor& weights, double z_loss, const Tensor& lse,
                              double loss_scale, const Tensor& dlogits) override;

  double sum(const Context& ctx, const Tensor& x) override;
  double sum_squares(const Context& ctx, const Tensor& x) override;
  void adamw_update(const Context& ctx, const Tensor& param, const Tensor& grad, const Tensor& m,
                    const Tensor& v, const AdamWStep& step) override;
  void adafactor_update(const Context& ctx, const Tensor& param, const Tensor& grad,
                        const Tensor& row, const Tensor& col, const Tensor& v,
                        const AdafactorStep& step) override;

 private:
  std::mutex mutex_;
  std::map<int, cublasHandle_t> handles_;  // by device ordinal
};

// ---- helpers shared by the op files ------------------------------------------------------------

inline cudaStream_t stream_of(const Context& ctx) {
  return static_cast<cudaStream_t>(ctx.stream);
}

// Checks that a tensor (if not empty) lives on the GPU: ops never copy implicitly.
void check_cuda(const char* op, const Tensor& t);
// The scratch arena of ctx, which must exist and hold device memory.
Arena& cuda_scratch(const char* op, const Context& ctx);

// Row-major strided-batched GEMM: for g < batch,
// c[g][M,N] = alpha * op(a[g]) op(b[g]) + beta * c[g], with a[g] = a + g * stride_a and row
// strides lda, ldb, ldc (elements). batch == 1 is a plain GEMM.
template <typename T>
void gemm(cublasHandle_t handle, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          T alpha, const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
          int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c, int64_t batch);

// Pointer of an optional operand: null when the tensor is empty.
template <typename T>
T* optional_ptr(const Tensor& t) {
  return t.empty() ? nullptr : t.ptr<T>();
}

}  // namespace cuda
}  // namespace mowe
