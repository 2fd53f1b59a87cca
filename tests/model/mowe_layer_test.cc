// MoWE layer: finite-difference gradients (f64) for x and every expert tensor on both compute
// paths, agreement of the paths, zero output for skipped tokens, frozen and shared experts.
#include "model/mowe_layer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <random>

#include "model/expert_form.h"
#include "tests/util/gradcheck.h"

namespace mowe::model {
namespace {

using testing::dot;
using testing::get;

constexpr int64_t kC = 6;        // model width
constexpr int64_t kVocab = 40;   // routing ids
constexpr int64_t kTokens = 40;  // N
constexpr int64_t kGemmOnly = 1;
constexpr int64_t kGatherOnly = std::numeric_limits<int64_t>::max();

// Two buckets: 6 ids on 4 experts of width 5 (ids share experts), then the other 30 routed ids
// on 3 experts of width 3. The 4 most frequent ids are unrouted.
config::MoweConfig small_config(config::Activation act, bool share = true, bool freeze = false) {
  config::MoweConfig c;
  c.set_routing_vocab_size(kVocab);
  c.set_num_unrouted_ids(4);
  c.set_expert_activation(act);
  c.set_share_expert_parameters(share);
  c.set_freeze_experts(freeze);
  config::BucketConfig* b0 = c.add_buckets();
  b0->set_num_routing_ids(6), b0->set_num_blocks(2), b0->set_experts_per_block(2);
  b0->set_expert_d_ff(5);
  config::BucketConfig* b1 = c.add_buckets();
  b1->set_num_routing_ids(0), b1->set_num_blocks(1), b1->set_experts_per_block(3);
  b1->set_expert_d_ff(3);
  return c;
}

// Zipf frequencies over a shuffled id order, so frequency order differs from id order.
std::vector<int64_t> frequencies() {
  std::vector<int32_t> ids(kVocab);
  for (int i = 0; i < kVocab; ++i) ids[i] = i;
  std::shuffle(ids.begin(), ids.end(), std::mt19937(3));
  std::vector<int64_t> f(kVocab);
  for (int r = 0; r < kVocab; ++r) f[ids[r]] = 100000 / (r + 1);
  return f;
}

std::vector<int32_t> token_ids(uint64_t seed = 4) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(0, kVocab - 1);
  std::vector<int32_t> ids(kTokens);
  for (int32_t& id : ids) id = dist(rng);
  return ids;
}

// One layer with its store, routing and arenas.
struct Harness {
  config::MoweConfig cfg;
  RoutingTable table;
  ParameterStore store;
  std::vector<std::unique_ptr<MoweLayer>> layers;
  Arena acts{host_allocator(), 1 << 16}, scratch{host_allocator(), 1 << 16};
  Context ctx{Device::CPU, nullptr, &scratch};

