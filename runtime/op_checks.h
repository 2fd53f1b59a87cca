// Argument validation of the backend ops (runtime/backend.h), shared by the CPU and CUDA backends
// so that both accept and reject the same calls with the same messages. Each check validates
// shapes, ranks and dtypes and returns the dimensions the implementations need; it throws Error
// naming the op on the first violation. Checks serving two ops take the op's name.
//
// Device-specific checks stay in each backend and run before these: that the tensors live on the
// backend's device, that the scratch arena is present and on that device, and (CPU only) that
// ids are in range, which on CUDA lives in device memory and is asserted by the kernels.
//
// Element-wise ops with one input and one output (axpy, gelu_forward, softmax_forward) need only
// check_same_shape (runtime/tensor.h).
//
// Host code only: this header pulls in fmt through tensor.h, which nvcc rejects in .cu files.
#pragma once

#include <cmath>
#include <cstdint>

#include "runtime/backend.h"
#include "runtime/math.h"
#include "runtime/tensor.h"

namespace mowe {

// Calls f(T{}) with T = float or double for the dtype; other dtypes are an error naming the op
// and the backend (`device`) that runs it.
template <typename F>
void visit_dtype(Device device, const char* op, DType dtype, F&& f) {
  if (dtype == DType::F32) {
    f(float{});
  } else if (dtype == DType::F64) {
    f(double{});
  } else {
    MOWE_CHECK(false, "{}: dtype {} is not supported on the {} backend (f32, f64)", op,
               dtype_name(dtype),
               device == Device::CPU    ? "CPU"
               : device == Device::CUDA ? "CUDA"
                                        : "simulated");
  }
}

// ---- linear algebra ----------------------------------------------------------------------------

// c[M,N] = op(a)[M,K] op(b)[K,N]; a, b, c flattened into rows.
struct MatmulDims {
  int64_t m, n, k;
};
MatmulDims check_matmul(const Tensor& a, const Tensor& b, const Tensor& c, bool trans_a,
                        bool trans_b);

// c[G,M,N] = op(a[G]) op(b[G]); stride_* are the elements between groups.
struct BatchedMatmulDims {
  int64_t groups, m, n, k;
  int64_t stride_a, stride_b, stride_c;
};
BatchedMatmulDims check_batched_matmul(const Tensor& a, const Tensor& b, const Tensor& c,
                                       bool trans_a, bool trans_b);

// ---- element-wise ------------------------------------------------------------------------------

// dout ~ x ~ dx (same shape, dtype and device): gelu_backward (x) and softmax_backward (out).
void check_unary_backward(const char* op, const Tensor& dout, const Tensor& x, const Tensor& dx);
void check_gated_gelu_forward(const Tensor& gate, const Tensor& linear, const Tensor& out);
void check_gated_gelu_backward(const Tensor& dout, const Tensor& gate, const Tensor& linear,
                               const Tensor& dgate, const Tensor& dlinear);
// x ~ out and rate in [0, 1): dropout_forward (x, out) and dropout_backward (dout, dx).
void check_dropout(const char* op, const Tensor& x, const Tensor& out, float rate);

// ---- normalisation -----------------------------------------------------------------------------

struct RowsDims {
  int64_t rows, cols;  // N, C
};
RowsDims check_rmsnorm_forward(const Tensor& x, const Tensor& scale, const Tensor& out,
                               const Tensor& rstd);
RowsDims check_rmsnorm_backward(const Tensor& dout, const Tensor& x, const Tensor& scale,
                                const Tensor& rstd, const Tensor& dx, const Tensor& dscale);

// ---- attention ---------------------------------------------------------------------------------

// table [K,H], bias [H,T,S]; max_distance must exceed num_buckets / 2, where the logarithmic
// buckets of math::relative_position_bucket start.
struct PositionBiasDims {
  int64_t buckets, heads, t, s;
};
PositionBiasDims check_position_bias_forward(const Tensor& table, const Tensor& out,
                                             int max_distance);
PositionBiasDims check_position_bias_backward(const Tensor& dout, const Tensor& dtable,
                                              int max_distance);

// q [B,T,H,D]; k, v [B,S,H,D]; probs [B,H,T,S].
struct AttentionDims {
  int64_t b, t, s, h, d;
};
// Also bias [H,T,S] and key_valid [B,S] i32 when not empty, and out like q.
AttentionDims check_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v,
                                      const Tensor& bias, const Tensor& key_valid,
                                      const Tensor& probs, const Tensor& out);
