#include "model/exchange_dispatch.h"

#include <algorithm>
#include <numeric>

#include "runtime/backend.h"
#include "runtime/device.h"

namespace mowe::model {
namespace {

// The rank's experts as a routing table keyed by local-expert key (bucket-major): Dispatch then
// groups received rows by (bucket, local expert) exactly as it groups tokens in one process.
RoutingTable local_table(const DispatchPlan& plan) {
  std::vector<BucketLayout> layouts;
  std::vector<int32_t> bucket_of, expert_of;
  std::vector<std::vector<int64_t>> loads;
  for (int b = 0; b < plan.num_buckets(); ++b) {
    const BucketLayout& global = plan.table().bucket(b);
    const int64_t experts = plan.local_experts(b);
    layouts.push_back(
        {experts, plan.blocks_per_rank(b), global.experts_per_block, global.expert_d_ff});
    for (int64_t e = 0; e < experts; ++e) {
      bucket_of.push_back(b);
      expert_of.push_back(static_cast<int32_t>(e));
    }
    loads.emplace_back(experts, 0);
  }
  return RoutingTable(layouts, bucket_of, expert_of, loads);
}

// v as a one-column i32 host view, [n, 1]: the rows the all-to-all exchanges.
Tensor column_view(const std::vector<int32_t>& v) {
  return host_i32_view(v, {static_cast<int64_t>(v.size()), 1});
}

}  // namespace

ExchangeDispatch::ExchangeDispatch(const DispatchPlan& plan, comm::AllToAll& alltoall,
                                   comm::AllToAll* control)
    : alltoall_(alltoall),
      control_(control ? *control : alltoall),
      control_scratch_(host_allocator(), size_t{1} << 16) {
  MOWE_CHECK(
      control_.comm().device() == Device::CPU && control_.comm().size() == alltoall.comm().size(),
      "the control all-to-all must run over the same {} ranks on host memory",
      alltoall.comm().size());
  MOWE_CHECK(plan.world_size() == alltoall.comm().size(),
             "dispatch plan {} is for {} ranks, but the communicator has {}", plan.source(),
             plan.world_size(), alltoall.comm().size());
  local_table_ = local_table(plan);
}

// Keys number a rank's local experts bucket-major, as local_table() does.
void route_tokens(const DispatchPlan& plan, int rank, std::span<const int32_t> routing_ids,
                  int32_t deactivate_above, RoutedTokens* out) {
  // Working storage per thread (the loader's prefetch thread routes every batch): no allocation
  // once it has grown.
  thread_local std::vector<int64_t> key_base;
  thread_local std::vector<std::pair<int64_t, int32_t>> routed;  // (rank * keys + key, token)
  key_base.assign(plan.num_buckets() + 1, 0);
  for (int b = 0; b < plan.num_buckets(); ++b)
    key_base[b + 1] = key_base[b] + plan.local_experts(b);
  const int64_t keys = key_base.back();
  // At most every token is routed: sized for that once, never grown by a busier batch.
  const size_t most = routing_ids.size();
  for (auto* v : {&out->send_order, &out->send_keys})
    if (v->capacity() < most) v->reserve(most);
  if (routed.capacity() < most) routed.reserve(most);
  routed.clear();
  out->num_tokens = static_cast<int64_t>(routing_ids.size());
  for (int64_t n = 0; n < out->num_tokens; ++n) {
    const int32_t id = routing_ids[n];
    if (id == kPaddingRoutingId) continue;
    const Route r = plan.route(id, rank);  // throws for ids outside the vocabulary
    if (r.rank < 0 || (deactivate_above > 0 && id > deactivate_above)) continue;
    routed.emplace_back(int64_t{r.rank} * keys + key_base[r.bucket] + r.local_expert,
                        static_cast<int32_t>(n));
  }
  // Sorted by (rank, key), then token: token order is kept inside an expert, as in one process
  // (what a stable sort by key gives, without its temporary buffer).
  std::sort(routed.begin(), routed.end());
  out->send_order.resize(routed.size());
  out->send_keys.resize(routed.size());
  out->send_rows.assign(plan.world_size(), 0);
  for (size_t i = 0; i < routed.size(); ++i) {
    out->send_order[i] = routed[i].second;
    out->send_keys[i] = static_cast<int32_t>(routed[i].first % keys);
    ++out->send_rows[routed[i].first / keys];
  }
}

void route_batch(const DispatchPlan& plan, int rank, std::span<const int32_t> encoder_routing_ids,
                 std::span<const int32_t> decoder_routing_ids, int32_t deactivate_above,
                 RoutedBatch* out) {
  route_tokens(plan, rank, encoder_routing_ids, deactivate_above, &out->encoder);
  route_tokens(plan, rank, decoder_routing_ids, deactivate_above, &out->decoder);
}

void ExchangeDispatch::assign(const Context& ctx, const RoutedTokens& routed) {
  MOWE_CHECK(ctx.scratch != nullptr, "ExchangeDispatch::assign needs ctx.scratch");
  device_send_order_ = Tensor();
  // Counts and keys are host data: on the control all-to-all, with host temporaries.
  const bool split = &control_ != &alltoall_;
  Arena& host = split ? control_scratch_ : *ctx.scratch;
  const int world = alltoall_.comm().size();
  MOWE_CHECK(static_cast<int>(routed.send_rows.size()) == world,
             "routed tokens for {} ranks, but the communicator has {}", routed.send_rows.size(),
             world);
  num_tokens_ = routed.num_tokens;
  // Room for the most rows a step can move at once (every token sent; every peer's tokens
  // received, with slack for uneven local batches), so later steps never grow these buffers.
  const auto most = static_cast<size_t>(2 * num_tokens_);
  if (send_order_.capacity() < most) send_order_.reserve(most);
  if (recv_keys_.capacity() < most * world) recv_keys_.reserve(most * world);
  send_order_ = routed.send_order;
  send_rows_ = routed.send_rows;
  const std::vector<int32_t>& send_keys = routed.send_keys;

  // Counts first (one int per peer, through the same algorithm as the data, so a hierarchical
  // job sends no P-1 inter-node messages here either), then the plan, then each row's key.
  if (!counts_plan_ready_) {
    const std::vector<int64_t> ones(world, 1);
    counts_plan_ = control_.plan(ones, ones, host);
    counts_plan_ready_ = true;
  }
  std::vector<int32_t>&counts_out = counts_out_, &counts_in = counts_in_;
  counts_out.resize(world);
  counts_in.resize(world);
  for (int j = 0; j < world; ++j) counts_out[j] = static_cast<int32_t>(send_rows_[j]);
  control_.run(counts_plan_, column_view(counts_out), column_view(counts_in), host);
  recv_rows_.assign(counts_in.begin(), counts_in.end());
  alltoall_.plan(send_rows_, recv_rows_, *ctx.scratch, exchange_plan_);
  if (split) control_.plan(send_rows_, recv_rows_, host, keys_plan_);
  std::vector<int32_t>& recv_keys = recv_keys_;
  recv_keys.resize(exchange_plan_.recv_rows());
  control_.run(split ? keys_plan_ : exchange_plan_, column_view(send_keys), column_view(recv_keys),
               host);
  received_.assign(local_table_, recv_keys);
}

Tensor ExchangeDispatch::send_order() const {
  return device_send_order_.empty() ? host_i32_view(send_order_, {rows_sent()})
                                    : device_send_order_;
}

void ExchangeDispatch::upload(Arena& device) {
  if (device.device() == Device::CPU) return;
  device_send_order_ = upload_to(device, host_i32_view(send_order_, {rows_sent()}));
  received_.upload(device);
}

void ExchangeDispatch::dispatch(const Context& ctx, const Tensor& x, const Tensor& xp) const {
  Backend& backend = backend_for(ctx.device);
  ArenaScope scope(*ctx.scratch);
  const int64_t c = x.cols();
  Tensor sent = ctx.scratch->alloc({rows_sent(), c}, x.dtype);
  Tensor received = ctx.scratch->alloc({rows_received(), c}, x.dtype);
  if (rows_sent() > 0) backend.embedding_forward(ctx, x, send_order(), sent);
  alltoall_.run(exchange_plan_, sent, received, *ctx.scratch);
  received_.dispatch(ctx, received, xp);
}

void ExchangeDispatch::combine(const Context& ctx, const Tensor& yp, const Tensor& y) const {
  Backend& backend = backend_for(ctx.device);
  ArenaScope scope(*ctx.scratch);
  const int64_t c = y.cols();
  Tensor received = ctx.scratch->alloc({rows_received(), c}, y.dtype);
  Tensor sent = ctx.scratch->alloc({rows_sent(), c}, y.dtype);
  received_.combine(ctx, yp, received);
  alltoall_.run_reverse(exchange_plan_, received, sent, *ctx.scratch);
  backend.fill(ctx, y, 0.0);
  if (rows_sent() > 0) backend.embedding_backward(ctx, sent, send_order(), y);
}

}  // namespace mowe::model
