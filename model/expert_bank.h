// The experts of a MoWE layer: per frequency bucket, contiguous weights of all its experts, in
// the bucket's own form (model/expert_form.h; buckets of one layer may differ)
//   GELU:       wi [E,C,F], wo [E,F,C]                      y = gelu(x wi) wo
//   GATED_GELU: wi_gate, wi_linear [E,C,F], wo [E,F,C]      y = (gelu(x wi_gate) * x wi_linear) wo
// and their compute over a permuted buffer whose rows are grouped by expert (ExpertRows).
//
// Two compute paths, chosen per group by its number of rows:
// - grouped GEMM: one matmul per non-empty expert on its row slice (groups >= gemm_min_rows);
// - gather: runs of consecutive small groups go through expert_gather_matmul, one pass over their
//   rows with each row's own expert weights (the paper's lookup-table expert blocks).
// Both iterate non-empty groups only: the work is proportional to tokens, never to experts.
// Activations run once per bucket on its whole [R_b, F] buffer.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/mowe_dispatch.h"
#include "model/parameters.h"
#include "runtime/context.h"

namespace mowe::model {

// The experts of one bucket that a bank holds: experts [first_expert, first_expert + num_experts)
// of the bucket (a shard in the distributed version; all of them in one process).
struct ExpertShard {
  int64_t num_experts = 0;
  int64_t first_expert = 0;
  int64_t d_ff = 0;              // F
  std::vector<int64_t> experts;  // the bucket's expert of each local expert, when not contiguous
};

// Inverted dropout on the experts' hidden layer, after the activation
// (model.mowe.expert_dropout_rate): hidden unit f of permuted row r is kept iff
// uniform01(row_seeds[r], f) >= rate, then scaled by 1/(1-rate). The caller derives each row's
// seed from its token (MoweLayer), so the mask does not depend on where the row is computed.
// rate 0 = off.
struct ExpertHiddenDropout {
  float rate = 0.0f;
  std::span<const uint64_t> row_seeds;  // [R]; must stay alive until backward returns
};

class ExpertBank {
 public:
  struct Options {
    // Groups with at least this many rows use one GEMM; smaller ones the gather path.
    // 1 = GEMM only; a huge value = gather only. Default from bench_mowe_layer.
    int64_t gemm_min_rows = 16;
  };

  // Registers "<prefix>bucket{b}.wi" etc. as ParamKind::Expert with T5X's MLP initialisation
  // (variance_scaling(1.0, fan_in, truncated_normal): standard deviation C^-0.5 for wi, F^-0.5
  // for wo, Init::TruncatedNormal). With attach_existing, parameters already in
  // the store (shared experts) are reused after checking their shape and trainability.
  // `activations`: the form of each bucket (bucket_activations(config)), one per shard.
  ExpertBank(ParameterStore& store, const std::string& prefix, std::vector<ExpertShard> buckets,
             int64_t d_model, std::vector<config::Activation> activations, bool trainable,
             bool attach_existing, Options options);

  using HiddenDropout = ExpertHiddenDropout;

  // What forward keeps for backward: per bucket the pre-activations [R_b, F] (h, and h_linear
  // for the gated activation), in the caller's activation arena, and the dropout.
  struct Saved {
    std::vector<Tensor> h, h_linear;
    HiddenDropout dropout;
  };

  // xp [R,C] -> yp [R,C] (overwritten).
  void forward(const Context& ctx, const Tensor& xp, const ExpertRows& rows, Arena& acts,
               Saved& saved, const Tensor& yp, HiddenDropout dropout = {}) const;
  // dyp [R,C] -> dxp [R,C] (overwritten); weight gradients accumulated unless frozen.
  void backward(const Context& ctx, const Tensor& dyp, const Tensor& xp, const ExpertRows& rows,
                const Saved& saved, const Tensor& dxp) const;

  int num_buckets() const { return static_cast<int>(buckets_.size()); }
  int64_t d_model() const { return d_model_; }
  bool trainable() const { return trainable_; }
  const Options& options() const { return options_; }
  config::Activation activation(int b) const { return buckets_.at(b).activation; }
  // The bucket's input matrices (wi, or wi_gate and wi_linear) and its output matrix wo.
  const std::vector<Parameter*>& inputs(int b) const { return buckets_.at(b).wi; }
  Parameter& output(int b) const { return *buckets_.at(b).wo; }

 private:
  struct Bucket {
    ExpertShard shard;
    config::Activation activation = config::GELU;
    std::vector<Parameter*> wi;  // 1 (GELU) or 2 (GATED_GELU: gate, linear)
    Parameter* wo = nullptr;
  };
  void forward_bucket(const Context& ctx, int b, const Tensor& xb, const ExpertRows& rows,
                      Arena& acts, Saved& saved, const Tensor& yb) const;
  void backward_bucket(const Context& ctx, int b, const Tensor& dyb, const Tensor& xb,
                       const ExpertRows& rows, const Saved& saved, const Tensor& dxb) const;

  std::vector<Bucket> buckets_;
  int64_t d_model_;
  bool trainable_;
  Options options_;
};

}  // namespace mowe::model
