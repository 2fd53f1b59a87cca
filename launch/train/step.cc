#include "launch/train/step.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string_view>

#include "comm/agree.h"
#include "launch/train/batch.h"
#include "launch/train/sharding.h"
#include "model/mowe_layers.h"
#include "runtime/math.h"
#include "runtime/optimizer_config.h"

namespace mowe::train {
namespace {

// Divergence testing: with MOWE_TRAIN_FAULT=nonfinite-loss:<n> in the environment, every step from
// step n on (1-based, as logged) computes a NaN loss, so a test can check what a diverging run
// does. The same environment on every rank gives every rank the same branch. Unset (always, in
// production): never.
bool nonfinite_loss_injected(int64_t step) {
  static const int64_t from = [] {
    const char* spec = std::getenv("MOWE_TRAIN_FAULT");
    constexpr std::string_view point = "nonfinite-loss:";
    if (spec == nullptr || !std::string_view(spec).starts_with(point)) return int64_t{0};
    return static_cast<int64_t>(std::atoll(spec + point.size()));
  }();
  return from > 0 && step >= from;
}

// Where a non-finite step came from: "value of '<parameter>' on rank R" for the first parameter
// (registration order, lowest rank) holding a non-finite value (the cause), else "gradient of
// ..." for the first non-finite gradient; "" when all are finite. Collective.
std::string first_non_finite(const model::ParameterStore& store, comm::Communicator& comm,
                             Arena& scratch) {
  const Context ctx{.device = scratch.device(), .scratch = &scratch};
  Backend& backend = backend_for(scratch.device());
  std::string mine;
  for (const char* what : {"value", "gradient"}) {
    for (const auto& p : store.all()) {
      const bool value = what[0] == 'v';
      if (!value && !p->trainable) continue;
      if (!std::isfinite(backend.sum_squares(ctx, value ? p->value : p->grad))) {
        mine = fmt::format("{} of '{}' on rank {}", what, p->name, comm.rank());
        break;
      }
    }
    if (!mine.empty()) break;
  }
  return comm::lowest_rank_text(comm, mine);
}

// Wall clock and the blocked clocks of the two step collectives, to split a step into phases.
struct PhaseClock {
  using Clock = std::chrono::steady_clock;
  Clock::time_point start = Clock::now();
  double alltoall = comm::blocked_seconds(comm::Collective::AllToAll);
  double allreduce = comm::blocked_seconds(comm::Collective::Allreduce);
  double other_blocked = comm::blocked_seconds(comm::Collective::Broadcast) +
                         comm::blocked_seconds(comm::Collective::Barrier);

