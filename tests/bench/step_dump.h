// What mowe_bench_step hands to the PyTorch baseline (tests/bench/t5_torch_baseline.py), as
// safetensors files so that a reader of a few lines suffices:
// - the global batches it trains on, every token with its expert (bucket and expert index of the
//   routing table, -1 when unrouted), so both programs see the same tokens and the same expert
//   load; with each batch the trainer's model FLOPs and real tokens;
// - with a dispatch plan, the rank owning each expert block, so that the baseline shards its
//   experts over the same ranks;
// - the parameters (one rank only), under the trainer's names and layouts: the initial ones, so
//   both can compute the loss of the same weights on the same batch, and those after the steps,
//   so that the baseline's training from the same start can be compared with the trainer's.
// The resolved config travels as JSON in the metadata ("config"), with every field spelled out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "data/loader.h"
#include "model/dispatch_plan.h"
#include "model/parameters.h"
#include "model/routing_table.h"
#include "runtime/proto/config.pb.h"

namespace mowe::bench {

// One global batch as rank 0 gathered it: every [B, T] array of data::Batch plus each token's
// bucket and expert.
struct GlobalBatch {
  int batch_size = 0, input_length = 0, target_length = 0;
  std::vector<int32_t> enc_ids, enc_mask, enc_bucket, enc_expert;
  std::vector<int32_t> dec_ids, dec_mask, dec_bucket, dec_expert, targets;
  std::vector<float> loss_weights;
  double model_flops = 0;  // the trainer's count for this batch (launch/train/throughput.h)
  int64_t real_tokens = 0;
};

// Gathers this rank's share of a global batch on rank 0 (rank order is global order), routed with
// `table` (null: no MoWE layer, every token unrouted). Collective; the result is empty elsewhere.
GlobalBatch gather_batch(const data::Batch& local, const model::RoutingTable* table,
                         int deactivate_above, comm::Communicator& comm);

// Writes batches as "b<i>.<array>" tensors; metadata "config" (JSON), "batches" and
// "world_size". With a plan, also "bucket<b>.block_rank" [num_blocks]: the first rank holding
// each block of bucket b.
void write_batches(const std::string& path, const std::vector<GlobalBatch>& batches,
                   const config::Config& config, const model::DispatchPlan* plan, int world_size);

// Writes every parameter of a one-rank job under its own name (f32, its shape).
void write_parameters(const std::string& path, const model::ParameterStore& store,
                      const config::Config& config);

// The resolved config as JSON, every field included (enums by name).
std::string config_json(const config::Config& config);

}  // namespace mowe::bench
