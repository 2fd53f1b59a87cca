#include "model/parameters.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "model/t5_model.h"
#include "tests/util/gradcheck.h"

namespace mowe::model {
namespace {

using testing::get;

TEST(ParameterStore, InitialisationDependsOnNameAndSeedOnly) {
  ParameterStore a(host_allocator(), DType::F64, 7), b(host_allocator(), DType::F64, 7);
  a.add("x", {4, 3}, ParamKind::Dense, {Init::Normal, 0.5});
  a.add("y", {2}, ParamKind::Dense, {Init::Ones});
  b.add("y", {2}, ParamKind::Dense, {Init::Ones});  // other registration order
  b.add("x", {4, 3}, ParamKind::Dense, {Init::Normal, 0.5});
  for (int i = 0; i < 12; ++i) EXPECT_EQ(get(a.get("x").value, i), get(b.get("x").value, i));
  ParameterStore c(host_allocator(), DType::F64, 8);
  c.add("x", {4, 3}, ParamKind::Dense, {Init::Normal, 0.5});
  EXPECT_NE(get(a.get("x").value, 0), get(c.get("x").value, 0));
  EXPECT_EQ(get(a.get("y").value, 1), 1.0);
}

// A rank holding rows [2, 4) of an expert tensor must see exactly those rows of the full tensor.
TEST(ParameterStore, ShardsMatchTheFullTensor) {
  ParameterStore full(host_allocator(), DType::F32, 1), shard(host_allocator(), DType::F32, 1);
  full.add("experts", {4, 2, 3}, ParamKind::Expert, {Init::TruncatedNormal, 1.0});
  shard.add("experts", {2, 2, 3}, ParamKind::Expert, {Init::TruncatedNormal, 1.0}, true, 2);
  for (int i = 0; i < 12; ++i)
    EXPECT_EQ(get(shard.get("experts").value, i), get(full.get("experts").value, 12 + i));
  // A non-contiguous shard: rows 3 and 0, in that order.
  ParameterStore listed(host_allocator(), DType::F32, 1);
  listed.add("experts", {2, 2, 3}, ParamKind::Expert, {Init::TruncatedNormal, 1.0}, true,
             RowMap(std::vector<int64_t>{3, 0}));
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(get(listed.get("experts").value, i), get(full.get("experts").value, 18 + i));
    EXPECT_EQ(get(listed.get("experts").value, 6 + i), get(full.get("experts").value, i));
  }
  EXPECT_THROW(
      listed.add("bad", {2, 3}, ParamKind::Expert, {}, true, RowMap(std::vector<int64_t>{1})),
      Error);
}

// Mean, standard deviation and largest magnitude of a parameter's values.
struct Stats {
  double mean = 0, std = 0, max_abs = 0;
};
Stats stats_of(const Tensor& t) {
  double sum = 0, sq = 0, max_abs = 0;
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    const double v = get(t, i);
    sum += v, sq += v * v, max_abs = std::max(max_abs, std::abs(v));
  }
  const double mean = sum / n;
  return {mean, std::sqrt(sq / n - mean * mean), max_abs};
}

