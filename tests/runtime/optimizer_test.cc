// AdamW and Adafactor (backend ops and the Optimizer classes) against hand-computed values and
// independent straightforward implementations; learning-rate schedules; gradient clipping;
// optimizer state save and restore.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "runtime/lr_schedule.h"
#include "runtime/optimizer.h"
#include "runtime/optimizer_config.h"
#include "tests/util/expect_error.h"
#include "tests/util/gradcheck.h"

namespace mowe {
namespace {

using testing::expect_error;
using testing::get;
using Vec = std::vector<double>;

Buffer values(const Vec& v, Shape shape, DType dtype = DType::F64) {
  Buffer b = testing::host_buffer(shape, dtype);
  for (size_t i = 0; i < v.size(); ++i) testing::set(b, int64_t(i), v[i]);
  return b;
}
Vec to_vec(const Tensor& t) {
  Vec v(size_t(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[size_t(i)] = get(t, i);
  return v;
}
void randomize(const Tensor& t, uint64_t seed, double lo = -1, double hi = 1) {
  Buffer r = testing::random_buffer(t.shape, seed, lo, hi, t.dtype);
  std::memcpy(t.data, r.tensor().data, t.nbytes());
}
void expect_near(const Vec& got, const Vec& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * std::max(1.0, std::abs(want[i]))) << what << "[" << i << "]";
}

// Parameters with gradients on the host, as ParamSlots.
struct Params {
  std::vector<Buffer> values, grads;
  std::vector<ParamSlot> slots;
  Params(const std::vector<std::pair<std::string, Shape>>& specs, uint64_t seed,
         DType dtype = DType::F64) {
    for (const auto& [name, shape] : specs) {
      values.push_back(testing::random_buffer(shape, seed++, -1, 1, dtype));
      grads.push_back(testing::host_buffer(shape, dtype));
      slots.push_back({name, values.back().tensor(), grads.back().tensor()});
    }
  }
  void random_grads(uint64_t seed, double scale = 1) {
    for (const Buffer& g : grads) randomize(g, seed++, -scale, scale);
  }
};

// ---- AdamW -------------------------------------------------------------------------------------

TEST(AdamW, HandComputedTwoStepTrajectory) {
  // lr 0.1, weight decay 0.01, betas 0.9 / 0.999, eps 1e-8. For p = 1, g1 = 0.5: m = 0.05,
  // v = 0.00025, m_hat = 0.5, v_hat = 0.25, p1 = 1 - 0.1 (0.5 / (0.5 + 1e-8) + 0.01 * 1).
  // Step 2 with g2 = -0.25: m = 0.02, v = 0.00031225, m_hat = 0.02 / 0.19,
  // v_hat = 0.00031225 / 0.001999, p2 = p1 - 0.1 (m_hat / (sqrt(v_hat) + 1e-8) + 0.01 p1).
  Buffer p = values({1.0, -2.0, 0.5}, {3}), m = testing::host_buffer({3}),
         v = testing::host_buffer({3});
  Buffer g1 = values({0.5, -1.0, 0.0}, {3}), g2 = values({-0.25, 3.0, 0.2}, {3});
  AdamWStep s{.lr = 0.1, .weight_decay = 0.01, .step = 1};
  cpu_backend().adamw_update({}, p, g1, m, v, s);
  expect_near(to_vec(p), {0.899000002, -1.898000001, 0.4995}, 1e-15, "step 1");
  s.step = 2;
  cpu_backend().adamw_update({}, p, g2, m, v, s);
  expect_near(to_vec(p), {0.8714672987058464, -1.945520984107744, 0.42458682290382777}, 1e-15,
              "step 2");
}

// PyTorch's AdamW step order (torch.optim.AdamW, foreach off), written independently.
struct NaiveAdamW {
  AdamWOptions o;
  Vec m, v;
  void step(Vec& p, const Vec& grad, double lr, double grad_scale, int t) {
    if (m.empty()) m.assign(p.size(), 0.0), v.assign(p.size(), 0.0);
    for (size_t i = 0; i < p.size(); ++i) {
      const double g = grad[i] * grad_scale;
      p[i] *= 1 - lr * o.weight_decay;
      m[i] += (g - m[i]) * (1 - o.beta1);
      v[i] = v[i] * o.beta2 + (1 - o.beta2) * g * g;
      const double denom = std::sqrt(v[i]) / std::sqrt(1 - std::pow(o.beta2, t)) + o.eps;
      p[i] -= lr / (1 - std::pow(o.beta1, t)) * m[i] / denom;
    }
  }
};

TEST(AdamW, MatchesIndependentImplementationOverFiveSteps) {
  for (DType dtype : {DType::F64, DType::F32}) {
    const AdamWOptions o{.beta1 = 0.8, .beta2 = 0.95, .eps = 1e-6, .weight_decay = 0.1};
    Params params({{"a", {4, 5}}, {"b", {7}}, {"c", {2, 3, 2}}}, 1, dtype);
    std::vector<Vec> want;
    for (const Buffer& b : params.values) want.push_back(to_vec(b));
    std::vector<NaiveAdamW> naive(want.size(), NaiveAdamW{o, {}, {}});
    AdamW opt(host_allocator(), o);
    for (int t = 1; t <= 5; ++t) {
      params.random_grads(100 * t, 2.0);
      const double lr = 0.01 * t, scale = 1.0 / t;
      opt.step({}, params.slots, lr, scale, t);
      for (size_t i = 0; i < want.size(); ++i)
        naive[i].step(want[i], to_vec(params.grads[i]), lr, scale, t);
    }
    EXPECT_EQ(opt.state_bytes(), 2 * (20 + 7 + 12) * dtype_size(dtype));
    for (size_t i = 0; i < want.size(); ++i)
      expect_near(to_vec(params.values[i]), want[i], dtype == DType::F64 ? 1e-14 : 2e-6,
                  params.slots[i].name);
  }
}

TEST(AdamW, WeightDecayIsDecoupledFromTheGradient) {
  // With g = 0 the moments stay 0, so only the decay acts: p <- p (1 - lr wd).
  Buffer p = values({1.0, -3.0, 0.25}, {3}), m = testing::host_buffer({3}),
         v = testing::host_buffer({3}), g = testing::host_buffer({3});
  cpu_backend().adamw_update({}, p, g, m, v, {.lr = 0.1, .weight_decay = 0.5, .step = 1});
  expect_near(to_vec(p), {0.95, -2.85, 0.2375}, 1e-15, "decayed");
}

// ---- Adafactor ---------------------------------------------------------------------------------

// T5X's apply_param_gradient for one [B, R, C] parameter in double, written with whole matrices
// (V_hat = row col^T / mean(row)) rather than the backend's per-element formula.
struct NaiveAdafactor {
  AdafactorOptions o;
  bool factored;
  Vec v, row, col;
  void step(Vec& p, const Vec& grad, int64_t B, int64_t R, int64_t C, double lr, double scale,
            int64_t t) {
    const double beta = 1 - std::pow(double(t), -o.decay_rate);
    if (v.empty())
      v.assign(p.size(), 0), row.assign(size_t(B * R), 0), col.assign(size_t(B * C), 0);
    for (int64_t b = 0; b < B; ++b) {
      auto at = [&](int64_t r, int64_t c) { return size_t((b * R + r) * C + c); };
      auto g = [&](int64_t r, int64_t c) { return grad[at(r, c)] * scale; };
      Vec y(size_t(R * C));
      if (factored) {
        for (int64_t r = 0; r < R; ++r) {
          double s = 0;
          for (int64_t c = 0; c < C; ++c) s += g(r, c) * g(r, c) + o.eps1;
          row[size_t(b * R + r)] = beta * row[size_t(b * R + r)] + (1 - beta) * s / double(C);
        }
        for (int64_t c = 0; c < C; ++c) {
          double s = 0;
          for (int64_t r = 0; r < R; ++r) s += g(r, c) * g(r, c) + o.eps1;
          col[size_t(b * C + c)] = beta * col[size_t(b * C + c)] + (1 - beta) * s / double(R);
        }
        double mean = 0;
        for (int64_t r = 0; r < R; ++r) mean += row[size_t(b * R + r)] / double(R);
        for (int64_t r = 0; r < R; ++r)
          for (int64_t c = 0; c < C; ++c)
            y[size_t(r * C + c)] =
                g(r, c) / std::sqrt(row[size_t(b * R + r)] * col[size_t(b * C + c)] / mean);
      } else {
        for (int64_t r = 0; r < R; ++r)
          for (int64_t c = 0; c < C; ++c) {
            v[at(r, c)] = beta * v[at(r, c)] + (1 - beta) * (g(r, c) * g(r, c) + o.eps1);
            y[size_t(r * C + c)] = g(r, c) / std::sqrt(v[at(r, c)]);
          }
      }
      double y_ms = 0, p_ms = 0;
      for (int64_t i = 0; i < R * C; ++i) {
        y_ms += y[size_t(i)] * y[size_t(i)] / double(R * C);
        p_ms += p[size_t(b * R * C + i)] * p[size_t(b * R * C + i)] / double(R * C);
      }
      const double clip = std::max(1.0, std::sqrt(y_ms) / o.clip_threshold);
      const double size = lr * std::max(o.eps2, std::sqrt(p_ms));
      for (int64_t i = 0; i < R * C; ++i) p[size_t(b * R * C + i)] -= size * y[size_t(i)] / clip;
    }
  }
};

TEST(Adafactor, FactoredStepByHand) {
  // Step 1 (beta2 = 0): g^2 = [[1, 4], [9, 16]], row = [2.5, 12.5], col = [5, 10], mean(row) =
  // 7.5, V_hat = row col^T / 7.5 = [[5/3, 10/3], [25/3, 50/3]], y^2 = g^2 / V_hat =
  // [0.6, 1.2, 1.08, 0.96]: RMS(y) = sqrt(0.96) < 1, no clipping. RMS(p) = sqrt(0.625).
  Buffer p = values({0.5, -0.5, 1, -1}, {2, 2}), g = values({1, 2, 3, 4}, {2, 2});
  Buffer row = testing::host_buffer({1, 2}), col = testing::host_buffer({1, 2});
  cpu_backend().adafactor_update({}, p, g, row, col, {}, {.lr = 0.1});
  expect_near(to_vec(row), {2.5, 12.5}, 1e-15, "row");
  expect_near(to_vec(col), {5, 10}, 1e-15, "col");
  const double s = 0.1 * std::sqrt(0.625);
  expect_near(to_vec(p),
              {0.5 - s * std::sqrt(0.6), -0.5 - s * std::sqrt(1.2), 1 - s * std::sqrt(1.08),
               -1 - s * std::sqrt(0.96)},
              1e-14, "param");
}

TEST(Adafactor, UnfactoredStepByHandWithTheParameterScaleFloor) {
  // Step 1: v = g^2 + eps1, y = sign(g) (0 where g = 0); RMS(p) = 0 < eps2, so lr * 1e-3.
  Buffer p = testing::host_buffer({3}), g = values({2, -3, 0}, {3}), v = testing::host_buffer({3});
  cpu_backend().adafactor_update({}, p, g, {}, {}, v, {.lr = 0.1});
  expect_near(to_vec(p), {-1e-4, 1e-4, 0}, 1e-18, "param");
  expect_near(to_vec(v), {4, 9, 1e-30}, 1e-15, "v");
}

TEST(Adafactor, UpdateClippingCapsTheRms) {
  // Step 1: g = 0.1: y = 1, p = 1 - 0.1 * RMS(p) = 0.9. Step 2: g = 1, beta2 = 1 - 2^-0.8:
  // v = beta2 0.01 + (1 - beta2), y = 1 / sqrt(v) > 1 in every element, clipped to RMS 1, so
  // p = 0.9 - 0.1 * 0.9 * 1 = 0.81; without clipping 0.9 - 0.09 / sqrt(v).
  for (double clip : {1.0, 0.0}) {
    Buffer p = values({1, 1, 1, 1}, {4}), v = testing::host_buffer({4});
    Buffer g1 = values({0.1, 0.1, 0.1, 0.1}, {4}), g2 = values({1, 1, 1, 1}, {4});
    AdafactorStep s{.lr = 0.1, .step = 1, .clip_threshold = clip};
    cpu_backend().adafactor_update({}, p, g1, {}, {}, v, s);
    expect_near(to_vec(p), Vec(4, 0.9), 1e-15, "step 1");
    s.step = 2;
    cpu_backend().adafactor_update({}, p, g2, {}, {}, v, s);
    const double beta = 1 - std::pow(2.0, -0.8), vv = beta * 0.01 + (1 - beta);
    expect_near(to_vec(p), Vec(4, clip > 0 ? 0.81 : 0.9 - 0.09 / std::sqrt(vv)), 1e-15, "step 2");
  }
}

TEST(Adafactor, MatchesIndependentImplementationOverFiveSteps) {
  AdafactorOptions o;
  o.min_dim_size_to_factor = 4;  // factor the [4, 5] matrix, not the [3, 2] one
  const std::vector<std::pair<std::string, Shape>> specs = {
      {"vec", {6}}, {"mat", {4, 5}}, {"small", {3, 2}}, {"stack", {3, 4, 5}}, {"one", {1}}};
  Params params(specs, 7);
  Adafactor opt(host_allocator(), o);
  std::vector<Vec> want;
  std::vector<NaiveAdafactor> naive;
  for (size_t i = 0; i < specs.size(); ++i) {
    want.push_back(to_vec(params.values[i]));
    naive.push_back({o, opt.factored(specs[i].second), {}, {}, {}});
  }
  EXPECT_FALSE(naive[0].factored || naive[2].factored || naive[4].factored);
  EXPECT_TRUE(naive[1].factored && naive[3].factored);
  for (int t = 1; t <= 5; ++t) {
    // Step 3's gradients are 100 times larger: the second moments lag and clipping acts.
    params.random_grads(50 * t, t == 3 ? 100.0 : 1.0);
    const double lr = 0.01 * t, scale = 0.5 + 0.1 * t;
    opt.step({}, params.slots, lr, scale, t);
    for (size_t i = 0; i < specs.size(); ++i) {
      const Shape& s = specs[i].second;
      const int64_t R = s.ndim() >= 2 ? s[-2] : 1, C = s[-1], B = s.numel() / (R * C);
      naive[i].step(want[i], to_vec(params.grads[i]), B, R, C, lr, scale, t);
    }
  }
  for (size_t i = 0; i < specs.size(); ++i)
    expect_near(to_vec(params.values[i]), want[i], 1e-12, specs[i].first);
  // State: v [6]; row [1, 4] + col [1, 5]; v [3, 2]; row [3, 4] + col [3, 5] + decay_log [3];
  // v [1].
  EXPECT_EQ(opt.state_bytes(), (6 + 9 + 6 + 27 + 3 + 1) * sizeof(double));
}

TEST(Adafactor, FactoredEqualsUnfactoredWhenSquaredGradientsHaveRankOne) {
  // g_t = s_t a b^T keeps every second-moment matrix rank one, which the factored estimate
  // row col^T / mean(row) reproduces exactly.
  const Vec a = {0.5, -1.0, 2.0}, b = {1.0, 0.25, -0.75, 3.0};
  Buffer pf = testing::random_buffer({3, 4}, 3), pu = testing::random_buffer({3, 4}, 3);
  Buffer row = testing::host_buffer({1, 3}), col = testing::host_buffer({1, 4});
  Buffer v = testing::host_buffer({3, 4}), g = testing::host_buffer({3, 4});
  for (int t = 1; t <= 3; ++t) {
    for (int64_t i = 0; i < 12; ++i) testing::set(g, i, (t == 2 ? 3.0 : 1.0) * a[i / 4] * b[i % 4]);
    const AdafactorStep s{.lr = 0.05, .step = t, .eps1 = 0};
    cpu_backend().adafactor_update({}, pf, g, row, col, {}, s);
    cpu_backend().adafactor_update({}, pu, g, {}, {}, v, s);
  }
  expect_near(to_vec(pf), to_vec(pu), 1e-14, "factored vs unfactored");
}

TEST(Adafactor, StackedSlicesAreIndependentParameters) {
  Buffer stacked = testing::random_buffer({2, 3, 4}, 1), g = testing::random_buffer({2, 3, 4}, 2);
  Buffer row = testing::host_buffer({2, 3}), col = testing::host_buffer({2, 4});
  Buffer p0 = testing::host_buffer({3, 4}), p1 = testing::host_buffer({3, 4});
  std::memcpy(p0.tensor().data, stacked.tensor().data, 96);
  std::memcpy(p1.tensor().data, static_cast<char*>(stacked.tensor().data) + 96, 96);
  Tensor g0 = g.tensor().rows_slice(0, 1).reshape({3, 4});
  Tensor g1 = g.tensor().rows_slice(1, 2).reshape({3, 4});
  Buffer r0 = testing::host_buffer({1, 3}), c0 = testing::host_buffer({1, 4});
  Buffer r1 = testing::host_buffer({1, 3}), c1 = testing::host_buffer({1, 4});
  const AdafactorStep s{.lr = 0.3};
  cpu_backend().adafactor_update({}, stacked, g, row, col, {}, s);
  cpu_backend().adafactor_update({}, p0, g0, r0, c0, {}, s);
  cpu_backend().adafactor_update({}, p1, g1, r1, c1, {}, s);
  Vec both = to_vec(p0), second = to_vec(p1);
  both.insert(both.end(), second.begin(), second.end());
  EXPECT_EQ(to_vec(stacked), both);
}

// ---- schedules, clipping, state, configuration -------------------------------------------------

TEST(LrSchedule, ValuesAtStartWarmupEndMiddleAndEnd) {
  using K = LrScheduleKind;
  const LrSchedule constant{K::Constant, 0.01, 100, 1000, 0.0};
  EXPECT_EQ(learning_rate(constant, 0), 0.0);
  EXPECT_DOUBLE_EQ(learning_rate(constant, 50), 0.005);
  EXPECT_EQ(learning_rate(constant, 100), 0.01);
  EXPECT_EQ(learning_rate(constant, 1000), 0.01);
  const LrSchedule rsqrt{K::Rsqrt, 0.01, 10000, 0, 0.0};
  EXPECT_EQ(learning_rate(rsqrt, 0), 0.01);
  EXPECT_EQ(learning_rate(rsqrt, 10000), 0.01);
  EXPECT_DOUBLE_EQ(learning_rate(rsqrt, 40000), 0.005);
  EXPECT_DOUBLE_EQ(learning_rate(rsqrt, 1000000), 0.001);
  const LrSchedule rsqrt0{K::Rsqrt, 1.0, 0, 0, 0.0};  // no warmup: 1 / sqrt(max(t, 1))
  EXPECT_EQ(learning_rate(rsqrt0, 0), 1.0);
  EXPECT_EQ(learning_rate(rsqrt0, 4), 0.5);
  for (K kind : {K::Cosine, K::Linear}) {
    const LrSchedule s{kind, 2.0, 100, 1100, 0.1};
    EXPECT_EQ(learning_rate(s, 0), 0.0);
    EXPECT_DOUBLE_EQ(learning_rate(s, 50), 1.0);
    EXPECT_EQ(learning_rate(s, 100), 2.0);
    EXPECT_NEAR(learning_rate(s, 600), 2.0 * 0.55, 1e-15);  // half way: 0.1 + 0.9 / 2 either way
    EXPECT_NEAR(learning_rate(s, 1100), 0.2, 1e-15);
    EXPECT_NEAR(learning_rate(s, 5000), 0.2, 1e-15);
  }
  EXPECT_NEAR(learning_rate({K::Linear, 2.0, 100, 1100, 0.1}, 850), 2.0 * 0.325, 1e-15);
  // Cosine at a quarter: 0.1 + 0.9 (1 + cos(pi / 4)) / 2.
  EXPECT_NEAR(learning_rate({K::Cosine, 2.0, 100, 1100, 0.1}, 350),
              2.0 * (0.1 + 0.45 * (1 + std::sqrt(0.5))), 1e-15);
}

TEST(LrSchedule, FromTrainingConfig) {
  config::TrainingConfig t;  // defaults: Adafactor, RSQRT, 0.01, warmup 10000
  EXPECT_EQ(learning_rate(t, 0), 0.01);
  EXPECT_DOUBLE_EQ(learning_rate(t, 40000), 0.005);
  EXPECT_STREQ(make_optimizer(t, host_allocator())->name(), "adafactor");
  t.set_lr_schedule(config::TrainingConfig::LINEAR);
  t.set_steps(300), t.set_warmup_steps(100), t.set_min_lr_ratio(0.5), t.set_learning_rate(1.0);
  EXPECT_DOUBLE_EQ(learning_rate(t, 200), 0.75);
  t.set_optimizer(config::TrainingConfig::ADAMW);
  EXPECT_STREQ(make_optimizer(t, host_allocator())->name(), "adamw");
}

TEST(GradClip, GlobalNormAndClipScale) {
  Params params({{"a", {3, 4}}, {"b", {5}}, {"c", {2, 2, 2}}}, 1);
  params.random_grads(9, 3.0);
  params.slots.push_back({"frozen", params.values[0].tensor(), {}});  // skipped
  double naive = 0;
  for (const Buffer& g : params.grads) naive += testing::dot(g, g);
  const double norm = global_grad_norm(cpu_backend(), {}, params.slots);
  EXPECT_NEAR(norm, std::sqrt(naive), 1e-14 * norm);
  const double scale = clip_scale(norm, 1.5);
  for (const Buffer& g : params.grads)
    for (int64_t i = 0; i < g.tensor().numel(); ++i) testing::set(g, i, get(g, i) * scale);
  EXPECT_NEAR(global_grad_norm(cpu_backend(), {}, params.slots), 1.5, 1e-14);
  EXPECT_EQ(clip_scale(0.5, 1.0), 1.0);   // below the threshold
  EXPECT_EQ(clip_scale(50.0, 0.0), 1.0);  // off
  EXPECT_EQ(clip_scale(0.0, 1.0), 1.0);
  EXPECT_EQ(clip_scale(4.0, 1.0), 0.25);
}

// Three steps, save the state, restore it into a new optimizer (and parameters), take one more
// step on both: identical parameters. A fresh optimizer's step differs, so the state mattered.
template <typename Opt>
void expect_state_round_trip(const char* what) {
  SCOPED_TRACE(what);
  const std::vector<std::pair<std::string, Shape>> specs = {
      {"enc.w", {130, 129}}, {"enc.norm", {8}}, {"experts", {3, 4, 6}}};
  Params a(specs, 1), b(specs, 1), fresh(specs, 1);
  Opt opt_a(host_allocator()), opt_b(host_allocator()), opt_fresh(host_allocator());
  for (int t = 1; t <= 3; ++t) {
    a.random_grads(10 * t);
    opt_a.step({}, a.slots, 0.01, 0.5, t);
  }
  std::vector<Buffer> saved;
  std::vector<std::string> names;
  for (const NamedTensor& s : opt_a.state_tensors()) {
    saved.push_back(testing::host_buffer(s.tensor.shape, s.tensor.dtype));
    std::memcpy(saved.back().tensor().data, s.tensor.data, s.tensor.nbytes());
    names.push_back(s.name);
  }
  const std::vector<NamedTensor> slots_b = opt_b.prepare_state(b.slots);
  ASSERT_EQ(slots_b.size(), saved.size());
  for (size_t i = 0; i < saved.size(); ++i) {
    ASSERT_EQ(slots_b[i].name, names[i]);
    ASSERT_EQ(slots_b[i].tensor.shape, saved[i].tensor().shape) << names[i];
    std::memcpy(slots_b[i].tensor.data, saved[i].tensor().data, saved[i].tensor().nbytes());
  }
  for (size_t i = 0; i < specs.size(); ++i) {
    std::memcpy(b.values[i].tensor().data, a.values[i].tensor().data,
                a.values[i].tensor().nbytes());
    std::memcpy(fresh.values[i].tensor().data, a.values[i].tensor().data,
                a.values[i].tensor().nbytes());
  }
  for (Params* p : {&a, &b, &fresh}) p->random_grads(99);
  // The restored optimizer continues with update 4; the fresh one has seen no update.
  opt_a.step({}, a.slots, 0.01, 0.5, 4);
  opt_b.step({}, b.slots, 0.01, 0.5, 4);
  opt_fresh.step({}, fresh.slots, 0.01, 0.5, 1);
  for (size_t i = 0; i < specs.size(); ++i) {
    EXPECT_EQ(to_vec(a.values[i]), to_vec(b.values[i])) << specs[i].first;
    EXPECT_NE(to_vec(a.values[i]), to_vec(fresh.values[i])) << specs[i].first;
  }
}

TEST(OptimizerState, SaveAndRestoreGiveAnIdenticalNextStep) {
  expect_state_round_trip<AdamW>("adamw");
  expect_state_round_trip<Adafactor>("adafactor");
  Adafactor opt(host_allocator());
  Params p({{"w", {130, 129}}, {"b", {8}}}, 1);
  std::vector<std::string> names;
  for (const NamedTensor& s : opt.prepare_state(p.slots)) names.push_back(s.name);
  EXPECT_EQ(names, (std::vector<std::string>{"b/v", "w/v_col", "w/v_row"}));
}

TEST(OptimizerErrors, AreNamed) {
  Backend& cpu = cpu_backend();
  Buffer x = testing::host_buffer({4}), y = testing::host_buffer({5});
  Buffer r = testing::host_buffer({1, 1}), c = testing::host_buffer({1, 4});
  expect_error([&] { cpu.adamw_update({}, x, x, x, y, {.step = 1}); },
               {"adamw_update: tensors differ"});
  expect_error([&] { cpu.adamw_update({}, x, x, x, x, {.step = 0}); }, {"step 0 must be >= 1"});
  expect_error([&] { cpu.adafactor_update({}, x, x, r, c, {}, {}); }, {"parameters of rank >= 2"});
  expect_error([&] { cpu.adafactor_update({}, x, x, r, c, x, {}); },
               {"v and row/col given together"});
  Params p({{"w", {2, 3}}, {"w", {2, 3}}}, 1);
  AdamW opt(host_allocator());
  expect_error([&] { opt.step({}, p.slots, 0.1, 1.0, 1); }, {"parameter 'w' appears twice"});
  p.slots.pop_back();
  expect_error([&] { opt.step({}, p.slots, 0.1, 1.0, 0); }, {"update number 0 must be >= 1"});
  opt.step({}, p.slots, 0.1, 1.0, 1);
  p.slots[0].value = p.slots[0].value.reshape({3, 2});
  p.slots[0].grad = p.slots[0].grad.reshape({3, 2});
  expect_error([&] { opt.step({}, p.slots, 0.1, 1.0, 2); }, {"its optimizer state was made for"});
}

}  // namespace
}  // namespace mowe
