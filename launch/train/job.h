// A training job's set-up on one rank (SPMD): the data pipeline, the dispatch plan and the groups
// it implies, this rank's share of the model with its sharding facts, the optimizer and the
// loaders. Everything a step, an evaluation or a checkpoint needs, built once and owned here.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/alltoall.h"
#include "comm/communicator.h"
#include "data/pipeline.h"
#include "model/dispatch_plan.h"
#include "model/t5_model.h"
#include "runtime/optimizer.h"
#include "launch/train/checkpoint_files.h"
#include "launch/train/device_choice.h"

namespace mowe::train {

// The one place parallel.plan is resolved: empty = the plan built in memory from the routing
// vocabulary (every rank computes the same one); a set path must exist (an Error names it) and is
// refused when built for another world size, vocabulary or bucket layout.
model::DispatchPlan resolve_plan(const config::Config& config, const data::RoutingVocab& vocab,
                                 int world_size);

// Files may exist on some nodes only: every rank learns of a rank that cannot open them. First,
// before the corpus is read or anything is allocated, a job beyond this host's memory is refused
// with its estimate and the fields that drive it (model/memory_estimate.h). Collective; errors
// agreed.
data::DataPipeline open_pipeline_agreed(const config::Config& config, comm::Communicator& comm);

// resolve_plan on every rank, then a check that every rank holds the same plan (errors agreed);
// null for a model without MoWE layers. Collective.
std::unique_ptr<model::DispatchPlan> resolve_plan_agreed(const config::Config& config,
                                                         const data::RoutingVocab& vocab,
                                                         comm::Communicator& comm);

class Job {
 public:
  // Opens the data pipeline (tokenizer and routing vocabulary must exist: run mowe_vocab),
  // resolves the device and the dispatch plan and builds this rank's share of the model on the
  // device. Collective over comm, a host communicator.
  Job(const config::Config& config, comm::Communicator& comm);
  ~Job();
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;

  const config::Config& config() const { return config_; }
  // The control communicator: host memory (scalars, counts, keys, agreement, checkpoint sums).
  comm::Communicator& comm() const { return comm_; }
  // The data communicator: tensors on device() (gradient buckets). comm() itself on the CPU.
  comm::Communicator& data_comm() const { return *data_comm_; }
  Device device() const { return device_.device; }
  DeviceAllocator& allocator() const;
  const data::DataPipeline& data() const { return data_; }
  const model::DispatchPlan* plan() const { return plan_.get(); }
  model::ParameterStore& parameters() { return store_; }
  const model::ParameterStore& parameters() const { return store_; }
  model::T5Model& model() { return *model_; }
  Optimizer& optimizer() { return *optimizer_; }
  data::Loader& train_loader() { return *train_loader_; }
  // Throws when data.validation_fraction is 0 (there is no held-out split).
  data::Loader& eval_loader();
  const Fingerprints& fingerprints() const { return fingerprints_; }

 private:
  config::Config config_;
  comm::Communicator& comm_;
  DeviceChoice device_;
  std::unique_ptr<comm::Communicator> own_data_comm_;
  comm::Communicator* data_comm_ = nullptr;
  data::DataPipeline data_;
  std::unique_ptr<model::DispatchPlan> plan_;
  std::unique_ptr<comm::AllToAll> alltoall_;          // on data_comm_
  std::unique_ptr<comm::AllToAll> control_alltoall_;  // on comm_, when data_comm_ is another
  std::vector<std::unique_ptr<comm::Communicator>> replica_groups_;  // per bucket, or null
  model::ParameterStore store_;
  std::unique_ptr<model::T5Model> model_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<data::Loader> train_loader_, eval_loader_;
  Fingerprints fingerprints_;
};

}  // namespace mowe::train
