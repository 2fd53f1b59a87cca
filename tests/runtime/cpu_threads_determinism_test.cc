// Every f32 CPU op gives the same bits whatever the number of pool threads (1 to 4), the property
// behind identical losses at 1, 2 and 4 ranks with different threads per rank, and bit-exact
// resume; and the f32 optimizer updates stay within a stated bound of the scalar f64 path.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/context.h"
#include "runtime/cpu/thread_pool.h"
#include "tests/util/gradcheck.h"

namespace mowe {
namespace {

using testing::get;

Buffer f32(Shape shape, uint64_t seed, double lo = -3, double hi = 3) {
  return testing::random_buffer(shape, seed, lo, hi, DType::F32);
}
std::vector<float> bits(const Tensor& t) {
  std::vector<float> v(size_t(t.numel()));
  std::memcpy(v.data(), t.data, t.nbytes());
  return v;
}
void copy(const Tensor& from, const Tensor& to) {
  std::memcpy(to.data, from.data, from.nbytes());
}

// Runs `op` (which writes into `outputs`, starting from `inputs` restored each time) with 1, 2,
// 3 and 4 pool threads and expects the same bits as with 1.
class CpuThreadsDeterminism : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = cpu::pool_threads(); }
  void TearDown() override { cpu::set_pool_threads(saved_); }

  void expect_same_bits(const std::string& what, const std::vector<Tensor>& state,
                        const std::function<std::vector<double>()>& op) {
    std::vector<Buffer> initial;
    for (const Tensor& t : state) {
      initial.emplace_back(host_allocator(), t.shape, t.dtype);
      copy(t, initial.back());
    }
    std::vector<std::vector<float>> want;
    std::vector<double> want_scalars;
    for (int threads : {1, 2, 3, 4}) {
      cpu::set_pool_threads(threads);
      for (size_t i = 0; i < state.size(); ++i) copy(initial[i], state[i]);
      const std::vector<double> scalars = op();
      std::vector<std::vector<float>> got;
      for (const Tensor& t : state) got.push_back(bits(t));
      if (threads == 1) {
        want = got;
        want_scalars = scalars;
        continue;
      }
      for (size_t i = 0; i < state.size(); ++i) {
        ASSERT_EQ(std::memcmp(got[i].data(), want[i].data(), got[i].size() * sizeof(float)), 0)
            << what << ": tensor " << i << " differs with " << threads << " threads";
      }
      ASSERT_EQ(scalars, want_scalars) << what << " with " << threads << " threads";
    }
  }

  Backend& cpu = cpu_backend();
  int saved_ = 1;
};

TEST_F(CpuThreadsDeterminism, ElementwiseActivationsAndDropout) {
  // Sizes that are multiples of nothing, so tasks end mid-vector.
  Buffer x = f32({257, 1031}, 1), g = f32({257, 1031}, 2), lin = f32({257, 1031}, 3);
  Buffer y = testing::host_buffer({257, 1031}, DType::F32),
         d1 = testing::host_buffer({257, 1031}, DType::F32),
         d2 = testing::host_buffer({257, 1031}, DType::F32);
  expect_same_bits("gelu", {x, y, d1}, [&] {
    cpu.gelu_forward({}, x, y);
    cpu.gelu_backward({}, g, x, d1);
    return std::vector<double>{};
  });
  expect_same_bits("gated gelu", {y, d1, d2}, [&] {
    cpu.gated_gelu_forward({}, x, lin, y);
    cpu.gated_gelu_backward({}, g, x, lin, d1, d2);
    return std::vector<double>{};
  });
  // 257 rows: a grain of 63 rows of 1031 leaves a short last task.
  Buffer scale = f32({1031}, 6, 0, 2), rstd = testing::host_buffer({257}, DType::F32),
         dscale = f32({1031}, 7);
  expect_same_bits("rmsnorm", {y, rstd, d1, dscale}, [&] {
    cpu.rmsnorm_forward({}, x, scale, y, rstd, 1e-6);
    cpu.rmsnorm_backward({}, g, x, scale, rstd, d1, dscale);
    return std::vector<double>{};
  });
  expect_same_bits("dropout, axpy, fill", {y, d1, d2}, [&] {
    cpu.dropout_forward({}, x, y, 0.1f, 77);
    cpu.axpy({}, 0.37, x, d1);
    cpu.fill({}, d2, 0.1);
    return std::vector<double>{};
  });
}

