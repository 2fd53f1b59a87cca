#include <gtest/gtest.h>

#include <cmath>

#include "runtime/backend.h"
#include "tests/util/expect_error.h"
#include "tests/util/gradcheck.h"

namespace mowe {
namespace {

using testing::expect_error;
using testing::get;
using testing::random_buffer;
using testing::set;

TEST(Embedding, LooksUpRowsAndScatterAddsRepeatedIds) {
  Buffer table = random_buffer({5, 3}, 1);
  Buffer ids = testing::ids_buffer({4, 0, 4});
  Buffer out = testing::host_buffer({3, 3});
  cpu_backend().embedding_forward({}, table, ids, out);
  for (int j = 0; j < 3; ++j) {
    EXPECT_EQ(get(out, j), get(table, 4 * 3 + j));
    EXPECT_EQ(get(out, 3 + j), get(table, j));
  }
  Buffer dout = random_buffer({3, 3}, 2), dtable = testing::host_buffer({5, 3});
  cpu_backend().embedding_backward({}, dout, ids, dtable);
  for (int j = 0; j < 3; ++j) {
    EXPECT_DOUBLE_EQ(get(dtable, 4 * 3 + j), get(dout, j) + get(dout, 6 + j));
    EXPECT_EQ(get(dtable, 3 + j), 0.0);
  }
  testing::check_gradients(
      [&] { return cpu_backend().embedding_forward({}, table, ids, out), testing::dot(out, dout); },
      {{"table", table, dtable}});
}

TEST(Embedding, RejectsIdOutsideTheTable) {
  Buffer table = random_buffer({5, 3}, 1), ids = testing::ids_buffer({1, 5});
  Buffer out = testing::host_buffer({2, 3});
  expect_error([&] { cpu_backend().embedding_forward({}, table, ids, out); },
               {"id 5 at position 1 is outside [0, 5)"});
}

TEST(CrossEntropy, HandComputedValuesWithZLossAndPadding) {
  // Row 0: logits (0, 0) -> lse = ln 2, loss = ln 2 + z (ln 2)^2. Row 1 is padding (weight 0).
  Buffer logits = testing::host_buffer({2, 2}), targets = testing::ids_buffer({0, 1});
  Buffer weights = testing::host_buffer({2}), losses = testing::host_buffer({2});
  Buffer lse = testing::host_buffer({2});
  set(logits, 2, 5.0);
  set(weights, 0, 1.0);
  const double z = 1e-4, ln2 = std::log(2.0);
  cpu_backend().cross_entropy_forward({}, logits, targets, weights, z, losses, lse);
  EXPECT_NEAR(get(lse, 0), ln2, 1e-15);
  EXPECT_NEAR(get(losses, 0), ln2 + z * ln2 * ln2, 1e-15);
  EXPECT_EQ(get(losses, 1), 0.0);
  Buffer dlogits = testing::host_buffer({2, 2});
  cpu_backend().cross_entropy_backward({}, logits, targets, weights, z, lse, 1.0, dlogits);
  EXPECT_NEAR(get(dlogits, 0), 0.5 * (1 + 2 * z * ln2) - 1, 1e-15);
  EXPECT_NEAR(get(dlogits, 1), 0.5 * (1 + 2 * z * ln2), 1e-15);
  EXPECT_EQ(get(dlogits, 2), 0.0);
  EXPECT_EQ(get(dlogits, 3), 0.0);
}

TEST(CrossEntropy, GradientsMatchFiniteDifferences) {
  const int64_t n = 4, v = 7;
  Buffer logits = random_buffer({n, v}, 3, -3, 3), targets = testing::ids_buffer({6, 0, 3, 3});
  Buffer weights = testing::host_buffer({n});
  set(weights, 0, 1.0), set(weights, 1, 0.0), set(weights, 2, 2.0), set(weights, 3, 0.5);
  Buffer losses = testing::host_buffer({n}), lse = testing::host_buffer({n});
  Buffer dlogits = testing::host_buffer({n, v});
  const double z = 0.1, scale = 0.25;  // a large z so the z-loss term is really checked
  auto loss = [&] {
    cpu_backend().cross_entropy_forward({}, logits, targets, weights, z, losses, lse);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += get(losses, i);
    return scale * s;
  };
  loss();
  cpu_backend().cross_entropy_backward({}, logits, targets, weights, z, lse, scale, dlogits);
  testing::check_gradients(loss, {{"logits", logits, dlogits}});
}

}  // namespace
}  // namespace mowe
