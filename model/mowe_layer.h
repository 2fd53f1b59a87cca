// The MoWE layer (paper, section 2.2): replaces the feed-forward MLP of a T5 block. Each token
// goes to the one expert its routing id selects (Dispatch); tokens without an expert (the most
// frequent ids, deactivated ids) get exactly zero output, so the residual alone carries them.
//
//   forward:  x [N,C] --gather by dispatch.order()--> xp [R,C] --experts--> yp [R,C]
//             --scatter--> y [N,C] (zero rows for skipped tokens)
//   backward: the same in reverse; dx overwritten, expert gradients accumulated.
//
// The backbone builds one MoweLayer per configured block. With share_expert_parameters (the
// paper's setting) every layer attaches to the same "mowe.bucket{b}.*" parameters, so their
// gradients sum in one buffer; otherwise each layer owns "<block>.mowe.bucket{b}.*".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/expert_bank.h"
#include "model/mowe_dispatch.h"
#include "model/routing_table.h"

namespace mowe::model {

// Dropout on the experts' hidden layer (model.mowe.expert_dropout_rate), during training only.
// The mask of a token's hidden units is a function of (step seed, site, the token's global
// example, its position in the example) alone: each token's (example, position) travels with its
// row to the rank computing its expert, so 1, 2 or 4 ranks drop the same units.
struct ExpertDropout {
  float rate = 0.0f;  // 0 = off (evaluation)
  uint64_t step_seed = 0;
  uint64_t site = 0;
  int64_t first_example = 0;  // global index of local example 0
  int64_t batch = 1;          // local examples: x holds batch x (rows / batch) tokens
};

class MoweLayer {
 public:
  // block_name: the block this layer sits in, e.g. "encoder.block5"; it names the parameters
  // when they are not shared, and the layer in error messages.
  // `shards`: the experts of each bucket this rank holds (a dispatch plan's local_shard), or
  // empty for all of them (one process).
  MoweLayer(ParameterStore& store, const config::MoweConfig& config, const RoutingTable& table,
            int64_t d_model, const std::string& block_name, ExpertBank::Options options = {},
            std::vector<ExpertShard> shards = {});

  // x [N,C] -> y [N,C], allocated in `acts`, together with what backward needs. `acts` is the
  // step's activation arena (rewound by the caller after the backward pass), distinct from
  // ctx.scratch. The router (a Dispatch, or an ExchangeDispatch across ranks) must stay alive
  // and unchanged until backward returns.
  // With dropout.rate > 0, every rank must pass a positive rate (one more dispatch, a collective
  // across ranks, carries each token's example and position to its expert).
  Tensor forward(const Context& ctx, const Tensor& x, const TokenRouter& router, Arena& acts,
                 const ExpertDropout& dropout = {});

  // dy [N,C] -> dx [N,C] (overwritten; zero rows for skipped tokens). Expert gradients are
  // accumulated (+=), or not computed at all when the experts are frozen.
  void backward(const Context& ctx, const Tensor& dy, const Tensor& dx);

  const std::string& name() const { return name_; }
  const ExpertBank& experts() const { return bank_; }

 private:
  std::string name_;
  ExpertBank bank_;
  // Saved by forward for backward.
  const TokenRouter* router_ = nullptr;
  Tensor xp_;
  ExpertBank::Saved saved_;
  std::vector<uint64_t> row_seeds_;  // [R] with hidden dropout: the mask seed of each row

  // row_seeds_ of the rows `router` gives this rank's experts.
  void derive_row_seeds(const Context& ctx, const Tensor& x, const TokenRouter& router,
                        const ExpertDropout& dropout);
};

// The expert shapes of every bucket of a table (all experts, one process).
std::vector<ExpertShard> full_expert_shards(const RoutingTable& table);

}  // namespace mowe::model
