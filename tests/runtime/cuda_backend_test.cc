// The CUDA backend against its specification, the CPU backend: every op forward and backward on
// the same seeded inputs. Tests that need a GPU skip where none is present; the error checks and
// the host-side validation run everywhere.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"
#include "tests/util/expect_error.h"
#include "tests/util/gradcheck.h"

namespace mowe {
namespace {

using testing::expect_error;
using testing::get;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// ---- checks and validation: no GPU needed ------------------------------------------------------

TEST(CudaCheck, DeviceCountSucceedsOrReportsTheNamedError) {
  int n = -1;
  try {
    CUDA_CHECK(cudaGetDeviceCount(&n));
    EXPECT_GE(n, 0);
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(contains(msg, "CUDA failed on rank")) << msg;
    EXPECT_TRUE(contains(msg, "cudaGetDeviceCount")) << msg;
    EXPECT_TRUE(contains(msg, "cudaError")) << msg;  // the name, e.g. cudaErrorNoDevice
    EXPECT_TRUE(contains(msg, "cuda_backend_test.cc:")) << msg;
  }
  EXPECT_NO_THROW(cuda_device_available());
}

TEST(CudaCheck, CublasFailureNamesTheStatus) {
  expect_error([] { CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE); },
               {"cuBLAS failed on rank", "CUBLAS_STATUS_INVALID_VALUE"});
}

ncclResult_t failing_nccl_call() {
  return ncclInvalidArgument;
}

TEST(CudaCheck, NcclFailureNamesTheStatus) {
  expect_error([] { NCCL_CHECK(failing_nccl_call()); },
               {"NCCL failed on rank", "failing_nccl_call()", "ncclInvalidArgument"});
}

TEST(CudaBackend, IsChosenForCudaWithoutTouchingTheGpu) {
  EXPECT_TRUE(cuda_backend_compiled());
  EXPECT_STREQ(backend_for(Device::CUDA).name(), "cuda");
  EXPECT_EQ(backend_for(Device::CUDA).device(), Device::CUDA);
}

// Validation fails before any CUDA call, so these device tensors are never dereferenced.
Tensor fake_device(Shape shape, DType dtype = DType::F32) {
  return Tensor(reinterpret_cast<void*>(uintptr_t{4096}), dtype, Device::CUDA, shape);
}

TEST(CudaBackend, ValidatesOnTheHostLikeTheCpu) {
  Backend& gpu = cuda_backend();
  Buffer host = testing::host_buffer({2, 3}, DType::F32);
  expect_error([&] { gpu.gelu_forward({}, host, host); }, {"is not in device memory"});
  expect_error(
      [&] {
        gpu.matmul({}, fake_device({2, 3}), fake_device({2, 3}), fake_device({2, 3}), false, false);
      },
      {"matmul: shapes do not chain"});
  expect_error(
      [&] { gpu.gelu_forward({}, fake_device({4}, DType::BF16), fake_device({4}, DType::BF16)); },
      {"not supported on the CUDA backend"});
  expect_error(
      [&] {
        gpu.rmsnorm_forward({}, fake_device({2, 3}), fake_device({4}), fake_device({2, 3}),
                            fake_device({2}), 1e-6);
      },
      {"scale has shape [4], expected [3]"});
  const Tensor q = fake_device({1, 2, 1, 4}), p = fake_device({1, 1, 2, 2});
  Arena host_arena(host_allocator());
  expect_error(
      [&] { gpu.attention_backward({.scratch = &host_arena}, q, q, q, q, p, q, q, q, {}, {}); },
      {"needs a device arena"});
  // Attention dropout has no CUDA kernel: refused, never silently skipped.
  expect_error(
      [&] {
        gpu.attention_forward({}, q, q, q, {}, {}, {.dropout = {0.1f, 1}}, p, q);
      },
      {"attention dropout", "not supported on GPU"});
  expect_error(
      [&] {
        gpu.attention_backward({}, q, q, q, q, p, q, q, q, {}, {0.1f, 1});
      },
      {"attention dropout", "not supported on GPU"});
}

// ---- CUDA against CPU: needs a GPU -------------------------------------------------------------

Buffer to_device(const Tensor& host) {
  Buffer dev(cuda_allocator(), host.shape, host.dtype);
  CUDA_CHECK(cudaMemcpy(dev.tensor().data, host.data, host.nbytes(), cudaMemcpyHostToDevice));
  return dev;
}

Buffer to_host(const Tensor& dev) {
  CUDA_CHECK(cudaDeviceSynchronize());
  Buffer host = testing::host_buffer(dev.shape, dev.dtype);
  CUDA_CHECK(cudaMemcpy(host.tensor().data, dev.data, dev.nbytes(), cudaMemcpyDeviceToHost));
  return host;
}

// The same values on the host (input of the CPU op) and on the device (input of the CUDA op).
struct Pair {
  Buffer cpu, gpu;
  explicit Pair(Buffer host) : cpu(std::move(host)), gpu(to_device(cpu)) {}
};
Pair random_pair(Shape shape, uint64_t seed, double lo = -1, double hi = 1,
                 DType dtype = DType::F32) {
  return Pair(testing::random_buffer(shape, seed, lo, hi, dtype));
}
Pair zeros_pair(Shape shape, DType dtype = DType::F32) {
  return Pair(testing::host_buffer(shape, dtype));
}
Pair ids_pair(const std::vector<int32_t>& ids) {
  return Pair(testing::ids_buffer(ids));
}

// |cuda - cpu| <= tol * max(1, |cpu|) for every element.
void expect_close(const Pair& p, const char* name, double tol = 1e-5) {
  Buffer got = to_host(p.gpu);
  const Tensor& want = p.cpu;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double w = get(want, i), g = get(got, i);
    ASSERT_LE(std::abs(g - w), tol * std::max(1.0, std::abs(w)))
        << name << "[" << i << "]: cuda " << g << ", cpu " << w;
  }
}

class CudaVsCpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!cuda_device_available()) GTEST_SKIP() << "no CUDA device";
    device_arena_ = std::make_unique<Arena>(cuda_allocator(), size_t{16} << 20);
    gctx = {.device = Device::CUDA, .stream = nullptr, .scratch = device_arena_.get()};
  }
  Backend& cpu = cpu_backend();
  Backend& gpu = cuda_backend();
  Arena host_arena_{host_allocator()};
  std::unique_ptr<Arena> device_arena_;
  Context cctx{.scratch = &host_arena_};
  Context gctx;
};

TEST_F(CudaVsCpu, MatmulAllTransposesF32AndF64) {
  for (DType dtype : {DType::F32, DType::F64}) {
    const double tol = dtype == DType::F32 ? 1e-5 : 1e-12;
    for (int mask = 0; mask < 4; ++mask) {
      const bool ta = mask & 1, tb = mask & 2;
      const int64_t m = 5, n = 7, k = 3, g = 3;
      Pair a = random_pair(ta ? Shape{k, m} : Shape{m, k}, 1, -1, 1, dtype);
      Pair b = random_pair(tb ? Shape{n, k} : Shape{k, n}, 2, -1, 1, dtype);
      Pair c = random_pair({m, n}, 3, -1, 1, dtype);
      cpu.matmul(cctx, a.cpu, b.cpu, c.cpu, ta, tb, 0.5f, 2.0f);
      gpu.matmul(gctx, a.gpu, b.gpu, c.gpu, ta, tb, 0.5f, 2.0f);
      expect_close(c, "matmul", tol);
      Pair ba = random_pair(ta ? Shape{g, k, m} : Shape{g, m, k}, 4, -1, 1, dtype);
      Pair bb = random_pair(tb ? Shape{g, n, k} : Shape{g, k, n}, 5, -1, 1, dtype);
      Pair bc = random_pair({g, m, n}, 6, -1, 1, dtype);
      cpu.batched_matmul(cctx, ba.cpu, bb.cpu, bc.cpu, ta, tb, 1.5f, -1.0f);
      gpu.batched_matmul(gctx, ba.gpu, bb.gpu, bc.gpu, ta, tb, 1.5f, -1.0f);
      expect_close(bc, "batched_matmul", tol);
    }
  }
}

TEST_F(CudaVsCpu, FillAndAxpy) {
  for (DType dtype : {DType::F32, DType::F64, DType::I32}) {
    Pair x = zeros_pair({3, 333}, dtype);
    cpu.fill(cctx, x.cpu, -2.0);
    gpu.fill(gctx, x.gpu, -2.0);
    expect_close(x, "fill", 0.0);
  }
  Pair x = random_pair({1000}, 1), y = random_pair({1000}, 2);
  cpu.axpy(cctx, 0.25, x.cpu, y.cpu);
  gpu.axpy(gctx, 0.25, x.gpu, y.gpu);
  expect_close(y, "axpy");
}

