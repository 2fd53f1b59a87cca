#include "model/parameters.h"

#include <gtest/gtest.h>

#include <cmath>

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

TEST(ParameterStore, NormalStatisticsAndTruncation) {
  ParameterStore s(host_allocator(), DType::F64, 3);
  const int64_t n = 200000;
  s.add("n", {n}, ParamKind::Dense, {Init::Normal, 2.0});
  s.add("t", {n}, ParamKind::Dense, {Init::TruncatedNormal, 2.0});
  double sum = 0, sq = 0, max_t = 0;
  for (int64_t i = 0; i < n; ++i) {
    double v = get(s.get("n").value, i);
    sum += v, sq += v * v;
    max_t = std::max(max_t, std::abs(get(s.get("t").value, i)));
  }
  EXPECT_NEAR(sum / n, 0.0, 0.03);            // ~7 standard errors
  EXPECT_NEAR(std::sqrt(sq / n), 2.0, 0.03);  // ~7 standard errors of the std estimate
  EXPECT_LE(max_t, 4.0);
  EXPECT_GT(max_t, 3.9);  // the truncation point is reached, not a narrower range
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
