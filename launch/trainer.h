// The training loop behind mowe_pretrain: one instance per rank (SPMD). It ties the data
// pipeline, the model, the optimizer and the communicator together, which is why it lives here
// rather than in runtime/ (which knows nothing of models or data).
//
// A step: this rank's share of the global batch -> forward/backward with the loss normalised by
// the GLOBAL number of target tokens (MoWE layers exchange tokens with the ranks owning their
// experts) -> dense gradients summed over ranks in buckets while backward runs, expert gradients
// summed inside replica groups -> global norm and clipping -> update. So the same global batch
// gives the same update whatever the world size.
#pragma once

#include <memory>
#include <vector>

#include "comm/alltoall.h"
#include "comm/communicator.h"
#include "comm/grad_allreduce.h"
#include "data/pipeline.h"
#include "model/dispatch_plan.h"
#include "model/t5_model.h"
#include "runtime/optimizer.h"

namespace mowe::train {

struct StepResult {
  double loss = 0;       // mean over the global batch's target tokens (z-loss included)
  double grad_norm = 0;  // global, before clipping
  double learning_rate = 0;
  int64_t tokens = 0;  // encoder + decoder tokens of the global batch
};

class Trainer {
 public:
  // Opens the data pipeline (tokenizer and routing vocabulary must exist: run mowe_vocab), loads
  // the dispatch plan (parallel.plan, built by mowe_plan for this world size; built in memory
  // when the file is absent) and builds this rank's share of the model. Collective over `comm`.
  Trainer(const config::Config& config, comm::Communicator& comm);
  ~Trainer();

  // training.steps steps from the current one, with logging and evaluation as configured.
  void run();
  // One optimizer step on this rank's share of a global batch.
  StepResult step(const data::Batch& batch);
  // Mean token loss over the first `batches` global batches of the validation split.
  double evaluate(int64_t batches);

  int64_t steps_done() const { return steps_done_; }
  model::ParameterStore& parameters() { return store_; }

 private:
  // Returns the global loss sum; *tokens receives the global number of target tokens.
  double forward_backward(const data::Batch& batch, bool backward, double* tokens);
  void sync_expert_gradients();
  double grad_norm();

  config::Config config_;
  comm::Communicator& comm_;
  data::DataPipeline data_;
  std::unique_ptr<data::Loader> train_loader_, eval_loader_;
  std::unique_ptr<model::DispatchPlan> plan_;
  // Per slot: 0 for dense gradients (the same on every rank), 1 / replicas for expert gradients
  // (spread over the ranks, each block held by `replicas` ranks).
  std::vector<double> expert_share_;
  std::unique_ptr<comm::AllToAll> alltoall_;
  std::vector<std::unique_ptr<comm::Communicator>> replica_groups_;  // per bucket, or null
  model::ParameterStore store_;
  std::unique_ptr<model::T5Model> model_;
  std::unique_ptr<Optimizer> optimizer_;
  std::vector<ParamSlot> slots_;
  std::vector<model::ExpertParameter> experts_;
  std::unique_ptr<comm::BucketedAllreduce> dense_sync_;
  std::vector<std::vector<size_t>> group_grads_;  // dense_grad_groups() -> dense_sync_ indices
  Arena scratch_, activations_;
  Buffer step_sums_;  // host scalars allreduced each step: tokens, loss, expert sum of squares
  int64_t steps_done_ = 0;
};

}  // namespace mowe::train
