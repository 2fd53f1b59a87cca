#include <gtest/gtest.h>

#include "runtime/backend.h"
#include "tests/util/expect_error.h"
#include "tests/util/gradcheck.h"

namespace mowe {
namespace {

using testing::expect_error;
using testing::get;
using testing::random_buffer;

// Naive reference: element (i, j) of op(a) op(b) for row-major stored a and b.
double ref_element(const Tensor& a, const Tensor& b, bool ta, bool tb, int64_t i, int64_t j,
                   int64_t k) {
  double s = 0;
  for (int64_t p = 0; p < k; ++p) {
    double x = ta ? get(a, p * a.cols() + i) : get(a, i * a.cols() + p);
    double y = tb ? get(b, j * b.cols() + p) : get(b, p * b.cols() + j);
    s += x * y;
  }
  return s;
}

class MatmulTest : public ::testing::TestWithParam<std::tuple<bool, bool, DType>> {};

TEST_P(MatmulTest, MatchesNaiveReferenceWithAlphaBeta) {
  auto [ta, tb, dtype] = GetParam();
  const int64_t m = 5, n = 7, k = 3;
  Buffer a = random_buffer(ta ? Shape{k, m} : Shape{m, k}, 1, -1, 1, dtype);
  Buffer b = random_buffer(tb ? Shape{n, k} : Shape{k, n}, 2, -1, 1, dtype);
  Buffer c = random_buffer({m, n}, 3, -1, 1, dtype);
  Buffer c0 = random_buffer({m, n}, 3, -1, 1, dtype);
  cpu_backend().matmul({}, a, b, c, ta, tb, 0.5f, 2.0f);
  const double tol = dtype == DType::F32 ? 1e-5 : 1e-12;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      double want = 0.5 * ref_element(a, b, ta, tb, i, j, k) + 2.0 * get(c0, i * n + j);
      EXPECT_NEAR(get(c, i * n + j), want, tol) << i << "," << j;
    }
  }
}

TEST_P(MatmulTest, BatchedMatchesPerGroupReference) {
  auto [ta, tb, dtype] = GetParam();
  const int64_t g = 3, m = 4, n = 2, k = 5;
  Buffer a = random_buffer(ta ? Shape{g, k, m} : Shape{g, m, k}, 4, -1, 1, dtype);
  Buffer b = random_buffer(tb ? Shape{g, n, k} : Shape{g, k, n}, 5, -1, 1, dtype);
  Buffer c = testing::host_buffer({g, m, n}, dtype);
  cpu_backend().batched_matmul({}, a, b, c, ta, tb, 1.0f, 0.0f);
  const double tol = dtype == DType::F32 ? 1e-5 : 1e-12;
  for (int64_t x = 0; x < g; ++x) {
    Tensor ax = a.tensor().rows_slice(x, x + 1).reshape({a.tensor().dim(1), a.tensor().dim(2)});
    Tensor bx = b.tensor().rows_slice(x, x + 1).reshape({b.tensor().dim(1), b.tensor().dim(2)});
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j)
        EXPECT_NEAR(get(c, (x * m + i) * n + j), ref_element(ax, bx, ta, tb, i, j, k), tol);
  }
}

TEST_P(MatmulTest, BackwardMatchesFiniteDifferences) {
  auto [ta, tb, dtype] = GetParam();
  if (dtype != DType::F64) GTEST_SKIP() << "gradient checks run in double precision";
  for (bool batched : {false, true}) {
    const int64_t m = 3, n = 4, k = 2;
    auto shape = [&](int64_t r, int64_t c) { return batched ? Shape{2, r, c} : Shape{r, c}; };
    Buffer a = random_buffer(ta ? shape(k, m) : shape(m, k), 6);
    Buffer b = random_buffer(tb ? shape(n, k) : shape(k, n), 7);
    Buffer g = random_buffer(shape(m, n), 8);
    Buffer c = testing::host_buffer(shape(m, n));
    Buffer da = testing::host_buffer(a.tensor().shape), db = testing::host_buffer(b.tensor().shape);
    auto forward = [&] {
      if (batched) {
        cpu_backend().batched_matmul({}, a, b, c, ta, tb);
      } else {
        cpu_backend().matmul({}, a, b, c, ta, tb);
      }
      return testing::dot(c, g);
    };
    matmul_backward(cpu_backend(), {}, g, a, b, da, db, ta, tb);
    testing::check_gradients(forward, {{"a", a, da}, {"b", b, db}});
  }
}

INSTANTIATE_TEST_SUITE_P(AllTransposes, MatmulTest,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(),
                                            ::testing::Values(DType::F32, DType::F64)));

TEST(Matmul, RejectsShapesThatDoNotChain) {
  Buffer a = testing::host_buffer({2, 3}), b = testing::host_buffer({4, 5});
  Buffer c = testing::host_buffer({2, 5});
  expect_error([&] { cpu_backend().matmul({}, a, b, c, false, false); },
               {"matmul: shapes do not chain"});
}

}  // namespace
}  // namespace mowe