  Harness(config::MoweConfig c, DType dtype, std::vector<std::string> blocks = {"encoder.block1"},
          int64_t gemm_min_rows = 4)
      : cfg(std::move(c)),
        table(RoutingTable::build(cfg, frequencies())),
        store(host_allocator(), dtype, 5) {
    for (const std::string& block : blocks)
      layers.push_back(std::make_unique<MoweLayer>(store, cfg, table, kC, block,
                                                   ExpertBank::Options{gemm_min_rows}));
  }
  MoweLayer& layer(int i = 0) { return *layers[i]; }
};

// Every trainable parameter of the store, with the gradient to check.
std::vector<testing::GradInput> expert_inputs(ParameterStore& store) {
  std::vector<testing::GradInput> in;
  for (const auto& p : store.all()) in.push_back({p->name, p->value, p->grad});
  return in;
}

// `bucket0`: when set, bucket 0's own form (BucketConfig.expert_activation), overriding `act`.
// `expert_dropout`: the experts' hidden dropout rate, its mask fixed by a constant seed (4
// examples of 10 tokens).
void check_layer_gradients(config::Activation act, int64_t gemm_min_rows,
                           std::optional<config::Activation> bucket0 = std::nullopt,
                           float expert_dropout = 0.0f) {
  config::MoweConfig cfg = small_config(act);
  if (bucket0) cfg.mutable_buckets(0)->set_expert_activation(*bucket0);
  Harness h(cfg, DType::F64, {"encoder.block1"}, gemm_min_rows);
  const Dispatch d = Dispatch::build(h.table, token_ids());
  const ExpertDropout dropout{
      .rate = expert_dropout, .step_seed = 17, .site = 5, .first_example = 3, .batch = 4};
  Buffer x = testing::random_buffer({kTokens, kC}, 1);
  Buffer w = testing::random_buffer({kTokens, kC}, 2);  // loss = sum(y * w), so dy = w
  Buffer dx = testing::host_buffer({kTokens, kC});
  h.store.zero_grads();
  {
    ArenaScope step(h.acts);
    h.layer().forward(h.ctx, x, d, h.acts, dropout);
    h.layer().backward(h.ctx, w, dx);
  }
  auto loss = [&] {
    ArenaScope step(h.acts);
    return dot(h.layer().forward(h.ctx, x, d, h.acts, dropout), w);
  };
  std::vector<testing::GradInput> inputs = expert_inputs(h.store);
  size_t matrices = 0;
  for (int b = 0; b < 2; ++b) matrices += bucket_activation(cfg, b) == config::GATED_GELU ? 3 : 2;
  EXPECT_EQ(inputs.size(), matrices);
  inputs.push_back({"x", x, dx});
  testing::check_gradients(loss, inputs, 1e-7);
}

TEST(MoweLayer, GradientsGeluGemmPath) {
  check_layer_gradients(config::GELU, kGemmOnly);
}
TEST(MoweLayer, GradientsGeluGatherPath) {
  check_layer_gradients(config::GELU, kGatherOnly);
}
TEST(MoweLayer, GradientsGatedGeluGemmPath) {
  check_layer_gradients(config::GATED_GELU, kGemmOnly);
}
TEST(MoweLayer, GradientsGatedGeluGatherPath) {
  check_layer_gradients(config::GATED_GELU, kGatherOnly);
}
TEST(MoweLayer, GradientsMixedPaths) {
  check_layer_gradients(config::GELU, 3);
}
// Per-bucket forms (MoWE-Base's layout in small): a gated-GELU bucket 0 next to a GELU bucket 1,
// and the reverse; both compute paths.
TEST(MoweLayer, GradientsMixedFormsGatedThenGelu) {
  check_layer_gradients(config::GELU, kGemmOnly, config::GATED_GELU);
  check_layer_gradients(config::GELU, kGatherOnly, config::GATED_GELU);
}
TEST(MoweLayer, GradientsMixedFormsGeluThenGated) {
  check_layer_gradients(config::GATED_GELU, 3, config::GELU);
}

// Hidden dropout in the experts (model.mowe.expert_dropout_rate), mask fixed: both forms, both
// compute paths, and a mixed-form layer.
TEST(MoweLayer, ExpertDropoutGradients) {
  check_layer_gradients(config::GELU, kGemmOnly, std::nullopt, 0.3f);
  check_layer_gradients(config::GELU, kGatherOnly, std::nullopt, 0.3f);
  check_layer_gradients(config::GATED_GELU, 3, std::nullopt, 0.5f);
  check_layer_gradients(config::GELU, 3, config::GATED_GELU, 0.3f);
}

// A token's hidden mask depends on its (global example, position), not on its row: the output of
// a token is the same when its example is computed alone (as on another rank), and the mask
// acts (the output differs from rate 0).
TEST(MoweLayer, ExpertDropoutFollowsTheToken) {
  Harness h(small_config(config::GELU), DType::F64);
  const std::vector<int32_t> ids = token_ids();
  Buffer x = testing::random_buffer({kTokens, kC}, 1);
  auto run = [&](int64_t first, int64_t count, float rate) {
    std::vector<int32_t> part(ids.begin() + first * 10, ids.begin() + (first + count) * 10);
    const Dispatch d = Dispatch::build(h.table, part);
    ArenaScope step(h.acts);
    Tensor xs = x.tensor().rows_slice(first * 10, (first + count) * 10);
    const ExpertDropout dropout{
        .rate = rate, .step_seed = 17, .site = 5, .first_example = first, .batch = count};
    Tensor y = h.layer().forward(h.ctx, xs, d, h.acts, dropout);
    std::vector<double> v;
    for (int64_t i = 0; i < y.numel(); ++i) v.push_back(get(y, i));
    h.layer().backward(h.ctx, y, h.acts.alloc(y.shape, y.dtype));  // ends the pass
    return v;
  };
  const std::vector<double> all = run(0, 4, 0.4f);
  std::vector<double> apart;
  for (int64_t e = 0; e < 4; ++e) {
    const std::vector<double> one = run(e, 1, 0.4f);
    apart.insert(apart.end(), one.begin(), one.end());
  }
  // Up to rounding: split batches put some groups on the other compute path (GEMM vs gather).
  ASSERT_EQ(all.size(), apart.size());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_NEAR(all[i], apart[i], 1e-13) << i;
  const std::vector<double> no_dropout = run(0, 4, 0.0f);
  double changed = 0;
  for (size_t i = 0; i < all.size(); ++i)
    changed = std::max(changed, std::abs(all[i] - no_dropout[i]));
  EXPECT_GT(changed, 1e-3) << "dropout must act";
}

// Each bucket gets the tensors of its own form: three for gated GELU, two for GELU.
TEST(MoweLayer, MixedFormsRegisterEachBucketsTensors) {
  config::MoweConfig cfg = small_config(config::GELU);
  cfg.mutable_buckets(0)->set_expert_activation(config::GATED_GELU);
  EXPECT_EQ(bucket_activation(cfg, 0), config::GATED_GELU);
  EXPECT_EQ(bucket_activation(cfg, 1), config::GELU);
  Harness h(cfg, DType::F64);
  for (const char* name : {"mowe.bucket0.wi_gate", "mowe.bucket0.wi_linear", "mowe.bucket0.wo",
                           "mowe.bucket1.wi", "mowe.bucket1.wo"})
    EXPECT_TRUE(h.store.contains(name)) << name;
  for (const char* name : {"mowe.bucket0.wi", "mowe.bucket1.wi_gate", "mowe.bucket1.wi_linear"})
    EXPECT_FALSE(h.store.contains(name)) << name;
  EXPECT_EQ(h.layer().experts().activation(0), config::GATED_GELU);
  EXPECT_EQ(h.layer().experts().activation(1), config::GELU);
}

// Output, dx and every gradient of one forward/backward, as doubles.
std::map<std::string, std::vector<double>> run_step(Harness& h, const Dispatch& d, uint64_t seed) {
  const DType dt = h.store.dtype();
  Buffer x = testing::random_buffer({kTokens, kC}, seed, -1, 1, dt);
  Buffer dy = testing::random_buffer({kTokens, kC}, seed + 1, -1, 1, dt);
  Buffer dx = testing::host_buffer({kTokens, kC}, dt);
  std::map<std::string, std::vector<double>> out;
  auto read = [](const Tensor& t) {
    std::vector<double> v(t.numel());
    for (int64_t i = 0; i < t.numel(); ++i) v[i] = get(t, i);
    return v;
  };
  h.store.zero_grads();
  ArenaScope step(h.acts);
  out["y"] = read(h.layer().forward(h.ctx, x, d, h.acts));
  h.layer().backward(h.ctx, dy, dx);
  out["dx"] = read(dx);
  for (const auto& p : h.store.all())
    if (p->trainable) out["grad " + p->name] = read(p->grad);
  return out;
}

void expect_close(const std::map<std::string, std::vector<double>>& a,
                  const std::map<std::string, std::vector<double>>& b, double tol) {
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [name, va] : a) {
    const std::vector<double>& vb = b.at(name);
    ASSERT_EQ(va.size(), vb.size()) << name;
    for (size_t i = 0; i < va.size(); ++i)
      ASSERT_NEAR(va[i], vb[i], tol * std::max(1.0, std::abs(va[i]))) << name << "[" << i << "]";
  }
}

