// Dispatch across ranks (paper, section 2.3): each rank's tokens go to the ranks owning their
// experts' blocks with one all-to-all (one message per peer, whatever the number of experts),
// are computed there grouped by (bucket, local expert), and come back with the reverse
// all-to-all. Everything that sizes the exchanges is computed once per step and stack, by
// route_tokens (no communication: the trainer runs it on the loader thread, ahead of the step)
// and assign() (collective), so every MoWE layer of the stack, forward and backward, reuses it:
//
//   routing ids [N] -> plan.route(): (rank, bucket, local expert) per token, or skipped
//                   -> send rows sorted by (rank, bucket, local expert), send counts
//   assign():       -> counts exchanged, then each send row's local-expert key (once per step)
//                   -> received rows grouped by local expert: a Dispatch over a "local routing
//                      table" whose ids are the keys
//
//   dispatch: x [N,C] -gather-> [S,C] -all-to-all-> [Rr,C] -gather-> xp [Rr,C] (by expert)
//   combine:  yp -scatter-> [Rr,C] -reverse all-to-all-> [S,C] -scatter-> y [N,C]
#pragma once

#include <span>
#include <vector>

#include "comm/alltoall.h"
#include "model/dispatch_plan.h"
#include "model/mowe_dispatch.h"

namespace mowe::model {

// One stack's tokens routed on the host before the step (the loader thread prepares it): per
// send row its token, sorted by (destination rank, bucket, local expert), and the local-expert
// key it has on the destination; rows per destination rank. No communication.
struct RoutedTokens {
  int64_t num_tokens = 0;
  std::vector<int32_t> send_order;  // [S]
  std::vector<int32_t> send_keys;   // [S]
  std::vector<int64_t> send_rows;   // [P]
};

// Routes routing ids [N] of rank `rank` with `plan`; padding, unrouted ids and ids >
// deactivate_above (when > 0) are skipped. Pure and thread-safe. The one routing of tokens
// across ranks: whether the loader thread routes a batch ahead (route_batch) or the model routes
// it at the step (T5Model, when its inputs bring no routing), this is what runs.
void route_tokens(const DispatchPlan& plan, int rank, std::span<const int32_t> routing_ids,
                  int32_t deactivate_above, RoutedTokens* out);

// A batch's encoder and decoder tokens routed with the plan, ahead of the step: what the
// trainer's loader thread attaches to each batch (data::Batch::prepared) and
// ModelInputs::routed points to.
struct RoutedBatch {
  RoutedTokens encoder, decoder;
};

// Both stacks' routing ids of a batch through route_tokens, into *out (its storage reused).
void route_batch(const DispatchPlan& plan, int rank, std::span<const int32_t> encoder_routing_ids,
                 std::span<const int32_t> decoder_routing_ids, int32_t deactivate_above,
                 RoutedBatch* out);

class ExchangeDispatch final : public TokenRouter {
 public:
  // `plan` is for alltoall.comm()'s world size (its local experts are read here); alltoall must
  // outlive this object. On a device, `alltoall` moves the rows (device memory) and `control`,
  // over the same ranks on host memory, the counts and keys; null = alltoall does both (CPU).
  ExchangeDispatch(const DispatchPlan& plan, comm::AllToAll& alltoall,
                   comm::AllToAll* control = nullptr);

  // Collective over the all-to-all's communicator: this rank's tokens as route_tokens routed
  // them; exchanges the counts and the local-expert keys of the rows.
  void assign(const Context& ctx, const RoutedTokens& routed);
  // For a step on a device: the index arrays (send order, the received rows' order and experts)
  // copied into `device`, queued without a wait. Cleared by assign(). Nothing on the CPU.
  void upload(Arena& device);

  int64_t num_tokens() const override { return num_tokens_; }
  const ExpertRows& expert_rows() const override { return received_.rows(); }
  void dispatch(const Context& ctx, const Tensor& x, const Tensor& xp) const override;
  void combine(const Context& ctx, const Tensor& yp, const Tensor& y) const override;

  int64_t rows_sent() const { return static_cast<int64_t>(send_order_.size()); }
  int64_t rows_received() const { return exchange_plan_.recv_rows(); }

 private:
  Tensor send_order() const;

  comm::AllToAll& alltoall_;
  comm::AllToAll& control_;   // counts and keys (host memory): alltoall_ itself on the CPU
  Arena control_scratch_;     // the control exchanges' temporaries, host memory
  Tensor device_send_order_;  // send_order_ uploaded, or empty
  RoutingTable local_table_;  // local-expert key -> (bucket, local expert) on this rank
  int64_t num_tokens_ = 0;
  std::vector<int32_t> send_order_;             // [S]: the token of each send row
  std::vector<int64_t> send_rows_, recv_rows_;  // [P]
  comm::AllToAll::Plan exchange_plan_;
  comm::AllToAll::Plan counts_plan_;  // one row per peer, built on the first assign()
  comm::AllToAll::Plan keys_plan_;    // the exchange's counts on control_, when it is not alltoall_
  std::vector<int32_t> counts_out_, counts_in_, recv_keys_;  // assign()'s, reused
  bool counts_plan_ready_ = false;
  Dispatch received_;  // groups the received rows by local expert
};

}  // namespace mowe::model
