// A collective that cannot complete must end the job with a message, not hang. This program
// (run by failure_probe_test.sh under mpiexec with 2+ ranks) makes the last rank fail one way:
//   --mode=skip-collective  it never enters the collective (stuck elsewhere, sleeping);
//   --mode=exit-rank        it exits without MPI_Finalize while the others wait in it;
//   --mode=kill-rank        it is killed (SIGKILL, as by the OOM killer) while they wait;
// while every other rank runs --op=alltoallv|allreduce|broadcast|barrier with a watchdog of
// --timeout=S seconds.
#include <mpi.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "comm/mpi_communicator.h"
#include "runtime/log.h"

namespace {

std::string flag(int argc, char** argv, const std::string& name, const std::string& fallback) {
  const std::string prefix = "--" + name + "=";
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind(prefix, 0) == 0) return arg.substr(prefix.size());
  }
  return fallback;
}

void run_op(mowe::comm::Communicator& comm, const std::string& op) {
  const int size = comm.size();
  std::vector<float> send(size * 4, 1.0f), recv(size * 4, 0.0f);
  const std::vector<int64_t> rows(size, 4);
  mowe::Tensor s(send.data(), mowe::DType::F32, mowe::Device::CPU, mowe::Shape{size * 4, 1});
  mowe::Tensor r(recv.data(), mowe::DType::F32, mowe::Device::CPU, mowe::Shape{size * 4, 1});
  if (op == "alltoallv") comm.alltoallv(s, rows, r, rows);
  if (op == "allreduce") comm.allreduce(s, mowe::comm::ReduceOp::Sum);
  if (op == "broadcast") comm.broadcast(s, comm.size() - 1);
  if (op == "barrier") comm.barrier();
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  mowe::log::init({.rank = rank, .world_size = size});
  const std::string mode = flag(argc, argv, "mode", "skip-collective");
  const std::string op = flag(argc, argv, "op", "alltoallv");
  mowe::comm::CommOptions options;
  options.timeout_seconds = std::stod(flag(argc, argv, "timeout", "2"));
  mowe::comm::MpiCommunicator comm(MPI_COMM_WORLD, mowe::Device::CPU, options);
  comm.barrier();  // everyone is up

  const bool failing = rank == size - 1;
  if (failing && mode == "exit-rank") {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::fprintf(stderr, "probe: rank %d exits without finalizing\n", rank);
    std::_Exit(1);
  }
  if (failing && mode == "kill-rank") {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::raise(SIGKILL);
  }
  if (failing && mode == "skip-collective") {
    std::this_thread::sleep_for(std::chrono::seconds(600));
  } else {
    run_op(comm, op);
  }
  std::printf("probe: rank %d: %s completed\n", rank, op.c_str());
  MPI_Finalize();
  return 0;
}
