#include "launch/trainer.h"

#include <spdlog/spdlog.h>

#include <chrono>

#include <filesystem>

#include "model/dispatch_plan_file.h"
#include "runtime/math.h"
#include "runtime/optimizer_config.h"

namespace mowe::train {
namespace {

using Clock = std::chrono::steady_clock;

// What the loader thread attaches to each batch: both stacks' tokens routed with the plan.
struct BatchRouting {
  model::RoutedTokens encoder, decoder;
};

// Views of a batch's arrays as the model's inputs (no copies).
model::ModelInputs model_inputs(const data::Batch& b) {
  model::ModelInputs in;
  in.batch = b.batch_size;
  const int64_t bs = b.batch_size, te = b.input_length, td = b.target_length;
  in.enc_ids = host_i32_view(b.encoder_input_ids, {bs, te});
  in.enc_valid = host_i32_view(b.encoder_mask, {bs, te});
  in.enc_routing = host_i32_view(b.encoder_routing_ids, {bs, te});
  in.dec_ids = host_i32_view(b.decoder_input_ids, {bs, td});
  in.dec_valid = host_i32_view(b.decoder_mask, {bs, td});
  in.dec_routing = host_i32_view(b.decoder_routing_ids, {bs, td});
  in.targets = host_i32_view(b.targets, {bs, td});
  in.weights = Tensor(const_cast<float*>(b.loss_weights.data()), DType::F32, Device::CPU, {bs, td});
  if (b.prepared) {
    const auto* routing = static_cast<const BatchRouting*>(b.prepared.get());
    in.enc_routed = &routing->encoder;
    in.dec_routed = &routing->decoder;
  }
  return in;
}

// parallel.plan when it exists (refused if built for another world size or vocabulary), else
// the same plan built in memory from the routing vocabulary (every rank computes the same one).
model::DispatchPlan dispatch_plan(const config::Config& cfg, const data::RoutingVocab& vocab,
                                  int world) {
  const std::string& path = cfg.parallel().plan();
  if (!path.empty() && std::filesystem::exists(path))
    return model::load_plan_for(cfg, vocab, world);
  spdlog::info(
      "[train] no plan file at '{}': building the dispatch plan in memory (mowe_plan "
      "writes one, and sizes a job beforehand)",
      path);
  return model::DispatchPlan::build(cfg.model().mowe(), model::plan_inputs(cfg, "", vocab, world));
}

// Every rank must route with the same plan (a plan file on node-local disks could differ, or
// exist on some nodes only): compare a fingerprint of its serialisation.
void check_same_plan_everywhere(const model::DispatchPlan& plan, comm::Communicator& comm) {
  const std::string bytes = plan.to_proto().SerializeAsString();
  uint64_t h = 1469598103934665603ULL;  // FNV-1a
  for (unsigned char c : bytes) h = (h ^ c) * 1099511628211ULL;
  Buffer lo(host_allocator(), {2}, DType::I32), hi(host_allocator(), {2}, DType::I32);
  for (const Buffer* b : {&lo, &hi}) {
    b->tensor().ptr<int32_t>()[0] = static_cast<int32_t>(h & 0x7fffffff);
    b->tensor().ptr<int32_t>()[1] = static_cast<int32_t>((h >> 32) & 0x7fffffff);
  }
  comm.allreduce(lo, comm::ReduceOp::Min);
  comm.allreduce(hi, comm::ReduceOp::Max);
  MOWE_CHECK(lo.tensor().ptr<int32_t>()[0] == hi.tensor().ptr<int32_t>()[0] &&
                 lo.tensor().ptr<int32_t>()[1] == hi.tensor().ptr<int32_t>()[1],
             "the ranks hold different dispatch plans ({}): give every rank the same plan file "
             "(parallel.plan on a shared file system), or none",
             plan.source());
}

bool has_mowe(const config::Config& cfg) {
  return cfg.model().mowe().encoder_layers_size() + cfg.model().mowe().decoder_layers_size() > 0;
}

}  // namespace

Trainer::Trainer(const config::Config& config, comm::Communicator& comm)
    : config_(config),
      comm_(comm),
      data_(data::open_pipeline(config)),
      store_(host_allocator(), DType::F32, static_cast<uint64_t>(config.training().seed())),
      scratch_(host_allocator()),
      activations_(host_allocator()),
      step_sums_(host_allocator(), {3}, DType::F64) {
  model::MoweParallel parallel;
  if (has_mowe(config)) {
    plan_ = std::make_unique<model::DispatchPlan>(dispatch_plan(config, *data_.vocab, comm.size()));
    check_same_plan_everywhere(*plan_, comm);
    const bool hierarchical = config.parallel().alltoall() == config::ParallelConfig::HIERARCHICAL;
    alltoall_ = std::make_unique<comm::AllToAll>(
        comm,
        hierarchical ? comm::AllToAll::Algorithm::Hierarchical : comm::AllToAll::Algorithm::Flat,
        config.parallel().ranks_per_node());
    parallel = {plan_.get(), alltoall_.get()};
    for (int b = 0; b < plan_->num_buckets(); ++b)
      replica_groups_.push_back(
          comm.split(plan_->replica_group(comm.rank(), b).front(), comm.rank()));
  }
  auto options = data::loader_options(config, *data_.tokenizer, comm.rank(), comm.size());
  if (plan_) {
    // The loader's thread routes each batch with the plan; the step only exchanges counts.
    options.prepare = [plan = plan_.get(), rank = comm.rank(),
                       deactivate =
                           config.model().mowe().deactivate_routing_ids_above()](data::Batch& b) {
      auto routing = std::make_shared<BatchRouting>();
      model::route_tokens(*plan, rank, b.encoder_routing_ids, deactivate, &routing->encoder);
      model::route_tokens(*plan, rank, b.decoder_routing_ids, deactivate, &routing->decoder);
      b.prepared = std::move(routing);
    };
  }
  train_loader_ = std::make_unique<data::Loader>(data_.train, data_.table, options);
  eval_loader_ = std::make_unique<data::Loader>(data_.validation, data_.table, options);
  model_ = std::make_unique<model::T5Model>(config.model(), store_,
                                            plan_ ? &plan_->table() : nullptr, &parallel);
  optimizer_ = make_optimizer(config.training(), host_allocator());
  slots_ = store_.slots();
  experts_ = model_->expert_parameters();
  for (const ParamSlot& slot : slots_) {
    double share = 0.0;  // dense: identical on every rank after the allreduce
    for (const model::ExpertParameter& e : experts_)
      if (e.parameter->grad.tensor().data == slot.grad.data)
        share = 1.0 / plan_->replicas(e.bucket);
    expert_share_.push_back(share);
  }
  // Dense gradients in the order backward finalises them, bucketed for overlapping allreduces.
  std::vector<Tensor> dense;
  for (const auto& group : model_->dense_grad_groups()) {
    group_grads_.emplace_back();
    for (model::Parameter* p : group) {
      group_grads_.back().push_back(dense.size());
      dense.push_back(p->grad.tensor());
    }
  }
  dense_sync_ = std::make_unique<comm::BucketedAllreduce>(
      comm, dense, static_cast<size_t>(config.parallel().grad_bucket_mb() * (1 << 20)));
  spdlog::info(
      "[train] model: {} dense + {} expert parameters on this rank; optimizer {}; {} "
      "ranks, {} sequences per rank per step; {} gradient buckets",
      store_.count(model::ParamKind::Dense), store_.count(model::ParamKind::Expert),
      optimizer_->name(), comm.size(), train_loader_->local_batch_size(),
      dense_sync_->num_buckets());
}

Trainer::~Trainer() = default;

double Trainer::forward_backward(const data::Batch& batch, bool backward, double* tokens) {
  const model::ModelInputs in = model_inputs(batch);
  // The loss is normalised by the global number of target tokens, so the summed gradients
  // equal those of the whole global batch on one rank.
  const Buffer& sums = step_sums_;  // [target tokens, loss]
  double local = 0;
  for (float w : batch.loss_weights) local += w;
  sums.tensor().ptr<double>()[0] = local;
  comm_.allreduce(sums.tensor().rows_slice(0, 1), comm::ReduceOp::Sum);
  const double global_tokens = sums.tensor().ptr<double>()[0];
  MOWE_CHECK(global_tokens > 0, "a global batch without target tokens (step {})", batch.step);

  model::StepContext s;
  s.backend = &cpu_backend();
  s.ctx.scratch = &scratch_;
  s.activations = &activations_;
  s.dropout_rate = backward ? static_cast<float>(config_.model().dropout_rate()) : 0.0f;
  s.dropout_seed = math::mix64(static_cast<uint64_t>(config_.training().seed()) ^
                               math::mix64(static_cast<uint64_t>(batch.step)));
  s.first_example = batch.first_example;
  if (backward) {
    s.on_grads_ready = [&](size_t group) {
      for (size_t i : group_grads_[group]) dense_sync_->mark_ready(i);
    };
  }
  const double z_loss = config_.training().z_loss();
  ArenaScope scope(activations_);
  const double loss_sum = model_->forward(s, in, z_loss);
  if (backward) model_->backward(s, in, z_loss, 1.0 / global_tokens);

  sums.tensor().ptr<double>()[1] = loss_sum;
  comm_.allreduce(sums.tensor().rows_slice(1, 2), comm::ReduceOp::Sum);
  *tokens = global_tokens;
  return sums.tensor().ptr<double>()[1];
}

// Expert gradients stay with their owner; replicas of a block (more ranks than blocks) hold
// partial sums of the same gradient and add them up inside their group.
void Trainer::sync_expert_gradients() {
  for (const model::ExpertParameter& e : experts_) {
    auto& group = replica_groups_[e.bucket];
    if (group && group->size() > 1 && e.parameter->trainable)
      group->allreduce(e.parameter->grad, comm::ReduceOp::Sum);
  }
}

// Global norm: dense gradients are identical on every rank after the allreduce; expert
// gradients are spread over the ranks, each block counted once per replica.
double Trainer::grad_norm() {
  Context ctx{.scratch = &scratch_};
  const Tensor sums = step_sums_.tensor().rows_slice(2, 3);  // [expert sum of squares]
  double dense = 0, experts = 0;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const double ss = cpu_backend().sum_squares(ctx, slots_[i].grad);
    if (expert_share_[i] == 0.0) {
      dense += ss;
    } else {
      experts += ss * expert_share_[i];
    }
  }
  sums.ptr<double>()[0] = experts;
  comm_.allreduce(sums, comm::ReduceOp::Sum);
  return std::sqrt(dense + sums.ptr<double>()[0]);
}