// Each initialiser on 1M draws against the exact nominal standard deviation (T5X's
// variance_scaling semantics: the drawn values have the nominal std), within 1% (the std
// estimate's standard error is about 0.07-0.1% here), and the exact range.
TEST(ParameterStore, InitialiserStatisticsMatchTheNominalValues) {
  ParameterStore s(host_allocator(), DType::F64, 3);
  const int64_t n = 1 << 20;
  s.add("n", {n}, ParamKind::Dense, {Init::Normal, 2.0});
  s.add("t", {n}, ParamKind::Dense, {Init::TruncatedNormal, 2.0});
  s.add("u", {n}, ParamKind::Dense, {Init::Uniform, 2.0});
  const Stats normal = stats_of(s.get("n").value), trunc = stats_of(s.get("t").value);
  const Stats uniform = stats_of(s.get("u").value);
  EXPECT_NEAR(normal.mean, 0.0, 0.01);
  EXPECT_NEAR(normal.std, 2.0, 0.02);
  // Truncated at two standard deviations of the underlying normal, which is scaled by
  // 1 / 0.8796... so that the truncated values have standard deviation 2 (T5X): the range is
  // +-2 * 2 / 0.8796... = +-4.547, reached.
  EXPECT_NEAR(trunc.mean, 0.0, 0.01);
  EXPECT_NEAR(trunc.std, 2.0, 0.02);
  const double edge = 2.0 * 2.0 / 0.87962566103423978;
  EXPECT_LE(trunc.max_abs, edge);
  EXPECT_GT(trunc.max_abs, 0.999 * edge);
  // The constant is the standard deviation of a standard normal truncated to [-2, 2]:
  // 1 - 4 phi(2) / (2 Phi(2) - 1), computed here independently.
  const double phi2 = std::exp(-2.0) / std::sqrt(2 * M_PI), mass = std::erf(2 / std::sqrt(2.0));
  EXPECT_NEAR(std::sqrt(1 - 4 * phi2 / mass), kTruncatedNormalStd, 1e-15);
  // Uniform in [-sqrt(3) 2, sqrt(3) 2].
  EXPECT_NEAR(uniform.mean, 0.0, 0.01);
  EXPECT_NEAR(uniform.std, 2.0, 0.02);
  EXPECT_LE(uniform.max_abs, std::sqrt(3.0) * 2.0);
  EXPECT_GT(uniform.max_abs, 0.9999 * std::sqrt(3.0) * 2.0);
}

// A T5 of width 64 (vocabulary 512, 32 position buckets) with `layers` blocks per stack.
config::ModelConfig small_model(int heads, int d_kv, int d_ff, int layers) {
  config::ModelConfig c;
  c.set_d_model(64), c.set_num_heads(heads), c.set_d_kv(d_kv), c.set_d_ff(d_ff);
  c.set_vocab_size(512), c.set_num_encoder_layers(layers), c.set_num_decoder_layers(layers);
  c.set_relative_attention_num_buckets(32), c.set_relative_attention_max_distance(128);
  return c;
}

// The model's parameters use T5X's initialisers: the relative position bias
// variance_scaling(1.0, fan_avg, uniform) (std sqrt(2 / (H + K))), the FFN and output projection
// truncated normals with std fan_in^-0.5, attention normals, the embedding N(0, 1).
TEST(ParameterStore, ModelParametersUseT5XInitialisers) {
  const config::ModelConfig c = small_model(12, 8, 256, 1);
  ParameterStore store(host_allocator(), DType::F64, 11);
  T5Model model(c, store, nullptr);
  auto init_of = [&](const std::string& name) { return store.get(name).init; };
  const Init bias = init_of("encoder.relative_attention_bias");
  EXPECT_EQ(bias.kind, Init::Uniform);
  EXPECT_DOUBLE_EQ(bias.stddev, std::sqrt(2.0 / (12 + 32)));
  const Stats b = stats_of(store.get("encoder.relative_attention_bias").value);
  EXPECT_LE(b.max_abs, std::sqrt(3.0 / 22.0));  // limit sqrt(3 / fan_avg), fan_avg = 22
  EXPECT_EQ(init_of("decoder.lm_head").kind, Init::TruncatedNormal);
  EXPECT_DOUBLE_EQ(init_of("decoder.lm_head").stddev, 1.0 / 8.0);
  EXPECT_EQ(init_of("shared.embedding").kind, Init::Normal);
  EXPECT_DOUBLE_EQ(init_of("shared.embedding").stddev, 1.0);
  for (const auto& p : store.all()) {
    const std::string& n = p->name;
    const auto ends = [&](const char* suffix) {
      const std::string s(suffix);
      return n.size() >= s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0;
    };
    if (ends(".wi_0") || ends(".wi_1")) {
      EXPECT_EQ(p->init.kind, Init::TruncatedNormal) << n;
      EXPECT_DOUBLE_EQ(p->init.stddev, 1.0 / 8.0) << n;
    } else if (ends(".wo")) {
      EXPECT_EQ(p->init.kind, Init::TruncatedNormal) << n;
      EXPECT_DOUBLE_EQ(p->init.stddev, 1.0 / 16.0) << n;
    } else if (ends(".q")) {
      EXPECT_EQ(p->init.kind, Init::Normal) << n;
      EXPECT_DOUBLE_EQ(p->init.stddev, 1.0 / std::sqrt(64.0 * 8.0)) << n;
    }
  }
  // The FFN's wi_0 [64, 256]: 16K values, std within 2% of 1/8.
  const Stats wi = stats_of(store.get("encoder.block0.ffn.wi_0").value);
  EXPECT_NEAR(wi.std, 1.0 / 8.0, 0.02 / 8.0);
}