TEST_F(CpuThreadsDeterminism, SoftmaxAttentionAndLoss) {
  Buffer x = f32({301, 67}, 4), g = f32({301, 67}, 5);
  Buffer y = testing::host_buffer({301, 67}, DType::F32),
         dx = testing::host_buffer({301, 67}, DType::F32);
  expect_same_bits("softmax", {y, dx}, [&] {
    cpu.softmax_forward({}, x, y);
    cpu.softmax_backward({}, g, y, dx);
    return std::vector<double>{};
  });

  const int64_t b = 2, t = 37, s = 300, h = 2, dh = 8;
  Buffer q = f32({b, t, h, dh}, 6, -1, 1), k = f32({b, s, h, dh}, 7, -1, 1),
         v = f32({b, s, h, dh}, 8, -1, 1), bias = f32({h, t, s}, 9, -1, 1),
         dout = f32({b, t, h, dh}, 10);
  Buffer probs = testing::host_buffer({b, h, t, s}, DType::F32),
         out = testing::host_buffer({b, t, h, dh}, DType::F32),
         dq = testing::host_buffer({b, t, h, dh}, DType::F32),
         dk = testing::host_buffer({b, s, h, dh}, DType::F32),
         dv = testing::host_buffer({b, s, h, dh}, DType::F32),
         dbias = testing::host_buffer({h, t, s}, DType::F32);
  Arena arena(host_allocator(), 1 << 20);
  const Context ctx{.scratch = &arena};
  expect_same_bits("attention", {probs, out, dq, dk, dv, dbias}, [&] {
    cpu.attention_forward(ctx, q, k, v, bias, {},
                          {.causal = true, .mask_value = -1e9, .dropout = {}}, probs, out);
    cpu.attention_backward(ctx, dout, q, k, v, probs, dq, dk, dv, dbias, {});
    return std::vector<double>{};
  });

  const int64_t n = 45, vocab = 8064;
  Buffer logits = f32({n, vocab}, 11, -10, 10), weights = f32({n}, 12, 0, 1);
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(int32_t((i * 977) % vocab));
  Buffer targets = testing::ids_buffer(ids);
  Buffer losses = testing::host_buffer({n}, DType::F32),
         lse = testing::host_buffer({n}, DType::F32),
         dlogits = testing::host_buffer({n, vocab}, DType::F32);
  expect_same_bits("cross entropy", {losses, lse, dlogits}, [&] {
    cpu.cross_entropy_forward({}, logits, targets, weights, 1e-4, losses, lse);
    cpu.cross_entropy_backward({}, logits, targets, weights, 1e-4, lse, 0.5, dlogits);
    return std::vector<double>{};
  });
}

TEST_F(CpuThreadsDeterminism, ReductionsAndOptimizers) {
  Buffer x = f32({1000, 1037}, 13);
  expect_same_bits("sum, sum_squares", {}, [&] {
    return std::vector<double>{cpu.sum({}, x), cpu.sum_squares({}, x)};
  });

  Buffer p = f32({513, 1031}, 14, -1, 1), grad = f32({513, 1031}, 15, -1, 1),
         m = testing::host_buffer({513, 1031}, DType::F32),
         v = testing::host_buffer({513, 1031}, DType::F32);
  expect_same_bits("adamw", {p, m, v}, [&] {
    for (int step = 1; step <= 3; ++step)
      cpu.adamw_update({}, p, grad, m, v, {.lr = 1e-3, .weight_decay = 0.01, .step = step});
    return std::vector<double>{};
  });

  // One big factored slice (split over threads), stacked small factored slices (one per task),
  // and unfactored ones of both kinds.
  for (Shape shape : {Shape{300, 1031}, Shape{37, 20, 30}, Shape{70001}, Shape{9, 3, 1001}}) {
    const bool factored = shape.ndim() >= 2;
    const int64_t rows = factored ? shape[-2] : 1, cols = shape[-1];
    const int64_t batch = shape.numel() / (rows * cols);
    Buffer ap = f32(shape, 16, -1, 1), ag = f32(shape, 17, -1, 1);
    Buffer row = testing::host_buffer({batch, rows}, DType::F32),
           col = testing::host_buffer({batch, cols}, DType::F32),
           av = testing::host_buffer(shape, DType::F32);
    expect_same_bits("adafactor " + shape.str(), {ap, row, col, av}, [&] {
      for (int step = 1; step <= 3; ++step) {
        const AdafactorStep s{.lr = 1e-2, .step = step, .grad_scale = 0.7};
        if (factored) {
          cpu.adafactor_update({}, ap, ag, row, col, {}, s);
        } else {
          cpu.adafactor_update({}, ap, ag, {}, {}, av, s);
        }
      }
      return std::vector<double>{};
    });
  }
}

