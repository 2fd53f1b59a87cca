#include "launch/train/job.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "comm/agree.h"
#include "launch/train/batch.h"
#include "launch/train/sharding.h"
#include "model/dispatch_plan_file.h"
#include "model/memory_estimate.h"
#include "runtime/optimizer_config.h"
#include "model/mowe_layers.h"
#include "runtime/device.h"
#include "runtime/hash.h"

namespace mowe::train {
namespace {

// Every rank must route with the same plan (a plan file on node-local disks could differ, or
// exist on some nodes only): compare a fingerprint of its serialisation.
void check_same_plan_everywhere(const model::DispatchPlan& plan, comm::Communicator& comm) {
  const std::string bytes = plan.to_proto().SerializeAsString();
  const uint64_t h = fnv1a(bytes);
  comm::check_same_everywhere(
      comm, h, fmt::format("the ranks hold different dispatch plans ({})", plan.source()),
      "give every rank the same plan file (parallel.plan on a shared file system), or none");
}

}  // namespace

data::DataPipeline open_pipeline_agreed(const config::Config& config, comm::Communicator& comm) {
  const int on_host = model::ranks_on_this_host(comm);
  comm::run_agreed(comm, [&] {
    model::check_memory_fits(model::estimate_memory(config, comm.size()),
                             model::available_host_memory(), on_host);
  });
  data::DataPipeline pipeline;
  comm::run_agreed(comm, [&] { pipeline = data::open_pipeline(config); });
  return pipeline;
}

std::unique_ptr<model::DispatchPlan> resolve_plan_agreed(const config::Config& config,
                                                         const data::RoutingVocab& vocab,
                                                         comm::Communicator& comm) {
  if (!model::has_mowe_layers(config)) return nullptr;
  std::unique_ptr<model::DispatchPlan> plan;
  comm::run_agreed(comm, [&] {
    plan = std::make_unique<model::DispatchPlan>(resolve_plan(config, vocab, comm.size()));
  });
  check_same_plan_everywhere(*plan, comm);
  return plan;
}

model::DispatchPlan resolve_plan(const config::Config& cfg, const data::RoutingVocab& vocab,
                                 int world_size) {
  const std::string& path = cfg.parallel().plan();
  if (path.empty()) {
    spdlog::info("[train] parallel.plan is empty: building the dispatch plan in memory");
    return model::DispatchPlan::build(cfg.model().mowe(),
                                      model::plan_inputs(cfg, "", vocab, world_size));
  }
  if (!std::filesystem::exists(path))
    throw Error(fmt::format(
        "parallel.plan '{}' does not exist: write it with mowe_plan --config CONFIG "
        "--world-size {} --out '{}', or set parallel.plan to \"\" to build the plan in memory",
        path, world_size, path));
  return model::load_plan_for(cfg, vocab, world_size);
}

namespace {

// The data communicator of a device job: NCCL on CUDA where it can serve (make_communicator
// falls back to MPI through host memory with a warning), MPI through host memory on the simulated
// device.
std::unique_ptr<comm::Communicator> make_data_comm(const config::Config& config,
                                                   comm::Communicator& control,
                                                   const DeviceChoice& device) {
  comm::CommOptions options;
  options.name = "data";
  options.timeout_seconds = config.parallel().collective_timeout_s();
  options.cuda_device = device.gpu;
  // Collectives on the compute stream: ordered with the gradients they reduce and the rows they
  // move, without events (no overlap yet; docs/gpu.md).
  options.cuda_stream = device_runtime(device.device).compute_stream();
  auto data = control.for_device(device.device, options);
  if (control.rank() == 0)
    spdlog::info("[train] data collectives: {} on {} tensors; control collectives: {} on host",
                 data->backend(), device_name(device.device), control.backend());
  return data;
}

}  // namespace

Job::Job(const config::Config& config, comm::Communicator& comm)
    : config_(config),
      comm_(comm),
      device_(choose_device(config, comm)),
      own_data_comm_(device_.device == Device::CPU ? nullptr
                                                   : make_data_comm(config, comm, device_)),
      data_comm_(own_data_comm_ ? own_data_comm_.get() : &comm),
      data_(open_pipeline_agreed(config, comm)),
      store_(device_runtime(device_.device).allocator(), DType::F32,
             static_cast<uint64_t>(config.training().seed())) {
  model::MoweParallel parallel;
  std::vector<comm::Communicator*> groups;
  plan_ = resolve_plan_agreed(config, *data_.vocab, comm);
  if (plan_) {
    const bool hierarchical = config.parallel().alltoall() == config::ParallelConfig::HIERARCHICAL;
    const auto algorithm =
        hierarchical ? comm::AllToAll::Algorithm::Hierarchical : comm::AllToAll::Algorithm::Flat;
    // The rows move on the data communicator; on a device, counts and keys (host memory) on a
    // twin over the control one.
    alltoall_ = std::make_unique<comm::AllToAll>(*data_comm_, algorithm,
                                                 config.parallel().ranks_per_node());
    if (data_comm_ != &comm)
      control_alltoall_ =
          std::make_unique<comm::AllToAll>(comm, algorithm, config.parallel().ranks_per_node());
    parallel = {plan_.get(), alltoall_.get(), control_alltoall_.get()};
    for (int b = 0; b < plan_->num_buckets(); ++b) {
      replica_groups_.push_back(
          data_comm_->split(plan_->replica_group(comm.rank(), b).front(), comm.rank()));
      groups.push_back(replica_groups_.back().get());
    }
    fingerprints_ = {model::routing_vocab_hash(*data_.vocab),
                     model::routing_table_hash(plan_->table()),
                     model::bucket_config_hash(config.model().mowe())};
  }
  auto options = data::loader_options(config, *data_.tokenizer, comm.rank(), comm.size());
  if (plan_) {
    // The loader's thread routes each batch with the plan; the step only exchanges counts.
    options.prepare =
        route_with_plan(*plan_, comm.rank(), config.model().mowe().deactivate_routing_ids_above());
  }
  train_loader_ = data::make_loader(data_, false, options);
  // No held-out split (data.validation_fraction = 0 or a streaming corpus without
  // data.validation_path, so training.eval_every = 0): no evaluation.
  if (data::has_validation_split(config.data())) {
    try {
      eval_loader_ = data::make_loader(data_, true, options);
    } catch (const Error& e) {
      const config::DataConfig& d = config.data();
      throw Error(
          fmt::format("the validation split ({}): {}",
                      d.validation_path().empty()
                          ? fmt::format("data.validation_fraction = {}", d.validation_fraction())
                          : fmt::format("data.validation_path = \"{}\"", d.validation_path()),
                      e.what()));
    }
  }
  model_ = std::make_unique<model::T5Model>(config.model(), store_,
                                            plan_ ? &plan_->table() : nullptr, &parallel);
  assign_sharding(store_, model_->expert_parameters(), plan_.get(), comm.rank(), comm.size(),
                  groups);
  optimizer_ = make_optimizer(config.training(), allocator());
  // All optimizer state now rather than at the first update: memory runs out at start-up, not
  // hours later, and a checkpoint restore only reads.
  optimizer_->prepare_state(store_.slots());
  spdlog::info(
      "[train] model: {} dense + {} expert parameters on this rank; optimizer {}; {} ranks, {} "
      "sequences per rank per step",
      store_.count(model::ParamKind::Dense), store_.count(model::ParamKind::Expert),
      optimizer_->name(), comm.size(), train_loader_->local_batch_size());
}

Job::~Job() = default;

DeviceAllocator& Job::allocator() const {
  return device_runtime(device_.device).allocator();
}

data::Loader& Job::eval_loader() {
  if (!eval_loader_)
    throw Error(config_.data().streaming()
                    ? "no validation split to evaluate on: a streaming corpus is never split; "
                      "set data.validation_path to held-out files"
                    : "no validation split to evaluate on: data.validation_fraction is 0; set it "
                      "or data.validation_path");
  return *eval_loader_;
}

}  // namespace mowe::train
