// The f32 vector kernels (runtime/cpu/simd_kernels.h), each instruction set this CPU has, against
// the scalar formulas of runtime/math.h evaluated in double as the truth, with the error bounds
// docs/cpu_kernels.md states. Each bound was checked to hold for the old scalar f32 loops too.
#include "runtime/cpu/simd_kernels.h"

#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/math.h"

namespace mowe::cpu::simd {
namespace {

using Vec = std::vector<float>;
constexpr double kEps24 = 1.0 / 16777216.0;  // 2^-24: half an ulp of 1 in f32
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNan = std::numeric_limits<float>::quiet_NaN();

// The f32 ulp at the magnitude of t (the spacing of floats there; 2^-149 below FLT_MIN).
double ulp(double t) {
  double a = std::fabs(t);
  if (a < FLT_MIN) return std::ldexp(1.0, -149);
  if (a > FLT_MAX) a = FLT_MAX;
  int e;
  std::frexp(a, &e);
  return std::ldexp(1.0, e - 24);
}

// A dense sweep: every 1/1024 over [-100, 100], magnitudes 1e-40 .. 1e38 in 1% steps of both
// signs, and the edges of exp's range.
Vec sweep() {
  Vec x;
  for (double v = -100; v <= 100; v += 1.0 / 1024) x.push_back(float(v));
  for (double m = 1e-40; m < 1e38; m *= 1.01) {
    x.push_back(float(m));
    x.push_back(float(-m));
  }
  for (float v :
       {0.0f, -0.0f, 88.0f, -88.0f, 88.72f, -87.33f, -103.9f, FLT_MIN, -FLT_MIN, FLT_MAX, -FLT_MAX})
    x.push_back(v);
  return x;
}

std::vector<const Kernels*> kernel_sets() {
  std::vector<const Kernels*> sets = {&sse2_kernels()};
  if (avx2_supported()) sets.push_back(&avx2_kernels());
  if (avx512_supported()) sets.push_back(&avx512_kernels());
  return sets;
}

class SimdKernels : public ::testing::TestWithParam<const Kernels*> {
 protected:
  const Kernels& k() const { return *GetParam(); }
};

TEST_P(SimdKernels, TanhAndExpWithinOneUlpAndAHundredth) {
  // SLEEF's u10 functions promise 1.0 ULP over the whole range, subnormal results included.
  // Near 0, tanh(x) can land one ulp above x while the truth is x - x^3/3 below it: 1.01.
  const Vec x = sweep();
  Vec t(x.size()), e(x.size());
  k().tanh(x.data(), t.data(), int64_t(x.size()));
  k().exp(x.data(), e.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const double tt = std::tanh(double(x[i])), te = std::exp(double(x[i]));
    ASSERT_LE(std::fabs(t[i] - tt), 1.01 * ulp(tt)) << "tanh(" << x[i] << ") = " << t[i];
    if (te > FLT_MAX) {
      ASSERT_EQ(e[i], kInf) << "exp(" << x[i] << ")";
    } else {
      ASSERT_LE(std::fabs(e[i] - te), 1.01 * ulp(te)) << "exp(" << x[i] << ") = " << e[i];
    }
  }
}

TEST_P(SimdKernels, SpecialValuesAsTheScalarFunctions) {
  const Vec x = {kNan, kInf, -kInf, 0.0f, -0.0f, 89.0f, -104.0f, 1e20f, -1e20f, 3e38f};
  const int64_t n = int64_t(x.size());
  Vec t(x.size()), e(x.size()), g(x.size()), d(x.size()), ones(x.size(), 1.0f);
  k().tanh(x.data(), t.data(), n);
  k().exp(x.data(), e.data(), n);
  k().gelu(x.data(), g.data(), n);
  k().gelu_backward(ones.data(), x.data(), d.data(), n);
  auto same = [](float got, float want) {
    return std::isnan(want) ? std::isnan(got) : got == want;  // +0 == -0
  };
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_TRUE(same(t[i], std::tanh(x[i]))) << "tanh(" << x[i] << ") = " << t[i];
    EXPECT_TRUE(same(e[i], std::exp(x[i]))) << "exp(" << x[i] << ") = " << e[i];
    // NaN, inf and overflowing cubes behave as the scalar f32 formula did (gelu(-inf) = NaN,
    // gelu'(|x| > 1.8e19) = NaN from inf * 0).
    EXPECT_TRUE(same(g[i], math::gelu(x[i]))) << "gelu(" << x[i] << ") = " << g[i];
    EXPECT_TRUE(same(d[i], math::gelu_grad(x[i]))) << "gelu'(" << x[i] << ") = " << d[i];
  }
  EXPECT_TRUE(std::signbit(t[4])) << "tanh(-0) keeps its sign";
}

// GELU and its slope lose accuracy where 1 + tanh or 1 - tanh^2 cancels, in absolute terms of
// about 2^-24 times the factor they are multiplied by (x / 2, x / 2 times the inner
// derivative); the bounds are in units of that plus the result's ulp.
double gelu_scale(double x, double truth) {
  return ulp(truth) + kEps24 * std::fabs(x);
}
double gelu_slope_scale(double x, double truth) {
  const double dinner = 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
  return ulp(truth) + kEps24 * 0.5 * std::fabs(x) * dinner;
}

TEST_P(SimdKernels, GeluAndItsSlopeWithinTheStatedBound) {
  const Vec x = sweep();
  const int64_t n = int64_t(x.size());
  Vec y(x.size()), d(x.size()), ones(x.size(), 1.0f);
  k().gelu(x.data(), y.data(), n);
  k().gelu_backward(ones.data(), x.data(), d.data(), n);
  double worst_y = 0, worst_d = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double xi = x[i], ty = math::gelu<double>(xi), td = math::gelu_grad<double>(xi);
    // Beyond |x| ~ 1.8e19 the f32 cube overflows, as in the scalar formula (tested above).
    if (!std::isfinite(math::gelu_grad(x[i]))) continue;
    const double ey = std::fabs(y[i] - ty) / gelu_scale(xi, ty);
    const double ed = std::fabs(d[i] - td) / gelu_slope_scale(xi, td);
    // The old scalar loop: 0.50 and 2.6 of these units on this sweep.
    ASSERT_LE(ey, 1.5) << "gelu(" << xi << ") = " << y[i] << ", truth " << ty;
    ASSERT_LE(ed, 4.0) << "gelu'(" << xi << ") = " << d[i] << ", truth " << td;
    worst_y = std::max(worst_y, ey);
    worst_d = std::max(worst_d, ed);
  }
  RecordProperty("gelu_worst", std::to_string(worst_y));
  RecordProperty("gelu_slope_worst", std::to_string(worst_d));
}

