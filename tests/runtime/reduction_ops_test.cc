// Backend::sum and Backend::sum_squares on the CPU against naive double sums.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "runtime/backend.h"
#include "tests/util/expect_error.h"
#include "tests/util/gradcheck.h"

namespace mowe {
namespace {

using testing::expect_error;
using testing::get;

struct Naive {
  double sum = 0, squares = 0;
};
Naive naive(const Tensor& x) {
  Naive n;
  for (int64_t i = 0; i < x.numel(); ++i) {
    n.sum += get(x, i);
    n.squares += get(x, i) * get(x, i);
  }
  return n;
}

TEST(Reductions, MatchNaiveDoubleSumsInF32AndF64) {
  Backend& cpu = cpu_backend();
  for (DType dtype : {DType::F32, DType::F64}) {
    for (Shape shape : {Shape{1}, Shape{7}, Shape{3, 5, 2}, Shape{}}) {
      Buffer x = testing::random_buffer(shape, 11, -3, 3, dtype);
      const Naive want = naive(x);
      if (dtype == DType::F64) {
        // The f64 path adds the same elements in the same order: equal, not just close.
        EXPECT_EQ(cpu.sum({}, x), want.sum) << dtype_name(dtype) << shape.str();
        EXPECT_EQ(cpu.sum_squares({}, x), want.squares) << dtype_name(dtype) << shape.str();
        continue;
      }
      // The f32 path adds in double across vector lanes and fixed chunks (docs/cpu_kernels.md),
      // another association than the naive loop: within 2 n 2^-53 of the sum of magnitudes,
      // the bound of two double summations of n terms (here ~1e-14 of values around 10).
      double magnitude = 0;
      for (int64_t i = 0; i < x.tensor().numel(); ++i) magnitude += std::fabs(get(x, i));
      const double tol = 2.0 * double(x.tensor().numel()) * std::ldexp(1.0, -53);
      EXPECT_NEAR(cpu.sum({}, x), want.sum, tol * magnitude) << shape.str();
      EXPECT_NEAR(cpu.sum_squares({}, x), want.squares, tol * want.squares) << shape.str();
    }
  }
}

TEST(Reductions, EmptyTensorsSumToZero) {
  Backend& cpu = cpu_backend();
  for (Shape shape : {Shape{0}, Shape{4, 0}, Shape{0, 3}}) {
    Buffer x = testing::host_buffer(shape, DType::F32);
    EXPECT_EQ(cpu.sum({}, x), 0.0);
    EXPECT_EQ(cpu.sum_squares({}, x), 0.0);
    // A view without data is fine when it has no elements.
    EXPECT_EQ(cpu.sum({}, Tensor(nullptr, DType::F64, Device::CPU, shape)), 0.0);
  }
}

TEST(Reductions, LargeF32InputsAccumulateInDouble) {
  // 2^24 followed by ones: a float accumulator stops at 2^24 (2^24 + 1 is not a float); the double
  // accumulator counts every one.
  const int64_t n = int64_t{1} << 22;
  Buffer x = testing::host_buffer({n}, DType::F32);
  float* p = x.tensor().ptr<float>();
  p[0] = 16777216.0f;
  for (int64_t i = 1; i < n; ++i) p[i] = 1.0f;
  EXPECT_EQ(cpu_backend().sum({}, x), 16777216.0 + double(n - 1));
  EXPECT_EQ(cpu_backend().sum_squares({}, x), 16777216.0 * 16777216.0 + double(n - 1));
}

TEST(Reductions, LargeRandomF64MatchesNaive) {
  Buffer x = testing::random_buffer({1000, 1037}, 5, -1, 1, DType::F64);
  const Naive want = naive(x);
  EXPECT_EQ(cpu_backend().sum({}, x), want.sum);
  EXPECT_EQ(cpu_backend().sum_squares({}, x), want.squares);
  // Closed form as an independent check: sum of 0..n-1 and of their squares, exact in double.
  const int64_t n = 100000;
  Buffer r = testing::host_buffer({n}, DType::F64);
  for (int64_t i = 0; i < n; ++i) testing::set(r, i, double(i));
  EXPECT_EQ(cpu_backend().sum({}, r), double(n) * double(n - 1) / 2);
  EXPECT_EQ(cpu_backend().sum_squares({}, r), double(n - 1) * double(n) * double(2 * n - 1) / 6);
}

// The device-side accumulation of a gradient norm: the bits of host additions in the same order.
TEST(Reductions, AccumulateSumSquaresAddsToTheTotalInOrder) {
  Backend& cpu = cpu_backend();
  Buffer a = testing::random_buffer({1000}, 1, -2, 2), b = testing::random_buffer({3, 7}, 2);
  Buffer d = testing::random_buffer({5}, 3, -1, 1, DType::F64);
  Buffer total = testing::host_buffer({1}, DType::F64);
  double want = 0.25;
  testing::set(total, 0, want);
  for (const Buffer* x : {&a, &b, &d}) {
    cpu.accumulate_sum_squares({}, *x, total);
    want += cpu.sum_squares({}, *x);
    EXPECT_EQ(get(total, 0), want);
  }
  EXPECT_NEAR(want, 0.25 + naive(a).squares + naive(b).squares + naive(d).squares, 1e-9);
  expect_error([&] { cpu.accumulate_sum_squares({}, a, a); },
               {"accumulate_sum_squares", "total must be one f64"});
}

TEST(Reductions, RejectBadInputs) {
  Backend& cpu = cpu_backend();
  Buffer ids = testing::ids_buffer({1, 2});
  expect_error([&] { cpu.sum({}, ids); }, {"sum: dtype i32 is not supported on the CPU backend"});
  expect_error([&] { cpu.sum_squares({}, Tensor(nullptr, DType::F32, Device::CPU, {2})); },
               {"sum_squares: f32[2]@cpu has no data"});
  const Tensor device(reinterpret_cast<void*>(uintptr_t{4096}), DType::F32, Device::CUDA, {2});
  expect_error([&] { cpu.sum({}, device); }, {"is not in host memory"});
}

}  // namespace
}  // namespace mowe
