// mowe_bench_step: W warm-up and N measured training steps of a config, as mowe_pretrain trains
// them (Job, StepRunner, the same loader and plan), with the figures a performance comparison
// needs and nothing else (no logging window, evaluation or checkpoint):
//
//   mpirun -np 2 build/bin/mowe_bench_step --config configs/bench_mowe.textproto
//       --warmup 3 --steps 10 [--threads T] [--dump-batches F] [--dump-weights F]
//       [--dump-final-weights F]
//
// Printed: real tokens/s (padding excluded), the mean step time split into forward, backward,
// all-to-all, allreduce, optimizer and other (max over ranks of each rank's mean), model FLOPs
// per step (launch/train/throughput.h, the progress line's count) and MFU against an sgemm peak
// measured in this run with every rank measuring at once (before and after the steps, the
// better of the two), each rank's peak RSS; then one JSON line
// starting with "BENCH_STEP " for scripts. --dump-batches writes every global batch it trains on
// with each token's expert (and the owner of each expert block), --dump-weights (one rank) the
// initial parameters: the inputs of the PyTorch baseline (tests/bench/t5_torch_baseline.py);
// --dump-final-weights (one rank) the parameters after the last step, which the baseline's own
// training from the same start must reproduce (tests/bench/bench_check.sh).
#include <mpi.h>
#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "launch/train/config_rules.h"
#include "launch/train/job.h"
#include "launch/train/step.h"
#include "launch/train/throughput.h"
#include "model/describe.h"
#include "model/memory_estimate.h"
#include "runtime/backend.h"
#include "runtime/config/config.h"
#include "runtime/cpu/blas_kernels.h"
#include "runtime/cpu/sgemm_peak.h"
#include "runtime/log.h"
#include "tests/bench/step_dump.h"

