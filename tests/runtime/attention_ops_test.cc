#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/math.h"
#include "tests/util/expect_error.h"
#include "tests/util/gradcheck.h"

namespace mowe {
namespace {

using testing::expect_error;
using testing::get;
using testing::random_buffer;
using testing::set;

// Expected buckets from an independent implementation of T5's _relative_position_bucket
// (32 buckets, max distance 128), evaluated in float32 as the reference code does.
TEST(RelativePositionBucket, MatchesT5Reference) {
  const std::vector<int> rel = {-200, -128, -64, -20, -9, -8, -7,  -1,  0,  1,
                                2,    7,    8,   9,   20, 64, 127, 128, 500};
  const std::vector<int> bidirectional = {15, 15, 14, 10, 8,  8,  7,  1,  0, 17,
                                          18, 23, 24, 24, 26, 30, 31, 31, 31};
  const std::vector<int> causal = {31, 31, 26, 17, 9, 8, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  for (size_t i = 0; i < rel.size(); ++i) {
    EXPECT_EQ(math::relative_position_bucket(rel[i], true, 32, 128), bidirectional[i]) << rel[i];
    EXPECT_EQ(math::relative_position_bucket(rel[i], false, 32, 128), causal[i]) << rel[i];
  }
}

TEST(PositionBias, LaysOutTableByBucketOfKeyMinusQuery) {
  const int64_t k = 32, h = 2, t = 3, s = 4;
  Buffer table = random_buffer({k, h}, 1);
  Buffer out = testing::host_buffer({h, t, s});
  cpu_backend().position_bias_forward({}, table, out, true, 128);
  for (int64_t hh = 0; hh < h; ++hh)
    for (int64_t i = 0; i < t; ++i)
      for (int64_t j = 0; j < s; ++j) {
        int b = math::relative_position_bucket(static_cast<int>(j - i), true, 32, 128);
        EXPECT_EQ(get(out, (hh * t + i) * s + j), get(table, b * h + hh));
      }
}

TEST(PositionBias, GradientsMatchFiniteDifferences) {
  for (bool bidirectional : {true, false}) {
    const int64_t k = 8, h = 2, t = 5, s = 6;
    Buffer table = random_buffer({k, h}, 2), g = random_buffer({h, t, s}, 3);
    Buffer out = testing::host_buffer({h, t, s}), dtable = testing::host_buffer({k, h});
    cpu_backend().position_bias_backward({}, g, dtable, bidirectional, 16);
    testing::check_gradients(
        [&] {
          cpu_backend().position_bias_forward({}, table, out, bidirectional, 16);
          return testing::dot(out, g);
        },
        {{"table", table, dtable}});
  }
}

// The message of the Error f throws, or "" when it does not throw.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// relative_position_bucket divides by log(max_distance / (num_buckets / 2)).
TEST(PositionBias, RejectsMaxDistanceAtOrBelowHalfTheBuckets) {
  Buffer table = random_buffer({8, 2}, 1), out = testing::host_buffer({2, 3, 3});
  for (bool bidirectional : {true, false}) {
    const std::string forward =
        error_of([&] { cpu_backend().position_bias_forward({}, table, out, bidirectional, 4); });
    EXPECT_NE(forward.find("position_bias_forward: max_distance 4 must be > num_buckets / 2 (4)"),
              std::string::npos)
        << forward;
    const std::string backward =
        error_of([&] { cpu_backend().position_bias_backward({}, out, table, bidirectional, 3); });
    EXPECT_NE(backward.find("position_bias_backward: max_distance 3 must be > num_buckets / 2 (4)"),
              std::string::npos)
        << backward;
    EXPECT_NO_THROW(cpu_backend().position_bias_forward({}, table, out, bidirectional, 5));
  }
}

// One head, D = 1: scores are products of scalars, so the result can be written by hand.
TEST(Attention, HandComputedSingleHead) {
  Arena arena(host_allocator());
  Context ctx{.scratch = &arena};
  Buffer q = testing::host_buffer({1, 2, 1, 1}), k = testing::host_buffer({1, 2, 1, 1});
  Buffer v = testing::host_buffer({1, 2, 1, 1});
  set(q, 0, 1.0), set(q, 1, 2.0);
  set(k, 0, 0.5), set(k, 1, -1.0);
  set(v, 0, 3.0), set(v, 1, 5.0);
  Buffer probs = testing::host_buffer({1, 1, 2, 2}), out = testing::host_buffer({1, 2, 1, 1});
  cpu_backend().attention_forward(ctx, q, k, v, {}, {}, {}, probs, out);
  // Query 0: scores (0.5, -1.0), no 1/sqrt(D) scaling; softmax weight of key 0 = 1/(1+e^-1.5).
  const double p00 = 1 / (1 + std::exp(-1.5));
  EXPECT_NEAR(get(probs, 0), p00, 1e-14);
  EXPECT_NEAR(get(out, 0), 3 * p00 + 5 * (1 - p00), 1e-14);
  // Query 1: scores (1.0, -2.0).
  const double p10 = 1 / (1 + std::exp(-3.0));
  EXPECT_NEAR(get(out, 1), 3 * p10 + 5 * (1 - p10), 1e-14);

  // Causal: query 0 sees only key 0; query 1 is unchanged.
  cpu_backend().attention_forward(ctx, q, k, v, {}, {},
                                  {.causal = true, .mask_value = -1e9, .dropout = {}}, probs, out);
  EXPECT_NEAR(get(out, 0), 3.0, 1e-12);
  EXPECT_NEAR(get(out, 1), 3 * p10 + 5 * (1 - p10), 1e-14);

  // Padding: key 1 masked, so every query takes v[0].
  Buffer valid = testing::ids_buffer({1, 0});
  Tensor valid2 = valid.tensor().reshape({1, 2});
  cpu_backend().attention_forward(ctx, q, k, v, {}, valid2, {}, probs, out);
  EXPECT_NEAR(get(out, 0), 3.0, 1e-12);
  EXPECT_NEAR(get(out, 1), 3.0, 1e-12);

  // Bias is added to the scores before the softmax.
  Buffer bias = testing::host_buffer({1, 2, 2});
  set(bias, 1, 1.5);  // query 0, key 1: scores become (0.5, 0.5)
  cpu_backend().attention_forward(ctx, q, k, v, bias, {}, {}, probs, out);
  EXPECT_NEAR(get(out, 0), 4.0, 1e-14);
}

struct AttnCase {
  int64_t b, t, s, h, d;
  bool causal, padding, bias;
  float dropout = 0.0f;  // attention-probability dropout, with a fixed seed (the mask is fixed)
};

class AttentionGrad : public ::testing::TestWithParam<AttnCase> {};

TEST_P(AttentionGrad, GradientsMatchFiniteDifferences) {
  const AttnCase c = GetParam();
  Arena arena(host_allocator());
  Context ctx{.scratch = &arena};
  Buffer q = random_buffer({c.b, c.t, c.h, c.d}, 1), k = random_buffer({c.b, c.s, c.h, c.d}, 2);
  Buffer v = random_buffer({c.b, c.s, c.h, c.d}, 3), g = random_buffer({c.b, c.t, c.h, c.d}, 4);
  Buffer bias = random_buffer({c.h, c.t, c.s}, 5);
  std::vector<int32_t> valid_ids(c.b * c.s, 1);
  if (c.padding) valid_ids[c.s - 1] = 0, valid_ids[c.b * c.s - 2] = 0;
  Buffer valid = testing::ids_buffer(valid_ids);
  Tensor valid2 = c.padding ? valid.tensor().reshape({c.b, c.s}) : Tensor();
  Tensor bias_t = c.bias ? Tensor(bias) : Tensor();
  Buffer probs = testing::host_buffer({c.b, c.h, c.t, c.s});
  Buffer out = testing::host_buffer({c.b, c.t, c.h, c.d});
  Buffer dq = testing::host_buffer(q.tensor().shape), dk = testing::host_buffer(k.tensor().shape);
  Buffer dv = testing::host_buffer(v.tensor().shape), dbias = testing::host_buffer({c.h, c.t, c.s});
  AttentionArgs args{.causal = c.causal, .dropout = {c.dropout, 1234}};
  auto loss = [&] {
    cpu_backend().attention_forward(ctx, q, k, v, bias_t, valid2, args, probs, out);
    return testing::dot(out, g);
  };
  loss();
  cpu_backend().attention_backward(ctx, g, q, k, v, probs, dq, dk, dv,
                                   c.bias ? Tensor(dbias) : Tensor(), args.dropout);
  std::vector<testing::GradInput> inputs = {{"q", q, dq}, {"k", k, dk}, {"v", v, dv}};
  if (c.bias) inputs.push_back({"bias", bias, dbias});
  testing::check_gradients(loss, inputs);
  EXPECT_EQ(arena.bytes_in_use(), 0u) << "scratch must be released";
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, AttentionGrad,
    ::testing::Values(AttnCase{1, 3, 3, 1, 2, false, false, false},  // plain
                      AttnCase{2, 4, 4, 2, 3, true, true, true},     // decoder self-attention
                      AttnCase{2, 3, 5, 2, 2, false, true, false},   // cross-attention, T != S
                      AttnCase{1, 4, 4, 3, 2, false, false, true},   // encoder with bias
                      // With dropout on the probabilities (T5X's attention dropout).
                      AttnCase{2, 4, 4, 2, 3, true, true, true, 0.3f},
                      AttnCase{2, 3, 5, 2, 2, false, true, false, 0.5f},
                      AttnCase{1, 6, 6, 3, 2, false, false, true, 0.1f}));

// With v one-hot over the keys (D = S), out[b,t,h,:] is row (t) of head h's dropped-out
// probabilities: exactly dropout_forward applied to probs with the same (rate, seed), probs
// itself left undropped. The share of dropped entries matches the rate.
TEST(Attention, DropoutIsDropoutForwardOfTheProbabilities) {
  const int64_t b = 4, t = 64, s = 64, h = 4, d = s;
  Arena arena(host_allocator());
  Context ctx{.scratch = &arena};
  // Small scores, so no probability underflows to 0 and every zero in out is a dropped one.
  Buffer q = random_buffer({b, t, h, d}, 1, -0.2, 0.2);
  Buffer k = random_buffer({b, s, h, d}, 2, -0.2, 0.2);
  Buffer v = testing::host_buffer({b, s, h, d});
  for (int64_t i = 0; i < b * s * h; ++i) set(v, i * d + (i / h) % s, 1.0);  // v[b,j,h,:] = e_j
  Buffer probs = testing::host_buffer({b, h, t, s}), out = testing::host_buffer({b, t, h, d});
  Buffer probs_ref = testing::host_buffer({b, h, t, s});
  Buffer out_ref = testing::host_buffer({b, t, h, d});
  auto forward = [&](const AttentionArgs& args, const Tensor& p, const Tensor& o) {
    cpu_backend().attention_forward(ctx, q, k, v, {}, {}, args, p, o);
  };
  const float rate = 0.3f;
  const uint64_t seed = 77;
  forward({.dropout = {rate, seed}}, probs, out);
  forward({}, probs_ref, out_ref);
  Buffer dropped = testing::host_buffer({b, h, t, s});
  cpu_backend().dropout_forward(ctx, probs_ref, dropped, rate, seed);
  int64_t zeros = 0;
  for (int64_t bi = 0; bi < b; ++bi)
    for (int64_t hi = 0; hi < h; ++hi)
      for (int64_t ti = 0; ti < t; ++ti)
        for (int64_t j = 0; j < s; ++j) {
          const int64_t pi = ((bi * h + hi) * t + ti) * s + j;
          const int64_t oi = ((bi * t + ti) * h + hi) * d + j;
          ASSERT_EQ(get(probs, pi), get(probs_ref, pi)) << "probs must stay undropped";
          ASSERT_NEAR(get(out, oi), get(dropped, pi), 1e-15) << pi;
          ASSERT_NEAR(get(out_ref, oi), get(probs_ref, pi), 1e-15) << pi;
          zeros += get(out, oi) == 0.0;
        }
  const double share = double(zeros) / double(b * h * t * s);
  EXPECT_NEAR(share, rate, 0.01) << zeros << " of " << b * h * t * s;
}

// Rate 0 (evaluation) is the attention without dropout, bit for bit, whatever the seed.
TEST(Attention, ZeroDropoutRateIsNoDropout) {
  Arena arena(host_allocator());
  Context ctx{.scratch = &arena};
  Buffer q = random_buffer({2, 5, 2, 3}, 1), k = random_buffer({2, 5, 2, 3}, 2);
  Buffer v = random_buffer({2, 5, 2, 3}, 3), g = random_buffer({2, 5, 2, 3}, 4);
  Buffer p1 = testing::host_buffer({2, 2, 5, 5}), o1 = testing::host_buffer({2, 5, 2, 3});
  Buffer p2 = testing::host_buffer({2, 2, 5, 5}), o2 = testing::host_buffer({2, 5, 2, 3});
  cpu_backend().attention_forward(ctx, q, k, v, {}, {},
                                  {.causal = true, .mask_value = -1e9, .dropout = {}}, p1, o1);
  cpu_backend().attention_forward(ctx, q, k, v, {}, {}, {.causal = true, .dropout = {0.0f, 9}}, p2,
                                  o2);
  Buffer dq1 = testing::host_buffer({2, 5, 2, 3}), dk1 = testing::host_buffer({2, 5, 2, 3});
  Buffer dv1 = testing::host_buffer({2, 5, 2, 3}), dq2 = testing::host_buffer({2, 5, 2, 3});
  Buffer dk2 = testing::host_buffer({2, 5, 2, 3}), dv2 = testing::host_buffer({2, 5, 2, 3});
  cpu_backend().attention_backward(ctx, g, q, k, v, p1, dq1, dk1, dv1, {}, {});
  cpu_backend().attention_backward(ctx, g, q, k, v, p2, dq2, dk2, dv2, {}, {0.0f, 9});
  for (auto [a, b] : {std::pair{&o1, &o2}, {&p1, &p2}, {&dq1, &dq2}, {&dk1, &dk2}, {&dv1, &dv2}})
    for (int64_t i = 0; i < a->tensor().numel(); ++i) ASSERT_EQ(get(*a, i), get(*b, i)) << i;
}

TEST(Attention, BackwardWithoutScratchIsAnError) {
  Buffer q = random_buffer({1, 2, 1, 2}, 1), p = testing::host_buffer({1, 1, 2, 2});
  expect_error([&] { cpu_backend().attention_backward({}, q, q, q, q, p, q, q, q, {}, {}); },
               {"scratch arena"});
}

}  // namespace
}  // namespace mowe
