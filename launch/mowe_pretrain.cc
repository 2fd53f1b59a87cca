// mowe_pretrain: the SPMD training program, one process per rank.
//   mpirun -np N build/bin/mowe_pretrain --config configs/wordnet_small.textproto [--set k=v]...
// The training loop lands with the model, data and distributed layers; until then the program
// loads and validates the configuration on every rank, checks that all ranks agree on it and
// that the MPI world works, and reports the backend it would train on (--dry-run).
#include <mpi.h>
#include <spdlog/spdlog.h>

#include <cstdint>
#include <cstdio>
#include <iostream>
#include <string>

#include "comm/agree.h"
#include "comm/mpi_check.h"
#include "data/span_corruption.h"
#include "model/describe.h"
#include "runtime/backend.h"
#include "runtime/config/config.h"
#include "runtime/log.h"

namespace {

constexpr const char* kUsage =
    "mpirun -np N mowe_pretrain --config FILE [--set path=value]... [--dry-run] [--describe]\n"
    "  --describe  print parameter counts and FLOPs of the configured model and exit";

// FNV-1a: a cheap fingerprint of the resolved config, compared across ranks.
uint64_t fingerprint(const std::string& text) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ULL;
  return h;
}

struct Startup {
  mowe::config::CommonFlags flags;
  mowe::config::Config config;
};

// Flags and config: errors here are the same on every rank, so they are agreed on collectively.
Startup parse_and_load(int argc, char** argv, int rank, int world) {
  Startup s;
  s.flags = mowe::config::parse_common_flags(argc, argv, {"--dry-run", "--describe"});
  mowe::log::init({.rank = rank,
                   .world_size = world,
                   .all_ranks = s.flags.log_all_ranks,
                   .level = s.flags.log_level});
  if (s.flags.help) return s;
  if (s.flags.config_path.empty()) throw mowe::Error("--config FILE is required (see --help)");
  s.config = mowe::config::load_config(s.flags.config_path, s.flags.overrides);
  return s;
}

// Parameter counts and FLOPs, computed from the config alone.
void describe(const mowe::config::Config& cfg) {
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
}

int run(const Startup& s, int rank, int world) {
  if (s.flags.has("--describe")) {
    if (rank == 0) describe(s.config);
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
  const auto device = s.config.parallel().device();
  const bool cuda = device == mowe::config::ParallelConfig::CUDA ||
                    (device == mowe::config::ParallelConfig::AUTO && mowe::cuda_backend_compiled());
  spdlog::info("[pretrain] all {} ranks agree on the config (fingerprint {:016x}); backend: {}",
               world, mine, cuda ? "cuda (compiled in; needs a GPU at run time)" : "cpu");
  if (!s.flags.has("--dry-run")) {
    throw mowe::Error(
        "the training loop is not available in this version; run with --dry-run to validate the "
        "configuration and the MPI world");
  }
  spdlog::info("[pretrain] dry run complete");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
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
      } catch (const std::exception& e) {
        std::fprintf(stderr, "mowe_pretrain: error on rank %d of %d: %s\n", rank, world, e.what());
        // Other ranks may be waiting in a collective for this one: end the job, never hang.
        if (world > 1) MPI_Abort(MPI_COMM_WORLD, 2);
      }
    }
  }
  MPI_Finalize();
  return status;
}