namespace {

using namespace mowe;

constexpr const char* kUsage =
    "mpirun -np N mowe_bench_step --config FILE [--set path=value]... [--warmup W] [--steps N]\n"
    "                             [--threads T] [--dump-batches FILE] [--dump-weights FILE]\n"
    "                             [--dump-final-weights FILE]\n"
    "  --warmup        steps run first and not measured (default 3)\n"
    "  --steps         measured steps (default 10)\n"
    "  --threads       BLAS threads per rank (default: cores / ranks on this node)\n"
    "  --dump-batches  write the global batches of all W + N steps with each token's expert\n"
    "  --dump-weights  write the initial parameters (one rank only)\n"
    "  --dump-final-weights  write the parameters after the last step (one rank only)";

std::string value(const config::CommonFlags& f, const std::string& flag, std::string fallback) {
  const auto it = f.values.find(flag);
  return it == f.values.end() ? fallback : it->second;
}

double max_over_ranks(double v) {
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return v;
}

double sum_over_ranks(double v) {
  MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  return v;
}

// Parameters of the whole model: each logical row counted once, by the rank whose copy is saved.
double model_parameters(const model::ParameterStore& store) {
  double n = 0;
  for (const auto& p : store.all())
    if (p->sharding.writer) n += static_cast<double>(p->value.tensor().numel());
  return sum_over_ranks(n);
}

int cores_allowed() {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  return sched_getaffinity(0, sizeof(mask), &mask) == 0 ? CPU_COUNT(&mask) : 0;
}

int run(const config::CommonFlags& flags, int rank, int world) {
  const config::Config cfg = train::load_config(flags.config_path, flags.overrides);
  const int warmup =
      static_cast<int>(config::parse_int_flag(value(flags, "--warmup", "3"), "--warmup", 0));
  const int steps =
      static_cast<int>(config::parse_int_flag(value(flags, "--steps", "10"), "--steps", 1));
  const std::string dump_batches = value(flags, "--dump-batches", "");
  const std::string dump_weights = value(flags, "--dump-weights", "");
  const std::string dump_final = value(flags, "--dump-final-weights", "");
  if ((!dump_weights.empty() || !dump_final.empty()) && world != 1)
    throw Error(
        "--dump-weights and --dump-final-weights need one rank (the experts are sharded over "
        "ranks otherwise)");

  auto comm = comm::make_communicator(MPI_COMM_WORLD, Device::CPU, {});
  const int on_host = model::ranks_on_this_host(*comm);
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  const int threads = set_cpu_threads(static_cast<int>(config::parse_int_flag(
      value(flags, "--threads", std::to_string(std::max(1, cores / on_host))), "--threads", 1)));

  train::Job job(cfg, *comm);
  train::StepRunner runner(job);
  train::TrainState state;
  state.dropout_seed = static_cast<uint64_t>(cfg.training().seed());
  state.loader = job.train_loader().state();
  const model::ModelSize size =
      model::describe(cfg.model(), cfg.data().input_length(), job.train_loader().target_length());
  const double params = model_parameters(job.parameters());
  if (!dump_weights.empty()) bench::write_parameters(dump_weights, job.parameters(), cfg);

  // The peak of this run, every rank measuring at once as they share the node's cores in a step
  // (not the cached value), before and after the steps: the better of the two, since on a shared
  // machine another job may run during either measurement.
  const auto measure_peak = [&] {
    comm->barrier();
    return sum_over_ranks(cpu::measure_sgemm_gflops() * 1e9);
  };
  double peak = measure_peak();

  const model::RoutingTable* table = job.plan() ? &job.plan()->table() : nullptr;
  const int deactivate = cfg.model().mowe().deactivate_routing_ids_above();
  std::vector<bench::GlobalBatch> dumped;
  train::StepTimes sum;
  double wall = 0, tokens = 0, flops = 0, first_loss = 0, last_loss = 0;
  using Clock = std::chrono::steady_clock;
  for (int i = 0; i < warmup + steps; ++i) {
    const data::Batch batch = job.train_loader().next();
    bench::GlobalBatch global;
    if (!dump_batches.empty()) global = bench::gather_batch(batch, table, deactivate, *comm);
    const auto start = Clock::now();
    const train::StepResult r = runner.train_step(batch, state);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    const double step_flops =
        train::step_model_flops(size, {r.encoder_tokens, r.decoder_tokens, r.bucket_rows});
    if (i == 0) first_loss = r.loss;
    last_loss = r.loss;
    if (rank == 0)
      std::printf("step %d%s: loss %.6f, %.3f s, %lld real tokens\n", i + 1,
                  i < warmup ? " (warm-up)" : "", r.loss, seconds,
                  static_cast<long long>(r.tokens));
    if (rank == 0 && !dump_batches.empty()) {
      global.model_flops = step_flops;
      global.real_tokens = r.tokens;
      dumped.push_back(std::move(global));
    }
    if (i < warmup) continue;
    wall += seconds;
    tokens += static_cast<double>(r.tokens);
    flops += step_flops;
    const train::StepTimes& t = r.times;
    for (auto [acc, part] : {std::pair{&sum.forward, t.forward},
                             {&sum.backward, t.backward},
                             {&sum.alltoall, t.alltoall},
                             {&sum.allreduce, t.allreduce},
                             {&sum.optimizer, t.optimizer},
                             {&sum.other, t.other},
                             {&sum.total, t.total}})
      *acc += part;
  }
  if (rank == 0 && !dump_batches.empty())
    bench::write_batches(dump_batches, dumped, cfg, job.plan(), world);
  if (!dump_final.empty()) bench::write_parameters(dump_final, job.parameters(), cfg);
  peak = std::max(peak, measure_peak());

  // The slowest rank sets the pace of a synchronous step.
  const double n = steps;
  wall = max_over_ranks(wall);
  const double forward = max_over_ranks(sum.forward / n),
               backward = max_over_ranks(sum.backward / n);
  const double alltoall = max_over_ranks(sum.alltoall / n),
               allreduce = max_over_ranks(sum.allreduce / n);
  const double optimizer = max_over_ranks(sum.optimizer / n), other = max_over_ranks(sum.other / n);
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const double rss_mb = static_cast<double>(usage.ru_maxrss) / 1024;  // ru_maxrss is in KiB
  std::vector<double> rss(world);
  MPI_Gather(&rss_mb, 1, MPI_DOUBLE, rss.data(), 1, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  const int allowed = cores_allowed();
  if (rank != 0) return 0;

  const double tokens_per_s = tokens / wall, mfu = flops / wall / peak;
  std::string rss_list;
  for (double r : rss) rss_list += (rss_list.empty() ? "" : ", ") + fmt::format("{:.0f}", r);
  std::cout << fmt::format(
      "config {}: {} ranks x {} BLAS threads (rank 0 may run on {} cores), {:.0f} parameters\n"
      "{}\n"
      "{} measured steps after {} warm-up: {:.0f} real tokens/step, {:.1f} real tokens/s\n"
      "step {:.4f} s: forward {:.4f}, backward {:.4f}, all-to-all {:.4f}, allreduce {:.4f}, "
      "optimizer {:.4f}, other {:.4f} (mean per step, max over ranks)\n"
      "model FLOPs/step {:.4e}; MFU {:.2f}% of the sgemm peak {:.1f} GFLOP/s (all ranks)\n"
      "peak RSS per rank (MB): {}\n",
      flags.config_path, world, threads, allowed, params, cpu::blas_kernel_report(), steps, warmup,
      tokens / n, tokens_per_s, wall / n, forward, backward, alltoall, allreduce, optimizer, other,
      flops / n, 100 * mfu, peak / 1e9, rss_list);
  std::cout << fmt::format(
      "BENCH_STEP {{\"impl\": \"mowe\", \"config\": \"{}\", \"ranks\": {}, \"threads\": {}, "
      "\"warmup\": {}, \"steps\": {}, \"params\": {:.0f}, \"tokens_per_step\": {:.1f}, "
      "\"tokens_per_s\": {:.3f}, \"step_s\": {:.6f}, \"forward_s\": {:.6f}, \"backward_s\": "
      "{:.6f}, "
      "\"alltoall_s\": {:.6f}, \"allreduce_s\": {:.6f}, \"optimizer_s\": {:.6f}, \"other_s\": "
      "{:.6f}, \"model_flops_per_step\": {:.6e}, \"peak_gflops\": {:.3f}, \"mfu\": {:.6f}, "
      "\"peak_rss_mb\": [{}], \"first_loss\": {:.8f}, \"last_loss\": {:.8f}, \"blas_kernels\": "
      "\"{}\"}}\n",
      flags.config_path, world, threads, warmup, steps, params, tokens / n, tokens_per_s, wall / n,
      forward, backward, alltoall, allreduce, optimizer, other, flops / n, peak / 1e9, mfu,
      rss_list, first_loss, last_loss, cpu::blas_kernel_set());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // The kernels mowe_pretrain runs (launch/program/program.h).
  cpu::restart_with_better_blas_kernels(argv);
  MPI_Init(&argc, &argv);
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  log::init({.rank = rank, .world_size = world, .level = "warn"});
  int status = 0;
  try {
    const config::CommonFlags flags =
        config::parse_common_flags(argc, argv, {},
                                   {"--warmup", "--steps", "--threads", "--dump-batches",
                                    "--dump-weights", "--dump-final-weights"});
    if (flags.help) {
      if (rank == 0) std::cout << kUsage << "\n";
    } else {
      if (flags.config_path.empty()) throw Error("--config FILE is required (see --help)");
      status = run(flags, rank, world);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mowe_bench_step: error on rank %d: %s\n", rank, e.what());
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return status;
}
