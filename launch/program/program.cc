#include "launch/program/program.h"

#include <mpi.h>
#include <sched.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <thread>

#include "comm/agree.h"
#include "comm/mpi_communicator.h"
#include "model/config_rules.h"
#include "model/memory_estimate.h"
#include "runtime/backend.h"
#include "runtime/cpu/blas_kernels.h"
#include "runtime/hash.h"
#include "runtime/log.h"

namespace mowe::program {
namespace {

// FNV-1a: a cheap fingerprint of the resolved config, compared across ranks.
uint64_t fingerprint(const std::string& text) {
  return fnv1a(text);
}

// `srun -n N` without an MPI plugin starts N MPI singletons, each rank 0 of 1, which would each
// do the whole job alone while Slurm reports N tasks.
void refuse_singletons_under_srun(int world) {
  const char* tasks = std::getenv("SLURM_STEP_NUM_TASKS");
  if (world != 1 || tasks == nullptr || std::atoi(tasks) <= 1) return;
  throw Error(fmt::format(
      "Slurm started {} tasks for this step but MPI sees a world of 1 rank per task: srun has no "
      "MPI plugin here. Launch with srun --mpi=pmix (or pmi2; see srun --mpi=list), or with "
      "mpirun inside the allocation",
      tasks));
}

// mpirun binds each rank to one core by default (Open MPI with 2 or fewer ranks): a rank's BLAS
// threads then share that core and run at the speed of one. Said on the rank it concerns.
void warn_if_bound_to_fewer_cores(int threads, const std::string& tag) {
  cpu_set_t mask;
  CPU_ZERO(&mask);
  if (sched_getaffinity(0, sizeof(mask), &mask) != 0) return;
  const int allowed = CPU_COUNT(&mask);
  if (allowed >= threads) return;
  spdlog::warn(
      "[{}] this rank may only run on {} core{} (its CPU affinity) but uses {} BLAS threads, "
      "which then share {}: launch with mpirun --bind-to none, or --map-by slot:PE={} to give "
      "each rank that many cores",
      tag, allowed, allowed == 1 ? "" : "s", threads, allowed == 1 ? "it" : "them", threads);
}

struct Loaded {
  config::CommonFlags flags;
  config::Config config;
};

// Flags and config: errors here are most often the same on every rank; they are agreed on.
Loaded load(int argc, char** argv, const ProgramSpec& spec, int rank, int world) {
  refuse_singletons_under_srun(world);
  Loaded l;
  l.flags = config::parse_common_flags(argc, argv, spec.bool_flags, spec.value_flags);
  log::init({.rank = rank,
             .world_size = world,
             .all_ranks = l.flags.log_all_ranks,
             .level = l.flags.log_level});
  if (l.flags.help) return l;
  if (cpu::blas_kernels_fall_short())
    spdlog::warn("[blas] {}", cpu::blas_kernel_report());
  else
    spdlog::info("[blas] {}", cpu::blas_kernel_report());
  if (l.flags.config_path.empty()) throw Error("--config FILE is required (see --help)");
  if (!l.flags.positional.empty())
    throw Error(fmt::format("unexpected argument '{}' (a forgotten --set? run with --help)",
                            l.flags.positional[0]));
  l.config = spec.load(l.flags);
  return l;
}

// Every rank must work on the same model: a rank that read another file or other overrides
// would silently diverge, so the resolved configs are compared before any work.
void check_same_config(const Loaded& l, comm::Communicator& comm, const std::string& tag) {
  const std::string resolved = config::to_text(l.config);
  spdlog::info("[{}] {} ranks, config {} resolved to:\n{}", tag, comm.size(), l.flags.config_path,
               resolved);
  const uint64_t mine = fingerprint(resolved);
  comm::check_same_everywhere(comm, mine, "ranks resolved different configs",
                              "give every rank the same --config and --set arguments");
  spdlog::info("[{}] all {} ranks agree on the config (fingerprint {:016x})", tag, comm.size(),
               mine);
  for (const std::string& warning : model::config_warnings(l.config))
    spdlog::warn("[{}] config: {}", tag, warning);
}

// Ranks on one node share its cores: threads per rank = cores / ranks on the node. Returns them.
int set_up_threads(comm::Communicator& comm, const std::string& tag) {
  const int cores = static_cast<int>(std::thread::hardware_concurrency());
  // Counted by host name: nodes may hold different numbers of ranks (a flat all-to-all does not
  // care), which comm.ranks_per_node() refuses.
  const int on_host = model::ranks_on_this_host(comm);
  const int threads = set_cpu_threads(std::max(1, cores / on_host));
  spdlog::info("[{}] {} cores, {} ranks on this node: {} BLAS threads per rank", tag, cores,
               on_host, threads);
  warn_if_bound_to_fewer_cores(threads, tag);
  return threads;
}

// Steps 3 to 5 of program.h; returns the program's exit status.
int checked_run(const Loaded& l, comm::Communicator& startup, const ProgramSpec& spec) {
  check_same_config(l, startup, spec.tag);
  comm::CommOptions options;
  options.timeout_seconds = l.config.parallel().collective_timeout_s();
  auto comm = comm::make_communicator(MPI_COMM_WORLD, Device::CPU, options);
  const int threads = set_up_threads(*comm, spec.tag);
  return spec.run(Setup{.flags = l.flags,
                        .config = l.config,
                        .comm = *comm,
                        .rank = comm->rank(),
                        .world = comm->size(),
                        .threads = threads});
}

// Steps 2 to 5 with the agreed errors' statuses; other errors are left to run_program.
int run_in_world(int argc, char** argv, const ProgramSpec& spec, int rank, int world) {
  // No timeout before the config names one: start-up waits as long as a rank takes to read its
  // files, as a plain MPI collective would.
  comm::CommOptions startup_options;
  startup_options.timeout_seconds = 0;
  startup_options.name = "startup";
  comm::MpiCommunicator startup(MPI_COMM_WORLD, Device::CPU, startup_options);
  Loaded loaded;
  try {
    comm::run_agreed(startup, [&] { loaded = load(argc, argv, spec, rank, world); });
  } catch (const comm::AgreedError& e) {
    if (rank == 0) std::fprintf(stderr, "%s: error: %s\n", spec.name.c_str(), e.what());
    return 2;
  }
  if (loaded.flags.help) {
    if (rank == 0) std::cout << config::help_text(spec.name, spec.usage);
    return 0;
  }
  try {
    return checked_run(loaded, startup, spec);
  } catch (const comm::AgreedError& e) {
    // Every rank has the same error and leaves cleanly: print it once.
    if (rank == 0) std::fprintf(stderr, "%s: error: %s\n", spec.name.c_str(), e.what());
    return 1;
  }
}

}  // namespace

int run_program(int argc, char** argv, const ProgramSpec& spec) {
  cpu::restart_with_better_blas_kernels(argv);
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  if (spec.on_start) spec.on_start();
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  log::init({.rank = rank, .world_size = world});
  int status = 2;
  try {
    status = run_in_world(argc, argv, spec, rank, world);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error on rank %d of %d (host %s): %s\n", spec.name.c_str(), rank,
                 world, log::host_name().c_str(), e.what());
    // Other ranks may be waiting in a collective for this one: end the job, never hang.
    if (world > 1) MPI_Abort(MPI_COMM_WORLD, 2);
  }
  MPI_Finalize();
  return status;
}

}  // namespace mowe::program
