// The frame every MPI program of launch/ runs in (mowe_pretrain, mowe_eval), so that each gets
// the same start-up checks and ends a job the same way. run_program, in order:
//   0. restarts the program once with OPENBLAS_CORETYPE set where OpenBLAS fell back to its
//      generic kernels on a CPU that runs better ones (runtime/cpu/blas_kernels.h);
//   1. MPI_Init (MPI errors returned as exceptions, not fatal), rank-tagged logging,
//      ProgramSpec::on_start;
//   2. refuses `srun` without an MPI plugin (every task a one-rank world), parses the flags every
//      program shares (--config, --set, --help, --log-*) and the program's own, then
//      ProgramSpec::load; errors are agreed by every rank: printed once, exit 2. --help exits 0;
//   3. every rank must hold the same resolved config (a fingerprint of its text); else exit 1;
//   4. a communicator over every rank with parallel.collective_timeout_s; BLAS threads = cores /
//      ranks on this host, with a warning when the CPU affinity allows fewer cores;
//   5. ProgramSpec::run, whose status is the exit status. An AgreedError is printed once by
//      rank 0 as "<program>: error: ..." (exit 1); any other error by its rank as
//      "<program>: error on rank R of N (host H): ..." and the job is aborted (exit 2), since the
//      other ranks may be waiting for that one in a collective.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "runtime/config/config.h"

namespace mowe::program {

// What a program's run gets once every check has passed.
struct Setup {
  const config::CommonFlags& flags;
  const config::Config& config;
  comm::Communicator& comm;  // every rank, host tensors, parallel.collective_timeout_s
  int rank = 0;
  int world = 1;
  int threads = 1;  // BLAS threads of this rank
};

struct ProgramSpec {
  std::string name;                                  // "mowe_pretrain": error lines and --help
  std::string tag;                                   // "pretrain": the [component] of its log lines
  std::string usage;                                 // --help's usage lines
  std::vector<std::string> bool_flags, value_flags;  // the program's own flags
  // Right after MPI_Init, before anything can fail (e.g. installing signal handlers). Optional.
  std::function<void()> on_start;
  // The config of the parsed flags (--config given, no positional argument), with the program's
  // own flags checked. Runs on every rank; its errors are agreed.
  std::function<config::Config(const config::CommonFlags& flags)> load;
  // The program's work; returns the exit status.
  std::function<int(const Setup& setup)> run;
};

// The whole of an MPI program's main(): returns its exit status.
int run_program(int argc, char** argv, const ProgramSpec& spec);

}  // namespace mowe::program
