// All-to-all bandwidth: raw MPI_Alltoallv against the Communicator's flat alltoallv and the
// hierarchical AllToAll, on the same buffers and sizes, interleaved round by round so that all
// three see the same machine state.
//   mpirun -np P build/bin/mowe_bench_alltoall [--ranks-per-node L] [--rounds R] [--seconds S]
// GB/s per rank = bytes one rank sends to the other ranks / time of the slowest rank, best round.
#include <fmt/format.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "comm/alltoall.h"
#include "comm/mpi_communicator.h"
#include "runtime/log.h"

namespace {

using mowe::comm::AllToAll;
constexpr int64_t kRowElems = 256;  // f32 rows of 1 KiB

struct Flags {
  int ranks_per_node = 0;  // 0: 2 when P >= 4 and even, else 1 (P nodes of one rank)
  int rounds = 5;
  double seconds = 0.05;  // per method and round
};

Flags parse(int argc, char** argv) {
  Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    if (k == "--ranks-per-node") f.ranks_per_node = std::stoi(argv[i + 1]);
    if (k == "--rounds") f.rounds = std::stoi(argv[i + 1]);
    if (k == "--seconds") f.seconds = std::stod(argv[i + 1]);
  }
  return f;
}

// Seconds per call of fn: iterations agreed by all ranks, time of the slowest rank.
double time_per_call(const std::function<void()>& fn, int iters) {
  MPI_Barrier(MPI_COMM_WORLD);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < iters; ++i) fn();
  double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double slowest = 0;
  MPI_Allreduce(&t, &slowest, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  return slowest / iters;
}

int iterations_for(const std::function<void()>& fn, double seconds) {
  fn();  // warm up (connections, first-touch pages)
  const double once = time_per_call(fn, 1);
  return std::clamp(static_cast<int>(seconds / std::max(once, 1e-7)), 2, 2000);
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  mowe::log::init({.rank = rank, .world_size = size});
  Flags flags = parse(argc, argv);
  if (flags.ranks_per_node == 0) flags.ranks_per_node = (size >= 4 && size % 2 == 0) ? 2 : 1;

  mowe::comm::CommOptions options;
  options.timeout_seconds = 600;
  mowe::comm::MpiCommunicator comm(MPI_COMM_WORLD, mowe::Device::CPU, options);
  AllToAll flat(comm, AllToAll::Algorithm::Flat);
  AllToAll hier(comm, AllToAll::Algorithm::Hierarchical, flags.ranks_per_node);
  mowe::Arena scratch(mowe::host_allocator());
  MPI_Comm raw_comm;
  MPI_Comm_dup(MPI_COMM_WORLD, &raw_comm);

  if (rank == 0) {
    fmt::print("# all-to-all, {} ranks; hierarchical as {} nodes x {} ranks; f32 rows of 1 KiB\n",
               size, size / flags.ranks_per_node, flags.ranks_per_node);
    fmt::print(
        "# GB/s per rank: bytes sent to other ranks / time of the slowest rank, best of {} "
        "rounds\n",
        flags.rounds);
    fmt::print("{:>10} {:>14} {:>10} {:>14}\n", "per peer", "MPI_Alltoallv", "flat",
               "hierarchical");
  }
  for (int64_t peer_bytes = int64_t{64} << 10; peer_bytes <= int64_t{16} << 20; peer_bytes *= 4) {
    const int64_t rows = peer_bytes / (kRowElems * 4);
    std::vector<float> send(rows * size * kRowElems), recv(send.size()), check(send.size());
    for (size_t i = 0; i < send.size(); ++i) send[i] = static_cast<float>((rank * 131 + i) % 1000);
    const std::vector<int64_t> counts(size, rows);
    const std::vector<int> mpi_counts(size, static_cast<int>(rows * kRowElems));
    std::vector<int> displs(size);
    for (int j = 0; j < size; ++j) displs[j] = static_cast<int>(j * rows * kRowElems);
    const mowe::Shape shape{rows * size, kRowElems};
    mowe::Tensor s(send.data(), mowe::DType::F32, mowe::Device::CPU, shape);
    mowe::Tensor r(recv.data(), mowe::DType::F32, mowe::Device::CPU, shape);
    const AllToAll::Plan flat_plan = flat.plan(counts, counts, scratch);
    const AllToAll::Plan hier_plan = hier.plan(counts, counts, scratch);

    const std::vector<std::function<void()>> methods = {
        [&] {
          MPI_Alltoallv(send.data(), mpi_counts.data(), displs.data(), MPI_FLOAT, recv.data(),
                        mpi_counts.data(), displs.data(), MPI_FLOAT, raw_comm);
        },
        [&] { flat.run(flat_plan, s, r, scratch); }, [&] { hier.run(hier_plan, s, r, scratch); }};
    // The three must agree before their speed means anything.
    methods[0]();
    check = recv;
    for (size_t m = 1; m < methods.size(); ++m) {
      std::fill(recv.begin(), recv.end(), -1.0f);
      methods[m]();
      if (std::memcmp(recv.data(), check.data(), recv.size() * 4) != 0) {
        fmt::print(stderr, "rank {}: method {} differs from MPI_Alltoallv\n", rank, m);
        MPI_Abort(MPI_COMM_WORLD, 1);
      }
    }
    std::vector<int> iters;
    for (const auto& m : methods) iters.push_back(iterations_for(m, flags.seconds));
    std::vector<double> best(methods.size(), 1e30);
    for (int round = 0; round < flags.rounds; ++round) {
      for (size_t m = 0; m < methods.size(); ++m) {
        best[m] = std::min(best[m], time_per_call(methods[m], iters[m]));
      }
    }
    const double sent = static_cast<double>(peer_bytes) * (size - 1);
    if (rank == 0) {
      fmt::print("{:>6} KiB {:>14.2f} {:>10.2f} {:>14.2f}\n", peer_bytes >> 10,
                 sent / best[0] / 1e9, sent / best[1] / 1e9, sent / best[2] / 1e9);
    }
  }
  MPI_Comm_free(&raw_comm);
  MPI_Finalize();
  return 0;
}
