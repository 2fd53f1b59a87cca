// The dense T5.1.1 backbone: whole-model finite-difference gradients (f64), independence of the
// examples of a batch (what data parallelism relies on), and allocation-free steady state.
#include "model/t5_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <random>

#include "tests/util/gradcheck.h"

namespace mowe::model {
namespace {

using testing::get;

// Routing ids 0..1 unrouted, 2..5 one expert each in bucket 0, the rest shared by the two
// experts of bucket 1.
RoutingTable small_table() {
  std::vector<BucketLayout> buckets = {{4, 1, 4, 6}, {14, 1, 2, 3}};
  std::vector<int32_t> bucket(20, RoutingTable::kUnrouted), expert(20, RoutingTable::kUnrouted);
  for (int id = 2; id < 20; ++id) {
    bucket[id] = id < 6 ? 0 : 1;
    expert[id] = id < 6 ? id - 2 : id % 2;
  }
  return RoutingTable(buckets, bucket, expert, {{1, 1, 1, 1}, {7, 7}});
}

config::ModelConfig small_config(bool with_mowe = false) {
  config::ModelConfig c;
  c.set_d_model(8);
  c.set_num_heads(2);
  c.set_d_kv(4);
  c.set_d_ff(12);
  c.set_num_encoder_layers(2);
  c.set_num_decoder_layers(2);
  c.set_vocab_size(20);
  c.set_relative_attention_num_buckets(8);
  c.set_relative_attention_max_distance(16);
  if (with_mowe) {
    auto* m = c.mutable_mowe();
    m->add_encoder_layers(1);
    m->add_decoder_layers(0);
    m->set_routing_vocab_size(20);
    m->set_num_unrouted_ids(2);
    for (auto [ids, experts, width] : {std::tuple{4, 4, 6}, std::tuple{14, 2, 3}}) {
      auto* b = m->add_buckets();
      b->set_num_routing_ids(ids);
      b->set_num_blocks(1);
      b->set_experts_per_block(experts);
      b->set_expert_d_ff(width);
    }
  }
  return c;
}

// Examples [first, first + batch) of a fixed synthetic global batch: ids depend only on the
// global example index, with padding at the end of odd examples.
struct Inputs {
  std::vector<Buffer> buffers;
  ModelInputs in;
};
Inputs make_inputs(int64_t first, int64_t batch, DType dtype) {
  const int64_t enc_len = 5, dec_len = 4;
  Inputs x;
  auto ids = [&](int64_t len, int salt, bool valid_mask) {
    std::vector<int32_t> v;
    for (int64_t b = first; b < first + batch; ++b) {
      std::mt19937 rng(static_cast<uint32_t>(b * 100 + salt));
      for (int64_t t = 0; t < len; ++t) {
        const bool pad = (b % 2 == 1) && t == len - 1;
        v.push_back(valid_mask ? (pad ? 0 : 1) : (pad ? 0 : 1 + static_cast<int32_t>(rng() % 19)));
      }
    }
    x.buffers.push_back(testing::ids_buffer(v));
    return x.buffers.back().tensor().reshape({batch, len});
  };
  x.in.batch = batch;
  x.in.enc_ids = ids(enc_len, 1, false);
  x.in.enc_valid = ids(enc_len, 1, true);
  x.in.enc_routing = ids(enc_len, 2, false);
  x.in.dec_ids = ids(dec_len, 3, false);
  x.in.dec_valid = ids(dec_len, 3, true);
  x.in.dec_routing = ids(dec_len, 4, false);
  x.in.targets = ids(dec_len, 5, false);
  x.buffers.push_back(testing::host_buffer({batch, dec_len}, dtype));
  x.in.weights = x.buffers.back().tensor();
  for (int64_t i = 0; i < batch * dec_len; ++i)
    testing::set(x.in.weights, i, get(x.in.dec_valid, i));
  return x;
}

struct Harness {
  Arena scratch{host_allocator(), 1 << 20};
  Arena activations{host_allocator(), 1 << 20};
  StepContext step(float dropout, int64_t first_example) {
    StepContext s;
    s.backend = &cpu_backend();
    s.ctx.scratch = &scratch;
    s.activations = &activations;
    s.dropout_rate = dropout;
    s.expert_dropout_rate = dropout;  // the experts' hidden layer too (model.mowe)
    s.dropout_seed = 99;
    s.first_example = first_example;
    return s;
  }
};

// (dropout rate, MoWE layers on)
class T5ModelGrad : public ::testing::TestWithParam<std::tuple<float, bool>> {};

TEST_P(T5ModelGrad, EveryParameterMatchesFiniteDifferences) {
  const auto [dropout, with_mowe] = GetParam();
  ParameterStore store(host_allocator(), DType::F64, 5);
  const RoutingTable table = small_table();
  T5Model model(small_config(with_mowe), store, &table);
  Inputs x = make_inputs(0, 2, DType::F64);
  Harness h;
  const double z_loss = 1e-2;
  auto loss = [&] {
    ArenaScope scope(h.activations);
    return model.forward(h.step(dropout, 0), x.in, z_loss);
  };
  store.zero_grads();
  {
    ArenaScope scope(h.activations);
    StepContext s = h.step(dropout, 0);
    model.forward(s, x.in, z_loss);
    model.backward(s, x.in, z_loss, 1.0);
  }
  std::vector<testing::GradInput> inputs;
  for (const auto& p : store.all()) inputs.push_back({p->name, p->value, p->grad});
  EXPECT_EQ(store.contains("mowe.bucket1.wo"), with_mowe);
  if (with_mowe) {
    for (const char* name : {"mowe.bucket0.wi", "mowe.bucket1.wo"}) {
      const Tensor& g = store.get(name).grad.tensor();
      EXPECT_GT(testing::dot(g, g), 0.0) << name << " receives no gradient";
    }
  }
  // Every parameter tensor, up to 12 elements each (spread over the tensor).
  double worst = testing::check_gradients(loss, inputs, 1e-6, 1e-6, 12);
  EXPECT_LT(worst, 1e-6);
}

INSTANTIATE_TEST_SUITE_P(DropoutAndMowe, T5ModelGrad,
                         ::testing::Combine(::testing::Values(0.0f, 0.2f), ::testing::Bool()));

// Data parallelism splits a batch across ranks: the loss of a batch must be the sum of the
// losses of its examples run apart (with the global example index), dropout included.
TEST(T5Model, ExamplesAreIndependentIncludingDropout) {
  ParameterStore store(host_allocator(), DType::F64, 6);
  const RoutingTable table = small_table();
  T5Model model(small_config(true), store, &table);
  Harness h;
  double together = 0, apart = 0;
  {
    Inputs x = make_inputs(0, 4, DType::F64);
    ArenaScope scope(h.activations);
    together = model.forward(h.step(0.3f, 0), x.in, 1e-4);
  }
  for (int64_t b = 0; b < 4; ++b) {
    Inputs x = make_inputs(b, 1, DType::F64);
    ArenaScope scope(h.activations);
    apart += model.forward(h.step(0.3f, b), x.in, 1e-4);
  }
  EXPECT_NEAR(together, apart, 1e-10 * std::abs(together));
  Inputs x = make_inputs(0, 4, DType::F64);
  ArenaScope scope(h.activations);
  EXPECT_NE(model.forward(h.step(0.0f, 0), x.in, 1e-4), together) << "dropout must act";
}

// The attention sub-layer with dropout on its probabilities (site + 1) and on its output (site):
// both masks are fixed by (seed, site, global example), so central differences see the same
// masks as the analytic backward.
struct AttentionHarness {
  ParameterStore store{host_allocator(), DType::F64, 8};
  AttentionSublayer layer{
      store, "att", {.d_model = 8, .num_heads = 2, .d_kv = 4, .causal = true, .eps = 1e-6}};
  static constexpr int64_t kBatch = 3, kLen = 5;
  Buffer x = testing::random_buffer({kBatch * kLen, 8}, 1);
  Buffer w = testing::random_buffer({kBatch * kLen, 8}, 2);
  Buffer bias = testing::random_buffer({2, kLen, kLen}, 3);
  Buffer valid = testing::ids_buffer({1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 0, 0});
  Harness h;
  StepContext step(float dropout, uint64_t seed = 99) {
    StepContext s = h.step(dropout, 7);
    s.dropout_seed = seed;
    return s;
  }
  Tensor forward(const StepContext& s, AttentionSublayer::Saved* saved) {
    return layer.forward(s, x, {}, bias, valid.tensor().reshape({kBatch, kLen}), kBatch, 32, saved);
  }
};

TEST(AttentionSublayer, DropoutGradientsMatchFiniteDifferences) {
  AttentionHarness a;
  auto loss = [&] {
    ArenaScope scope(a.h.activations);
    AttentionSublayer::Saved saved;
    return testing::dot(a.forward(a.step(0.3f), &saved), a.w);
  };
  a.store.zero_grads();
  Buffer dx = testing::random_buffer({AttentionHarness::kBatch * AttentionHarness::kLen, 8}, 2);
  Buffer dbias = testing::host_buffer({2, AttentionHarness::kLen, AttentionHarness::kLen});
  {
    ArenaScope scope(a.h.activations);
    AttentionSublayer::Saved saved;
    StepContext s = a.step(0.3f);
    a.forward(s, &saved);
    a.layer.backward(s, saved, dx, {}, {}, dbias, AttentionHarness::kBatch, 32);
  }
  std::vector<testing::GradInput> inputs = {{"x", a.x, dx}, {"bias", a.bias, dbias}};
  for (const auto& p : a.store.all()) inputs.push_back({p->name, p->value, p->grad});
  EXPECT_LT(testing::check_gradients(loss, inputs, 1e-6), 1e-6);
}

// Evaluation (rate 0) is unchanged: the seed plays no part, and the saved probabilities are the
// softmax itself; with dropout on, the same probabilities are saved and the output changes.
TEST(AttentionSublayer, ZeroRateIgnoresTheSeedAndSavesTheSoftmax) {
  AttentionHarness a;
  auto run = [&](float rate, uint64_t seed) {
    ArenaScope scope(a.h.activations);
    AttentionSublayer::Saved saved;
    Tensor out = a.forward(a.step(rate, seed), &saved);
    std::vector<double> v;
    for (const Tensor* t : {&out, &saved.probs})
      for (int64_t i = 0; i < t->numel(); ++i) v.push_back(get(*t, i));
    return std::pair{v, out.numel()};
  };
  const auto [eval1, n] = run(0.0f, 1);
  EXPECT_EQ(run(0.0f, 2).first, eval1);
  const auto dropped = run(0.3f, 1).first;
  EXPECT_TRUE(std::equal(dropped.begin() + n, dropped.end(), eval1.begin() + n))
      << "saved probabilities must be the softmax before dropout";
  EXPECT_FALSE(std::equal(dropped.begin(), dropped.begin() + n, eval1.begin()));
}

// Overlapping the gradient allreduce with backward relies on this: when group g is announced,
// its gradients already hold their final values, every dense parameter is in exactly one group,
// and groups are announced once each, in order.
TEST(T5Model, GradientGroupsAreFinalWhenAnnounced) {
  ParameterStore store(host_allocator(), DType::F64, 8);
  const RoutingTable table = small_table();
  T5Model model(small_config(true), store, &table);
  Inputs x = make_inputs(0, 2, DType::F64);
  Harness h;
  std::map<const Parameter*, std::vector<double>> at_announcement;
  std::vector<size_t> announced;
  const auto& groups = model.dense_grad_groups();
  store.zero_grads();
  {
    ArenaScope scope(h.activations);
    StepContext s = h.step(0.1f, 0);
    s.on_grads_ready = [&](size_t g) {
      announced.push_back(g);
      for (const Parameter* p : groups[g]) {
        const Tensor& t = p->grad.tensor();
        at_announcement[p].assign(t.ptr<double>(), t.ptr<double>() + t.numel());
      }
    };
    model.forward(s, x.in, 1e-4);
    model.backward(s, x.in, 1e-4, 1.0);
  }
  std::map<const Parameter*, int> membership;
  for (const auto& g : groups)
    for (const Parameter* p : g) ++membership[p];
  for (const auto& [p, count] : membership) EXPECT_EQ(count, 1) << p->name << " is in two groups";
  std::vector<size_t> expected(groups.size());
  std::iota(expected.begin(), expected.end(), 0);
  EXPECT_EQ(announced, expected);
  size_t dense = 0;
  for (const auto& p : store.all()) {
    if (p->kind != ParamKind::Dense) continue;
    ++dense;
    ASSERT_TRUE(at_announcement.count(p.get())) << p->name << " is in no group";
    const Tensor& t = p->grad.tensor();
    EXPECT_EQ(at_announcement[p.get()],
              std::vector<double>(t.ptr<double>(), t.ptr<double>() + t.numel()))
        << p->name << " changed after it was announced";
  }
  EXPECT_EQ(at_announcement.size(), dense);
}

TEST(T5Model, SteadyStateStepsMakeNoSystemAllocations) {
  ParameterStore store(host_allocator(), DType::F32, 7);
  const RoutingTable table = small_table();
  T5Model model(small_config(true), store, &table);
  Inputs x = make_inputs(0, 2, DType::F32);
  Harness h;
  auto step = [&] {
    ArenaScope scope(h.activations);
    StepContext s = h.step(0.1f, 0);
    double l = model.forward(s, x.in, 1e-4);
    model.backward(s, x.in, 1e-4, 1.0);
    return l;
  };
  const double first = step();
  const size_t a = h.activations.system_allocations(), b = h.scratch.system_allocations();
  EXPECT_EQ(step(), first) << "same inputs, same parameters, same loss";
  EXPECT_EQ(h.activations.system_allocations(), a);
  EXPECT_EQ(h.scratch.system_allocations(), b);
  EXPECT_GT(first, 0.0);
}

}  // namespace
}  // namespace mowe::model