TEST(MoweLayer, GemmAndGatherPathsAgree) {
  for (DType dt : {DType::F64, DType::F32}) {
    for (auto act : {config::GELU, config::GATED_GELU}) {
      Harness gemm(small_config(act), dt, {"encoder.block1"}, kGemmOnly);
      Harness gather(small_config(act), dt, {"encoder.block1"}, kGatherOnly);
      const Dispatch d = Dispatch::build(gemm.table, token_ids());
      expect_close(run_step(gemm, d, 7), run_step(gather, d, 7), dt == DType::F64 ? 1e-13 : 2e-6);
    }
  }
}

TEST(MoweLayer, SkippedAndDeactivatedTokensGetZeroOutputAndGradient) {
  config::MoweConfig cfg = small_config(config::GELU);
  Harness h(cfg, DType::F64);
  const std::vector<int32_t> ids = token_ids();
  const int32_t threshold = 20;
  const Dispatch d = Dispatch::build(h.table, ids, threshold);
  const auto r = run_step(h, d, 11);
  int skipped = 0, unrouted = 0;
  for (int64_t n = 0; n < kTokens; ++n) {
    const bool is_unrouted = h.table.bucket_of(ids[n]) == RoutingTable::kUnrouted;
    const bool skip = is_unrouted || ids[n] > threshold;
    skipped += skip, unrouted += is_unrouted;
    double y_abs = 0, dx_abs = 0;
    for (int64_t c = 0; c < kC; ++c)
      y_abs += std::abs(r.at("y")[n * kC + c]), dx_abs += std::abs(r.at("dx")[n * kC + c]);
    if (skip) {
      EXPECT_EQ(y_abs, 0.0) << "token " << n << " (id " << ids[n] << ")";
      EXPECT_EQ(dx_abs, 0.0) << "token " << n << " (id " << ids[n] << ")";
    } else {
      EXPECT_GT(y_abs, 0.0) << "token " << n;
      EXPECT_GT(dx_abs, 0.0) << "token " << n;
    }
  }
  EXPECT_GT(unrouted, 0) << "the test tokens must include unrouted ids";
  EXPECT_GT(skipped, unrouted) << "the test tokens must include deactivated ids";
  EXPECT_EQ(d.num_routed(), kTokens - skipped);
}

