#include "launch/train/job.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "launch/train/batch.h"
#include "launch/train/collective.h"
#include "launch/train/sharding.h"
#include "model/dispatch_plan_file.h"
#include "model/memory_estimate.h"
#include "runtime/optimizer_config.h"

namespace mowe::train {
namespace {

// Every rank must route with the same plan (a plan file on node-local disks could differ, or
// exist on some nodes only): compare a fingerprint of its serialisation.
void check_same_plan_everywhere(const model::DispatchPlan& plan, comm::Communicator& comm) {
  const std::string bytes = plan.to_proto().SerializeAsString();
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
  // Two 31-bit halves as exact doubles: min == max over the ranks iff all agree.
  double lo[2] = {static_cast<double>(h & 0x7fffffff), static_cast<double>((h >> 32) & 0x7fffffff)};
  double hi[2] = {lo[0], lo[1]};
  comm.allreduce(Tensor(lo, DType::F64, Device::CPU, {2}), comm::ReduceOp::Min);
  comm.allreduce(Tensor(hi, DType::F64, Device::CPU, {2}), comm::ReduceOp::Max);
  if (lo[0] != hi[0] || lo[1] != hi[1])  // known to every rank alike
    throw AgreedError(fmt::format(
        "the ranks hold different dispatch plans ({}): give every rank the same plan file "
        "(parallel.plan on a shared file system), or none",
        plan.source()));
}

// Files may exist on some nodes only: every rank learns of a rank that cannot open them. First,
// before the corpus is read or anything is allocated, a job beyond this host's memory is refused
// with its estimate and the fields that drive it (model/memory_estimate.h).
data::DataPipeline open_pipeline_agreed(const config::Config& config, comm::Communicator& comm) {
  const int on_host = model::ranks_on_this_host(comm);
  run_agreed(comm, [&] {
    model::check_memory_fits(model::estimate_memory(config, comm.size()),
                             model::available_host_memory(), on_host);
  });
  data::DataPipeline pipeline;
  run_agreed(comm, [&] { pipeline = data::open_pipeline(config); });
  return pipeline;
}

bool has_mowe(const config::Config& cfg) {
  return cfg.model().mowe().encoder_layers_size() + cfg.model().mowe().decoder_layers_size() > 0;
}

}  // namespace

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

Job::Job(const config::Config& config, comm::Communicator& comm)
    : config_(config),
      comm_(comm),
      data_(open_pipeline_agreed(config, comm)),
      store_(host_allocator(), DType::F32, static_cast<uint64_t>(config.training().seed())) {
  model::MoweParallel parallel;
  std::vector<comm::Communicator*> groups;
  if (has_mowe(config)) {
    run_agreed(comm, [&] {
      plan_ =
          std::make_unique<model::DispatchPlan>(resolve_plan(config, *data_.vocab, comm.size()));
    });
    check_same_plan_everywhere(*plan_, comm);
    const bool hierarchical = config.parallel().alltoall() == config::ParallelConfig::HIERARCHICAL;
    alltoall_ = std::make_unique<comm::AllToAll>(
        comm,
        hierarchical ? comm::AllToAll::Algorithm::Hierarchical : comm::AllToAll::Algorithm::Flat,
        config.parallel().ranks_per_node());
    parallel = {plan_.get(), alltoall_.get()};
    for (int b = 0; b < plan_->num_buckets(); ++b) {
      replica_groups_.push_back(
          comm.split(plan_->replica_group(comm.rank(), b).front(), comm.rank()));
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
  optimizer_ = make_optimizer(config.training(), host_allocator());
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
