// MoWE layer benchmark: forward + backward of one layer at 1K, 32K and 256K experts holding the
// same expert parameters (d_model 256, one bucket, experts x width constant), on ~8K tokens with
// Zipf-distributed routing ids over a 1M routing vocabulary. Prints the time, the achieved
// GFLOP/s and, for comparison, the OpenBLAS sgemm peak of this machine.
//   build/bin/mowe_bench_mowe_layer [--reps N] [--tokens N] [--experts E] [--sweep]
// --sweep also times every layout with several gemm_min_rows thresholds (the two compute paths).
#include <cblas.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "model/mowe_layer.h"
#include "runtime/backend.h"
#include "runtime/cpu/blas_kernels.h"

namespace {

using namespace mowe;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

constexpr int64_t kDModel = 256;
constexpr int64_t kVocab = 1 << 20;
constexpr int64_t kParamsPerMatrix = int64_t{1024} * 256;  // experts x width

// Best sgemm rate over a few square products: the machine's practical peak.
double sgemm_peak_gflops() {
  double best = 0;
  for (int n : {1024, 2048}) {
    std::vector<float> a(size_t(n) * n, 0.5f), b(size_t(n) * n, 0.25f), c(size_t(n) * n);
    for (int r = 0; r < 4; ++r) {
      auto t0 = Clock::now();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(),
                  n, 0.0f, c.data(), n);
      best = std::max(best, 2.0 * n * n * n / seconds_since(t0) * 1e-9);
    }
  }
  return best;
}

// Routing id i has frequency proportional to 1/(i+1): ids are already in frequency order.
std::vector<int64_t> zipf_frequencies() {
  std::vector<int64_t> f(kVocab);
  for (int64_t i = 0; i < kVocab; ++i) f[i] = (int64_t{1} << 40) / (i + 1);
  return f;
}

std::vector<int32_t> zipf_tokens(int64_t n, uint64_t seed) {
  std::vector<double> cdf(kVocab);
  double s = 0;
  for (int64_t i = 0; i < kVocab; ++i) cdf[i] = (s += 1.0 / static_cast<double>(i + 1));
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> u(0, s);
  std::vector<int32_t> ids(n);
  for (int32_t& id : ids)
    id = static_cast<int32_t>(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin());
  return ids;
}

config::MoweConfig layout(int64_t experts) {
  config::MoweConfig c;
  c.set_routing_vocab_size(kVocab);
  c.set_num_unrouted_ids(16);
  c.set_expert_activation(config::GELU);
  config::BucketConfig* b = c.add_buckets();
  b->set_num_routing_ids(0);
  b->set_num_blocks(static_cast<int32_t>(std::min<int64_t>(experts, 128)));
  b->set_experts_per_block(static_cast<int32_t>(experts / b->num_blocks()));
  b->set_expert_d_ff(static_cast<int32_t>(kParamsPerMatrix / experts));
  return c;
}

struct Timing {
  double forward_ms, backward_ms;
};

// Best forward and backward times of one layer over `reps` steps (after one warm-up step): the
// best, not the median, because the machine is shared with other jobs.
Timing time_layer(model::MoweLayer& layer, const model::Dispatch& d, const Tensor& x,
                  const Tensor& dy, const Tensor& dx, int reps) {
  Arena acts(host_allocator()), scratch(host_allocator());
  Context ctx{Device::CPU, nullptr, &scratch};
  std::vector<double> fwd, bwd;
  for (int r = 0; r <= reps; ++r) {
    ArenaScope step(acts);
    auto t0 = Clock::now();
    layer.forward(ctx, x, d, acts);
    const double f = seconds_since(t0);
    t0 = Clock::now();
    layer.backward(ctx, dy, dx);
    const double b = seconds_since(t0);
    if (r > 0) fwd.push_back(f * 1e3), bwd.push_back(b * 1e3);
  }
  return {*std::min_element(fwd.begin(), fwd.end()), *std::min_element(bwd.begin(), bwd.end())};
}

}  // namespace

