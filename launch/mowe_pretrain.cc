// mowe_pretrain: the SPMD training program, one process per rank.
//   mpirun -np N build/bin/mowe_pretrain --config configs/wordnet_small.textproto [--set k=v]...
// Every rank loads and validates the configuration and checks that all ranks agree on it; then
// it trains (launch/train/trainer.h), or checks its inputs without training (--dry-run), or
// prints the model's size and cost (--describe). SIGTERM, SIGUSR1 and SIGINT make the ranks
// write a checkpoint at the next step boundary and exit 0 (130 for SIGINT).
#include <mpi.h>
#include <sched.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>
#include <thread>

#include "comm/agree.h"
#include "comm/mpi_check.h"
#include "data/span_corruption.h"
#include "launch/train/collective.h"
#include "launch/train/config_rules.h"
#include "launch/train/job.h"
#include "launch/train/preemption.h"
#include "launch/train/trainer.h"
#include "model/describe.h"
#include "model/memory_estimate.h"
#include "model/mowe_layers.h"
#include "runtime/backend.h"
#include "runtime/checkpoint/directory.h"
#include "runtime/config/config.h"
#include "runtime/hash.h"
#include "runtime/log.h"

namespace {

constexpr const char* kUsage =
    "mpirun -np N mowe_pretrain --config FILE [--set path=value]... [--resume auto|none|PATH]\n"
    "                           [--dry-run] [--describe]\n"
    "  --resume    auto: continue from the newest checkpoint in training.checkpoint_dir that\n"
    "              loads (start at step 0 when there is none); none (default): start at step 0;\n"
    "              PATH: continue from that checkpoint directory (any world size)\n"
    "  --dry-run   check the configuration, the MPI world, every input file, the dispatch plan\n"
    "              for this world size and the checkpoint directory, then exit without training\n"
    "  --describe  print parameter counts, FLOPs and the memory of one rank at this world size\n"
    "              (mpirun -np N), then exit\n"
    "SIGTERM, SIGUSR1 or SIGINT: checkpoint at the next step boundary, then exit 0 (SIGINT: 130).\n"
    "Before training: mowe_vocab --config FILE (tokenizer and routing vocabulary), and\n"
    "optionally mowe_plan --config FILE --world-size N (the dispatch plan).";

// FNV-1a: a cheap fingerprint of the resolved config, compared across ranks.
uint64_t fingerprint(const std::string& text) {
  return mowe::fnv1a(text);
}

std::string resume_mode(const mowe::config::CommonFlags& flags) {
  auto it = flags.values.find("--resume");
  return it == flags.values.end() ? "none" : it->second;
}

struct Startup {
  mowe::config::CommonFlags flags;
  mowe::config::Config config;
};

// `srun -n N` without an MPI plugin starts N MPI singletons, each rank 0 of 1, which would each
// train the whole model alone while Slurm reports N tasks.
void refuse_singletons_under_srun(int world) {
  const char* tasks = std::getenv("SLURM_STEP_NUM_TASKS");
  if (world != 1 || tasks == nullptr || std::atoi(tasks) <= 1) return;
  throw mowe::Error(fmt::format(
      "Slurm started {} tasks for this step but MPI sees a world of 1 rank per task: srun has no "
      "MPI plugin here. Launch with srun --mpi=pmix (or pmi2; see srun --mpi=list), or with "
      "mpirun inside the allocation",
      tasks));
}

// mpirun binds each rank to one core by default (Open MPI with 2 or fewer ranks): a rank's BLAS
// threads then share that core and run at the speed of one. Said on the rank it concerns.
void warn_if_bound_to_fewer_cores(int threads) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof(mask), &mask) != 0) return;
  const int allowed = CPU_COUNT(&mask);
  if (allowed >= threads) return;
  spdlog::warn(
      "[pretrain] this rank may only run on {} core{} (its CPU affinity) but uses {} BLAS "
      "threads, which then share {}: launch with mpirun --bind-to none, or --map-by "
      "slot:PE={} to give each rank that many cores",
      allowed, allowed == 1 ? "" : "s", threads, allowed == 1 ? "it" : "them", threads);
}

