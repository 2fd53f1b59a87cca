// The T5.1.1 encoder-decoder: shared token embedding, encoder and decoder stacks of pre-norm
// blocks, final RMSNorms, an untied output projection and the cross-entropy loss (with z-loss).
// Blocks listed in model.mowe hold a MoWE layer instead of the dense FFN.
//
// Shape letters: B batch, I encoder length, T decoder length, C d_model, V vocabulary.
#pragma once

#include <memory>
#include <vector>

#include "model/dispatch_plan.h"
#include "model/exchange_dispatch.h"
#include "model/mowe_dispatch.h"
#include "model/routing_table.h"
#include "model/t5_layers.h"
#include "runtime/proto/config.pb.h"

namespace mowe::model {

// One step's local examples. All id tensors are i32 [B, I] or [B, T]; weights has the model's
// dtype and is 0 on padding labels.
struct ModelInputs {
  int64_t batch = 0;
  Tensor enc_ids, enc_valid, enc_routing;
  Tensor dec_ids, dec_valid, dec_routing;
  Tensor targets, weights;
  // With expert parallelism: both stacks' tokens already routed (route_batch, by the loader
  // thread), so the step only exchanges counts and keys. Null: routed here from the routing ids,
  // by the same route_tokens.
  const RoutedBatch* routed = nullptr;
};

// The feed-forward part of a block: dense FFN or MoWE layer behind one interface, so the stacks
// do not care which one a block holds.
class FeedForward {
 public:
  virtual ~FeedForward() = default;
  // Returns x_in + dropout(ffn(rmsnorm(x_in))).
  virtual Tensor forward(const StepContext& s, const Tensor& x_in, int64_t batch,
                         uint64_t site) = 0;
  // dx: gradient of the output on entry, of x_in on return.
  virtual void backward(const StepContext& s, const Tensor& dx, int64_t batch, uint64_t site) = 0;
};

// Expert parallelism: this rank holds the experts the plan gives it, and MoWE layers exchange
// tokens with the other ranks through `alltoall` (over the world communicator).
struct MoweParallel {
  const DispatchPlan* plan = nullptr;
  comm::AllToAll* alltoall = nullptr;  // the rows, on the step's device
  // Counts and keys over the same ranks on host memory, when alltoall is on a device.
  comm::AllToAll* control = nullptr;
};

// An expert parameter held by this rank, and its bucket (for replica-group reductions).
struct ExpertParameter {
  Parameter* parameter;
  int bucket;
};

class T5Model {
 public:
  // `routing` maps routing ids to experts; required when model.mowe lists MoWE layers, and must
  // outlive the model.
  // With `parallel`, routing must be parallel->plan's table.
  T5Model(const config::ModelConfig& config, ParameterStore& store,
          const RoutingTable* routing = nullptr, const MoweParallel* parallel = nullptr);
  ~T5Model();

  // Runs the model through the loss, saving activations in s.activations. Returns the sum over
  // tokens of weights * (cross-entropy + z_loss * lse^2).
  double forward(const StepContext& s, const ModelInputs& in, double z_loss);
  // Accumulates every parameter's gradient of loss_scale * (the value forward returned).
  void backward(const StepContext& s, const ModelInputs& in, double z_loss, double loss_scale);

  Tensor logits() const { return logits_; }  // [B*T, V] of the last forward

  // The routing of the last forward pass on this rank, summed over the stacks with MoWE layers.
  struct RoutingLoad {
    int64_t tokens = 0;  // this rank's non-padding tokens entering MoWE layers
    int64_t routed = 0;  // of those, the ones given an expert (not unrouted, not deactivated)
    std::vector<int64_t> bucket_rows;  // per bucket: rows this rank's experts computed (all layers)
  };
  RoutingLoad routing_load() const;
  void routing_load(RoutingLoad& out) const;  // the same into out, reusing its storage
  // Each expert parameter once (shared ones are held by several MoWE layers).
  std::vector<ExpertParameter> expert_parameters() const;
  // The dense parameters in the order backward finalises them: the output projection, one group
  // per block (decoder blocks last to first, then encoder blocks), then one with everything
  // shared across blocks (embedding, final norms, position biases). Group i is announced through
  // StepContext::on_grads_ready(i).
  const std::vector<std::vector<Parameter*>>& dense_grad_groups() const { return grad_groups_; }

 private:
  struct Block;
  struct Stack;
  Tensor run_stack(const StepContext& s, Stack& stack, const Tensor& x, const ModelInputs& in,
                   const Tensor& memory);
  void backprop_stack(const StepContext& s, Stack& stack, const Tensor& dx, const ModelInputs& in,
                      const Tensor& memory, const Tensor& dmemory);
  Tensor embed(const StepContext& s, const Tensor& ids, int64_t batch, uint64_t site);
  void build_grad_groups(ParameterStore& store);

  config::ModelConfig config_;
  const RoutingTable* routing_ = nullptr;
  MoweParallel parallel_;
  Weight embedding_, lm_head_;
  std::unique_ptr<Stack> encoder_, decoder_;
  std::vector<std::vector<Parameter*>> grad_groups_;
  // Saved by forward for backward.
  Tensor enc_out_, dec_out_, logits_, lse_;
};

}  // namespace mowe::model