  // Adds the time since `since` to `compute` (less what was blocked) and the blocked times to
  // their kinds; returns now.
  static PhaseClock charge(const PhaseClock& since, double& compute, StepTimes& t) {
    PhaseClock now;
    const double a2a = now.alltoall - since.alltoall, ar = now.allreduce - since.allreduce;
    const double other = now.other_blocked - since.other_blocked;
    t.alltoall += a2a;
    t.allreduce += ar;
    t.other += other;
    compute += std::chrono::duration<double>(now.start - since.start).count() - a2a - ar - other;
    return now;
  }
};

}  // namespace

StepRunner::StepRunner(Job& job)
    : job_(job),
      scratch_(job.allocator()),
      activations_(job.allocator()),
      inputs_(job.allocator(), size_t{1} << 20) {
  // Dense gradients in the order backward finalises them, bucketed for overlapping allreduces.
  std::vector<Tensor> dense;
  for (const auto& group : job.model().dense_grad_groups()) {
    group_grads_.emplace_back();
    for (model::Parameter* p : group) {
      group_grads_.back().push_back(dense.size());
      dense.push_back(p->grad.tensor());
    }
  }
  // Any positive size the schema allows: at least one byte (each gradient its own bucket), at
  // most 2^62 (one bucket).
  const double bucket_bytes =
      std::clamp(job.config().parallel().grad_bucket_mb() * (1 << 20), 1.0, std::ldexp(1.0, 62));
  dense_sync_ = std::make_unique<comm::BucketedAllreduce>(job.data_comm(), dense,
                                                          static_cast<size_t>(bucket_bytes));
  slots_ = job.parameters().slots();
}

StepRunner::~StepRunner() = default;

double StepRunner::forward_backward(const data::Batch& batch, const TrainState* state,
                                    double* targets, TokenCounts* real,
                                    const std::function<void(const Tensor&)>* logits,
                                    StepTimes* times) {
  PhaseClock clock;
  inputs_.reset();
  const model::ModelInputs in =
      model_inputs(batch, job_.device() == Device::CPU ? nullptr : &inputs_);
  // The loss is normalised by the global number of target tokens, so the summed gradients
  // equal those of the whole global batch on one rank.
  const TokenCounts mine = real_tokens(batch);
  double counts[3] = {0, double(mine.encoder), double(mine.decoder)};
  for (float w : batch.loss_weights) counts[0] += w;
  job_.comm().allreduce(Tensor(counts, DType::F64, Device::CPU, {3}), comm::ReduceOp::Sum);
  const double global_targets = counts[0];
  MOWE_CHECK(global_targets > 0, "a global batch without target tokens (step {})", batch.step);

  const bool backward = state != nullptr;
  model::StepContext s;
  s.backend = &backend_for(job_.device());
  s.ctx.device = job_.device();
  s.ctx.scratch = &scratch_;
  s.activations = &activations_;
  s.dropout_rate = backward ? static_cast<float>(job_.config().model().dropout_rate()) : 0.0f;
  s.expert_dropout_rate =
      backward ? static_cast<float>(job_.config().model().mowe().expert_dropout_rate()) : 0.0f;
  if (backward)
    s.dropout_seed = mix64(state->dropout_seed ^ mix64(static_cast<uint64_t>(batch.step)));
  s.first_example = batch.first_example;
  if (backward) {
    s.on_grads_ready = [&](size_t group) {
      for (size_t i : group_grads_[group]) dense_sync_->mark_ready(i);
    };
  }
  const double z_loss = job_.config().training().z_loss();
  ArenaScope scope(activations_);
  double loss = job_.model().forward(s, in, z_loss);
  if (logits) (*logits)(job_.model().logits());  // before the scope releases them
  if (times) clock = PhaseClock::charge(clock, times->forward, *times);
  if (backward) job_.model().backward(s, in, z_loss, 1.0 / global_targets);
  if (times) clock = PhaseClock::charge(clock, times->backward, *times);
  job_.comm().allreduce(Tensor(&loss, DType::F64, Device::CPU, {1}), comm::ReduceOp::Sum);
  *targets = global_targets;
  if (real) *real = {static_cast<int64_t>(counts[1]), static_cast<int64_t>(counts[2])};
  return loss;
}

void StepRunner::gather_routing_load(StepResult& r) {
  const auto& mowe = job_.config().model().mowe();
  if (!model::has_mowe_layers(mowe)) return;
  // From the config, not the routing, so every rank passes the same sizes to the collectives.
  const size_t buckets = static_cast<size_t>(mowe.buckets_size());
  model::T5Model::RoutingLoad& load = load_;
  job_.model().routing_load(load);
  load.bucket_rows.resize(buckets, 0);
  // Sums (exact in f64 below 2^53 rows) and maxima in one buffer each.
  std::vector<double>&sums = load_sums_, &maxima = load_maxima_;
  sums.assign(buckets + 2, 0.0);
  maxima.assign(buckets, 0.0);
  for (size_t b = 0; b < buckets; ++b) sums[b] = maxima[b] = double(load.bucket_rows[b]);
  sums[buckets] = double(load.tokens);
  sums[buckets + 1] = double(load.routed);
  comm::Communicator& comm = job_.comm();
  comm.allreduce(Tensor(sums.data(), DType::F64, Device::CPU, {int64_t(sums.size())}),
                 comm::ReduceOp::Sum);
  if (buckets > 0)
    comm.allreduce(Tensor(maxima.data(), DType::F64, Device::CPU, {int64_t(buckets)}),
                   comm::ReduceOp::Max);
  r.bucket_rows.assign(buckets, 0);
  r.bucket_rows_max.assign(buckets, 0);
  for (size_t b = 0; b < buckets; ++b) {
    r.bucket_rows[b] = static_cast<int64_t>(sums[b]);
    r.bucket_rows_max[b] = static_cast<int64_t>(maxima[b]);
  }
  r.mowe_tokens = static_cast<int64_t>(sums[buckets]);
  r.routed_tokens = static_cast<int64_t>(sums[buckets + 1]);
}

const StepResult& StepRunner::train_step(const data::Batch& batch, TrainState& state) {
  MOWE_CHECK(batch.step == state.step, "batch of step {} given at step {}", batch.step, state.step);
  StepResult& r = result_;
  r.reset();
  const PhaseClock start;
  job_.parameters().zero_grads();
  PhaseClock::charge(start, r.times.other, r.times);
  double targets = 0;
  TokenCounts real;
  r.loss = forward_backward(batch, &state, &targets, &real, nullptr, &r.times) / targets;
  if (nonfinite_loss_injected(state.step + 1)) r.loss = std::numeric_limits<double>::quiet_NaN();
  PhaseClock clock;
  gather_routing_load(r);
  clock = PhaseClock::charge(clock, r.times.other, r.times);
  dense_sync_->finish();  // the wait for the last gradient buckets belongs to the backward pass
  clock = PhaseClock::charge(clock, r.times.backward, r.times);
  sum_replica_gradients(job_.parameters());
  r.grad_norm = global_grad_norm(job_.parameters(), job_.comm(), scratch_);
  clock = PhaseClock::charge(clock, r.times.other, r.times);
  const auto& t = job_.config().training();
  r.learning_rate = learning_rate(t, state.step);
  r.tokens = real.total();
  r.encoder_tokens = real.encoder;
  r.decoder_tokens = real.decoder;
  // Loss and norm are global, so every rank takes the same branch.
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
    r.skipped = true;
    r.first_bad = first_non_finite(job_.parameters(), job_.comm(), scratch_);
    const Context ctx{.device = job_.device(), .scratch = &scratch_};
    job_.optimizer().skip(ctx, slots_, state.step + 1);
    PhaseClock::charge(clock, r.times.other, r.times);
    r.times.total = std::chrono::duration<double>(PhaseClock::Clock::now() - start.start).count();
    ++state.step;
    return r;
  }
  Context ctx{.device = job_.device(), .scratch = &scratch_};
  job_.optimizer().step(ctx, slots_, r.learning_rate, clip_scale(r.grad_norm, t.grad_clip_norm()),
                        state.step + 1);
  PhaseClock::charge(clock, r.times.optimizer, r.times);
  r.times.total = std::chrono::duration<double>(PhaseClock::Clock::now() - start.start).count();
  ++state.step;
  return r;
}

double StepRunner::loss_sum(const data::Batch& batch, double* target_tokens) {
  return forward_backward(batch, nullptr, target_tokens, nullptr);
}

double StepRunner::loss_sum(const data::Batch& batch, double* target_tokens,
                            const std::function<void(const Tensor& logits)>& logits) {
  return forward_backward(batch, nullptr, target_tokens, nullptr, &logits);
}

double evaluate(StepRunner& runner, Job& job, int64_t batches) {
  double total = 0, tokens = 0;
  const int64_t global = job.config().training().global_batch_size();
  for (int64_t i = 0; i < batches; ++i) {
    double batch_tokens = 0;
    total += runner.loss_sum(job.eval_loader().batch_at(i, i * global), &batch_tokens);
    tokens += batch_tokens;
  }
  return tokens > 0 ? total / tokens : 0.0;
}

}  // namespace mowe::train
