#include <gtest/gtest.h>

#include <cmath>

#include "runtime/backend.h"
#include "runtime/math.h"
#include "tests/util/gradcheck.h"

namespace mowe {
namespace {

using testing::get;
using testing::random_buffer;
Backend& cpu() {
  return cpu_backend();
}

Buffer values(std::initializer_list<double> v, Shape shape) {
  Buffer b = testing::host_buffer(shape);
  int64_t i = 0;
  for (double x : v) testing::set(b, i++, x);
  return b;
}

TEST(Gelu, HandComputedValues) {
  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), evaluated by hand for x = -1, 0, 1, 2.
  Buffer x = values({-1, 0, 1, 2}, {4});
  Buffer y = testing::host_buffer({4});
  cpu().gelu_forward({}, x, y);
  EXPECT_NEAR(get(y, 0), -0.15880800939172324, 1e-12);
  EXPECT_EQ(get(y, 1), 0.0);
  EXPECT_NEAR(get(y, 2), 0.8411919906082768, 1e-12);
  EXPECT_NEAR(get(y, 3), 1.954597694087775, 1e-12);
}

TEST(Gelu, GradientsMatchFiniteDifferences) {
  Buffer x = random_buffer({3, 5}, 1, -3, 3), g = random_buffer({3, 5}, 2);
  Buffer y = testing::host_buffer({3, 5}), dx = testing::host_buffer({3, 5});
  cpu().gelu_backward({}, g, x, dx);
  testing::check_gradients([&] { return cpu().gelu_forward({}, x, y), testing::dot(y, g); },
                           {{"x", x, dx}});
}

TEST(GatedGelu, ForwardIsGeluOfGateTimesLinear) {
  Buffer gate = values({1, -1}, {1, 2}), lin = values({2, 3}, {1, 2});
  Buffer y = testing::host_buffer({1, 2});
  cpu().gated_gelu_forward({}, gate, lin, y);
  EXPECT_NEAR(get(y, 0), 2 * 0.8411919906082768, 1e-12);
  EXPECT_NEAR(get(y, 1), 3 * -0.15880800939172324, 1e-12);
}

TEST(GatedGelu, GradientsMatchFiniteDifferences) {
  Buffer gate = random_buffer({4, 3}, 3, -2, 2), lin = random_buffer({4, 3}, 4);
  Buffer g = random_buffer({4, 3}, 5), y = testing::host_buffer({4, 3});
  Buffer dgate = testing::host_buffer({4, 3}), dlin = testing::host_buffer({4, 3});
  cpu().gated_gelu_backward({}, g, gate, lin, dgate, dlin);
  testing::check_gradients(
      [&] { return cpu().gated_gelu_forward({}, gate, lin, y), testing::dot(y, g); },
      {{"gate", gate, dgate}, {"linear", lin, dlin}});
}

TEST(Softmax, HandComputedValuesAndShiftInvariance) {
  Buffer x = values({1, 2, 3, 1001, 1002, 1003}, {2, 3});
  Buffer y = testing::host_buffer({2, 3});
  cpu().softmax_forward({}, x, y);
  const double want[3] = {0.09003057317038046, 0.24472847105479767, 0.6652409557748219};
  for (int r = 0; r < 2; ++r)
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(get(y, r * 3 + j), want[j], 1e-12);
}

TEST(Softmax, GradientsMatchFiniteDifferences) {
  Buffer x = random_buffer({3, 6}, 6, -2, 2), g = random_buffer({3, 6}, 7);
  Buffer y = testing::host_buffer({3, 6}), dx = testing::host_buffer({3, 6});
  cpu().softmax_forward({}, x, y);
  cpu().softmax_backward({}, g, y, dx);
  testing::check_gradients([&] { return cpu().softmax_forward({}, x, y), testing::dot(y, g); },
                           {{"x", x, dx}});
}

TEST(Dropout, SeededMaskIsReproducibleAndScaled) {
  const int64_t n = 100000;
  const float rate = 0.25f;
  Buffer x = random_buffer({n}, 8, 0.5, 1.5);
  Buffer y1 = testing::host_buffer({n}), y2 = testing::host_buffer({n});
  Buffer y3 = testing::host_buffer({n});
  cpu().dropout_forward({}, x, y1, rate, 42);
  cpu().dropout_forward({}, x, y2, rate, 42);
  cpu().dropout_forward({}, x, y3, rate, 43);
  int64_t dropped = 0, differ = 0;
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_EQ(get(y1, i), get(y2, i));
    const double v = get(y1, i);
    if (v == 0) {
      ++dropped;
    } else {
      EXPECT_NEAR(v, get(x, i) / (1 - rate), 1e-12);
    }
    differ += (v == 0) != (get(y3, i) == 0);
  }
  // Binomial(1e5, 0.25): sd ~137, so +-1000 is ~7 sd; the seed is fixed, so this never flakes.
  EXPECT_NEAR(static_cast<double>(dropped), rate * n, 1000.0);
  EXPECT_GT(differ, n / 10) << "another seed must give another mask";
}

TEST(Dropout, ZeroRateIsIdentityAndBadRateIsRejected) {
  Buffer x = random_buffer({10}, 9), y = testing::host_buffer({10});
  cpu().dropout_forward({}, x, y, 0.0f, 1);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(get(y, i), get(x, i));
  EXPECT_THROW(cpu().dropout_forward({}, x, y, 1.0f, 1), Error);
}

TEST(Dropout, GradientsMatchFiniteDifferences) {
  Buffer x = random_buffer({40}, 10), g = random_buffer({40}, 11);
  Buffer y = testing::host_buffer({40}), dx = testing::host_buffer({40});
  cpu().dropout_backward({}, g, dx, 0.3f, 7);
  testing::check_gradients(
      [&] { return cpu().dropout_forward({}, x, y, 0.3f, 7), testing::dot(y, g); }, {{"x", x, dx}});
}

TEST(Elementwise, FillAndAxpy) {
  Buffer x = values({1, 2, 3}, {3}), y = values({10, 20, 30}, {3});
  cpu().axpy({}, -2.0, x, y);
  EXPECT_EQ(get(y, 0), 8.0);
  EXPECT_EQ(get(y, 2), 24.0);
  cpu().fill({}, y, 0.5);
  EXPECT_EQ(get(y, 1), 0.5);
  Buffer z = testing::host_buffer({4});
  EXPECT_THROW(cpu().axpy({}, 1.0, x, z), Error);
}

}  // namespace
}  // namespace mowe