TEST(MoweLayer, FrozenExpertsHaveNoGradientsButPassInputGradients) {
  Harness frozen(small_config(config::GATED_GELU, true, true), DType::F64);
  Harness trained(small_config(config::GATED_GELU, true, false), DType::F64);
  for (const auto& p : frozen.store.all()) {
    EXPECT_FALSE(p->trainable) << p->name;
    EXPECT_TRUE(p->grad.tensor().empty()) << p->name;
  }
  const Dispatch d = Dispatch::build(frozen.table, token_ids());
  const auto a = run_step(frozen, d, 5), b = run_step(trained, d, 5);
  EXPECT_EQ(a.at("y"), b.at("y"));
  EXPECT_EQ(a.at("dx"), b.at("dx"));
  EXPECT_EQ(a.size(), 2u) << "no gradient of a frozen expert";
}

TEST(MoweLayer, SharedLayersAccumulateTheSumOfTheirGradients) {
  Harness h(small_config(config::GELU, true), DType::F64, {"encoder.block1", "decoder.block2"});
  EXPECT_EQ(h.store.all().size(), 4u) << "one set of expert parameters for both layers";
  EXPECT_TRUE(h.store.contains("mowe.bucket0.wi"));
  EXPECT_TRUE(h.store.contains("mowe.bucket1.wo"));
  const Dispatch d0 = Dispatch::build(h.table, token_ids(4));
  const Dispatch d1 = Dispatch::build(h.table, token_ids(5));  // the other stack's tokens
  Buffer x0 = testing::random_buffer({kTokens, kC}, 1),
         x1 = testing::random_buffer({kTokens, kC}, 2);
  Buffer dy0 = testing::random_buffer({kTokens, kC}, 3),
         dy1 = testing::random_buffer({kTokens, kC}, 4);
  Buffer dx = testing::host_buffer({kTokens, kC});
  auto grads = [&](bool first, bool second) {
    h.store.zero_grads();
    ArenaScope step(h.acts);
    if (first) h.layer(0).forward(h.ctx, x0, d0, h.acts);
    if (second) h.layer(1).forward(h.ctx, x1, d1, h.acts);
    if (second) h.layer(1).backward(h.ctx, dy1, dx);
    if (first) h.layer(0).backward(h.ctx, dy0, dx);
    std::map<std::string, std::vector<double>> g;
    for (const auto& p : h.store.all())
      for (int64_t i = 0; i < p->grad.tensor().numel(); ++i) g[p->name].push_back(get(p->grad, i));
    return g;
  };
  const auto g0 = grads(true, false), g1 = grads(false, true), both = grads(true, true);
  for (const auto& [name, v] : both) {
    double norm = 0;
    for (size_t i = 0; i < v.size(); ++i) {
      EXPECT_NEAR(v[i], g0.at(name)[i] + g1.at(name)[i], 1e-14) << name << "[" << i << "]";
      norm += std::abs(g0.at(name)[i]) + std::abs(g1.at(name)[i]);
    }
    EXPECT_GT(norm, 0.0) << name;
  }
}

