// Every op of a device backend against its specification, the CPU backend, on the same seeded
// inputs, forward and backward: the simulated device (runtime/sim/) must agree bit for bit, since
// it runs the CPU kernels; CUDA within float tolerances, and only where a GPU is present (its
// cases skip elsewhere). Tensors reach the device and come back through the device seam
// (runtime/device.h) only.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/device.h"
#include "tests/util/gradcheck.h"

namespace mowe {
namespace {

using testing::get;

Device g_device = Device::SIMULATED;  // the device of the running case (DeviceVsCpu::SetUp)

Buffer to_device(const Tensor& host) {
  Buffer dev(device_runtime(g_device).allocator(), host.shape, host.dtype);
  upload(dev.tensor(), host.data);
  return dev;
}

Buffer to_host(const Tensor& dev) {
  Buffer host = testing::host_buffer(dev.shape, dev.dtype);
  download(host.tensor().data, dev);
  return host;
}

// The same values on the host (input of the CPU op) and on the device.
struct Pair {
  Buffer cpu, dev;
  explicit Pair(Buffer host) : cpu(std::move(host)), dev(to_device(cpu)) {}
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

// The simulated device runs the CPU kernels: its results must be the same bits.
bool exact() {
  return g_device == Device::SIMULATED;
}

// Simulated: the same bytes. CUDA: |dev - cpu| <= tol * max(1, |cpu|) for every element.
void expect_close(const Pair& p, const char* name, double tol = 1e-5) {
  Buffer got = to_host(p.dev);
  const Tensor& want = p.cpu;
  if (exact()) {
    ASSERT_EQ(std::memcmp(got.tensor().data, want.data, want.nbytes()), 0)
        << name << ": the simulated device differs from the CPU backend";
    return;
  }
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double w = get(want, i), g = get(got, i);
    ASSERT_LE(std::abs(g - w), tol * std::max(1.0, std::abs(w)))
        << name << "[" << i << "]: " << device_name(g_device) << " " << g << ", cpu " << w;
  }
}

class DeviceVsCpu : public ::testing::TestWithParam<Device> {
 protected:
  void SetUp() override {
    g_device = GetParam();
    if (!device_available(g_device)) GTEST_SKIP() << "no " << device_name(g_device) << " device";
    device_arena_ = std::make_unique<Arena>(device_runtime(g_device).allocator(), size_t{16} << 20);
    dctx = {.device = g_device, .stream = nullptr, .scratch = device_arena_.get()};
  }
  Backend& cpu = cpu_backend();
  Backend& dev = backend_for(
      GetParam() == Device::CUDA && !cuda_backend_compiled() ? Device::SIMULATED : GetParam());
  Arena host_arena_{host_allocator()};
  std::unique_ptr<Arena> device_arena_;
  Context cctx{.scratch = &host_arena_};
  Context dctx;
};

TEST_P(DeviceVsCpu, MatmulAllTransposesF32AndF64) {
  for (DType dtype : {DType::F32, DType::F64}) {
    const double tol = dtype == DType::F32 ? 1e-5 : 1e-12;
    for (int mask = 0; mask < 4; ++mask) {
      const bool ta = mask & 1, tb = mask & 2;
      const int64_t m = 5, n = 7, k = 3, g = 3;
      Pair a = random_pair(ta ? Shape{k, m} : Shape{m, k}, 1, -1, 1, dtype);
      Pair b = random_pair(tb ? Shape{n, k} : Shape{k, n}, 2, -1, 1, dtype);
      Pair c = random_pair({m, n}, 3, -1, 1, dtype);
      cpu.matmul(cctx, a.cpu, b.cpu, c.cpu, ta, tb, 0.5f, 2.0f);
      dev.matmul(dctx, a.dev, b.dev, c.dev, ta, tb, 0.5f, 2.0f);
      expect_close(c, "matmul", tol);
      Pair ba = random_pair(ta ? Shape{g, k, m} : Shape{g, m, k}, 4, -1, 1, dtype);
      Pair bb = random_pair(tb ? Shape{g, n, k} : Shape{g, k, n}, 5, -1, 1, dtype);
      Pair bc = random_pair({g, m, n}, 6, -1, 1, dtype);
      cpu.batched_matmul(cctx, ba.cpu, bb.cpu, bc.cpu, ta, tb, 1.5f, -1.0f);
      dev.batched_matmul(dctx, ba.dev, bb.dev, bc.dev, ta, tb, 1.5f, -1.0f);
      expect_close(bc, "batched_matmul", tol);
    }
  }
}

TEST_P(DeviceVsCpu, FillAndAxpy) {
  for (DType dtype : {DType::F32, DType::F64, DType::I32}) {
    Pair x = zeros_pair({3, 333}, dtype);
    cpu.fill(cctx, x.cpu, -2.0);
    dev.fill(dctx, x.dev, -2.0);
    expect_close(x, "fill", 0.0);
  }
  Pair x = random_pair({1000}, 1), y = random_pair({1000}, 2);
  cpu.axpy(cctx, 0.25, x.cpu, y.cpu);
  dev.axpy(dctx, 0.25, x.dev, y.dev);
  expect_close(y, "axpy");
}

TEST_P(DeviceVsCpu, GeluAndGatedGeluForwardBackward) {
  const Shape s{7, 130};
  Pair x = random_pair(s, 1, -4, 4), lin = random_pair(s, 2), g = random_pair(s, 3);
  Pair out = zeros_pair(s), dx = zeros_pair(s), dlin = zeros_pair(s);
  cpu.gelu_forward(cctx, x.cpu, out.cpu);
  dev.gelu_forward(dctx, x.dev, out.dev);
  expect_close(out, "gelu");
  cpu.gelu_backward(cctx, g.cpu, x.cpu, dx.cpu);
  dev.gelu_backward(dctx, g.dev, x.dev, dx.dev);
  expect_close(dx, "gelu dx");
  cpu.gated_gelu_forward(cctx, x.cpu, lin.cpu, out.cpu);
  dev.gated_gelu_forward(dctx, x.dev, lin.dev, out.dev);
  expect_close(out, "gated_gelu");
  cpu.gated_gelu_backward(cctx, g.cpu, x.cpu, lin.cpu, dx.cpu, dlin.cpu);
  dev.gated_gelu_backward(dctx, g.dev, x.dev, lin.dev, dx.dev, dlin.dev);
  expect_close(dx, "gated_gelu dgate");
  expect_close(dlin, "gated_gelu dlinear");
}

TEST_P(DeviceVsCpu, SoftmaxForwardBackward) {
  for (int64_t n : {5, 300}) {  // shorter and longer than a block
    Pair x = random_pair({9, n}, 1, -5, 5), g = random_pair({9, n}, 2);
    Pair y = zeros_pair({9, n}), dx = zeros_pair({9, n});
    cpu.softmax_forward(cctx, x.cpu, y.cpu);
    dev.softmax_forward(dctx, x.dev, y.dev);
    expect_close(y, "softmax");
    cpu.softmax_backward(cctx, g.cpu, y.cpu, dx.cpu);
    dev.softmax_backward(dctx, g.dev, y.dev, dx.dev);
    expect_close(dx, "softmax dx");
  }
}

TEST_P(DeviceVsCpu, DropoutMasksAreIdentical) {
  for (float rate : {0.0f, 0.3f}) {
    Pair x = random_pair({4, 1000}, 1), out = zeros_pair({4, 1000}), dx = zeros_pair({4, 1000});
    cpu.dropout_forward(cctx, x.cpu, out.cpu, rate, 1234);
    dev.dropout_forward(dctx, x.dev, out.dev, rate, 1234);
    expect_close(out, "dropout", 0.0);  // one product of identical factors: exact
    cpu.dropout_backward(cctx, x.cpu, dx.cpu, rate, 1234);
    dev.dropout_backward(dctx, x.dev, dx.dev, rate, 1234);
    expect_close(dx, "dropout dx", 0.0);
  }
}

TEST_P(DeviceVsCpu, RmsNormForwardBackwardAccumulatesDscale) {
  for (int64_t c : {40, 300}) {
    const int64_t n = 13;
    Pair x = random_pair({n, c}, 1, -2, 2), scale = random_pair({c}, 2, 0.5, 1.5);
    Pair g = random_pair({n, c}, 3), dscale = random_pair({c}, 4);
    Pair out = zeros_pair({n, c}), rstd = zeros_pair({n}), dx = zeros_pair({n, c});
    cpu.rmsnorm_forward(cctx, x.cpu, scale.cpu, out.cpu, rstd.cpu, 1e-6);
    dev.rmsnorm_forward(dctx, x.dev, scale.dev, out.dev, rstd.dev, 1e-6);
    expect_close(out, "rmsnorm");
    expect_close(rstd, "rmsnorm rstd");
    cpu.rmsnorm_backward(cctx, g.cpu, x.cpu, scale.cpu, rstd.cpu, dx.cpu, dscale.cpu);
    dev.rmsnorm_backward(dctx, g.dev, x.dev, scale.dev, rstd.dev, dx.dev, dscale.dev);
    expect_close(dx, "rmsnorm dx");
    expect_close(dscale, "rmsnorm dscale");
  }
}

TEST_P(DeviceVsCpu, PositionBiasForwardBackward) {
  // Distances up to 22 reach the logarithmic buckets and, past max_distance 20, the clamp.
  for (bool bidirectional : {true, false}) {
    const int64_t k = 32, h = 4, t = 17, s = 23;
    Pair table = random_pair({k, h}, 1), g = random_pair({h, t, s}, 2);
    Pair out = zeros_pair({h, t, s}), dtable = random_pair({k, h}, 3);
    cpu.position_bias_forward(cctx, table.cpu, out.cpu, bidirectional, 20);
    dev.position_bias_forward(dctx, table.dev, out.dev, bidirectional, 20);
    expect_close(out, "position_bias", 0.0);
    cpu.position_bias_backward(cctx, g.cpu, dtable.cpu, bidirectional, 20);
    dev.position_bias_backward(dctx, g.dev, dtable.dev, bidirectional, 20);
    expect_close(dtable, "position_bias dtable");
  }
}

// Cross-attention (T != S) and causal self-attention, both with a bias and padded keys; the
// second batch entry pads its last keys.
TEST_P(DeviceVsCpu, AttentionWithCausalPaddingAndBias) {
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
    Tensor kv_dev = key_valid.dev.tensor().reshape({b, c.s});
    Pair probs = zeros_pair({b, h, c.t, c.s}), out = zeros_pair({b, c.t, h, d});
    const AttentionArgs args{.causal = c.causal, .mask_value = -1e9, .dropout = {}};
    cpu.attention_forward(cctx, q.cpu, k.cpu, v.cpu, bias.cpu, kv_cpu, args, probs.cpu, out.cpu);
    dev.attention_forward(dctx, q.dev, k.dev, v.dev, bias.dev, kv_dev, args, probs.dev, out.dev);
    expect_close(probs, "attention probs");
    expect_close(out, "attention out");

    Pair g = random_pair({b, c.t, h, d}, 5), dbias = random_pair({h, c.t, c.s}, 6);
    Pair dq = zeros_pair(q.cpu.tensor().shape), dk = zeros_pair(k.cpu.tensor().shape);
    Pair dv = zeros_pair(v.cpu.tensor().shape);
    cpu.attention_backward(cctx, g.cpu, q.cpu, k.cpu, v.cpu, probs.cpu, dq.cpu, dk.cpu, dv.cpu,
                           dbias.cpu, {});
    dev.attention_backward(dctx, g.dev, q.dev, k.dev, v.dev, probs.dev, dq.dev, dk.dev, dv.dev,
                           dbias.dev, {});
    expect_close(dq, "attention dq");
    expect_close(dk, "attention dk");
    expect_close(dv, "attention dv");
    expect_close(dbias, "attention dbias");
  }
}

TEST_P(DeviceVsCpu, AttentionWithoutBiasOrMaskInDoublePrecision) {
  const int64_t b = 2, t = 4, s = 3, h = 2, d = 5;
  const DType f64 = DType::F64;
  Pair q = random_pair({b, t, h, d}, 1, -1, 1, f64), k = random_pair({b, s, h, d}, 2, -1, 1, f64);
  Pair v = random_pair({b, s, h, d}, 3, -1, 1, f64);
  Pair probs = zeros_pair({b, h, t, s}, f64), out = zeros_pair({b, t, h, d}, f64);
  cpu.attention_forward(cctx, q.cpu, k.cpu, v.cpu, {}, {}, {}, probs.cpu, out.cpu);
  dev.attention_forward(dctx, q.dev, k.dev, v.dev, {}, {}, {}, probs.dev, out.dev);
  expect_close(out, "attention out f64", 1e-12);
  Pair dq = zeros_pair({b, t, h, d}, f64), dk = zeros_pair({b, s, h, d}, f64);
  Pair dv = zeros_pair({b, s, h, d}, f64);
  cpu.attention_backward(cctx, out.cpu, q.cpu, k.cpu, v.cpu, probs.cpu, dq.cpu, dk.cpu, dv.cpu, {},
                         {});
  dev.attention_backward(dctx, out.dev, q.dev, k.dev, v.dev, probs.dev, dq.dev, dk.dev, dv.dev, {},
                         {});
  expect_close(dq, "attention dq f64", 1e-12);
  expect_close(dk, "attention dk f64", 1e-12);
  expect_close(dv, "attention dv f64", 1e-12);
}

TEST_P(DeviceVsCpu, EmbeddingGatherAndScatterAddWithRepeatedIds) {
  const int64_t vocab = 11, c = 70;
  const std::vector<int32_t> ids = {3, 0, 10, 3, 3, 7, 0};
  const int64_t n = static_cast<int64_t>(ids.size());
  Pair table = random_pair({vocab, c}, 1), id = ids_pair(ids);
  Pair out = zeros_pair({n, c}), g = random_pair({n, c}, 2), dtable = random_pair({vocab, c}, 3);
  cpu.embedding_forward(cctx, table.cpu, id.cpu, out.cpu);
  dev.embedding_forward(dctx, table.dev, id.dev, out.dev);
  expect_close(out, "embedding", 0.0);
  cpu.embedding_backward(cctx, g.cpu, id.cpu, dtable.cpu);
  dev.embedding_backward(dctx, g.dev, id.dev, dtable.dev);
  expect_close(dtable, "embedding dtable");
}

TEST_P(DeviceVsCpu, CrossEntropyWithZLossAndZeroWeights) {
  const int64_t n = 6, vocab = 300;
  Pair logits = random_pair({n, vocab}, 1, -3, 3), targets = ids_pair({0, 299, 17, 17, 5, 250});
  Pair weights = random_pair({n}, 2, 0.5, 1.5);
  testing::set(weights.cpu, 1, 0.0), testing::set(weights.cpu, 4, 0.0);
  weights.dev = to_device(weights.cpu);
  Pair losses = zeros_pair({n}), lse = zeros_pair({n}), dlogits = random_pair({n, vocab}, 3);
  for (double z_loss : {0.0, 1e-2}) {
    cpu.cross_entropy_forward(cctx, logits.cpu, targets.cpu, weights.cpu, z_loss, losses.cpu,
                              lse.cpu);
    dev.cross_entropy_forward(dctx, logits.dev, targets.dev, weights.dev, z_loss, losses.dev,
                              lse.dev);
    expect_close(losses, "cross_entropy losses");
    expect_close(lse, "cross_entropy lse");
    cpu.cross_entropy_backward(cctx, logits.cpu, targets.cpu, weights.cpu, z_loss, lse.cpu, 0.5,
                               dlogits.cpu);
    dev.cross_entropy_backward(dctx, logits.dev, targets.dev, weights.dev, z_loss, lse.dev, 0.5,
                               dlogits.dev);
    expect_close(dlogits, "cross_entropy dlogits");
  }
}

// ---- reductions and optimizer updates ----------------------------------------------------------

TEST_P(DeviceVsCpu, SumAndSumSquaresF32AndF64) {
  const double tol = exact() ? 0.0 : 1e-12;
  for (DType dtype : {DType::F32, DType::F64}) {
    // 5M elements spread one sum over many blocks and a second pass.
    for (int64_t n : {0, 1, 1000, 5000000}) {
      Pair x = random_pair({n}, 1, -1, 1, dtype);
      const double want = cpu.sum(cctx, x.cpu), want_sq = cpu.sum_squares(cctx, x.cpu);
      EXPECT_NEAR(dev.sum(dctx, x.dev), want, tol * std::max(1.0, std::abs(want))) << n;
      EXPECT_NEAR(dev.sum_squares(dctx, x.dev), want_sq, tol * std::max(1.0, want_sq)) << n;
    }
  }
}

// Rows of one expert in runs shorter and longer than the CPU kernel's blocks; both layouts of w.
TEST_P(DeviceVsCpu, ExpertGatherMatmulAndWeightGrad) {
  std::vector<int32_t> experts;
  for (auto [expert, n] : {std::pair{2, 1}, {0, 3}, {3, 11}, {1, 2}})
    for (int i = 0; i < n; ++i) experts.push_back(expert);
  const int64_t rows = static_cast<int64_t>(experts.size()), e = 4, k = 13, m = 9;
  Pair ids = ids_pair(experts);
  for (bool trans : {false, true}) {
    for (float beta : {0.0f, 1.0f}) {
      Pair x = random_pair({rows, k}, 1), out = random_pair({rows, m}, 2);
      Pair w = random_pair(trans ? Shape{e, m, k} : Shape{e, k, m}, 3);
      cpu.expert_gather_matmul(cctx, x.cpu, w.cpu, ids.cpu, out.cpu, trans, beta);
      dev.expert_gather_matmul(dctx, x.dev, w.dev, ids.dev, out.dev, trans, beta);
      expect_close(out, "expert_gather_matmul");
    }
  }
  Pair x = random_pair({rows, k}, 4), g = random_pair({rows, m}, 5), dw = random_pair({e, k, m}, 6);
  cpu.expert_gather_weight_grad(cctx, x.cpu, g.cpu, ids.cpu, dw.cpu);
  dev.expert_gather_weight_grad(dctx, x.dev, g.dev, ids.dev, dw.dev);
  expect_close(dw, "expert_gather_weight_grad");
}

TEST_P(DeviceVsCpu, DecayTowardAFloor) {
  for (DType dtype : {DType::F32, DType::F64}) {
    Pair x = random_pair({3, 70}, 9, 0, 2, dtype);
    cpu.decay_toward(cctx, x.cpu, 1e-30, 0.37);
    dev.decay_toward(dctx, x.dev, 1e-30, 0.37);
    expect_close(x, "decay_toward", dtype == DType::F32 ? 1e-6 : 1e-15);
  }
}

TEST_P(DeviceVsCpu, AccumulateSumSquaresOverSeveralTensors) {
  Pair total = zeros_pair({1}, DType::F64);
  for (int i = 0; i < 3; ++i) {
    Pair x = random_pair({i == 1 ? int64_t{300000} : int64_t{77}}, 5 + i);
    cpu.accumulate_sum_squares(cctx, x.cpu, total.cpu);
    dev.accumulate_sum_squares(dctx, x.dev, total.dev);
  }
  expect_close(total, "accumulated sum of squares", 1e-12);
}

TEST_P(DeviceVsCpu, AdamWThreeSteps) {
  for (DType dtype : {DType::F32, DType::F64}) {
    const double tol = dtype == DType::F32 ? 1e-5 : 1e-12;
    Pair p = random_pair({7, 130}, 1, -1, 1, dtype), m = zeros_pair({7, 130}, dtype);
    Pair v = zeros_pair({7, 130}, dtype);
    for (int t = 1; t <= 3; ++t) {
      Pair g = random_pair({7, 130}, 10 + t, -1, 1, dtype);
      const AdamWStep s{.lr = 0.01, .weight_decay = 0.1, .step = t, .grad_scale = 0.5};
      cpu.adamw_update(cctx, p.cpu, g.cpu, m.cpu, v.cpu, s);
      dev.adamw_update(dctx, p.dev, g.dev, m.dev, v.dev, s);
    }
    expect_close(p, "adamw param", tol);
    expect_close(m, "adamw m", tol);
    expect_close(v, "adamw v", tol);
  }
}

// Factored (a matrix wide enough for several column blocks and reduction parts, a stack of
// slices) and unfactored (a vector, a small matrix); step 2's gradients are 100 times larger,
// so update clipping acts.
TEST_P(DeviceVsCpu, AdafactorThreeStepsFactoredAndUnfactored) {
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
          dev.adafactor_update(dctx, p.dev, g.dev, row.dev, col.dev, {}, s);
        } else {
          cpu.adafactor_update(cctx, p.cpu, g.cpu, {}, {}, v.cpu, s);
          dev.adafactor_update(dctx, p.dev, g.dev, {}, {}, v.dev, s);
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

INSTANTIATE_TEST_SUITE_P(Devices, DeviceVsCpu, ::testing::Values(Device::SIMULATED, Device::CUDA),
                         [](const ::testing::TestParamInfo<Device>& info) {
                           return std::string(device_name(info.param));
                         });

}  // namespace
}  // namespace mowe
