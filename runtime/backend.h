// The backend interface the model calls: one small set of ops, implemented once per device
// (runtime/cpu, runtime/cuda) and chosen once through backend_for(device).
//
// Conventions shared by every op:
// - Tensors are row-major contiguous; float tensors are f32 (training) or f64 (gradient checks,
//   CPU only). Index tensors are i32.
// - Each forward has its backward beside it. A backward OVERWRITES the gradients of its inputs
//   (dx, dq, ...) and ACCUMULATES (+=) into the gradients of parameters (dscale, dtable, dbias),
//   so parameter gradients can be summed over layers and micro-batches.
// - Letters in shape comments: N rows (tokens), C model width, F hidden width, V vocabulary,
//   B batch, T query length, S key length, H heads, D head width, K position buckets,
//   G groups of a batched product, L softmax length.
#pragma once

#include <cstdint>

#include "runtime/context.h"
#include "runtime/tensor.h"

namespace mowe {

// Dropout on the attention probabilities after the softmax, as T5X applies it to the attention
// weights: element i of probs [B,H,T,S] (its flat index in the op's tensors) is kept iff
// uniform01(seed, i) >= rate and then scaled by 1/(1-rate), the mask dropout_forward would apply
// to probs. probs keeps the softmax before dropout; the backward pass recomputes the mask from
// (rate, seed), so nothing more is stored. rate 0 = off.
struct AttentionDropout {
  float rate = 0.0f;
  uint64_t seed = 0;
};

struct AttentionArgs {
  bool causal = false;  // query t sees keys s <= t (decoder self-attention)
  // Added to the scores before the softmax instead of -inf, as T5X does, so a fully masked row
  // gives a uniform distribution rather than NaN.
  double mask_value = -1e9;
  AttentionDropout dropout;
};

// One AdamW step (Loshchilov & Hutter, as PyTorch's AdamW), see adamw_update.
struct AdamWStep {
  double lr = 0;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0;  // decoupled: p -= lr * weight_decay * p, whatever the gradient
  int64_t step = 1;         // 1-based update count, for the bias corrections 1 - beta^step
  // Multiplied into the gradient first, so that clipping and loss normalisation need no pass.
  double grad_scale = 1;
};

// One Adafactor step as T5X's (Shazeer & Stern 2018, beta1 = 0), see adafactor_update and
// docs/optimizers.md.
struct AdafactorStep {
  double lr = 0;     // from the schedule: the relative step of the paper is off
  int64_t step = 1;  // 1-based update count: beta2 = 1 - step^-decay_rate
  double decay_rate = 0.8;
  double clip_threshold = 1.0;  // the RMS of each update is capped at this; 0 = no clipping
  double eps1 = 1e-30;          // added to g^2
  double eps2 = 1e-3;           // floor of the parameter scale
  bool multiply_by_parameter_scale = true;  // lr * max(eps2, RMS(param))
  double grad_scale = 1;                    // as in AdamWStep
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  virtual const char* name() const = 0;

  // ---- linear algebra --------------------------------------------------------------------------
  // c[M,N] = alpha * op(a) @ op(b) + beta * c, with op(a) [M,K] and op(b) [K,N]. a and b may have
  // leading dimensions: they are flattened into rows ([.., K] is [rows, K]).
  virtual void matmul(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& c,
                      bool trans_a, bool trans_b, float alpha = 1.0f, float beta = 0.0f) = 0;
  // c[G,M,N] = alpha * op(a[G]) @ op(b[G]) + beta * c for each of the G groups.
  virtual void batched_matmul(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& c,
                              bool trans_a, bool trans_b, float alpha = 1.0f,
                              float beta = 0.0f) = 0;

  // ---- element-wise ----------------------------------------------------------------------------
  virtual void fill(const Context& ctx, const Tensor& x, double value) = 0;
  // y += alpha * x (same shape): residual adds and gradient accumulation.
  virtual void axpy(const Context& ctx, double alpha, const Tensor& x, const Tensor& y) = 0;