TEST(MoweLayer, UnsharedLayersHaveSeparateParameters) {
  Harness h(small_config(config::GELU, false), DType::F64, {"encoder.block1", "decoder.block2"});
  ASSERT_EQ(h.store.all().size(), 8u);
  const Parameter& a = h.store.get("encoder.block1.mowe.bucket0.wi");
  const Parameter& b = h.store.get("decoder.block2.mowe.bucket0.wi");
  EXPECT_NE(a.value.tensor().data, b.value.tensor().data);
  EXPECT_NE(get(a.value, 0), get(b.value, 0)) << "initialised from their own names";
  EXPECT_EQ(a.kind, ParamKind::Expert);
  const Dispatch d = Dispatch::build(h.table, token_ids());
  run_step(h, d, 3);  // layer 0 only
  double touched = 0, untouched = 0;
  for (int64_t i = 0; i < a.grad.tensor().numel(); ++i)
    touched += std::abs(get(a.grad, i)), untouched += std::abs(get(b.grad, i));
  EXPECT_GT(touched, 0.0);
  EXPECT_EQ(untouched, 0.0);
}

TEST(MoweLayer, ExpertShapesAndInitialisation) {
  Harness h(small_config(config::GATED_GELU), DType::F64);
  const Tensor& wi = h.store.get("mowe.bucket0.wi_gate").value;
  const Tensor& wo = h.store.get("mowe.bucket1.wo").value;
  EXPECT_EQ(wi.shape, (Shape{4, kC, 5}));
  EXPECT_EQ(h.store.get("mowe.bucket0.wi_linear").value.tensor().shape, (Shape{4, kC, 5}));
  EXPECT_EQ(wo.shape, (Shape{3, 3, kC}));
  // T5X's truncated normal: standard deviation C^-0.5 (wi) and F^-0.5 (wo), so values within two
  // standard deviations of the underlying normal, 2 std / 0.8796 (parameters_test checks the
  // statistics on 1M draws).
  EXPECT_EQ(h.store.get("mowe.bucket0.wi_gate").init.kind, Init::TruncatedNormal);
  EXPECT_DOUBLE_EQ(h.store.get("mowe.bucket0.wi_gate").init.stddev, 1.0 / std::sqrt(kC));
  EXPECT_DOUBLE_EQ(h.store.get("mowe.bucket1.wo").init.stddev, 1.0 / std::sqrt(3.0));
  const double edge = 2.0 / kTruncatedNormalStd;
  for (int64_t i = 0; i < wi.numel(); ++i) EXPECT_LE(std::abs(get(wi, i)), edge / std::sqrt(kC));
  for (int64_t i = 0; i < wo.numel(); ++i) EXPECT_LE(std::abs(get(wo, i)), edge / std::sqrt(3.0));
}

TEST(MoweLayer, RejectsMismatchedInputs) {
  Harness h(small_config(config::GELU), DType::F64);
  const Dispatch d = Dispatch::build(h.table, token_ids());
  Buffer wrong = testing::host_buffer({kTokens - 1, kC});
  EXPECT_THROW(h.layer().forward(h.ctx, wrong, d, h.acts), Error);
  Buffer dx = testing::host_buffer({kTokens, kC});
  EXPECT_THROW(h.layer().backward(h.ctx, dx, dx), Error) << "backward before forward";
  Context no_scratch{Device::CPU, nullptr, nullptr};
  Buffer x = testing::host_buffer({kTokens, kC});
  EXPECT_THROW(h.layer().forward(no_scratch, x, d, h.acts), Error);
}

}  // namespace
}  // namespace mowe::model