Vec random_vec(size_t n, uint32_t seed, float lo, float hi) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  Vec v(n);
  for (float& x : v) x = u(rng);
  return v;
}

TEST_P(SimdKernels, GatedGeluIsGeluTimesLinearBitForBit) {
  const size_t n = 1037;
  const Vec gate = random_vec(n, 1, -6, 6), lin = random_vec(n, 2, -2, 2),
            dout = random_vec(n, 3, -1, 1);
  Vec g(n), out(n), dgate(n), dlin(n), slope(n), dl(n);
  k().gelu(gate.data(), g.data(), int64_t(n));
  k().gated_gelu(gate.data(), lin.data(), out.data(), int64_t(n));
  k().gated_gelu_backward(dout.data(), gate.data(), lin.data(), dgate.data(), dlin.data(),
                          int64_t(n));
  for (size_t i = 0; i < n; ++i) dl[i] = dout[i] * lin[i];
  k().gelu_backward(dl.data(), gate.data(), slope.data(), int64_t(n));
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(out[i], g[i] * lin[i]) << i;
    ASSERT_EQ(dlin[i], dout[i] * g[i]) << i;
    ASSERT_EQ(dgate[i], slope[i]) << i;
  }
}

TEST_P(SimdKernels, ElementValuesDoNotDependOnWhereTheArrayStarts) {
  // Threads hand kernels arbitrary sub-ranges: an element's value must not depend on its lane.
  const size_t n = 301;
  const Vec x = random_vec(n, 4, -8, 8);
  Vec whole(n), part(n);
  k().gelu(x.data(), whole.data(), int64_t(n));
  for (size_t offset : {1, 3, 5, 7, 13}) {
    k().gelu(x.data() + offset, part.data() + offset, int64_t(n - offset - 2));
    for (size_t i = offset; i < n - 2; ++i) ASSERT_EQ(part[i], whole[i]) << offset << " " << i;
  }
}

// Softmax of a row from the same f32 inputs, in double.
std::vector<double> softmax_truth(const Vec& x) {
  double mx = -INFINITY, sum = 0;
  for (float v : x) mx = std::max(mx, double(v));
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) sum += y[i] = std::exp(double(x[i]) - mx);
  for (double& v : y) v /= sum;
  return y;
}

