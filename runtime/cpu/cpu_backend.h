// The CPU backend: OpenBLAS for products; for the rest, f32 vector kernels on the thread pool
// (simd_kernels.h, thread_pool.h; docs/cpu_kernels.md) and the scalar formulas of math.h for f64.
// It is the specification the CUDA backend is tested against.
#pragma once

#include "runtime/backend.h"

namespace mowe::cpu {

class CpuBackend final : public Backend {
 public:
  Device device() const override { return Device::CPU; }
  const char* name() const override { return "cpu"; }

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
};

// Softmax of one row in place over n values: shared by softmax_forward and attention.
template <typename T>
void softmax_row(T* x, int64_t n);
// dx = y * (dy - <dy, y>) for one row: shared by softmax_backward and attention.
template <typename T>
void softmax_row_backward(const T* y, const T* dy, T* dx, int64_t n);

// Checks that a tensor lives on the CPU (ops never touch device memory from the host).
void check_cpu(const char* op, const Tensor& t);

}  // namespace mowe::cpu
