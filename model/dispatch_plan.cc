#include "model/dispatch_plan.h"

#include <algorithm>
#include <numeric>
#include <queue>
#include <tuple>

#include "model/expert_form.h"
#include "runtime/check.h"
#include "runtime/hash.h"

namespace mowe::model {
namespace {

// Frequency mass of each block of bucket b: [K].
std::vector<int64_t> block_loads(const RoutingTable& table, int b) {
  const BucketLayout& l = table.bucket(b);
  std::vector<int64_t> loads(l.num_blocks, 0);
  const std::vector<int64_t>& expert = table.expected_loads(b);
  for (int32_t e = 0; e < l.num_experts(); ++e) loads[e / l.experts_per_block] += expert[e];
  return loads;
}

// Swaps blocks between the fullest rank and another while that lowers the larger of the two
// loads: the sorted load vector decreases lexicographically, so it ends. LPT alone leaves a few
// per cent on the table when a rank's blocks are few and uneven; this recovers most of it.
void improve_by_swaps(const std::vector<int64_t>& loads, std::vector<std::vector<int32_t>>& blocks,
                      std::vector<int64_t>& rank_load) {
  const int n = static_cast<int>(blocks.size());
  for (size_t step = 0; step < 16 * loads.size(); ++step) {
    const int a =
        static_cast<int>(std::max_element(rank_load.begin(), rank_load.end()) - rank_load.begin());
    int64_t best = rank_load[a];
    int best_b = -1;
    size_t best_i = 0, best_j = 0;
    for (size_t i = 0; i < blocks[a].size(); ++i) {
      for (int b = 0; b < n; ++b) {
        for (size_t j = 0; b != a && j < blocks[b].size(); ++j) {
          const int64_t delta = loads[blocks[a][i]] - loads[blocks[b][j]];
          if (delta <= 0) continue;
          const int64_t worse = std::max(rank_load[a] - delta, rank_load[b] + delta);
          if (worse < best) best = worse, best_b = b, best_i = i, best_j = j;
        }
      }
    }
    if (best_b < 0) return;
    const int64_t delta = loads[blocks[a][best_i]] - loads[blocks[best_b][best_j]];
    std::swap(blocks[a][best_i], blocks[best_b][best_j]);
    rank_load[a] -= delta;
    rank_load[best_b] += delta;
  }
}

// Greedy longest-processing-time under equal block counts: blocks by load, descending (ties:
// lower block), each to the least-loaded rank that still has room (ties: lower rank); then
// improve_by_swaps. When the heaviest block exceeds the mean rank load, the best possible is
// that block with the lightest ones, which this reaches.
std::vector<int32_t> assign_balanced(const std::vector<int64_t>& loads, int world_size) {
  const int32_t num_blocks = static_cast<int32_t>(loads.size());
  const int per_rank = num_blocks / world_size;
  std::vector<int32_t> order(num_blocks);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return loads[a] > loads[b]; });
  using Slot = std::tuple<int64_t, int32_t>;  // (load, rank)
  std::priority_queue<Slot, std::vector<Slot>, std::greater<Slot>> heap;
  for (int32_t r = 0; r < world_size; ++r) heap.emplace(0, r);
  std::vector<std::vector<int32_t>> blocks(world_size);
  std::vector<int64_t> rank_load(world_size, 0);
  for (int32_t k : order) {
    const int32_t rank = std::get<1>(heap.top());
    heap.pop();
    blocks[rank].push_back(k);
    rank_load[rank] += loads[k];
    if (static_cast<int>(blocks[rank].size()) < per_rank) heap.emplace(rank_load[rank], rank);
  }
  improve_by_swaps(loads, blocks, rank_load);
  std::vector<int32_t> owner(num_blocks, -1);
  for (int32_t r = 0; r < world_size; ++r)
    for (int32_t k : blocks[r]) owner[k] = r;
  return owner;
}

// [K]: the (first) rank holding each block.
std::vector<int32_t> assign_blocks(const std::vector<int64_t>& loads, int world_size,
                                   BlockAssignment assignment) {
  const int32_t num_blocks = static_cast<int32_t>(loads.size());
  std::vector<int32_t> owner(num_blocks);
  if (world_size >= num_blocks) {
    const int replicas = world_size / num_blocks;
    for (int32_t k = 0; k < num_blocks; ++k) owner[k] = k * replicas;
    return owner;
  }
  if (assignment == BlockAssignment::kBalanced) return assign_balanced(loads, world_size);
  const int per_rank = num_blocks / world_size;
  for (int32_t k = 0; k < num_blocks; ++k) owner[k] = k / per_rank;
  return owner;
}