TEST_F(CudaVsCpu, GeluAndGatedGeluForwardBackward) {
  const Shape s{7, 130};
  Pair x = random_pair(s, 1, -4, 4), lin = random_pair(s, 2), g = random_pair(s, 3);
  Pair out = zeros_pair(s), dx = zeros_pair(s), dlin = zeros_pair(s);
  cpu.gelu_forward(cctx, x.cpu, out.cpu);
  gpu.gelu_forward(gctx, x.gpu, out.gpu);
  expect_close(out, "gelu");
  cpu.gelu_backward(cctx, g.cpu, x.cpu, dx.cpu);
  gpu.gelu_backward(gctx, g.gpu, x.gpu, dx.gpu);
  expect_close(dx, "gelu dx");
  cpu.gated_gelu_forward(cctx, x.cpu, lin.cpu, out.cpu);
  gpu.gated_gelu_forward(gctx, x.gpu, lin.gpu, out.gpu);
  expect_close(out, "gated_gelu");
  cpu.gated_gelu_backward(cctx, g.cpu, x.cpu, lin.cpu, dx.cpu, dlin.cpu);
  gpu.gated_gelu_backward(gctx, g.gpu, x.gpu, lin.gpu, dx.gpu, dlin.gpu);
  expect_close(dx, "gated_gelu dgate");
  expect_close(dlin, "gated_gelu dlinear");
}

TEST_F(CudaVsCpu, SoftmaxForwardBackward) {
  for (int64_t n : {5, 300}) {  // shorter and longer than a block
    Pair x = random_pair({9, n}, 1, -5, 5), g = random_pair({9, n}, 2);
    Pair y = zeros_pair({9, n}), dx = zeros_pair({9, n});
    cpu.softmax_forward(cctx, x.cpu, y.cpu);
    gpu.softmax_forward(gctx, x.gpu, y.gpu);
    expect_close(y, "softmax");
    cpu.softmax_backward(cctx, g.cpu, y.cpu, dx.cpu);
    gpu.softmax_backward(gctx, g.gpu, y.gpu, dx.gpu);
    expect_close(dx, "softmax dx");
  }
}

TEST_F(CudaVsCpu, DropoutMasksAreIdentical) {
  for (float rate : {0.0f, 0.3f}) {
    Pair x = random_pair({4, 1000}, 1), out = zeros_pair({4, 1000}), dx = zeros_pair({4, 1000});
    cpu.dropout_forward(cctx, x.cpu, out.cpu, rate, 1234);
    gpu.dropout_forward(gctx, x.gpu, out.gpu, rate, 1234);
    expect_close(out, "dropout", 0.0);  // one product of identical factors: exact
    cpu.dropout_backward(cctx, x.cpu, dx.cpu, rate, 1234);
    gpu.dropout_backward(gctx, x.gpu, dx.gpu, rate, 1234);
    expect_close(dx, "dropout dx", 0.0);
  }
}

TEST_F(CudaVsCpu, RmsNormForwardBackwardAccumulatesDscale) {
  for (int64_t c : {40, 300}) {
    const int64_t n = 13;
    Pair x = random_pair({n, c}, 1, -2, 2), scale = random_pair({c}, 2, 0.5, 1.5);
    Pair g = random_pair({n, c}, 3), dscale = random_pair({c}, 4);
    Pair out = zeros_pair({n, c}), rstd = zeros_pair({n}), dx = zeros_pair({n, c});
    cpu.rmsnorm_forward(cctx, x.cpu, scale.cpu, out.cpu, rstd.cpu, 1e-6);
    gpu.rmsnorm_forward(gctx, x.gpu, scale.gpu, out.gpu, rstd.gpu, 1e-6);
    expect_close(out, "rmsnorm");
    expect_close(rstd, "rmsnorm rstd");
    cpu.rmsnorm_backward(cctx, g.cpu, x.cpu, scale.cpu, rstd.cpu, dx.cpu, dscale.cpu);
    gpu.rmsnorm_backward(gctx, g.gpu, x.gpu, scale.gpu, rstd.gpu, dx.gpu, dscale.gpu);
    expect_close(dx, "rmsnorm dx");
    expect_close(dscale, "rmsnorm dscale");
  }
}