// The dense gradients tile one range in registration order (when their sizes are multiples of
// the 64-byte alignment, as here), which lets the data-parallel allreduce reduce its buckets in
// place; expert gradients live elsewhere.
TEST(ParameterStore, DenseGradientsLieBackToBack) {
  const config::ModelConfig c = small_model(4, 16, 128, 2);
  ParameterStore store(host_allocator(), DType::F32, 3);
  T5Model model(c, store, nullptr);
  const Parameter* previous = nullptr;
  int checked = 0;
  for (const auto& p : store.all()) {
    if (p->kind != ParamKind::Dense || !p->trainable) continue;
    const Tensor& g = p->grad.tensor();
    ASSERT_EQ(g.nbytes() % 64, 0u) << p->name;
    if (previous != nullptr) {
      const Tensor& pg = previous->grad.tensor();
      EXPECT_EQ(static_cast<const char*>(pg.data) + pg.nbytes(), g.data)
          << p->name << " does not follow " << previous->name;
      ++checked;
    }
    previous = p.get();
  }
  EXPECT_GT(checked, 20);
  // The groups in the order backward finishes them tile memory downwards, one after another,
  // so any run of consecutive groups (an allreduce bucket) is one range.
  const char* below = nullptr;
  for (const auto& group : model.dense_grad_groups()) {
    const char *lo = nullptr, *hi = nullptr;
    for (const Parameter* p : group) {
      const char* b = static_cast<const char*>(p->grad.tensor().data);
      const char* e = b + p->grad.tensor().nbytes();
      lo = lo == nullptr ? b : std::min(lo, b);
      hi = hi == nullptr ? e : std::max(hi, e);
    }
    if (below != nullptr) {
      EXPECT_EQ(hi, below) << "group of " << group.front()->name;
    }
    below = lo;
  }
  Parameter& expert = store.add("experts", {8, 16}, ParamKind::Expert, {Init::Zeros});
  const Tensor& last = previous->grad.tensor();
  EXPECT_NE(static_cast<const char*>(last.data) + last.nbytes(), expert.grad.tensor().data);
}

TEST(ParameterStore, CountsGradientsAndErrors) {
  ParameterStore s(host_allocator(), DType::F32, 1);
  s.add("dense", {3, 4}, ParamKind::Dense, {Init::Zeros});
  Parameter& e = s.add("expert", {5}, ParamKind::Expert, {Init::Zeros}, false);
  EXPECT_EQ(s.count(ParamKind::Dense), 12);
  EXPECT_EQ(s.count(ParamKind::Expert), 5);
  EXPECT_TRUE(e.grad.tensor().empty()) << "frozen parameters have no gradient";
  s.get("dense").grad.tensor().ptr<float>()[3] = 1.0f;
  s.zero_grads();
  EXPECT_EQ(s.get("dense").grad.tensor().ptr<float>()[3], 0.0f);
  EXPECT_THROW(s.add("dense", {1}, ParamKind::Dense, {}), Error);
  EXPECT_THROW(s.get("nope"), Error);
}

}  // namespace
}  // namespace mowe::model
