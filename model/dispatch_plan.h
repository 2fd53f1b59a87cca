// The dispatch plan (docs/dispatch_plans.md): for one world size, where every
// routed token goes. It holds
//   routing id -> (bucket, expert)   the RoutingTable built from the frequencies;
//   expert -> block                  expert e of a bucket lives in block e / experts_per_block;
//   block -> owning rank(s)          per bucket, balanced by expected token load;
// and the expected tokens per rank and bucket. mowe_plan builds it once and writes a file
// (dispatch_plan_file.h); every rank loads that file and checks it was built for this job.
//
// Ownership rule per bucket of K blocks on N ranks:
// - N <= K: N must divide K; every rank holds K/N blocks (the same expert memory on every rank);
// - N > K: N must be a multiple of K; block k is replicated on the R = N/K consecutive ranks
//   [kR, (k+1)R) (a replica group, allreducing its expert gradients); a token from source rank
//   s goes to replica s mod R, so every rank keeps the tokens of its own block at home.
// A rank numbers its experts of a bucket locally: its blocks in ascending order, each block's
// experts in order (local = slot * experts_per_block + e % experts_per_block).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "model/expert_bank.h"
#include "model/proto/dispatch_plan.pb.h"
#include "model/routing_table.h"

namespace mowe::model {

enum class BlockAssignment {
  kBalanced,    // greedy LPT under equal block counts: the lowest max load
  kContiguous,  // rank r holds blocks [r K/N, (r+1) K/N): one expert range per bucket
};

// What a plan is built from, besides model.mowe.
struct PlanInputs {
  int world_size = 1;
  std::vector<int64_t> frequencies;     // [model.mowe.routing_vocab_size]
  int64_t encoder_tokens_per_step = 0;  // global batch x input_length
  int64_t decoder_tokens_per_step = 0;  // global batch x target_length
  uint64_t vocab_hash = 0;              // of the routing vocabulary the frequencies came from
  std::string frequency_source;         // for messages: the vocabulary file, or "Zipf(1.0)"
  std::string config_path;              // for the "rebuild it with" hint
  BlockAssignment assignment = BlockAssignment::kBalanced;
};

// Where one token goes: rank -1 (and bucket, local_expert -1) when it is not routed.
struct Route {
  int32_t rank = -1;
  int32_t bucket = -1;
  int32_t local_expert = -1;  // index in the destination rank's ExpertBank for this bucket
};

// Hash of the model.mowe fields that shape the routing table and the experts: num_unrouted_ids,
// routing_vocab_size, every bucket with its effective expert form (model/expert_form.h) and
// share_expert_parameters.
uint64_t bucket_config_hash(const config::MoweConfig& config);

// Empty when `world_size` can serve every bucket of `config`; otherwise why not, naming the
// bucket, its num_blocks, the world size and the world sizes that would work.
std::string world_size_refusal(const config::MoweConfig& config, int world_size);

class DispatchPlan {
 public:
  // 2: the file is framed with a CRC32C (dispatch_plan_file.h); 1 was a bare protobuf.
  static constexpr uint32_t kFormatVersion = 2;

  // Throws Error with world_size_refusal() for a world size the layout cannot serve.
  static DispatchPlan build(const config::MoweConfig& config, const PlanInputs& inputs);

  // From a parsed file; validates every array (`source` names the file in messages).
  static DispatchPlan from_proto(const DispatchPlanFile& file, const std::string& source);
  DispatchPlanFile to_proto() const;

  // Refuses a plan built for another world size, routing vocabulary or bucket configuration,
  // with both values and the mowe_plan command that rebuilds it.
  void check(int world_size, uint64_t vocab_hash, uint64_t bucket_config_hash) const;

  int world_size() const { return meta_.world_size(); }
  uint64_t vocab_hash() const { return meta_.vocab_hash(); }
  uint64_t bucket_config_hash() const { return meta_.bucket_config_hash(); }
  const std::string& config_path() const { return meta_.config_path(); }
  const std::string& frequency_source() const { return meta_.frequency_source(); }
  const std::string& source() const { return source_; }  // the file, or "(built in memory)"
  BlockAssignment assignment() const;
  int num_buckets() const { return table_.num_buckets(); }