bool serves(int64_t num_blocks, int64_t world_size) {
  return num_blocks % world_size == 0 || world_size % num_blocks == 0;
}

// "1, 2, 4, 8, 16, 32, 64 and every multiple of 128": sizes below the largest block count are
// listed; from there on a world size must be a multiple of every block count.
std::string serving_sizes(const config::MoweConfig& config) {
  int64_t max_blocks = 1, lcm = 1;
  for (const auto& b : config.buckets()) {
    max_blocks = std::max<int64_t>(max_blocks, b.num_blocks());
    if (lcm <= (int64_t{1} << 31)) lcm = std::lcm(lcm, int64_t{b.num_blocks()});
  }
  std::string out;
  for (int64_t n = 1; n < max_blocks; ++n) {
    bool ok = true;
    for (const auto& b : config.buckets()) ok = ok && serves(b.num_blocks(), n);
    if (ok) out += (out.empty() ? "" : ", ") + std::to_string(n);
  }
  if (lcm > (int64_t{1} << 31)) return out;
  return out + (out.empty() ? "" : " and ") + "every multiple of " + std::to_string(lcm);
}

}  // namespace

uint64_t bucket_config_hash(const config::MoweConfig& config) {
  // Accessors, not presence: an unset field and its explicit default hash the same.
  uint64_t h = hash_ints(0x6d6f77652d706c61ULL, config.num_unrouted_ids(),
                         config.routing_vocab_size(), config.buckets_size());
  for (const auto& b : config.buckets())
    h = hash_ints(h, b.num_routing_ids(), b.num_blocks(), b.experts_per_block(), b.expert_d_ff());
  // The effective form of every bucket (model/expert_form.h). When all buckets share one form it
  // enters once, as before per-bucket forms existed, so plans of uniform configs stay valid;
  // otherwise every bucket's form enters. Either way the hash is a function of the effective
  // forms only: a bucket's form set explicitly to the layer default hashes like an unset one.
  const std::vector<config::Activation> forms = bucket_activations(config);
  const bool uniform =
      std::all_of(forms.begin(), forms.end(), [&](auto a) { return a == forms.front(); });
  if (forms.empty() || uniform) {
    const config::Activation form = forms.empty() ? config.expert_activation() : forms.front();
    return hash_ints(h, form, config.share_expert_parameters());
  }
  h = hash_ints(h, 0x6d697865642d6666ULL);  // "mixed-ff": no uniform hash takes this path
  for (config::Activation form : forms) h = hash_ints(h, form);
  return hash_ints(h, config.share_expert_parameters());
}

std::string world_size_refusal(const config::MoweConfig& config, int world_size) {
  if (world_size < 1) return fmt::format("world size {} must be at least 1", world_size);
  for (int b = 0; b < config.buckets_size(); ++b) {
    const int num_blocks = config.buckets(b).num_blocks();
    if (serves(num_blocks, world_size)) continue;
    return fmt::format(
        "world size {} cannot serve bucket {} (model.mowe.buckets[{}].num_blocks = {}): the world "
        "size must divide the number of blocks (every rank holds as many blocks) or be a "
        "multiple of it (every block has as many replicas); world sizes that serve every "
        "bucket: {}",
        world_size, b, b, num_blocks, serving_sizes(config));
  }
  return "";
}

DispatchPlan DispatchPlan::build(const config::MoweConfig& config, const PlanInputs& in) {
  const std::string refusal = world_size_refusal(config, in.world_size);
  if (!refusal.empty()) throw UserError(refusal);
  RoutingTable table = RoutingTable::build(config, in.frequencies);
  DispatchPlanFile meta;
  meta.set_format_version(kFormatVersion);
  meta.set_world_size(in.world_size);
  meta.set_vocab_hash(in.vocab_hash);
  meta.set_bucket_config_hash(model::bucket_config_hash(config));
  meta.set_config_path(in.config_path);
  meta.set_frequency_source(in.frequency_source);
  meta.set_block_assignment(in.assignment == BlockAssignment::kBalanced
                                ? DispatchPlanFile::BALANCED
                                : DispatchPlanFile::CONTIGUOUS);
  meta.set_encoder_tokens_per_step(in.encoder_tokens_per_step);
  meta.set_decoder_tokens_per_step(in.decoder_tokens_per_step);
  meta.set_total_frequency(
      std::accumulate(in.frequencies.begin(), in.frequencies.end(), int64_t{0}));
  std::vector<std::vector<int32_t>> owner;
  for (int b = 0; b < table.num_buckets(); ++b)
    owner.push_back(assign_blocks(block_loads(table, b), in.world_size, in.assignment));
  return DispatchPlan(std::move(meta), std::move(table), std::move(owner), "(built in memory)");
}

