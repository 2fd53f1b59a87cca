// The backend interface the model calls: one small set of ops, implemented once per device
// (runtime/cpu, runtime/cuda) and chosen once through backend_for(device).
//
// The ops themselves, with their contracts and the conventions they share, are listed once in
// runtime/backend_ops.def; the backends' declarations are generated from that list.
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

  // One pure virtual method per op of the list; CpuBackend and CudaBackend override each.
#define MOWE_BACKEND_OP(return_type, name, parameters) virtual return_type name parameters = 0;
#include "runtime/backend_ops.def"
#undef MOWE_BACKEND_OP
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