TEST_F(CudaVsCpu, PositionBiasForwardBackward) {
  // Distances up to 22 reach the logarithmic buckets and, past max_distance 20, the clamp.
  for (bool bidirectional : {true, false}) {
    const int64_t k = 32, h = 4, t = 17, s = 23;
    Pair table = random_pair({k, h}, 1), g = random_pair({h, t, s}, 2);
    Pair out = zeros_pair({h, t, s}), dtable = random_pair({k, h}, 3);
    cpu.position_bias_forward(cctx, table.cpu, out.cpu, bidirectional, 20);
    gpu.position_bias_forward(gctx, table.gpu, out.gpu, bidirectional, 20);
    expect_close(out, "position_bias", 0.0);
    cpu.position_bias_backward(cctx, g.cpu, dtable.cpu, bidirectional, 20);
    gpu.position_bias_backward(gctx, g.gpu, dtable.gpu, bidirectional, 20);
    expect_close(dtable, "position_bias dtable");
  }
}

// Cross-attention (T != S) and causal self-attention, both with a bias and padded keys; the
// second batch entry pads its last keys.
TEST_F(CudaVsCpu, AttentionWithCausalPaddingAndBias) {
  struct Case {
    int64_t t, s;
    bool causal;
  };
  for (const Case& c : {Case{5, 7, false}, Case{6, 6, true}}) {
    const int64_t b = 2, h = 3, d = 4;
    Pair q = random_pair({b, c.t, h, d}, 1, -2, 2), k = random_pair({b, c.s, h, d}, 2, -2, 2);
    Pair v = random_pair({b, c.s, h, d}, 3), bias = random_pair({h, c.t, c.s}, 4);
    std::vector<int32_t> valid(b * c.s, 1);
    valid[b * c.s - 1] = valid[b * c.s - 2] = 0;
    Pair key_valid = ids_pair(valid);
    Tensor kv_cpu = key_valid.cpu.tensor().reshape({b, c.s});
    Tensor kv_gpu = key_valid.gpu.tensor().reshape({b, c.s});
    Pair probs = zeros_pair({b, h, c.t, c.s}), out = zeros_pair({b, c.t, h, d});
    const AttentionArgs args{.causal = c.causal, .mask_value = -1e9, .dropout = {}};
    cpu.attention_forward(cctx, q.cpu, k.cpu, v.cpu, bias.cpu, kv_cpu, args, probs.cpu, out.cpu);
    gpu.attention_forward(gctx, q.gpu, k.gpu, v.gpu, bias.gpu, kv_gpu, args, probs.gpu, out.gpu);
    expect_close(probs, "attention probs");
    expect_close(out, "attention out");

    Pair g = random_pair({b, c.t, h, d}, 5), dbias = random_pair({h, c.t, c.s}, 6);
    Pair dq = zeros_pair(q.cpu.tensor().shape), dk = zeros_pair(k.cpu.tensor().shape);
    Pair dv = zeros_pair(v.cpu.tensor().shape);
    cpu.attention_backward(cctx, g.cpu, q.cpu, k.cpu, v.cpu, probs.cpu, dq.cpu, dk.cpu, dv.cpu,
                           dbias.cpu, {});
    gpu.attention_backward(gctx, g.gpu, q.gpu, k.gpu, v.gpu, probs.gpu, dq.gpu, dk.gpu, dv.gpu,
                           dbias.gpu, {});
    expect_close(dq, "attention dq");
    expect_close(dk, "attention dk");
    expect_close(dv, "attention dv");
    expect_close(dbias, "attention dbias");
  }
}