DispatchPlan::DispatchPlan(DispatchPlanFile meta, RoutingTable table,
                           std::vector<std::vector<int32_t>> owner, std::string source)
    : meta_(std::move(meta)), table_(std::move(table)), source_(std::move(source)) {
  MOWE_CHECK(meta_.world_size() >= 1, "dispatch plan {}: world size {} must be at least 1", source_,
             meta_.world_size());
  MOWE_CHECK(meta_.total_frequency() >= 0 && meta_.encoder_tokens_per_step() >= 0 &&
                 meta_.decoder_tokens_per_step() >= 0,
             "dispatch plan {}: negative total frequency or tokens per step", source_);
  buckets_.resize(table_.num_buckets());
  int64_t routed = 0;
  for (int b = 0; b < table_.num_buckets(); ++b) {
    derive(b, std::move(owner.at(b)));
    for (int64_t load : table_.expected_loads(b)) routed += load;
  }
  MOWE_CHECK(routed <= meta_.total_frequency(),
             "dispatch plan {}: experts carry {} frequency, more than the total {}", source_,
             routed, meta_.total_frequency());
  routed_share_ = meta_.total_frequency() > 0
                      ? static_cast<double>(routed) / static_cast<double>(meta_.total_frequency())
                      : 0.0;
}

// Validates one bucket's block owners and derives the per-rank arrays from them.
void DispatchPlan::derive(int b, std::vector<int32_t> block_rank) {
  const BucketLayout& l = table_.bucket(b);
  const int n = world_size(), k_blocks = l.num_blocks;
  MOWE_CHECK(serves(k_blocks, n),
             "dispatch plan {}: world size {} cannot serve bucket {} of {} blocks", source_, n, b,
             k_blocks);
  MOWE_CHECK(static_cast<int>(block_rank.size()) == k_blocks,
             "dispatch plan {}: bucket {} has {} block owners for {} blocks", source_, b,
             block_rank.size(), k_blocks);
  Bucket& bk = buckets_[b];
  bk.replicas = n > k_blocks ? n / k_blocks : 1;
  bk.blocks_per_rank = n > k_blocks ? 1 : k_blocks / n;
  std::vector<int> count(n, 0);
  std::vector<int32_t> slot(k_blocks);
  bk.rank_blocks.assign(static_cast<size_t>(n) * bk.blocks_per_rank, -1);
  for (int32_t k = 0; k < k_blocks; ++k) {
    const int32_t first = block_rank[k];
    MOWE_CHECK(bk.replicas == 1 ? first >= 0 && first < n : first == k * bk.replicas,
               "dispatch plan {}: bucket {} block {} is held by rank {}, which is {}", source_, b,
               k, first, bk.replicas == 1 ? "not a rank" : "not the start of its replica group");
    MOWE_CHECK(count[first] < bk.blocks_per_rank,
               "dispatch plan {}: rank {} holds more than {} blocks of bucket {}", source_, first,
               bk.blocks_per_rank, b);
    slot[k] = count[first];
    for (int j = 0; j < bk.replicas; ++j)
      bk.rank_blocks[(first + j) * bk.blocks_per_rank + count[first + j]++] = k;
  }
  // Every block placed at most blocks_per_rank times per rank and K * R = N * blocks_per_rank
  // placements in all: every rank holds exactly blocks_per_rank blocks.
  bk.local_expert.resize(l.num_experts());
  for (int32_t e = 0; e < l.num_experts(); ++e)
    bk.local_expert[e] =
        slot[e / l.experts_per_block] * l.experts_per_block + e % l.experts_per_block;
  const std::vector<int64_t> loads = block_loads(table_, b);
  bk.mass.assign(n, 0);
  for (int r = 0; r < n; ++r)
    for (int32_t k : blocks_of(r, b)) bk.mass[r] += loads[k];
  bk.block_rank = std::move(block_rank);
}

BlockAssignment DispatchPlan::assignment() const {
  return meta_.block_assignment() == DispatchPlanFile::CONTIGUOUS ? BlockAssignment::kContiguous
                                                                  : BlockAssignment::kBalanced;
}

void DispatchPlan::check_rank(int rank) const {
  MOWE_CHECK(rank >= 0 && rank < world_size(), "rank {} is outside the plan's world of {} ranks",
             rank, world_size());
}