StepResult Trainer::step(const data::Batch& batch) {
  StepResult r;
  store_.zero_grads();
  double tokens = 0;
  r.loss = forward_backward(batch, true, &tokens) / tokens;
  dense_sync_->finish();
  sync_expert_gradients();
  r.grad_norm = grad_norm();
  r.learning_rate = learning_rate(config_.training(), steps_done_);
  Context ctx{.scratch = &scratch_};
  optimizer_->step(ctx, slots_, r.learning_rate,
                   clip_scale(r.grad_norm, config_.training().grad_clip_norm()));
  r.tokens = static_cast<int64_t>(batch.batch_size) * comm_.size() *
             (batch.input_length + batch.target_length);
  ++steps_done_;
  return r;
}

double Trainer::evaluate(int64_t batches) {
  double total = 0, tokens = 0;  // a mean over tokens, not over batches
  const int64_t global = config_.training().global_batch_size();
  for (int64_t i = 0; i < batches; ++i) {
    double batch_tokens = 0;
    total += forward_backward(eval_loader_->batch_at(i, i * global), false, &batch_tokens);
    tokens += batch_tokens;
  }
  return tokens > 0 ? total / tokens : 0.0;
}

void Trainer::run() {
  const auto& t = config_.training();
  const auto start = Clock::now();
  auto window_start = start;
  int64_t window_tokens = 0;
  double window_loss = 0;
  int window_steps = 0;
  spdlog::info("[train] training {} steps of {} sequences", t.steps(), t.global_batch_size());
  while (steps_done_ < t.steps()) {
    const StepResult r = step(train_loader_->next());
    window_tokens += r.tokens;
    window_loss += r.loss;
    ++window_steps;
    const bool last = steps_done_ == t.steps();
    if (steps_done_ % std::max<int64_t>(1, t.log_every()) == 0 || last) {
      const double secs = std::chrono::duration<double>(Clock::now() - window_start).count();
      spdlog::info("[train] step {}/{} loss {:.4f} lr {:.3g} grad_norm {:.3f} {:.0f} tokens/s",
                   steps_done_, t.steps(), window_loss / window_steps, r.learning_rate, r.grad_norm,
                   window_tokens / secs);
      window_start = Clock::now();
      window_tokens = 0, window_loss = 0, window_steps = 0;
    }
    if ((t.eval_every() > 0 && steps_done_ % t.eval_every() == 0) || last) {
      const double eval_loss = evaluate(t.eval_batches());  // collective: outside the log call
      spdlog::info("[train] step {} validation loss {:.4f} ({} batches)", steps_done_, eval_loss,
                   t.eval_batches());
    }
  }
  spdlog::info("[train] done: {} steps in {:.1f} s", steps_done_,
               std::chrono::duration<double>(Clock::now() - start).count());
}

}  // namespace mowe::train
