// Expert and data parallelism change nothing but speed: the tiny MoWE model on N ranks (experts
// sharded by a dispatch plan, tokens exchanged by all-to-all, dense gradients allreduced, expert
// gradients reduced inside replica groups) gives the loss, every gradient and the parameters
// after 3 AdamW steps of the same model run on one process over the same global batch.
// Run at 1, 2 and 4 ranks (4 ranks: two replicas per block), with flat and hierarchical
// all-to-all, the sharded model on the CPU and on the simulated device (parameters, inputs,
// activations and the exchanged rows in device memory; counts and keys over a host all-to-all).
// Also: one all-to-all message per peer per MoWE layer pass, whatever the number of experts.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "launch/train/config_rules.h"
#include "launch/train/sharding.h"
#include "model/mowe_layer.h"
#include "model/t5_model.h"
#include "runtime/config/config.h"
#include "runtime/device.h"
#include "tests/util/gradcheck.h"

namespace mowe::model {
namespace {

using testing::get;

constexpr int64_t kGlobalBatch = 4, kEncLen = 6, kDecLen = 5;

config::Config tiny() {
  return train::load_config(std::string(MOWE_SOURCE_DIR) + "/configs/tiny.textproto");
}

std::vector<int64_t> zipf_frequencies(int64_t n) {
  std::vector<int64_t> f(n);
  for (int64_t i = 0; i < n; ++i) f[i] = 100000 / (i + 1);
  return f;
}

// Examples [first, first + count) of a fixed global batch; ids depend on the example only.
struct Batch {
  std::vector<Buffer> keep;
  ModelInputs in;
};
Batch make_batch(int64_t first, int64_t count, int64_t vocab, int64_t routing_vocab) {
  Batch x;
  auto ids = [&](int64_t len, int salt, int kind) {
    std::vector<int32_t> v;
    for (int64_t b = first; b < first + count; ++b) {
      std::mt19937 rng(static_cast<uint32_t>(b * 977 + salt));
      for (int64_t t = 0; t < len; ++t) {
        const bool pad = b % 2 == 1 && t >= len - 2;
        if (kind == 0) v.push_back(pad ? 0 : 1 + static_cast<int32_t>(rng() % (vocab - 1)));
        if (kind == 1) v.push_back(pad ? 0 : 1);
        if (kind == 2) v.push_back(pad ? kPaddingRoutingId : rng() % routing_vocab);
      }
    }
    x.keep.push_back(testing::ids_buffer(v));
    return x.keep.back().tensor().reshape({count, len});
  };
  x.in.batch = count;
  x.in.enc_ids = ids(kEncLen, 1, 0);
  x.in.enc_valid = ids(kEncLen, 1, 1);
  x.in.enc_routing = ids(kEncLen, 2, 2);
  x.in.dec_ids = ids(kDecLen, 3, 0);
  x.in.dec_valid = ids(kDecLen, 3, 1);
  x.in.dec_routing = ids(kDecLen, 4, 2);
  x.in.targets = ids(kDecLen, 5, 0);
  x.keep.push_back(testing::host_buffer({count, kDecLen}, DType::F64));
  x.in.weights = x.keep.back().tensor();
  for (int64_t i = 0; i < count * kDecLen; ++i)
    testing::set(x.in.weights, i, get(x.in.dec_valid, i));
  return x;
}

double total_weight(const Batch& b) {
  double s = 0;
  for (int64_t i = 0; i < b.in.weights.numel(); ++i) s += get(b.in.weights, i);
  return s;
}

struct Runner {
  explicit Runner(Device d = Device::CPU)
      : device(d), scratch(device_runtime(d).allocator()), acts(device_runtime(d).allocator()) {}
  Device device;
  Arena scratch, acts;
  // With `dropout`, every dropout of the model is on (residual branches, FFN hidden, attention
  // probabilities, and unless `expert_dropout` is off the experts' hidden layer), its masks
  // drawn from a per-step seed.
  StepContext step(bool dropout = false, int step = 0, bool expert_dropout = true) {
    StepContext s;
    s.backend = &backend_for(device);
    s.ctx.device = device;
    s.ctx.scratch = &scratch;
    s.activations = &acts;
    if (dropout) {
      s.dropout_rate = 0.1f;
      s.expert_dropout_rate = expert_dropout ? 0.25f : 0.0f;
      s.dropout_seed = 1000 + static_cast<uint64_t>(step);
    }
    return s;
  }
};

// A host copy of a tensor on any device.
Buffer host_copy(const Tensor& t) {
  Buffer h(host_allocator(), t.shape, t.dtype);
  download(h.tensor().data, t);
  return h;
}

// |a - b| <= tol * max(1, max|b|) over a tensor, or over the listed rows of b.
void expect_close(const std::string& what, const Tensor& a, const Tensor& b,
                  const std::vector<int64_t>& rows_of_b = {}) {
  const int64_t row = a.shape.ndim() > 0 && a.dim(0) > 0 ? a.numel() / a.dim(0) : 1;
  double worst = 0, scale = 1;
  for (int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::abs(get(b, i)));
  for (int64_t i = 0; i < a.numel(); ++i) {
    const int64_t j = rows_of_b.empty() ? i : rows_of_b[i / row] * row + i % row;
    worst = std::max(worst, std::abs(get(a, i) - get(b, j)));
  }
  EXPECT_LE(worst, 1e-10 * scale) << what;
}

struct Case {
  comm::AllToAll::Algorithm algorithm;
  int ranks_per_node;
  bool prerouted;  // tokens routed beforehand (as the loader thread does), not in the step
  bool dropout = false;
  Device device = Device::CPU;  // of the sharded model; the one-process reference is on the CPU
  bool expert_dropout = true;   // with dropout: also on the experts' hidden layer (CPU only)
};

class DistributedEquivalence : public ::testing::TestWithParam<Case> {};

TEST_P(DistributedEquivalence, LossGradientsAndThreeAdamWStepsMatchOneProcess) {
  const Case c = GetParam();
  auto world = comm::make_communicator(MPI_COMM_WORLD, Device::CPU, {});
  const int rank = world->rank(), n = world->size();
  if (c.ranks_per_node > n || n % c.ranks_per_node != 0) GTEST_SKIP() << "layout needs more ranks";
  const config::Config cfg = tiny();
  const auto& m = cfg.model();
  PlanInputs pi;
  pi.world_size = n;
  pi.frequencies = zipf_frequencies(m.mowe().routing_vocab_size());
  pi.encoder_tokens_per_step = kGlobalBatch * kEncLen;
  pi.decoder_tokens_per_step = kGlobalBatch * kDecLen;
  const DispatchPlan plan = DispatchPlan::build(m.mowe(), pi);
  const RoutingTable& table = plan.table();

  // One process, the whole global batch.
  ParameterStore ref_store(host_allocator(), DType::F64, 5);
  T5Model ref_model(m, ref_store, &table);
  Batch all = make_batch(0, kGlobalBatch, m.vocab_size(), m.mowe().routing_vocab_size());
  const double scale = 1.0 / total_weight(all);
  Runner ref_run;
  AdamW ref_opt(host_allocator(), {.weight_decay = 0.01});

  // This rank's share, experts sharded by the plan, on c.device: device tensors travel over a
  // data communicator, counts and keys over the host one.
  std::unique_ptr<comm::Communicator> data_comm;
  if (c.device != Device::CPU) data_comm = world->for_device(c.device, {});
  comm::Communicator& dcomm = data_comm ? *data_comm : *world;
  comm::AllToAll alltoall(dcomm, c.algorithm, c.ranks_per_node);
  std::unique_ptr<comm::AllToAll> control;
  if (data_comm) control = std::make_unique<comm::AllToAll>(*world, c.algorithm, c.ranks_per_node);
  MoweParallel parallel{&plan, &alltoall, control.get()};
  DeviceAllocator& alloc = device_runtime(c.device).allocator();
  ParameterStore store(alloc, DType::F64, 5);
  T5Model model(m, store, &table, &parallel);
  const int64_t local = kGlobalBatch / n;
  Batch mine = make_batch(rank * local, local, m.vocab_size(), m.mowe().routing_vocab_size());
  Arena inputs(alloc);
  if (c.device != Device::CPU) {  // routing ids stay on the host, where routing happens
    for (Tensor* t : {&mine.in.enc_ids, &mine.in.enc_valid, &mine.in.dec_ids, &mine.in.dec_valid,
                      &mine.in.targets, &mine.in.weights})
      *t = upload_to(inputs, *t);
  }
  RoutedBatch routed;
  if (c.prerouted) {
    auto ids = [](const Tensor& t) {
      return std::span<const int32_t>(t.ptr<int32_t>(), static_cast<size_t>(t.numel()));
    };
    route_batch(plan, rank, ids(mine.in.enc_routing), ids(mine.in.dec_routing), 0, &routed);
    mine.in.routed = &routed;
  }
  Runner run(c.device);
  AdamW opt(alloc, {.weight_decay = 0.01});
  // Replica groups, one communicator per bucket (null when a block has one owner).
  std::vector<std::unique_ptr<comm::Communicator>> groups;
  std::vector<comm::Communicator*> group_of_bucket;
  for (int b = 0; b < plan.num_buckets(); ++b) {
    groups.push_back(dcomm.split(plan.replica_group(rank, b).front(), rank));
    group_of_bucket.push_back(groups.back().get());
  }
  train::assign_sharding(store, model.expert_parameters(), &plan, rank, n, group_of_bucket);

  for (int step = 0; step < 3; ++step) {
    ref_store.zero_grads();
    store.zero_grads();
    double ref_loss = 0;
    {
      ArenaScope a(ref_run.acts);
      StepContext s = ref_run.step(c.dropout, step, c.expert_dropout);
      ref_loss = ref_model.forward(s, all.in, 1e-3) * scale;
      ref_model.backward(s, all.in, 1e-3, scale);
    }
    Buffer loss(host_allocator(), {1}, DType::F64);
    {
      ArenaScope a(run.acts);
      StepContext s = run.step(c.dropout, step, c.expert_dropout);
      s.first_example = rank * local;
      testing::set(loss, 0, model.forward(s, mine.in, 1e-3) * scale);
      model.backward(s, mine.in, 1e-3, scale);
    }
    world->allreduce(loss, comm::ReduceOp::Sum);
    EXPECT_NEAR(get(loss, 0), ref_loss, 1e-12 * std::abs(ref_loss)) << "step " << step;

    // Dense gradients summed over all ranks (the trainer overlaps this with backward), expert
    // gradients inside replica groups, by the trainer's own function.
    for (const auto& p : store.all())
      if (p->kind == ParamKind::Dense) dcomm.allreduce(p->grad, comm::ReduceOp::Sum);
    train::sum_replica_gradients(store);
    for (const auto& p : store.all()) {
      std::vector<int64_t> rows = p->rows.rows;
      const Parameter& ref = ref_store.get(p->name);
      expect_close(p->name + " grad, step " + std::to_string(step), host_copy(p->grad), ref.grad,
                   rows);
    }
    // The sharded global norm counts every row once, whatever the replication.
    const double norm = train::global_grad_norm(store, *world, run.scratch);
    const double ref_norm = global_grad_norm(cpu_backend(), {}, ref_store.slots());
    EXPECT_NEAR(norm, ref_norm, 1e-12 * ref_norm) << "step " << step;
    Context ctx{.device = c.device, .scratch = &run.scratch};
    opt.step(ctx, store.slots(), 1e-2, 1.0, step + 1);
    ref_opt.step(Context{.scratch = &ref_run.scratch}, ref_store.slots(), 1e-2, 1.0, step + 1);
  }
  for (const auto& p : store.all())
    expect_close(p->name + " after 3 steps", host_copy(p->value), ref_store.get(p->name).value,
                 p->rows.rows);
}

INSTANTIATE_TEST_SUITE_P(
    AllToAll, DistributedEquivalence,
    ::testing::Values(
        Case{comm::AllToAll::Algorithm::Flat, 1, false},
        Case{comm::AllToAll::Algorithm::Hierarchical, 2, false},
        Case{comm::AllToAll::Algorithm::Flat, 1, true},
        Case{comm::AllToAll::Algorithm::Flat, 1, false, true},
        Case{comm::AllToAll::Algorithm::Hierarchical, 2, true, true},
        // The sharded model on the simulated device.
        Case{comm::AllToAll::Algorithm::Flat, 1, false, false, Device::SIMULATED},
        Case{comm::AllToAll::Algorithm::Hierarchical, 2, false, false, Device::SIMULATED},
        Case{comm::AllToAll::Algorithm::Hierarchical, 2, true, true, Device::SIMULATED, false}));

// One MoWE layer with K experts: the data all-to-alls of a forward and a backward pass send one
// message to each peer per pass (dispatch and combine), for K = 1,024 and K = 65,536 alike.
int64_t messages_per_pass(int64_t experts) {
  auto world = comm::make_communicator(MPI_COMM_WORLD, Device::CPU, {});
  config::MoweConfig m;
  m.set_routing_vocab_size(experts + 16);
  m.set_num_unrouted_ids(16);
  auto* b = m.add_buckets();
  b->set_num_routing_ids(0);
  b->set_num_blocks(4);
  b->set_experts_per_block(static_cast<int32_t>(experts / 4));
  b->set_expert_d_ff(1);
  PlanInputs pi;
  pi.world_size = world->size();
  pi.frequencies.assign(experts + 16, 1);
  const DispatchPlan plan = DispatchPlan::build(m, pi);
  comm::AllToAll alltoall(*world, comm::AllToAll::Algorithm::Flat);
  ExchangeDispatch router(plan, alltoall);
  ParameterStore store(host_allocator(), DType::F32, 1);
  MoweLayer layer(store, m, plan.table(), 8, "encoder.block0", {},
                  {plan.local_shard(world->rank(), 0)});
  Arena scratch(host_allocator()), acts(host_allocator());
  Context ctx{.scratch = &scratch};
  std::vector<int32_t> ids(512);
  std::mt19937 rng(world->rank());
  for (int32_t& id : ids) id = 16 + static_cast<int32_t>(rng() % experts);
  RoutedTokens routed;
  route_tokens(plan, world->rank(), ids, 0, &routed);
  router.assign(ctx, routed);
  Buffer x = testing::random_buffer({512, 8}, 1, -1, 1, DType::F32);
  Buffer dx = testing::host_buffer({512, 8}, DType::F32);
  alltoall.reset_stats();
  Tensor y = layer.forward(ctx, x, router, acts);
  layer.backward(ctx, y, dx);
  return alltoall.stats().messages / 4;  // dispatch + combine, forward and backward
}

TEST(MessageCount, OneMessagePerPeerPerPassWhateverTheNumberOfExperts) {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  const int64_t small = messages_per_pass(1024), large = messages_per_pass(65536);
  EXPECT_EQ(small, n - 1);
  EXPECT_EQ(large, n - 1);
}

}  // namespace
}  // namespace mowe::model