// The f32 Adafactor (vector kernels, fused passes) against the f64 scalar path from the same
// values, over three steps: each parameter within 16 2^-24 of (the largest |p| on its f64 path
// + the length of that path), as each step rounds p to f32 and sizes its change to a relative
// 2^-23 or so; the statistics within 16 2^-24 relative. So the f32 result is as far from f64 as
// any f32 loop's rounding makes it, the old scalar loop's included.
TEST(CpuOptimizerF32, AdafactorWithinTheStatedBoundOfTheF64Path) {
  Backend& cpu = cpu_backend();
  for (Shape shape : {Shape{300, 1031}, Shape{5, 20, 30}, Shape{70001}}) {
    const bool factored = shape.ndim() >= 2;
    const int64_t rows = factored ? shape[-2] : 1, cols = shape[-1];
    const int64_t batch = shape.numel() / (rows * cols);
    Buffer p32 = f32(shape, 20, -1, 1), p64 = testing::host_buffer(shape);
    Buffer row32 = testing::host_buffer({batch, rows}, DType::F32),
           row64 = testing::host_buffer({batch, rows}),
           col32 = testing::host_buffer({batch, cols}, DType::F32),
           col64 = testing::host_buffer({batch, cols}),
           v32 = testing::host_buffer(shape, DType::F32), v64 = testing::host_buffer(shape);
    for (int64_t i = 0; i < shape.numel(); ++i) testing::set(p64, i, get(p32, i));
    // Per element: the largest |p| and the summed |change| of the f64 path.
    std::vector<double> largest(size_t(shape.numel())), path(size_t(shape.numel()));
    for (int64_t i = 0; i < shape.numel(); ++i) largest[size_t(i)] = std::fabs(get(p64, i));
    for (int step = 1; step <= 3; ++step) {
      Buffer g32 = f32(shape, 30 + step, -1, 1), g64 = testing::host_buffer(shape);
      for (int64_t i = 0; i < shape.numel(); ++i) testing::set(g64, i, get(g32, i));
      const AdafactorStep s{.lr = 1e-2, .step = step, .grad_scale = 0.7};
      Buffer before = testing::host_buffer(shape);
      copy(p64, before);
      if (factored) {
        cpu.adafactor_update({}, p32, g32, row32, col32, {}, s);
        cpu.adafactor_update({}, p64, g64, row64, col64, {}, s);
      } else {
        cpu.adafactor_update({}, p32, g32, {}, {}, v32, s);
        cpu.adafactor_update({}, p64, g64, {}, {}, v64, s);
      }
      for (int64_t i = 0; i < shape.numel(); ++i) {
        const double now = get(p64, i);
        path[size_t(i)] += std::fabs(now - get(before, i));
        largest[size_t(i)] = std::max(largest[size_t(i)], std::fabs(now));
      }
    }
    const double tol = 16.0 / 16777216.0;
    for (int64_t i = 0; i < shape.numel(); ++i) {
      const double want = get(p64, i);
      ASSERT_LE(std::fabs(get(p32, i) - want), tol * (largest[size_t(i)] + path[size_t(i)]))
          << shape.str() << " [" << i << "]";
    }
    auto expect_rel = [&](const Tensor& a, const Tensor& b, const char* what) {
      for (int64_t i = 0; i < a.numel(); ++i)
        ASSERT_LE(std::fabs(get(a, i) - get(b, i)), tol * std::fabs(get(b, i)))
            << what << " " << shape.str() << " [" << i << "]";
    };
    if (factored) {
      expect_rel(row32, row64, "row");
      expect_rel(col32, col64, "col");
    } else {
      expect_rel(v32, v64, "v");
    }
  }
}

}  // namespace
}  // namespace mowe
