// Per-step routing of one stack's tokens to experts, computed once (from the routing ids, before
// the forward pass) and reused by every MoWE layer of that stack, forward and backward.
//
// Tokens are permuted so that the rows of each expert are contiguous:
//   routing ids [N] -> per token a sort key, or skip (unrouted, or deactivated)
//                   -> stable counting (radix) sort of the routed tokens by key
//                   -> order [R]: the token of each permuted row
//                   -> ExpertRows: the (bucket, expert) groups of the permuted rows.
// The key is the global expert index (bucket-major), so groups come out sorted by (bucket,
// expert). The distributed version puts the destination rank in the high bits of the same 64-bit
// key (rank, bucket, local expert): the sort, the groups and the expert compute stay as they are.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "model/routing_table.h"
#include "runtime/context.h"
#include "runtime/tensor.h"

namespace mowe::model {

// A run of permuted rows that go to the same expert.
struct ExpertGroup {
  int32_t bucket = 0;
  int32_t expert = 0;  // index inside the bucket, as the ExpertBank holding it numbers them
  int64_t begin = 0;   // rows [begin, end) of the permuted buffer
  int64_t end = 0;
  int64_t rows() const { return end - begin; }
};

// How a permuted buffer of R rows splits into expert groups: all the expert compute needs,
// whichever step produced the buffer (the local dispatch here; the rows received from the
// dispatch all-to-all in the distributed version).
struct ExpertRows {
  int64_t num_rows = 0;                // R
  std::vector<ExpertGroup> groups;     // non-empty, sorted by (bucket, expert), covering [0, R)
  std::vector<int64_t> bucket_rows;    // [B+1]: bucket b owns rows [bucket_rows[b], [b+1])
  std::vector<int64_t> bucket_groups;  // [B+1]: and groups [bucket_groups[b], [b+1])
  std::vector<int32_t> row_expert;     // [R]: the expert of each row (the gather path's index)
  Tensor device_row_expert;            // row_expert uploaded for a device step, or empty

  int num_buckets() const { return static_cast<int>(bucket_rows.size()) - 1; }
  std::span<const ExpertGroup> bucket_group_span(int b) const;
  // [R] i32: the uploaded copy when there is one, else a host view of row_expert.
  Tensor row_expert_tensor() const;
};

// The routing id the loader gives padding positions: never dispatched.
inline constexpr int32_t kPaddingRoutingId = -1;

// Moves a stack's token rows to the rows this rank's experts compute, and back. Both maps are
// linear and each is the transpose of the other, so a MoWE layer's backward pass uses them too:
// dyp = dispatch(dy), dx = combine(dxp). Dispatch (here) does it inside one process;
// ExchangeDispatch (exchange_dispatch.h) across ranks with all-to-alls.
class TokenRouter {
 public:
  virtual ~TokenRouter() = default;
  virtual int64_t num_tokens() const = 0;             // N, this rank's tokens
  virtual const ExpertRows& expert_rows() const = 0;  // R rows this rank's experts compute
  // xp [R,C] <- the token rows of x [N,C] that the experts compute.
  virtual void dispatch(const Context& ctx, const Tensor& x, const Tensor& xp) const = 0;
  // y [N,C] <- each row of yp [R,C] back to its token; zero for tokens no expert computed.
  virtual void combine(const Context& ctx, const Tensor& yp, const Tensor& y) const = 0;
};

class Dispatch final : public TokenRouter {
 public:
  Dispatch() = default;
  static Dispatch build(const RoutingTable& table, std::span<const int32_t> routing_ids,
                        int32_t deactivate_routing_ids_above = 0);

  // Recomputes for a new batch of routing ids [N], keeping the vectors' capacity so that steady
  // training allocates nothing. Padding (kPaddingRoutingId), tokens whose id is unrouted, and
  // ids > deactivate_routing_ids_above when that is > 0, are skipped. Throws Error naming the
  // position of an out-of-range id.
  void assign(const RoutingTable& table, std::span<const int32_t> routing_ids,
              int32_t deactivate_routing_ids_above = 0);

  int64_t num_tokens() const override { return num_tokens_; }  // N
  int64_t num_routed() const { return rows_.num_rows; }        // R
  const ExpertRows& rows() const { return rows_; }
  const ExpertRows& expert_rows() const override { return rows_; }
  void dispatch(const Context& ctx, const Tensor& x, const Tensor& xp) const override;
  void combine(const Context& ctx, const Tensor& yp, const Tensor& y) const override;
  // [R] i32: the token of each permuted row; gather index of the dispatch and scatter index of
  // the combine. The uploaded copy when there is one, else a host view.
  Tensor order() const;
  // For a step on a device: copies the index arrays (order, row_expert) into `device` (an arena
  // of the step's device memory), queued without a wait; the ops then take those. Cleared by
  // assign(). Nothing on the CPU.
  void upload(Arena& device);

 private:
  int64_t num_tokens_ = 0;
  ExpertRows rows_;
  std::vector<int32_t> order_;  // [R]
  Tensor device_order_;         // order_ uploaded, or empty
  // Reused between steps: routed tokens, their keys, (bucket, expert) and the sort's buffers.
  std::vector<int32_t> routed_, bucket_, expert_, perm_, tmp_;
  std::vector<uint64_t> key_;
  std::vector<int64_t> expert_base_;  // [B]: global index of each bucket's expert 0
};

}  // namespace mowe::model
