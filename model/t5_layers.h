// T5.1.1 sub-layers: pre-norm attention (self or cross) and the dense gated-GELU FFN, each a
// residual update x <- x + dropout(f(rmsnorm(x))). Forward saves what backward needs in the
// step's activation arena; backward turns the gradient of the sub-layer's output into the
// gradient of its input in place (d <- d + J^T d) and accumulates parameter gradients.
//
// Shape letters: B batch, T query length, S key length, C d_model, H heads, D d_kv, F d_ff,
// N = B*T rows.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "model/parameters.h"
#include "runtime/backend.h"

namespace mowe::model {

// Everything a sub-layer needs besides its parameters, per call.
struct StepContext {
  Backend* backend = nullptr;
  Context ctx;                       // device, stream, scratch arena for op temporaries
  Arena* activations = nullptr;      // lives until the end of the step's backward pass
  float dropout_rate = 0.0f;         // 0 at evaluation
  float expert_dropout_rate = 0.0f;  // model.mowe.expert_dropout_rate; 0 at evaluation
  uint64_t dropout_seed = 0;         // per step; each dropout site mixes in its own id
  int64_t first_example = 0;         // global index of local example 0 (world-size invariance)
  // Called by T5Model::backward with each group of T5Model::dense_grad_groups() as soon as
  // its gradients are final, so their allreduce can overlap the rest of the backward pass.
  std::function<void(size_t group)> on_grads_ready;
};

// Parameter and gradient tensors of one named parameter.
struct Weight {
  Tensor value, grad;  // grad empty when frozen
  static Weight of(ParameterStore& store, const std::string& name);
};

// The seed of one example's dropout mask at one site: a function of (step seed, site, global
// example index) only, so the mask of an example does not depend on which rank holds it. Every
// dropout of the model (residual branches, FFN hidden layer, attention probabilities, expert
// hidden layer) derives its masks from it.
uint64_t dropout_example_seed(uint64_t step_seed, uint64_t site, int64_t example);

// Dropout applied per example with a seed from (step seed, site, global example index), so the
// mask of an example does not depend on which rank holds it.
void dropout_examples_forward(const StepContext& s, const Tensor& x, int64_t batch, uint64_t site);
void dropout_examples_backward(const StepContext& s, const Tensor& dx, int64_t batch,
                               uint64_t site);

// Gradient before an output dropout as a new scratch tensor (dx itself when dropout is off).
Tensor dropout_copy_backward(const StepContext& s, Arena& scratch, const Tensor& dx, int64_t batch,
                             uint64_t site);

struct AttentionSpec {
  int64_t d_model, num_heads, d_kv;
  bool causal;
  double eps;  // RMSNorm epsilon
};

class AttentionSublayer {
 public:
  // Registers "<prefix>.norm", "<prefix>.q", ".k", ".v", ".o".
  AttentionSublayer(ParameterStore& store, const std::string& prefix, AttentionSpec spec);

  struct Saved {
    Tensor x_in, rstd, normed, q, k, v, probs, heads;
  };
  // Returns x_in + dropout(attention(rmsnorm(x_in))), x_in [B*T, C]. memory [B*S, C] is the
  // encoder output for cross-attention, or empty for self-attention. bias [H,T,S] or empty;
  // key_valid [B,S] i32.
  Tensor forward(const StepContext& s, const Tensor& x_in, const Tensor& memory, const Tensor& bias,
                 const Tensor& key_valid, int64_t batch, uint64_t site, Saved* saved) const;
  // dx: gradient of x_out on entry, of x_in on return. dmemory accumulates (cross-attention).
  // dbias accumulates (empty: no bias).
  void backward(const StepContext& s, const Saved& saved, const Tensor& dx, const Tensor& memory,
                const Tensor& dmemory, const Tensor& dbias, int64_t batch, uint64_t site) const;

 private:
  AttentionSpec spec_;
  Weight norm_, q_, k_, v_, o_;
};

// T5.1.1 FFN: gated GELU, out = (gelu(h Wi0) * (h Wi1)) Wo.
class FfnSublayer {
 public:
  // Registers "<prefix>.norm", "<prefix>.wi_0", ".wi_1", ".wo".
  FfnSublayer(ParameterStore& store, const std::string& prefix, int64_t d_model, int64_t d_ff,
              double eps);

  struct Saved {
    Tensor x_in, rstd, normed, gate, linear, hidden;
  };
  // Returns x_in + dropout(ffn(rmsnorm(x_in))).
  Tensor forward(const StepContext& s, const Tensor& x_in, int64_t batch, uint64_t site,
                 Saved* saved) const;
  void backward(const StepContext& s, const Saved& saved, const Tensor& dx, int64_t batch,
                uint64_t site) const;

 private:
  int64_t d_ff_;
  double eps_;
  Weight norm_, wi0_, wi1_, wo_;
};

// The pre-norm of every sub-layer (and the final norm of each stack): returns
// rmsnorm(x_in) * scale from the activation arena and saves rstd.
Tensor norm_forward(const StepContext& s, const Weight& norm, const Tensor& x_in, double eps,
                    Tensor* rstd);
// dx (overwritten) from dnormed; accumulates the scale's gradient.
void norm_backward(const StepContext& s, const Weight& norm, const Tensor& dnormed,
                   const Tensor& x_in, const Tensor& rstd, const Tensor& dx);

// y [N,O] = x [N,I] @ w [I,O], from the activation arena.
Tensor linear_forward(const StepContext& s, const Tensor& x, const Weight& w);

}  // namespace mowe::model