int64_t DispatchPlan::local_experts(int b) const {
  return int64_t{blocks_per_rank(b)} * table_.bucket(b).experts_per_block;
}

std::span<const int32_t> DispatchPlan::blocks_of(int rank, int b) const {
  check_rank(rank);
  const Bucket& bk = buckets_.at(b);
  return std::span(bk.rank_blocks)
      .subspan(static_cast<size_t>(rank) * bk.blocks_per_rank, bk.blocks_per_rank);
}

std::vector<int> DispatchPlan::owners(int b, int32_t block) const {
  const Bucket& bk = buckets_.at(b);
  std::vector<int> ranks(bk.replicas);
  std::iota(ranks.begin(), ranks.end(), bk.block_rank.at(block));
  return ranks;
}

std::vector<int> DispatchPlan::replica_group(int rank, int b) const {
  check_rank(rank);
  const int replicas = buckets_.at(b).replicas;
  std::vector<int> ranks(replicas);
  std::iota(ranks.begin(), ranks.end(), rank - rank % replicas);
  return ranks;
}

std::vector<ExpertShard> DispatchPlan::expert_shards(int rank, int b) const {
  const BucketLayout& l = table_.bucket(b);
  std::vector<ExpertShard> runs;
  int32_t previous = -2;
  for (int32_t k : blocks_of(rank, b)) {
    if (k == previous + 1) {
      runs.back().num_experts += l.experts_per_block;
    } else {
      runs.push_back({l.experts_per_block, int64_t{k} * l.experts_per_block, l.expert_d_ff, {}});
    }
    previous = k;
  }
  return runs;
}

ExpertShard DispatchPlan::local_shard(int rank, int b) const {
  ExpertShard shard{local_experts(b), 0, table_.bucket(b).expert_d_ff, {}};
  for (int32_t local = 0; local < shard.num_experts; ++local)
    shard.experts.push_back(global_expert(rank, b, local));
  return shard;
}

Route DispatchPlan::route(int64_t routing_id, int source_rank) const {
  if (routing_id == kPaddingRoutingId) return {};
  const int32_t b = table_.bucket_of(routing_id);
  if (b == RoutingTable::kUnrouted) return {};
  const int32_t e = table_.expert_of(routing_id);
  return {destination(b, e, source_rank), b, buckets_[b].local_expert[e]};
}

int32_t DispatchPlan::destination(int b, int32_t expert, int source_rank) const {
  const Bucket& bk = buckets_.at(b);
  const int32_t first = bk.block_rank.at(expert / table_.bucket(b).experts_per_block);
  return bk.replicas == 1 ? first : first + source_rank % bk.replicas;
}

int32_t DispatchPlan::global_expert(int rank, int b, int32_t local) const {
  const int32_t per_block = table_.bucket(b).experts_per_block;
  MOWE_CHECK(local >= 0 && local < local_experts(b),
             "local expert {} is outside bucket {}'s [0, {}) on rank {}", local, b,
             local_experts(b), rank);
  return blocks_of(rank, b)[local / per_block] * per_block + local % per_block;
}

double DispatchPlan::load_share(int rank, int b) const {
  check_rank(rank);
  const Bucket& bk = buckets_.at(b);
  if (meta_.total_frequency() == 0) return 0.0;
  return static_cast<double>(bk.mass[rank]) /
         (static_cast<double>(meta_.total_frequency()) * bk.replicas);
}

int64_t DispatchPlan::capacity(int b, int64_t tokens) const {
  const Bucket& bk = buckets_.at(b);
  const int64_t total = meta_.total_frequency();
  if (total == 0) return 0;
  // ceil(mass x tokens / (total x replicas)) in integers, so hand-checkable cases are exact.
  const int64_t max_mass = *std::max_element(bk.mass.begin(), bk.mass.end());
  const __int128 num = static_cast<__int128>(max_mass) * tokens;
  const __int128 den = static_cast<__int128>(total) * bk.replicas;
  return static_cast<int64_t>((num + den - 1) / den);
}

double DispatchPlan::imbalance(int b) const {
  const Bucket& bk = buckets_.at(b);
  const int64_t sum = std::accumulate(bk.mass.begin(), bk.mass.end(), int64_t{0});
  if (sum == 0) return 1.0;
  const int64_t max_mass = *std::max_element(bk.mass.begin(), bk.mass.end());
  return static_cast<double>(max_mass) * world_size() / static_cast<double>(sum);
}

}  // namespace mowe::model