TEST_P(SimdKernels, SoftmaxRowsWithinTheStatedBound) {
  // Relative error per element <= (8 + |x - max|) 2^-24: exp's 1 ulp, the rounding of x - max
  // (whose relative error |x - max| times 2^-24 carries into exp), the sum and the scaling.
  // Masked entries (-1e9) give exactly 0.
  for (size_t n : {1, 2, 7, 8, 9, 31, 64, 67, 512, 8064}) {
    Vec x = random_vec(n, uint32_t(n), -30, 30);
    for (size_t i = 3; i < n; i += 5) x[i] = -1e9f;
    Vec y = x;
    k().softmax_row(y.data(), int64_t(n));
    const std::vector<double> truth = softmax_truth(x);
    const float mx = k().max(x.data(), int64_t(n));
    for (size_t i = 0; i < n; ++i) {
      const double bound =
          (8 + std::fabs(double(x[i]) - mx)) * kEps24 * truth[i] + std::ldexp(1.0, -149);
      ASSERT_LE(std::fabs(y[i] - truth[i]), bound) << "n " << n << " i " << i;
    }
    // The loss's pieces: logsumexp from max and sum_exp.
    double truth_sum = 0;
    for (float v : x) truth_sum += std::exp(double(v) - double(mx));
    EXPECT_NEAR(k().sum_exp(x.data(), mx, int64_t(n)), truth_sum, 4 * kEps24 * truth_sum);
  }
}

TEST_P(SimdKernels, SoftmaxBackwardWithinTheStatedBound) {
  // dx = y (dy - <y, dy>), the dot in double: error <= 4 2^-24 (|dx| + y (|dy| + sum |y dy|)).
  for (size_t n : {1, 5, 8, 67, 1000}) {
    Vec x = random_vec(n, uint32_t(n + 10), -5, 5), dy = random_vec(n, uint32_t(n + 11), -3, 3);
    k().softmax_row(x.data(), int64_t(n));
    Vec dx(n);
    k().softmax_row_backward(x.data(), dy.data(), dx.data(), int64_t(n));
    double dot = 0, absdot = 0;
    for (size_t i = 0; i < n; ++i)
      dot += double(x[i]) * dy[i], absdot += std::fabs(double(x[i]) * dy[i]);
    for (size_t i = 0; i < n; ++i) {
      const double truth = double(x[i]) * (double(dy[i]) - dot);
      const double bound = 4 * kEps24 * (std::fabs(truth) + x[i] * (std::fabs(dy[i]) + absdot));
      ASSERT_LE(std::fabs(dx[i] - truth), bound) << "n " << n << " i " << i;
    }
  }
}

TEST_P(SimdKernels, SumsInDoubleWithinTheStatedBound) {
  // Different association than a sequential double loop: |difference| <= 2 n 2^-53 sum |x|.
  for (size_t n : {0, 1, 7, 8, 2048, 2049, 100003}) {
    const Vec x = random_vec(n, uint32_t(n + 20), -3, 3);
    double s = 0, s2 = 0, abs_s = 0;
    for (float v : x) s += v, s2 += double(v) * v, abs_s += std::fabs(v);
    const double tol = 2.0 * double(n) * std::ldexp(1.0, -53);
    EXPECT_NEAR(k().sum(x.data(), int64_t(n)), s, tol * abs_s) << n;
    EXPECT_NEAR(k().sum_squares(x.data(), int64_t(n)), s2, tol * s2) << n;
  }
  // Integers: exact in any order.
  Vec big(5000, 1.0f);
  big[0] = 16777216.0f;
  EXPECT_EQ(k().sum(big.data(), 5000), 16777216.0 + 4999);
}