  // ---- normalisation ---------------------------------------------------------------------------
  // T5 RMSNorm: out = x / sqrt(mean(x^2) + eps) * scale; no mean subtraction, no bias.
  // x, out [N,C]; scale [C]; rstd [N] saved for the backward pass.
  virtual void rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& scale,
                               const Tensor& out, const Tensor& rstd, double eps) = 0;
  virtual void rmsnorm_backward(const Context& ctx, const Tensor& dout, const Tensor& x,
                                const Tensor& scale, const Tensor& rstd, const Tensor& dx,
                                const Tensor& dscale) = 0;

  // ---- activations -----------------------------------------------------------------------------
  // GELU (tanh approximation), any shape.
  virtual void gelu_forward(const Context& ctx, const Tensor& x, const Tensor& out) = 0;
  virtual void gelu_backward(const Context& ctx, const Tensor& dout, const Tensor& x,
                             const Tensor& dx) = 0;
  // T5.1.1 gated GELU: out = gelu(gate) * linear; gate, linear, out [N,F].
  virtual void gated_gelu_forward(const Context& ctx, const Tensor& gate, const Tensor& linear,
                                  const Tensor& out) = 0;
  virtual void gated_gelu_backward(const Context& ctx, const Tensor& dout, const Tensor& gate,
                                   const Tensor& linear, const Tensor& dgate,
                                   const Tensor& dlinear) = 0;
  // Row softmax over the last dimension: x, out [N,L]. The backward needs only out.
  virtual void softmax_forward(const Context& ctx, const Tensor& x, const Tensor& out) = 0;
  virtual void softmax_backward(const Context& ctx, const Tensor& dout, const Tensor& out,
                                const Tensor& dx) = 0;
  // Inverted dropout with a counter-based mask: element i is kept iff uniform01(seed, i) >= rate
  // and then scaled by 1/(1-rate). The mask is recomputed from (seed, rate) in the backward pass.
  virtual void dropout_forward(const Context& ctx, const Tensor& x, const Tensor& out, float rate,
                               uint64_t seed) = 0;
  virtual void dropout_backward(const Context& ctx, const Tensor& dout, const Tensor& dx,
                                float rate, uint64_t seed) = 0;

  // ---- attention -------------------------------------------------------------------------------
  // T5 relative position bias: out[H,T,S] = table[bucket(s - t), h], buckets as in math.h.
  // table [K,H]; one table is shared by all layers of a stack, as in T5. max_distance must be
  // > K/2, where the logarithmic buckets start. Argument checks of every op: runtime/op_checks.h.
  virtual void position_bias_forward(const Context& ctx, const Tensor& table, const Tensor& out,
                                     bool bidirectional, int max_distance) = 0;
  virtual void position_bias_backward(const Context& ctx, const Tensor& dout, const Tensor& dtable,
                                      bool bidirectional, int max_distance) = 0;
  // Multi-head attention without score scaling (T5 folds 1/sqrt(D) into the initialisation):
  // probs[B,H,T,S] = softmax(q k^T + bias + mask); out[B,T,H,D] = dropout(probs) v.
  // q [B,T,H,D]; k, v [B,S,H,D]; bias [H,T,S] or empty; key_valid [B,S] i32 (1 = real token,
  // 0 = padding) or empty. probs is saved for the backward pass. Needs ctx.scratch.
  virtual void attention_forward(const Context& ctx, const Tensor& q, const Tensor& k,
                                 const Tensor& v, const Tensor& bias, const Tensor& key_valid,
                                 const AttentionArgs& args, const Tensor& probs,
                                 const Tensor& out) = 0;
  // dq, dk, dv are overwritten; dbias [H,T,S] (summed over B) is accumulated, or skipped if empty.
  // `dropout` must be the forward's args.dropout.
  virtual void attention_backward(const Context& ctx, const Tensor& dout, const Tensor& q,
                                  const Tensor& k, const Tensor& v, const Tensor& probs,
                                  const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                  const Tensor& dbias, const AttentionDropout& dropout) = 0;