  // The routing table every rank uses; routing_table() is a copy for a caller that owns one.
  const RoutingTable& table() const { return table_; }
  RoutingTable routing_table() const { return table_; }

  // ---- ownership --------------------------------------------------------------------------
  int replicas(int b) const { return buckets_.at(b).replicas; }  // ranks holding each block
  int blocks_per_rank(int b) const { return buckets_.at(b).blocks_per_rank; }
  // Experts every rank holds in bucket b (the same on every rank).
  int64_t local_experts(int b) const;
  // Global blocks of bucket b held by `rank`, ascending: the order of its local experts.
  std::span<const int32_t> blocks_of(int rank, int b) const;
  // The ranks holding block `block` of bucket b: one, or its replica group.
  std::vector<int> owners(int b, int32_t block) const;
  // The ranks holding the same blocks of bucket b as `rank` (itself when not replicated).
  std::vector<int> replica_group(int rank, int b) const;
  // The rank's experts of bucket b as runs of consecutive global experts, in local order: one
  // ExpertShard when the blocks are contiguous (always with kContiguous or replicas).
  std::vector<ExpertShard> expert_shards(int rank, int b) const;
  // All of bucket b's experts on `rank` as one shard in local order (ExpertShard::experts lists
  // their global indices): what the rank's ExpertBank holds.
  ExpertShard local_shard(int rank, int b) const;

  // ---- per token --------------------------------------------------------------------------
  // kPaddingRoutingId and unrouted ids give Route{-1, -1, -1}.
  Route route(int64_t routing_id, int source_rank) const;
  int32_t destination(int b, int32_t expert, int source_rank) const;
  // The same on every rank holding the expert.
  int32_t local_expert(int b, int32_t expert) const { return buckets_.at(b).local_expert[expert]; }
  int32_t global_expert(int rank, int b, int32_t local) const;

  // ---- expected load ----------------------------------------------------------------------
  int64_t encoder_tokens_per_step() const { return meta_.encoder_tokens_per_step(); }
  int64_t decoder_tokens_per_step() const { return meta_.decoder_tokens_per_step(); }
  int64_t tokens_per_step() const { return encoder_tokens_per_step() + decoder_tokens_per_step(); }
  // Share of all tokens (routed or not) that reach `rank`'s experts of bucket b.
  double load_share(int rank, int b) const;
  // Share of all tokens that reach an expert.
  double routed_share() const { return routed_share_; }
  // Expected tokens per step (both stacks) that `rank` computes in bucket b.
  double expected_tokens(int rank, int b) const { return load_share(rank, b) * tokens_per_step(); }
  // Max over ranks of the expected tokens of bucket b for a call with `tokens` tokens (one
  // MoWE layer of a stack), rounded up: what a static-shape implementation would allocate.
  int64_t capacity(int b, int64_t tokens) const;
  int64_t capacity(int b) const { return capacity(b, tokens_per_step()); }
  // Max over mean expected tokens per rank of bucket b; 1 when the bucket gets no tokens.
  double imbalance(int b) const;

 private:
  struct Bucket {
    int replicas = 1;
    int blocks_per_rank = 1;
    std::vector<int32_t> block_rank;    // [K] first rank holding each block
    std::vector<int32_t> rank_blocks;   // [N * blocks_per_rank] blocks of each rank, ascending
    std::vector<int32_t> local_expert;  // [E]
    std::vector<int64_t> mass;          // [N] frequency mass of each rank's blocks
  };

  DispatchPlan(DispatchPlanFile meta, RoutingTable table, std::vector<std::vector<int32_t>> owner,
               std::string source);
  void derive(int b, std::vector<int32_t> block_rank);
  void check_rank(int rank) const;

  DispatchPlanFile meta_;  // everything but the arrays, which live in table_ and buckets_
  RoutingTable table_;
  std::vector<Bucket> buckets_;
  double routed_share_ = 0;
  std::string source_;
};

}  // namespace mowe::model