// Flags and config: errors here are the same on every rank, so they are agreed on collectively.
Startup parse_and_load(int argc, char** argv, int rank, int world) {
  refuse_singletons_under_srun(world);
  Startup s;
  s.flags = mowe::config::parse_common_flags(argc, argv, {"--dry-run", "--describe"}, {"--resume"});
  mowe::log::init({.rank = rank,
                   .world_size = world,
                   .all_ranks = s.flags.log_all_ranks,
                   .level = s.flags.log_level});
  if (s.flags.help) return s;
  if (s.flags.config_path.empty()) throw mowe::Error("--config FILE is required (see --help)");
  if (!s.flags.positional.empty())
    throw mowe::Error(fmt::format("unexpected argument '{}' (a forgotten --set? run with --help)",
                                  s.flags.positional[0]));
  s.config = mowe::train::load_config(s.flags.config_path, s.flags.overrides);
  const std::string resume = resume_mode(s.flags);
  if (resume != "auto" && resume != "none" &&
      !std::filesystem::exists(std::filesystem::path(resume) / "manifest.pb"))
    throw mowe::Error(fmt::format(
        "--resume {}: not a checkpoint directory (no manifest.pb); use auto, none, or a "
        "step-NNNNNNNN directory of training.checkpoint_dir",
        resume));
  return s;
}

// What --dry-run checks besides the config: every input file exists and parses (corpus,
// tokenizer, routing vocabulary), the dispatch plan serves this world size, and the checkpoint
// directory is usable. Collective; errors are agreed on.
void dry_run(const mowe::config::Config& cfg, MPI_Comm world_comm, int rank, int world) {
  mowe::comm::CommOptions options;
  options.timeout_seconds = cfg.parallel().collective_timeout_s();
  auto comm = mowe::comm::make_communicator(world_comm, mowe::Device::CPU, options);
  const int on_host = mowe::model::ranks_on_this_host(*comm);
  mowe::train::run_agreed(*comm, [&] {
    mowe::model::check_memory_fits(mowe::model::estimate_memory(cfg, world),
                                   mowe::model::available_host_memory(), on_host);
    if (rank == 0)
      mowe::checkpoint::check_checkpoint_directory(cfg.training().checkpoint_dir(),
                                                   "training.checkpoint_dir");
    const mowe::data::DataPipeline data = mowe::data::open_pipeline(cfg);
    if (mowe::model::has_mowe_layers(cfg)) mowe::train::resolve_plan(cfg, *data.vocab, world);
    spdlog::info("[pretrain] dry run: inputs, dispatch plan and checkpoint directory are usable");
  });
}

// Parameter counts, FLOPs and one rank's memory at this world size, computed from the config
// alone.
void describe(const mowe::config::Config& cfg, int world) {
  const auto& d = cfg.data();
  int64_t targets = d.target_length();
  if (targets == 0)
    targets =
        mowe::data::t5_span_lengths(d.input_length(), d.noise_density(), d.mean_noise_span_length())
            .targets_length;
  std::cout << mowe::model::describe_report(
      mowe::model::describe(cfg.model(), d.input_length(), targets));
  std::cout << fmt::format("(sequence: {} encoder + {} decoder tokens)\n", d.input_length(),
                           targets);
  std::cout << mowe::model::memory_report(mowe::model::estimate_memory(cfg, world));
}

