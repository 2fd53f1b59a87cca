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

#include <string>

#include "model/expert_bank.h"
#include "model/mowe_dispatch.h"
#include "model/routing_table.h"

namespace mowe::model {

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
  Tensor forward(const Context& ctx, const Tensor& x, const TokenRouter& router, Arena& acts);

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
};

// The expert shapes of every bucket of a table (all experts, one process).
std::vector<ExpertShard> full_expert_shards(const RoutingTable& table);

}  // namespace mowe::model
