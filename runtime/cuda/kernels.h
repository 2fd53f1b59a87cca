// Kernel launchers of the CUDA backend, on raw device pointers. They are compiled by nvcc in the
// *_ops.cu files and called from the host-side *_ops.cc files, which validate shapes and check
// for launch errors: fmt (and so the check macros) does not compile under nvcc, so .cu files
// include only this header, runtime/math.h and block_ops.cuh.
//
// Every launcher queues its work on `stream` and returns at once; sizes of 0 launch nothing.
// T is float or double (instantiated in the .cu files); ids are int32. Ids out of range stop
// the kernel with a device-side assert (cudaErrorAssert at the next check): checking them on the
// host would need a copy and a synchronisation per op.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "runtime/math.h"

namespace mowe::cuda {

// ---- elementwise_ops.cu ------------------------------------------------------------------------
template <typename T>  // also int32_t
void launch_fill(T* x, int64_t n, T value, cudaStream_t stream);
template <typename T>
void launch_axpy(T alpha, const T* x, T* y, int64_t n, cudaStream_t stream);
template <typename T>
void launch_gelu_forward(const T* x, T* out, int64_t n, cudaStream_t stream);
template <typename T>
void launch_gelu_backward(const T* dout, const T* x, T* dx, int64_t n, cudaStream_t stream);
template <typename T>
void launch_gated_gelu_forward(const T* gate, const T* linear, T* out, int64_t n,
                               cudaStream_t stream);
template <typename T>
void launch_gated_gelu_backward(const T* dout, const T* gate, const T* linear, T* dgate, T* dlinear,
                                int64_t n, cudaStream_t stream);
// x, out [rows, n]; may alias.
template <typename T>
void launch_softmax_forward(const T* x, T* out, int64_t rows, int64_t n, cudaStream_t stream);
template <typename T>
void launch_softmax_backward(const T* dout, const T* out, T* dx, int64_t rows, int64_t n,
                             cudaStream_t stream);
// out = x * dropout_scale(seed, i, rate): the forward (x) and the backward (dout) alike.
template <typename T>
void launch_dropout(const T* x, T* out, int64_t n, float rate, uint64_t seed, cudaStream_t stream);

// ---- norm_ops.cu -------------------------------------------------------------------------------
// x, out [rows, c]; scale [c]; rstd [rows].
template <typename T>
void launch_rmsnorm_forward(const T* x, const T* scale, T* out, T* rstd, int64_t rows, int64_t c,
                            T eps, cudaStream_t stream);
// dx is overwritten; dscale [c] is accumulated in a fixed order (deterministic).
template <typename T>
void launch_rmsnorm_backward(const T* dout, const T* x, const T* scale, const T* rstd, T* dx,
                             T* dscale, int64_t rows, int64_t c, cudaStream_t stream);

// ---- attention_ops.cu --------------------------------------------------------------------------
struct BiasDims {
  int64_t buckets, heads, t, s;  // table [K,H], bias [H,T,S]
  bool bidirectional;
  int max_distance;
};
template <typename T>
void launch_position_bias_forward(const T* table, T* out, const BiasDims& d, cudaStream_t stream);
// dtable += scatter of dout by bucket (atomics: the summation order varies between runs).
template <typename T>
void launch_position_bias_backward(const T* dout, T* dtable, const BiasDims& d,
                                   cudaStream_t stream);

struct ScoresDims {  // scores [B,H,T,S]
  int64_t b, h, t, s;
};
// In place on scores [B,H,T,S]: add bias [H,T,S] (may be null), add mask_value where the key is
// padding (key_valid [B,S], may be null) or in the future (causal), then softmax each row.
template <typename T>
void launch_attention_softmax(T* scores, const T* bias, const int32_t* key_valid,
                              const ScoresDims& d, bool causal, T mask_value, cudaStream_t stream);
// For one batch entry: ds [H,T,S] holds dP on entry and dS = P * (dP - <dP, P>) on exit;
// dbias [H,T,S] += dS unless null.
template <typename T>
void launch_attention_softmax_backward(const T* probs, T* ds, T* dbias, int64_t rows, int64_t s,
                                       cudaStream_t stream);

// ---- embedding_loss_ops.cu ---------------------------------------------------------------------
// table [V,C]; ids [N]; out [N,C].
template <typename T>
void launch_embedding_forward(const T* table, const int32_t* ids, T* out, int64_t n, int64_t c,
                              int64_t v, cudaStream_t stream);
// dtable[ids[i]] += dout[i] with atomics (repeated ids add up in a varying order).
template <typename T>
void launch_embedding_backward(const T* dout, const int32_t* ids, T* dtable, int64_t n, int64_t c,
                               int64_t v, cudaStream_t stream);
struct LossArgs {
  int64_t n, v;  // logits [N,V]
  double z_loss;
  double loss_scale;  // backward only
};
template <typename T>
void launch_cross_entropy_forward(const T* logits, const int32_t* targets, const T* weights,
                                  T* losses, T* lse, const LossArgs& a, cudaStream_t stream);
template <typename T>
void launch_cross_entropy_backward(const T* logits, const int32_t* targets, const T* weights,
                                   const T* lse, T* dlogits, const LossArgs& a,
                                   cudaStream_t stream);

// ---- expert_gather_ops.cu -----------------------------------------------------------------------
struct ExpertGatherArgs {
  int64_t rows, experts, k, m;
  bool trans_w;
  float beta;
};
template <typename T>
void launch_expert_gather_matmul(const T* x, const T* w, const int32_t* expert, T* out,
                                 const ExpertGatherArgs& a, cudaStream_t stream);
template <typename T>
void launch_expert_gather_weight_grad(const T* x, const T* g, const int32_t* expert, T* dw,
                                      const ExpertGatherArgs& a, cudaStream_t stream);

// ---- optimizer_ops.cu --------------------------------------------------------------------------
// Reductions accumulate in double and add their partial sums in a fixed order, so results do not
// vary between runs. Their partial sums need this many doubles of scratch.
constexpr int64_t kReductionPartials = 65536;

// out[0] = sum of x[i] (of x[i]^2 when squares) over n > 0 elements.
template <typename T>
void launch_sum(const T* x, int64_t n, bool squares, double* out, double* partials,
                cudaStream_t stream);
// x[i] = floor + (x[i] - floor) * factor, in double.
template <typename T>
void launch_decay_toward(T* x, int64_t n, double floor, double factor, cudaStream_t stream);
// total[0] += value[0], one thread: the device-side accumulation of reductions.
void launch_add_scalar(double* total, const double* value, cudaStream_t stream);
template <typename T>
void launch_adamw_update(T* param, const T* grad, T* m, T* v, int64_t n,
                         const math::AdamWCoeffs<T>& c, cudaStream_t stream);

// param and grad seen as [batch, rows, cols]; row [batch, rows] and col [batch, cols] when
// factored (v null), else v like param (row and col null).
struct SliceDims {
  int64_t batch, rows, cols;
};
inline int64_t adafactor_scratch_doubles(int64_t batch) {
  return 3 * batch + kReductionPartials;
}
template <typename T>
void launch_adafactor_update(T* param, const T* grad, T* row, T* col, T* v, const SliceDims& d,
                             const math::AdafactorCoeffs& c, double* scratch, cudaStream_t stream);

}  // namespace mowe::cuda
