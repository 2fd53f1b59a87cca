// The expert compute split over the CPU thread pool: the same bits for any number of threads,
// and the same values as a plain double-precision loop, for every class of group size (single
// rows and small groups: the gather kernels on the pool; groups of gemm_min_rows or more:
// OpenBLAS on the calling thread).
#include <cblas.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "model/expert_bank.h"
#include "runtime/backend.h"
#include "runtime/cpu/thread_pool.h"
#include "runtime/math.h"
#include "tests/util/gradcheck.h"

namespace mowe::model {
namespace {

using testing::get;

constexpr int64_t kC = 256;
constexpr int64_t kMinRows = 16;

// Two buckets (F = 8 and F = 64) with every size class: many single rows, groups of 2..15 rows,
// and groups of 16 and 37 rows. Enough groups that the pool cuts each bucket into several tasks.
ExpertRows make_rows() {
  ExpertRows rows;
  rows.bucket_rows = {0};
  rows.bucket_groups = {0};
  auto add_bucket = [&](int bucket, const std::vector<int64_t>& sizes) {
    int32_t expert = 0;
    for (int64_t n : sizes) {
      const int64_t begin = rows.num_rows;
      rows.num_rows += n;
      rows.groups.push_back({bucket, expert, begin, rows.num_rows});
      for (int64_t i = 0; i < n; ++i) rows.row_expert.push_back(expert);
      expert += 3;  // gaps: untouched experts between the groups
    }
    rows.bucket_rows.push_back(rows.num_rows);
    rows.bucket_groups.push_back(static_cast<int64_t>(rows.groups.size()));
  };
  std::vector<int64_t> narrow, wide;
  for (int i = 0; i < 300; ++i) narrow.push_back(i % 10 == 3 ? 2 + i % 14 : 1);
  narrow[50] = 16, narrow[200] = 37;
  for (int i = 0; i < 60; ++i) wide.push_back(i % 4 == 1 ? 2 + i % 14 : 1);
  wide[10] = 16, wide[40] = 37;
  add_bucket(0, narrow);
  add_bucket(1, wide);
  return rows;
}

std::vector<ExpertShard> shards() {
  return {{.num_experts = 900, .first_expert = 0, .d_ff = 8, .experts = {}},
          {.num_experts = 180, .first_expert = 0, .d_ff = 64, .experts = {}}};
}

struct Result {
  std::vector<std::vector<char>> bytes;  // yp, dxp, then every gradient
};

std::vector<char> bytes_of(const Tensor& t) {
  const char* p = static_cast<const char*>(t.data);
  return {p, p + t.nbytes()};
}

// The gemm groups are OpenBLAS's products, so their bits can only be independent of the thread
// count where OpenBLAS's own are: some of its kernel sets (e.g. Haswell, and Prescott, the set
// 0.3.21 falls back to on CPUs it does not know) give other bits for one product at 1 and at 2
// threads. Returns the kernel set's name when the products this test makes differ, else "".
std::string blas_differs_across_threads(int threads) {
  const Context ctx{Device::CPU, nullptr, nullptr};
  Buffer a = testing::random_buffer({37, kC}, 3, -1, 1, DType::F32);
  Buffer w = testing::random_buffer({64, kC}, 4, -1, 1, DType::F32);
  Buffer g = testing::random_buffer({37, 64}, 5, -1, 1, DType::F32);
  auto products = [&](int n) {
    set_cpu_threads(n);
    Buffer y = testing::host_buffer({37, 64}, DType::F32);
    Buffer dw = testing::host_buffer({kC, 64}, DType::F32);
    cpu_backend().matmul(ctx, a, w, y, false, true);
    cpu_backend().matmul(ctx, a, g, dw, true, false);
    std::vector<char> bits = bytes_of(y), more = bytes_of(dw);
    bits.insert(bits.end(), more.begin(), more.end());
    return bits;
  };
  const std::vector<char> one = products(1);
  return products(threads) == one ? std::string() : std::string(openblas_get_corename());
}

// Forward and backward of a fresh bank (same seed, same data) with `threads` CPU threads.
Result run(config::Activation act, DType dtype, int threads, const ExpertRows& rows,
           ParameterStore** keep = nullptr) {
  set_cpu_threads(threads);
  static std::unique_ptr<ParameterStore> store;
  store = std::make_unique<ParameterStore>(host_allocator(), dtype, 7);
  ExpertBank bank(*store, "", shards(), kC, std::vector<config::Activation>(shards().size(), act),
                  true, false, ExpertBank::Options{kMinRows});
  Arena acts(host_allocator(), 1 << 20), scratch(host_allocator(), 1 << 20);
  const Context ctx{Device::CPU, nullptr, &scratch};
  Buffer x = testing::random_buffer({rows.num_rows, kC}, 1, -1, 1, dtype);
  Buffer dy = testing::random_buffer({rows.num_rows, kC}, 2, -1, 1, dtype);
  Buffer y = testing::host_buffer({rows.num_rows, kC}, dtype);
  Buffer dx = testing::host_buffer({rows.num_rows, kC}, dtype);
  store->zero_grads();
  ExpertBank::Saved saved;
  bank.forward(ctx, x, rows, acts, saved, y);
  bank.backward(ctx, dy, x, rows, saved, dx);
  Result r;
  r.bytes.push_back(bytes_of(y));
  r.bytes.push_back(bytes_of(dx));
  for (const auto& p : store->all()) r.bytes.push_back(bytes_of(p->grad));
  if (keep) *keep = store.get();
  return r;
}

class ExpertBankThreads : public ::testing::TestWithParam<config::Activation> {
 protected:
  void TearDown() override { set_cpu_threads(saved_threads_); }
  int saved_threads_ = cpu_threads();
};

TEST_P(ExpertBankThreads, SameBitsForOneTwoAndThreeThreads) {
  const ExpertRows rows = make_rows();
  const Result one = run(GetParam(), DType::F32, 1, rows);
  for (int threads : {2, 3}) {
    if (const std::string core = blas_differs_across_threads(threads); !core.empty())
      GTEST_SKIP() << "OpenBLAS's " << core << " kernels give other bits for one product at 1 and "
                   << threads << " threads: the gemm groups cannot be thread-independent here";
    const Result many = run(GetParam(), DType::F32, threads, rows);
    ASSERT_EQ(cpu::pool_threads(), threads);
    ASSERT_EQ(one.bytes.size(), many.bytes.size());
    for (size_t i = 0; i < one.bytes.size(); ++i)
      EXPECT_TRUE(one.bytes[i] == many.bytes[i])
          << "output " << i << " (yp, dxp, then gradients) differs at " << threads << " threads";
  }
}

// The expert function and its gradients for one row, in double, straight from the formulas.
struct Reference {
  std::vector<double> y, dx;
  std::vector<std::vector<double>> dw;  // per parameter of the store, in store order
};

Reference reference(config::Activation act, DType dtype, const ExpertRows& rows,
                    ParameterStore& store) {
  const bool gated = act == config::GATED_GELU;
  Buffer x = testing::random_buffer({rows.num_rows, kC}, 1, -1, 1, dtype);
  Buffer dy = testing::random_buffer({rows.num_rows, kC}, 2, -1, 1, dtype);
  Reference ref;
  ref.y.assign(rows.num_rows * kC, 0.0);
  ref.dx.assign(rows.num_rows * kC, 0.0);
  const auto& params = store.all();
  for (const auto& p : params) ref.dw.emplace_back(p->value.tensor().numel(), 0.0);
  const size_t per_bucket = gated ? 3 : 2;  // wi (or wi_gate, wi_linear), wo
  for (const ExpertGroup& g : rows.groups) {
    const size_t first = g.bucket * per_bucket;
    const Tensor& wg = params[first]->value;
    const Tensor* wl = gated ? &params[first + 1]->value.tensor() : nullptr;
    const Tensor& wo = params[first + per_bucket - 1]->value;
    const int64_t f = wo.dim(1), e = g.expert;
    for (int64_t r = g.begin; r < g.end; ++r) {
      std::vector<double> h(f, 0.0), hl(f, 0.0), a(f), da(f, 0.0), dh(f), dhl(f);
      for (int64_t j = 0; j < f; ++j)
        for (int64_t i = 0; i < kC; ++i) {
          h[j] += get(x, r * kC + i) * get(wg, (e * kC + i) * f + j);
          if (gated) hl[j] += get(x, r * kC + i) * get(*wl, (e * kC + i) * f + j);
        }
      for (int64_t j = 0; j < f; ++j) a[j] = math::gelu(h[j]) * (gated ? hl[j] : 1.0);
      for (int64_t c = 0; c < kC; ++c)
        for (int64_t j = 0; j < f; ++j) {
          ref.y[r * kC + c] += a[j] * get(wo, (e * f + j) * kC + c);
          da[j] += get(dy, r * kC + c) * get(wo, (e * f + j) * kC + c);
          ref.dw[first + per_bucket - 1][(e * f + j) * kC + c] += a[j] * get(dy, r * kC + c);
        }
      for (int64_t j = 0; j < f; ++j) {
        dh[j] = da[j] * math::gelu_grad(h[j]) * (gated ? hl[j] : 1.0);
        dhl[j] = da[j] * math::gelu(h[j]);
      }
      for (int64_t i = 0; i < kC; ++i)
        for (int64_t j = 0; j < f; ++j) {
          ref.dx[r * kC + i] += dh[j] * get(wg, (e * kC + i) * f + j);
          ref.dw[first][(e * kC + i) * f + j] += get(x, r * kC + i) * dh[j];
          if (gated) {
            ref.dx[r * kC + i] += dhl[j] * get(*wl, (e * kC + i) * f + j);
            ref.dw[first + 1][(e * kC + i) * f + j] += get(x, r * kC + i) * dhl[j];
          }
        }
    }
  }
  return ref;
}

// |got - want| <= tol * max(1, |want|) for every element: tol 1e-12 in f64 (the products' sums
// have at most 256 terms of magnitude below 1), 2e-5 in f32 (256 terms: well above 256 x 2^-24
// for the products, plus the vector GELU's few ulps).
void expect_near(const std::vector<char>& got_bytes, const std::vector<double>& want, DType dtype,
                 double tol, const std::string& what) {
  const Tensor got(const_cast<char*>(got_bytes.data()), dtype, Device::CPU,
                   {static_cast<int64_t>(want.size())});
  double worst = 0;
  int64_t at = -1;
  for (size_t i = 0; i < want.size(); ++i) {
    const double err = std::abs(get(got, i) - want[i]) / std::max(1.0, std::abs(want[i]));
    if (err > worst) worst = err, at = static_cast<int64_t>(i);
  }
  EXPECT_LE(worst, tol) << what << ": worst relative error " << worst << " at " << at;
}

TEST_P(ExpertBankThreads, MatchesDoubleLoopForEverySizeClass) {
  const ExpertRows rows = make_rows();
  for (DType dtype : {DType::F64, DType::F32}) {
    const double tol = dtype == DType::F64 ? 1e-12 : 2e-5;
    ParameterStore* store = nullptr;
    const Result got = run(GetParam(), dtype, 2, rows, &store);
    const Reference want = reference(GetParam(), dtype, rows, *store);
    const std::string tag = dtype == DType::F64 ? "f64 " : "f32 ";
    expect_near(got.bytes[0], want.y, dtype, tol, tag + "y");
    expect_near(got.bytes[1], want.dx, dtype, tol, tag + "dx");
    const auto& params = store->all();
    for (size_t i = 0; i < want.dw.size(); ++i)
      expect_near(got.bytes[2 + i], want.dw[i], dtype, tol, tag + "d" + params[i]->name);
  }
}

INSTANTIATE_TEST_SUITE_P(Activations, ExpertBankThreads,
                         ::testing::Values(config::GELU, config::GATED_GELU));

}  // namespace
}  // namespace mowe::model
