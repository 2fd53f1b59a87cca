#include "model/mowe_dispatch.h"

#include <array>
#include <utility>

#include "runtime/backend.h"
#include "runtime/check.h"
#include "runtime/device.h"

namespace mowe::model {
namespace {

// Stable LSD radix sort of perm (indices into keys) by keys[perm[i]], 8 bits per pass. Digits
// that are equal in every key are skipped, so the cost is O(R x varying bytes + 256 x passes):
// proportional to tokens, never to the number of experts, and a constant high field (one
// destination rank) costs nothing.
void radix_sort(std::span<const uint64_t> keys, std::vector<int32_t>& perm,
                std::vector<int32_t>& tmp) {
  const size_t n = perm.size();
  if (n < 2) return;
  uint64_t varying = 0;
  for (uint64_t k : keys) varying |= k ^ keys[0];
  tmp.resize(n);
  for (int shift = 0; shift < 64; shift += 8) {
    if (((varying >> shift) & 0xff) == 0) continue;
    std::array<int64_t, 257> start{};
    for (int32_t i : perm) ++start[((keys[i] >> shift) & 0xff) + 1];
    for (int d = 0; d < 256; ++d) start[d + 1] += start[d];
    for (int32_t i : perm) tmp[start[(keys[i] >> shift) & 0xff]++] = i;
    perm.swap(tmp);
  }
}

}  // namespace

std::span<const ExpertGroup> ExpertRows::bucket_group_span(int b) const {
  return std::span(groups).subspan(bucket_groups[b], bucket_groups[b + 1] - bucket_groups[b]);
}

Tensor ExpertRows::row_expert_tensor() const {
  return device_row_expert.empty() ? host_i32_view(row_expert, {num_rows}) : device_row_expert;
}

Tensor Dispatch::order() const {
  return device_order_.empty() ? host_i32_view(order_, {num_routed()}) : device_order_;
}

void Dispatch::upload(Arena& device) {
  if (device.device() == Device::CPU) return;
  device_order_ = upload_to(device, host_i32_view(order_, {num_routed()}));
  rows_.device_row_expert = upload_to(device, host_i32_view(rows_.row_expert, {rows_.num_rows}));
}

Dispatch Dispatch::build(const RoutingTable& table, std::span<const int32_t> routing_ids,
                         int32_t deactivate_routing_ids_above) {
  Dispatch d;
  d.assign(table, routing_ids, deactivate_routing_ids_above);
  return d;
}

void Dispatch::assign(const RoutingTable& table, std::span<const int32_t> routing_ids,
                      int32_t deactivate_routing_ids_above) {
  const int num_buckets = table.num_buckets();
  expert_base_.assign(num_buckets, 0);
  for (int b = 1; b < num_buckets; ++b)
    expert_base_[b] = expert_base_[b - 1] + table.bucket(b - 1).num_experts();

  device_order_ = Tensor();
  rows_.device_row_expert = Tensor();
  // Route: tokens that reach an expert, with their keys.
  num_tokens_ = static_cast<int64_t>(routing_ids.size());
  routed_.clear(), bucket_.clear(), expert_.clear(), key_.clear();
  // Grown in one go to twice the tokens seen, so that steps with a few more routed tokens than
  // any before do not grow them again (steady-state steps allocate nothing).
  if (routed_.capacity() < routing_ids.size()) {
    const size_t room = 2 * routing_ids.size();
    routed_.reserve(room), bucket_.reserve(room), expert_.reserve(room), key_.reserve(room);
    perm_.reserve(room), tmp_.reserve(room), order_.reserve(room);
    rows_.row_expert.reserve(room);
    rows_.groups.reserve(room);
  }
  const std::vector<int32_t>& bucket_of = table.bucket_array();
  const std::vector<int32_t>& expert_of = table.expert_array();
  for (int64_t n = 0; n < num_tokens_; ++n) {
    const int32_t id = routing_ids[n];
    if (id == kPaddingRoutingId) continue;
    MOWE_CHECK(id >= 0 && id < table.vocab_size(),
               "dispatch: routing id {} at token {} is outside the routing vocabulary [0, {})", id,
               n, table.vocab_size());
    if (bucket_of[id] == RoutingTable::kUnrouted) continue;
    if (deactivate_routing_ids_above > 0 && id > deactivate_routing_ids_above) continue;
    routed_.push_back(static_cast<int32_t>(n));
    bucket_.push_back(bucket_of[id]);
    expert_.push_back(expert_of[id]);
    key_.push_back(static_cast<uint64_t>(expert_base_[bucket_of[id]] + expert_of[id]));
  }

  // Sort, then read the groups off the sorted keys.
  const int64_t r = static_cast<int64_t>(routed_.size());
  perm_.resize(r);
  for (int64_t i = 0; i < r; ++i) perm_[i] = static_cast<int32_t>(i);
  radix_sort(key_, perm_, tmp_);

  ExpertRows& rows = rows_;
  rows.num_rows = r;
  rows.groups.clear();
  rows.row_expert.resize(r);
  rows.bucket_rows.assign(num_buckets + 1, 0);
  rows.bucket_groups.assign(num_buckets + 1, 0);
  order_.resize(r);
  for (int64_t j = 0; j < r; ++j) {
    const int32_t i = perm_[j];
    order_[j] = routed_[i];
    rows.row_expert[j] = expert_[i];
    if (j == 0 || key_[i] != key_[perm_[j - 1]])
      rows.groups.push_back({bucket_[i], expert_[i], j, j});
    rows.groups.back().end = j + 1;
    ++rows.bucket_rows[bucket_[i] + 1];
  }
  for (const ExpertGroup& g : rows.groups) ++rows.bucket_groups[g.bucket + 1];
  for (int b = 0; b < num_buckets; ++b) {
    rows.bucket_rows[b + 1] += rows.bucket_rows[b];
    rows.bucket_groups[b + 1] += rows.bucket_groups[b];
  }
}

// Gather and scatter-add of rows are the embedding ops: x rows by token index.
void Dispatch::dispatch(const Context& ctx, const Tensor& x, const Tensor& xp) const {
  if (num_routed() > 0) backend_for(ctx.device).embedding_forward(ctx, x, order(), xp);
}

void Dispatch::combine(const Context& ctx, const Tensor& yp, const Tensor& y) const {
  Backend& backend = backend_for(ctx.device);
  backend.fill(ctx, y, 0.0);
  if (num_routed() > 0) backend.embedding_backward(ctx, yp, order(), y);
}

}  // namespace mowe::model
