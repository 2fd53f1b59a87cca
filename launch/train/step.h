// One training step and the evaluation pass on a Job. A step: this rank's share of the global
// batch -> forward/backward with the loss normalised by the GLOBAL number of target tokens (MoWE
// layers exchange tokens with the ranks owning their experts) -> dense gradients summed over
// ranks in buckets while backward runs, expert gradients summed inside replica groups -> global
// norm and clipping -> update number state.step + 1. So the same global batch gives the same
// update whatever the world size.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/grad_allreduce.h"
#include "launch/train/batch.h"
#include "launch/train/job.h"
#include "launch/train/train_state.h"

namespace mowe::train {

// Where one step's wall time went, in seconds on this rank. forward/backward/optimizer are
// compute: their wall time less the time blocked in collectives meanwhile; alltoall and
// allreduce are the time blocked in each (what communication did not hide). "other" is the
// rest: routing statistics, replica sums and the norm's arithmetic. The parts sum to `total`.
struct StepTimes {
  double forward = 0, backward = 0, optimizer = 0, alltoall = 0, allreduce = 0, other = 0;
  double total = 0;
};

struct StepResult {
  double loss = 0;       // mean over the global batch's target tokens (z-loss included)
  double grad_norm = 0;  // global, before clipping
  double learning_rate = 0;
  int64_t tokens = 0;  // real (non-padding) encoder + decoder tokens of the global batch
  int64_t encoder_tokens = 0, decoder_tokens = 0;  // the same, split
  // Routing over the global batch: non-padding tokens entering MoWE layers, those of them given
  // an expert, and per bucket the expert rows computed in all and on the busiest rank.
  int64_t mowe_tokens = 0, routed_tokens = 0;
  std::vector<int64_t> bucket_rows, bucket_rows_max;
  // The loss or the gradient norm was not finite: the update was skipped (the step still
  // counts). `first_bad` names the first parameter with a non-finite value, else gradient.
  bool skipped = false;
  std::string first_bad;
  StepTimes times;

  // Back to a fresh result, keeping the vectors' storage (a step allocates nothing).
  void reset() {
    std::vector<int64_t> rows = std::move(bucket_rows), rows_max = std::move(bucket_rows_max);
    std::string bad = std::move(first_bad);
    *this = StepResult();
    rows.clear(), rows_max.clear(), bad.clear();
    bucket_rows = std::move(rows), bucket_rows_max = std::move(rows_max),
    first_bad = std::move(bad);
  }
};

class StepRunner {
 public:
  explicit StepRunner(Job& job);
  ~StepRunner();

  // One optimizer update on this rank's share of a global batch; advances state.step. The result
  // lives until the next call.
  const StepResult& train_step(const data::Batch& batch, TrainState& state);
  // The global loss sum of a batch without backward; *target_tokens receives the global number
  // of target tokens. Collective.
  double loss_sum(const data::Batch& batch, double* target_tokens);
  // loss_sum, handing the logits [B*T, V] of this rank's share to `logits` while they live
  // (greedy decoding). Collective.
  double loss_sum(const data::Batch& batch, double* target_tokens,
                  const std::function<void(const Tensor& logits)>& logits);

 private:
  // Returns the global loss sum; fills the global target and real token counts.
  double forward_backward(const data::Batch& batch, const TrainState* state, double* targets,
                          TokenCounts* real,
                          const std::function<void(const Tensor&)>* logits = nullptr,
                          StepTimes* times = nullptr);
  // Fills r's routing fields from the last forward pass. Collective.
  void gather_routing_load(StepResult& r);

  Job& job_;
  std::unique_ptr<comm::BucketedAllreduce> dense_sync_;
  std::vector<std::vector<size_t>> group_grads_;  // dense_grad_groups() -> dense_sync_ indices
  Arena scratch_, activations_;
  Arena inputs_;  // a batch's tensors uploaded to the device (unused on the CPU)
  std::vector<ParamSlot> slots_;
  StepResult result_;
  std::vector<double> load_sums_, load_maxima_;  // gather_routing_load's, reused
  model::T5Model::RoutingLoad load_;
};

// Mean token loss over the first `batches` global batches of the job's validation split: a mean
// over tokens, not over batches. Collective.
double evaluate(StepRunner& runner, Job& job, int64_t batches);

}  // namespace mowe::train