// Also dout, dq like q; dk like k; dv like v; dbias [H,T,S] when not empty.
AttentionDims check_attention_backward(const Tensor& dout, const Tensor& q, const Tensor& k,
                                       const Tensor& v, const Tensor& probs, const Tensor& dq,
                                       const Tensor& dk, const Tensor& dv, const Tensor& dbias);

// ---- embedding and loss ------------------------------------------------------------------------

struct EmbeddingDims {
  int64_t vocab, cols, n;  // table [V,C], ids [N]
};
// ids i32; out [N,C] with the dtype of the table. Id ranges are not checked here.
EmbeddingDims check_embedding_forward(const Tensor& table, const Tensor& ids, const Tensor& out);
EmbeddingDims check_embedding_backward(const Tensor& dout, const Tensor& ids, const Tensor& dtable);

// logits [N,V]; targets [N] i32; weights, lse (and losses) [N] with the dtype of the logits.
// Target ranges are not checked here.
struct LossDims {
  int64_t n, v;
};
LossDims check_cross_entropy_forward(const Tensor& logits, const Tensor& targets,
                                     const Tensor& weights, const Tensor& losses,
                                     const Tensor& lse);
LossDims check_cross_entropy_backward(const Tensor& logits, const Tensor& targets,
                                      const Tensor& weights, const Tensor& lse,
                                      const Tensor& dlogits);

// ---- expert products gathered by row
// -------------------------------------------------------------

struct ExpertGatherDims {
  int64_t rows, experts, k, m;
};
// w [E,K,M] or [E,M,K] (trans_w); out [R,M]; expert [R] i32; beta 0 or 1. Expert ids are not
// checked here (on CUDA they live in device memory).
ExpertGatherDims check_expert_gather_matmul(const Tensor& x, const Tensor& w, const Tensor& expert,
                                            const Tensor& out, bool trans_w, float beta);
// g [R,M]; dw [E,K,M]; expert [R] i32.
ExpertGatherDims check_expert_gather_weight_grad(const Tensor& x, const Tensor& g,
                                                 const Tensor& expert, const Tensor& dw);

// ---- reductions and optimizer updates ----------------------------------------------------------

// sum and sum_squares: any shape; an empty view (no data) only with zero elements.
void check_reduction(const char* op, const Tensor& x);
// x as for check_reduction; total f64 [1].
void check_accumulate_sum_squares(const Tensor& x, const Tensor& total);

// param, grad, m, v alike; step hyper-parameters in range (step >= 1, betas in [0, 1), ...).
void check_adamw_update(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v,
                        const AdamWStep& step);

template <typename T>
math::AdamWCoeffs<T> adamw_coeffs(const AdamWStep& s) {
  const double t = static_cast<double>(s.step);
  return {T(s.lr),
          T(s.beta1),
          T(1.0 - s.beta1),
          T(s.beta2),
          T(1.0 - s.beta2),
          T(s.eps),
          T(s.weight_decay),
          T(s.grad_scale),
          T(1.0 / (1.0 - std::pow(s.beta1, t))),
          T(1.0 / std::sqrt(1.0 - std::pow(s.beta2, t)))};
}

// param and grad seen as [batch, rows, cols] (Backend::adafactor_update).
struct AdafactorDims {
  int64_t batch, rows, cols;
  bool factored;  // row [B, R] and col [B, C] given, v empty
};
AdafactorDims check_adafactor_update(const Tensor& param, const Tensor& grad, const Tensor& row,
                                     const Tensor& col, const Tensor& v, const AdafactorStep& step);
math::AdafactorCoeffs adafactor_coeffs(const AdafactorStep& step);

}  // namespace mowe