  // ---- embedding and loss ----------------------------------------------------------------------
  // out[N,C] = table[ids[n]]; table [V,C]; ids [N] i32, each in [0, V).
  virtual void embedding_forward(const Context& ctx, const Tensor& table, const Tensor& ids,
                                 const Tensor& out) = 0;
  // dtable[ids[n]] += dout[n] (scatter-add; repeated ids add up).
  virtual void embedding_backward(const Context& ctx, const Tensor& dout, const Tensor& ids,
                                  const Tensor& dtable) = 0;
  // Softmax cross-entropy with T5X's z-loss: for row n with lse = logsumexp(logits[n]),
  // losses[n] = weights[n] * (lse - logits[n, targets[n]] + z_loss * lse^2).
  // logits [N,V]; targets [N] i32; weights [N] (0 masks padding labels); losses, lse [N].
  virtual void cross_entropy_forward(const Context& ctx, const Tensor& logits,
                                     const Tensor& targets, const Tensor& weights, double z_loss,
                                     const Tensor& losses, const Tensor& lse) = 0;
  // dlogits = loss_scale * d(sum_n losses[n]) / dlogits; dlogits [N,V] is overwritten.
  virtual void cross_entropy_backward(const Context& ctx, const Tensor& logits,
                                      const Tensor& targets, const Tensor& weights, double z_loss,
                                      const Tensor& lse, double loss_scale,
                                      const Tensor& dlogits) = 0;

  // ---- reductions ------------------------------------------------------------------------------
  // Sum of all elements (of their squares), accumulated in double and returned to the host: the
  // loss and gradient norms. On CUDA this waits for ctx.stream and needs ctx.scratch.
  virtual double sum(const Context& ctx, const Tensor& x) = 0;
  virtual double sum_squares(const Context& ctx, const Tensor& x) = 0;

  // ---- optimizer updates -----------------------------------------------------------------------
  // In place on param, m, v (all like grad), with g = grad_scale * grad:
  // m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
  // p -= lr * (m / (1-b1^t) / (sqrt(v / (1-b2^t)) + eps) + weight_decay * p).
  virtual void adamw_update(const Context& ctx, const Tensor& param, const Tensor& grad,
                            const Tensor& m, const Tensor& v, const AdamWStep& step) = 0;
  // In place on param and the second-moment statistics. param and grad [.., R, C] are seen as
  // [B, R, C], B being the product of the dimensions before the last two (1 for a matrix; a
  // vector is [1, 1, C]); every statistic is per slice b, as for T5X's BATCH axes (stacked
  // experts). Factored: row [B, R] and col [B, C], v empty; unfactored: v like param, row and col
  // empty. The formulas are in math.h (adafactor_*) and docs/optimizers.md. Needs ctx.scratch on
  // CUDA.
  virtual void adafactor_update(const Context& ctx, const Tensor& param, const Tensor& grad,
                                const Tensor& row, const Tensor& col, const Tensor& v,
                                const AdafactorStep& step) = 0;
};

// Gradients of c = op(a) @ op(b), accumulated into da and db (either may be empty): the backward
// of Backend::matmul, expressed with matmul itself on any backend.
void matmul_backward(Backend& backend, const Context& ctx, const Tensor& dc, const Tensor& a,
                     const Tensor& b, const Tensor& da, const Tensor& db, bool trans_a,
                     bool trans_b);

Backend& cpu_backend();
// Threads of the CPU backend's BLAS; a job sets cores / ranks-on-the-node so that ranks sharing a
// node do not oversubscribe it. Returns the number in effect.
int set_cpu_threads(int threads);
// The threads the CPU backend's BLAS uses now.
int cpu_threads();
// The backend for `device`; throws Error naming the build option when it was not compiled in.
Backend& backend_for(Device device);
bool cuda_backend_compiled();

}  // namespace mowe