// RMSNorm rows against the formulas in double: out within 6 2^-24 of |out| (r from a double
// mean: the sqrt, the division and two products); dx within 8 2^-24 (|r g s| + |x k|), its two
// terms being able to cancel; ds within 4 2^-24 (|ds before| + |g x r|) per row.
TEST_P(SimdKernels, RmsNormRowsWithinTheStatedBound) {
  const double u = kEps24;
  for (size_t n : {1, 7, 16, 17, 256, 1000}) {
    const Vec x = random_vec(n, uint32_t(n + 40), -2, 2),
              sc = random_vec(n, uint32_t(n + 41), 0, 2);
    const Vec g = random_vec(n, uint32_t(n + 42), -1, 1);
    Vec out(n), dx(n), ds = random_vec(n, uint32_t(n + 43), -1, 1);
    const Vec ds0 = ds;
    const float eps = 1e-6f;
    const float r = k().rmsnorm_row(x.data(), sc.data(), eps, out.data(), int64_t(n));
    double ss = 0;
    for (float v : x) ss += double(v) * v;
    const double rt = 1.0 / std::sqrt(ss / double(n) + double(eps));
    EXPECT_NEAR(r, rt, 2 * u * rt) << n;
    k().rmsnorm_row_backward(g.data(), x.data(), sc.data(), r, dx.data(), ds.data(), int64_t(n));
    double dot = 0;
    for (size_t i = 0; i < n; ++i) dot += double(g[i]) * sc[i] * x[i];
    const double rd = r, kk = dot * rd * rd * rd / double(n);
    for (size_t i = 0; i < n; ++i) {
      const double ot = double(x[i]) * rt * sc[i];
      ASSERT_LE(std::fabs(out[i] - ot), 6 * u * std::fabs(ot)) << n << " " << i;
      const double a = rd * g[i] * sc[i], b = double(x[i]) * kk;
      ASSERT_LE(std::fabs(dx[i] - (a - b)), 8 * u * (std::fabs(a) + std::fabs(b))) << n << " " << i;
      const double dst = double(ds0[i]) + double(g[i]) * x[i] * rd;
      ASSERT_LE(std::fabs(ds[i] - dst), 4 * u * (std::fabs(ds0[i]) + std::fabs(dst - ds0[i])))
          << n << " " << i;
    }
  }
}

TEST_P(SimdKernels, AdamWWithinTheStatedBoundOfTheScalarFormula) {
  // Against math::adamw_update in double from the same f32 state: each of p, m, v within
  // 8 2^-24 of (|value| + |what the step added|), a few roundings of each term.
  const size_t n = 1031;
  Vec p = random_vec(n, 30, -1, 1), m = random_vec(n, 31, -0.1f, 0.1f),
      v = random_vec(n, 32, 0, 0.01f), g = random_vec(n, 33, -2, 2);
  const AdamWStep step{.lr = 1e-2,
                       .beta1 = 0.9,
                       .beta2 = 0.98,
                       .eps = 1e-6,
                       .weight_decay = 0.1,
                       .step = 7,
                       .grad_scale = 0.5};
  math::AdamWCoeffs<float> cf{};
  math::AdamWCoeffs<double> cd{};
  const double t = 7;
  cd = {step.lr,
        step.beta1,
        1 - step.beta1,
        step.beta2,
        1 - step.beta2,
        step.eps,
        step.weight_decay,
        step.grad_scale,
        1 / (1 - std::pow(step.beta1, t)),
        1 / std::sqrt(1 - std::pow(step.beta2, t))};
  cf = {float(cd.lr),
        float(cd.beta1),
        float(cd.one_minus_beta1),
        float(cd.beta2),
        float(cd.one_minus_beta2),
        float(cd.eps),
        float(cd.weight_decay),
        float(cd.grad_scale),
        float(cd.inv_bias1),
        float(cd.inv_sqrt_bias2)};
  Vec p1 = p, m1 = m, v1 = v;
  k().adamw(p1.data(), m1.data(), v1.data(), g.data(), int64_t(n), cf);
  for (size_t i = 0; i < n; ++i) {
    double pd = p[i], md = m[i], vd = v[i];
    math::adamw_update(pd, md, vd, double(g[i]), cd);
    const double tol = 8 * kEps24;
    ASSERT_LE(std::fabs(m1[i] - md), tol * (std::fabs(md) + std::fabs(md - m[i]))) << i;
    ASSERT_LE(std::fabs(v1[i] - vd), tol * (std::fabs(vd) + std::fabs(vd - v[i]))) << i;
    ASSERT_LE(std::fabs(p1[i] - pd), tol * (std::fabs(pd) + std::fabs(pd - p[i]))) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(EachInstructionSet, SimdKernels, ::testing::ValuesIn(kernel_sets()),
                         [](const auto& info) { return std::string(info.param->name); });

TEST(SimdKernels, ChoosesTheWidestSetSupported) {
  if (std::getenv("MOWE_CPU_SIMD") != nullptr) GTEST_SKIP() << "MOWE_CPU_SIMD forces a choice";
  EXPECT_STREQ(kernels().name,
               avx512_supported() ? "avx512" : (avx2_supported() ? "avx2" : "sse2"));
}

}  // namespace
}  // namespace mowe::cpu::simd