TEST_F(CudaVsCpu, AttentionWithoutBiasOrMaskInDoublePrecision) {
  const int64_t b = 2, t = 4, s = 3, h = 2, d = 5;
  const DType f64 = DType::F64;
  Pair q = random_pair({b, t, h, d}, 1, -1, 1, f64), k = random_pair({b, s, h, d}, 2, -1, 1, f64);
  Pair v = random_pair({b, s, h, d}, 3, -1, 1, f64);
  Pair probs = zeros_pair({b, h, t, s}, f64), out = zeros_pair({b, t, h, d}, f64);
  cpu.attention_forward(cctx, q.cpu, k.cpu, v.cpu, {}, {}, {}, probs.cpu, out.cpu);
  gpu.attention_forward(gctx, q.gpu, k.gpu, v.gpu, {}, {}, {}, probs.gpu, out.gpu);
  expect_close(out, "attention out f64", 1e-12);
  Pair dq = zeros_pair({b, t, h, d}, f64), dk = zeros_pair({b, s, h, d}, f64);
  Pair dv = zeros_pair({b, s, h, d}, f64);
  cpu.attention_backward(cctx, out.cpu, q.cpu, k.cpu, v.cpu, probs.cpu, dq.cpu, dk.cpu, dv.cpu, {},
                         {});
  gpu.attention_backward(gctx, out.gpu, q.gpu, k.gpu, v.gpu, probs.gpu, dq.gpu, dk.gpu, dv.gpu, {},
                         {});
  expect_close(dq, "attention dq f64", 1e-12);
  expect_close(dk, "attention dk f64", 1e-12);
  expect_close(dv, "attention dv f64", 1e-12);
}

TEST_F(CudaVsCpu, EmbeddingGatherAndScatterAddWithRepeatedIds) {
  const int64_t vocab = 11, c = 70;
  const std::vector<int32_t> ids = {3, 0, 10, 3, 3, 7, 0};
  const int64_t n = static_cast<int64_t>(ids.size());
  Pair table = random_pair({vocab, c}, 1), id = ids_pair(ids);
  Pair out = zeros_pair({n, c}), g = random_pair({n, c}, 2), dtable = random_pair({vocab, c}, 3);
  cpu.embedding_forward(cctx, table.cpu, id.cpu, out.cpu);
  gpu.embedding_forward(gctx, table.gpu, id.gpu, out.gpu);
  expect_close(out, "embedding", 0.0);
  cpu.embedding_backward(cctx, g.cpu, id.cpu, dtable.cpu);
  gpu.embedding_backward(gctx, g.gpu, id.gpu, dtable.gpu);
  expect_close(dtable, "embedding dtable");
}

TEST_F(CudaVsCpu, CrossEntropyWithZLossAndZeroWeights) {
  const int64_t n = 6, vocab = 300;
  Pair logits = random_pair({n, vocab}, 1, -3, 3), targets = ids_pair({0, 299, 17, 17, 5, 250});
  Pair weights = random_pair({n}, 2, 0.5, 1.5);
  testing::set(weights.cpu, 1, 0.0), testing::set(weights.cpu, 4, 0.0);
  weights.gpu = to_device(weights.cpu);
  Pair losses = zeros_pair({n}), lse = zeros_pair({n}), dlogits = random_pair({n, vocab}, 3);
  for (double z_loss : {0.0, 1e-2}) {
    cpu.cross_entropy_forward(cctx, logits.cpu, targets.cpu, weights.cpu, z_loss, losses.cpu,
                              lse.cpu);
    gpu.cross_entropy_forward(gctx, logits.gpu, targets.gpu, weights.gpu, z_loss, losses.gpu,
                              lse.gpu);
    expect_close(losses, "cross_entropy losses");
    expect_close(lse, "cross_entropy lse");
    cpu.cross_entropy_backward(cctx, logits.cpu, targets.cpu, weights.cpu, z_loss, lse.cpu, 0.5,
                               dlogits.cpu);
    gpu.cross_entropy_backward(gctx, logits.gpu, targets.gpu, weights.gpu, z_loss, lse.gpu, 0.5,
                               dlogits.gpu);
    expect_close(dlogits, "cross_entropy dlogits");
  }
}

// ---- reductions and optimizer updates ----------------------------------------------------------

TEST(CudaBackend, ValidatesOptimizerOpsOnTheHost) {
  Backend& gpu = cuda_backend();
  const Tensor x = fake_device({4}), m = fake_device({4}), bad = fake_device({5});
  expect_error([&] { gpu.sum({}, x); }, {"sum needs a scratch arena"});
  expect_error([&] { gpu.sum_squares({}, fake_device({2}, DType::I32)); }, {"not supported"});
  expect_error([&] { gpu.adamw_update({}, x, x, m, bad, {}); }, {"adamw_update: tensors differ"});
  expect_error(
      [&] {
        gpu.adafactor_update({}, x, x, fake_device({1, 1}), fake_device({1, 4}), {}, {});
      },
      {"parameters of rank >= 2"});
}

