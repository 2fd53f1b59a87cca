// Dispatch across ranks (paper, section 2.3): each rank's tokens go to the ranks owning their
// experts' blocks with one all-to-all (one message per peer, whatever the number of experts),
// are computed there grouped by (bucket, local expert), and come back with the reverse
// all-to-all. Everything that sizes the exchanges is computed once per step and stack in
// assign(), so every MoWE layer of the stack, forward and backward, reuses it:
//
//   routing ids [N] -> plan.route(): (rank, bucket, local expert) per token, or skipped
//                   -> send rows sorted by (rank, bucket, local expert), send counts
//                   -> counts exchanged, then each send row's local-expert key (once per step)
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
// deactivate_above (when > 0) are skipped. Pure and thread-safe.
void route_tokens(const DispatchPlan& plan, int rank, std::span<const int32_t> routing_ids,
                  int32_t deactivate_above, RoutedTokens* out);

class ExchangeDispatch final : public TokenRouter {
 public:
  // `plan` is for alltoall.comm()'s world size; both must outlive this object.
  ExchangeDispatch(const DispatchPlan& plan, comm::AllToAll& alltoall);

  // Collective over the all-to-all's communicator. Routing ids [N] of this rank's tokens;
  // padding, unrouted ids and ids > deactivate_above (when > 0) are skipped.
  void assign(const Context& ctx, std::span<const int32_t> routing_ids, int32_t deactivate_above);
  // The same from tokens already routed (route_tokens): only the exchanges remain.
  void assign(const Context& ctx, const RoutedTokens& routed);

  int64_t num_tokens() const override { return num_tokens_; }
  const ExpertRows& expert_rows() const override { return received_.rows(); }
  void dispatch(const Context& ctx, const Tensor& x, const Tensor& xp) const override;
  void combine(const Context& ctx, const Tensor& yp, const Tensor& y) const override;

  int64_t rows_sent() const { return static_cast<int64_t>(send_order_.size()); }
  int64_t rows_received() const { return exchange_plan_.recv_rows(); }

 private:
  Tensor send_order() const;

  const DispatchPlan& dispatch_plan_;
  comm::AllToAll& alltoall_;
  int rank_;
  RoutingTable local_table_;  // local-expert key -> (bucket, local expert) on this rank
  int64_t num_tokens_ = 0;
  std::vector<int32_t> send_order_;             // [S]: the token of each send row
  std::vector<int64_t> send_rows_, recv_rows_;  // [P]
  comm::AllToAll::Plan exchange_plan_;
  comm::AllToAll::Plan counts_plan_;  // one row per peer, built on the first assign()
  std::vector<int32_t> counts_out_, counts_in_, recv_keys_;  // assign()'s, reused
  bool counts_plan_ready_ = false;
  Dispatch received_;    // groups the received rows by local expert
  RoutedTokens routed_;  // reused by assign(routing ids)
};

}  // namespace mowe::model