int run(const Startup& s, int rank, int world) {
  if (s.flags.has("--describe")) {
    if (rank == 0) describe(s.config, world);
    return 0;
  }
  const std::string resolved = mowe::config::to_text(s.config);
  spdlog::info("[pretrain] {} ranks, config {} resolved to:\n{}", world, s.flags.config_path,
               resolved);
  // Every rank must train the same model: a rank that read another file or other overrides
  // would silently diverge, so compare fingerprints before doing any work.
  uint64_t mine = fingerprint(resolved), lo = 0, hi = 0;
  MPI_CHECK(MPI_Allreduce(&mine, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD));
  MPI_CHECK(MPI_Allreduce(&mine, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD));
  if (lo != hi) {
    throw mowe::Error(fmt::format(
        "ranks resolved different configs (fingerprints {:016x} .. {:016x}): give every rank the "
        "same --config and --set arguments",
        lo, hi));
  }
  // The training loop runs its ops on the CPU backend; the CUDA backend's ops exist and are
  // compiled, but the loop does not place tensors on a GPU yet.
  if (s.config.parallel().device() == mowe::config::ParallelConfig::CUDA)
    throw mowe::Error(
        "parallel.device: CUDA is not supported by the training loop yet; use CPU or AUTO");
  spdlog::info("[pretrain] all {} ranks agree on the config (fingerprint {:016x}); device: cpu",
               world, mine);
  if (s.flags.has("--dry-run")) {
    dry_run(s.config, MPI_COMM_WORLD, rank, world);
    spdlog::info("[pretrain] dry run complete");
    return 0;
  }
  mowe::comm::CommOptions options;
  options.timeout_seconds = s.config.parallel().collective_timeout_s();
  auto comm = mowe::comm::make_communicator(MPI_COMM_WORLD, mowe::Device::CPU, options);
  // Ranks on one node share its cores (threads per rank = cores / ranks on the node).
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  // Counted by host name: nodes may hold different numbers of ranks (a flat all-to-all does not
  // care), which comm->ranks_per_node() refuses.
  const int on_host = mowe::model::ranks_on_this_host(*comm);
  const int threads = mowe::set_cpu_threads(std::max(1, cores / on_host));
  spdlog::info("[pretrain] {} cores, {} ranks on this node: {} BLAS threads per rank", cores,
               on_host, threads);
  warn_if_bound_to_fewer_cores(threads);
  mowe::train::Trainer trainer(s.config, *comm);
  trainer.resume(resume_mode(s.flags));
  const mowe::train::RunResult result = trainer.run();
  if (rank == 0 && !result.metrics.empty()) {
    // The summary a user looks for at the end of a run, in one place.
    std::string summary = fmt::format("[pretrain] summary: step {}", trainer.state().step);
    if (!std::isnan(result.train_loss))
      summary += fmt::format(", training loss {:.4f}", result.train_loss);
    if (!std::isnan(result.eval_loss))
      summary += fmt::format(", validation loss {:.4f}", result.eval_loss);
    const std::string ckpt = result.last_checkpoint.empty()
                                 ? s.config.training().checkpoint_dir() + "/latest"
                                 : result.last_checkpoint;
    summary += fmt::format("; checkpoint {}; metrics {}", ckpt, result.metrics);
    spdlog::info("{}", summary);
  }
  return result.stop_signal == SIGINT ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  // From here on a stop signal only sets a flag: a job told to stop while it starts up still
  // stops cleanly at its first step boundary.
  mowe::train::install_stop_handlers();
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  mowe::log::init({.rank = rank, .world_size = world});
  Startup startup;
  int status = 2;
  if (mowe::comm::all_ranks_succeed(MPI_COMM_WORLD, "mowe_pretrain",
                                    [&] { startup = parse_and_load(argc, argv, rank, world); })) {
    if (startup.flags.help) {
      if (rank == 0) std::cout << mowe::config::help_text("mowe_pretrain", kUsage);
      status = 0;
    } else {
      try {
        status = run(startup, rank, world);
      } catch (const mowe::train::AgreedError& e) {
        // Every rank has the same error and leaves cleanly: print it once.
        if (rank == 0) std::fprintf(stderr, "mowe_pretrain: error: %s\n", e.what());
        status = 1;
      } catch (const std::exception& e) {
        std::fprintf(stderr, "mowe_pretrain: error on rank %d of %d (host %s): %s\n", rank, world,
                     mowe::log::host_name().c_str(), e.what());
        // Other ranks may be waiting in a collective for this one: end the job, never hang.
        if (world > 1) MPI_Abort(MPI_COMM_WORLD, 2);
      }
    }
  }
  MPI_Finalize();
  return status;
}