TEST_F(CudaVsCpu, SumAndSumSquaresF32AndF64) {
  for (DType dtype : {DType::F32, DType::F64}) {
    // 5M elements spread one sum over many blocks and a second pass.
    for (int64_t n : {0, 1, 1000, 5000000}) {
      Pair x = random_pair({n}, 1, -1, 1, dtype);
      const double want = cpu.sum(cctx, x.cpu), want_sq = cpu.sum_squares(cctx, x.cpu);
      EXPECT_NEAR(gpu.sum(gctx, x.gpu), want, 1e-12 * std::max(1.0, std::abs(want))) << n;
      EXPECT_NEAR(gpu.sum_squares(gctx, x.gpu), want_sq, 1e-12 * std::max(1.0, want_sq)) << n;
    }
  }
}

TEST_F(CudaVsCpu, AdamWThreeSteps) {
  for (DType dtype : {DType::F32, DType::F64}) {
    const double tol = dtype == DType::F32 ? 1e-5 : 1e-12;
    Pair p = random_pair({7, 130}, 1, -1, 1, dtype), m = zeros_pair({7, 130}, dtype);
    Pair v = zeros_pair({7, 130}, dtype);
    for (int t = 1; t <= 3; ++t) {
      Pair g = random_pair({7, 130}, 10 + t, -1, 1, dtype);
      const AdamWStep s{.lr = 0.01, .weight_decay = 0.1, .step = t, .grad_scale = 0.5};
      cpu.adamw_update(cctx, p.cpu, g.cpu, m.cpu, v.cpu, s);
      gpu.adamw_update(gctx, p.gpu, g.gpu, m.gpu, v.gpu, s);
    }
    expect_close(p, "adamw param", tol);
    expect_close(m, "adamw m", tol);
    expect_close(v, "adamw v", tol);
  }
}

// Factored (a matrix wide enough for several column blocks and reduction parts, a stack of
// slices) and unfactored (a vector, a small matrix); step 2's gradients are 100 times larger,
// so update clipping acts.
TEST_F(CudaVsCpu, AdafactorThreeStepsFactoredAndUnfactored) {
  struct Case {
    Shape shape;
    bool factored;
  };
  for (DType dtype : {DType::F32, DType::F64}) {
    const double tol = dtype == DType::F32 ? 1e-5 : 1e-12;
    for (const Case& c : {Case{{130, 200}, true}, Case{{5, 40, 33}, true}, Case{{300}, false},
                          Case{{3, 7}, false}}) {
      const int nd = c.shape.ndim();
      const int64_t rows = nd >= 2 ? c.shape[-2] : 1, cols = c.shape[-1];
      const int64_t batch = c.shape.numel() / (rows * cols);
      Pair p = random_pair(c.shape, 1, -1, 1, dtype);
      Pair row = zeros_pair({batch, rows}, dtype), col = zeros_pair({batch, cols}, dtype);
      Pair v = zeros_pair(c.shape, dtype);
      for (int t = 1; t <= 3; ++t) {
        Pair g = random_pair(c.shape, 20 + t, t == 2 ? -100 : -1, t == 2 ? 100 : 1, dtype);
        const AdafactorStep s{.lr = 0.01, .step = t, .grad_scale = 0.5};
        if (c.factored) {
          cpu.adafactor_update(cctx, p.cpu, g.cpu, row.cpu, col.cpu, {}, s);
          gpu.adafactor_update(gctx, p.gpu, g.gpu, row.gpu, col.gpu, {}, s);
        } else {
          cpu.adafactor_update(cctx, p.cpu, g.cpu, {}, {}, v.cpu, s);
          gpu.adafactor_update(gctx, p.gpu, g.gpu, {}, {}, v.gpu, s);
        }
      }
      expect_close(p, "adafactor param", tol);
      if (c.factored) {
        expect_close(row, "adafactor v_row", tol);
        expect_close(col, "adafactor v_col", tol);
      } else {
        expect_close(v, "adafactor v", tol);
      }
    }
  }
}

}  // namespace
}  // namespace mowe
