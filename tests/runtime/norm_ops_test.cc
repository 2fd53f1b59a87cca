#include <gtest/gtest.h>

#include <cmath>

#include "runtime/backend.h"
#include "tests/util/gradcheck.h"

namespace mowe {
namespace {

using testing::get;
using testing::random_buffer;

TEST(RmsNorm, HandComputedValues) {
  // Row [3, 4]: mean square 12.5, so y = x / sqrt(12.5 + eps) * scale; no mean subtraction.
  Buffer x = testing::host_buffer({1, 2}), scale = testing::host_buffer({2});
  testing::set(x, 0, 3);
  testing::set(x, 1, 4);
  testing::set(scale, 0, 1);
  testing::set(scale, 1, 2);
  Buffer y = testing::host_buffer({1, 2}), rstd = testing::host_buffer({1});
  cpu_backend().rmsnorm_forward({}, x, scale, y, rstd, 1e-6);
  const double r = 1.0 / std::sqrt(12.5 + 1e-6);
  EXPECT_NEAR(get(rstd, 0), r, 1e-15);
  EXPECT_NEAR(get(y, 0), 3 * r, 1e-15);
  EXPECT_NEAR(get(y, 1), 8 * r, 1e-15);
}

TEST(RmsNorm, GradientsMatchFiniteDifferences) {
  const int64_t n = 4, c = 6;
  Buffer x = random_buffer({2, 2, c}, 1), scale = random_buffer({c}, 2, 0.5, 1.5);
  Buffer g = random_buffer({2, 2, c}, 3);
  Buffer y = testing::host_buffer({2, 2, c}), rstd = testing::host_buffer({n});
  Buffer dx = testing::host_buffer({2, 2, c}), dscale = testing::host_buffer({c});
  cpu_backend().rmsnorm_forward({}, x, scale, y, rstd, 1e-6);
  cpu_backend().rmsnorm_backward({}, g, x, scale, rstd, dx, dscale);
  auto loss = [&] {
    cpu_backend().rmsnorm_forward({}, x, scale, y, rstd, 1e-6);
    return testing::dot(y, g);
  };
  testing::check_gradients(loss, {{"x", x, dx}, {"scale", scale, dscale}});
}

TEST(RmsNorm, ScaleGradientAccumulates) {
  Buffer x = random_buffer({3, 4}, 4), scale = random_buffer({4}, 5);
  Buffer g = random_buffer({3, 4}, 6), y = testing::host_buffer({3, 4});
  Buffer rstd = testing::host_buffer({3}), dx = testing::host_buffer({3, 4});
  Buffer once = testing::host_buffer({4}), twice = testing::host_buffer({4});
  cpu_backend().rmsnorm_forward({}, x, scale, y, rstd, 1e-6);
  cpu_backend().rmsnorm_backward({}, g, x, scale, rstd, dx, once);
  cpu_backend().rmsnorm_backward({}, g, x, scale, rstd, dx, twice);
  cpu_backend().rmsnorm_backward({}, g, x, scale, rstd, dx, twice);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(get(twice, i), 2 * get(once, i), 1e-14);
}

}  // namespace
}  // namespace mowe