int main(int argc, char** argv) {
  // The OpenBLAS kernels the trainer runs (runtime/cpu/blas_kernels.h).
  mowe::cpu::restart_with_better_blas_kernels(argv);
  int reps = 10;
  int64_t tokens = 8192;
  bool sweep = false;
  int64_t only = 0;  // --experts: one layout only
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc) reps = std::stoi(argv[++i]);
    if (std::strcmp(argv[i], "--tokens") == 0 && i + 1 < argc) tokens = std::stoll(argv[++i]);
    if (std::strcmp(argv[i], "--sweep") == 0) sweep = true;
    if (std::strcmp(argv[i], "--experts") == 0 && i + 1 < argc) only = std::stoll(argv[++i]);
  }
  const double peak = sgemm_peak_gflops();
  fmt::print(
      "# MoWE layer, f32, d_model {}, one bucket, {} tokens with Zipf routing ids over {} "
      "ids, {} OpenBLAS threads, best of {} steps\n",
      kDModel, tokens, kVocab, openblas_get_num_threads(), reps);
  fmt::print("# OpenBLAS sgemm peak on this machine: {:.1f} GFLOP/s\n", peak);
  fmt::print("{:>8} {:>6} {:>7} {:>7} {:>7} {:>8} {:>9} {:>8} {:>8} {:>9} {:>7}\n", "experts",
             "width", "tokens", "routed", "groups", "min_rows", "dispatch", "fwd ms", "bwd ms",
             "total ms", "GFLOP/s");
  const std::vector<int64_t> ids_freq = zipf_frequencies();
  const std::vector<int32_t> ids = zipf_tokens(tokens, 1);
  for (int64_t experts : {int64_t{1024}, int64_t{32768}, int64_t{262144}}) {
    if (only != 0 && experts != only) continue;
    const config::MoweConfig cfg = layout(experts);
    const model::RoutingTable table = model::RoutingTable::build(cfg, ids_freq);
    auto t0 = Clock::now();
    const model::Dispatch d = model::Dispatch::build(table, ids);
    const double dispatch_ms = seconds_since(t0) * 1e3;
    model::ParameterStore store(host_allocator(), DType::F32, 1);
    Buffer x(host_allocator(), {tokens, kDModel}, DType::F32);
    Buffer dy(host_allocator(), {tokens, kDModel}, DType::F32);
    Buffer dx(host_allocator(), {tokens, kDModel}, DType::F32);
    std::mt19937 rng(2);
    std::uniform_real_distribution<float> u(-1, 1);
    for (int64_t i = 0; i < tokens * kDModel; ++i)
      x.tensor().ptr<float>()[i] = u(rng), dy.tensor().ptr<float>()[i] = u(rng);
    std::vector<int64_t> thresholds = {model::ExpertBank::Options{}.gemm_min_rows};
    if (sweep) thresholds = {1, 2, 4, 8, 16, 32, std::numeric_limits<int64_t>::max()};
    const int64_t width = cfg.buckets(0).expert_d_ff();
    // Forward 2 and backward 4 products of 2 R C F flops each.
    const double flops = 12.0 * d.num_routed() * kDModel * width;
    for (size_t k = 0; k < thresholds.size(); ++k) {
      model::MoweLayer layer(store, cfg, table, kDModel, fmt::format("bench{}", k),
                             model::ExpertBank::Options{thresholds[k]});
      const Timing t = time_layer(layer, d, x, dy, dx, reps);
      const double total = t.forward_ms + t.backward_ms;
      const std::string min_rows = thresholds[k] == std::numeric_limits<int64_t>::max()
                                       ? "inf"
                                       : std::to_string(thresholds[k]);
      fmt::print(
          "{:>8} {:>6} {:>7} {:>7} {:>7} {:>8} {:>9.2f} {:>8.2f} {:>8.2f} {:>9.2f} {:>7.1f}\n",
          experts, width, tokens, d.num_routed(), d.rows().groups.size(), min_rows, dispatch_ms,
          t.forward_ms, t.backward_ms, total, flops / (total * 1e-3) * 1e-9);
    }
  }
  return 0;
}
