#include "tests/comm/comm_test_util.h"

#include <mpi.h>

#include <string>

#include "comm/mpi_communicator.h"

#ifdef MOWE_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace mowe::test {

std::vector<std::string> compiled_backends() {
#ifdef MOWE_WITH_CUDA
  return {"mpi", "single", "sim", "nccl"};
#else
  return {"mpi", "single", "sim"};
#endif
}

bool backend_available(const std::string& backend, std::string* why) {
  if (backend != "nccl") return true;
#ifdef MOWE_WITH_CUDA
  // NCCL needs a GPU of its own per rank: it refuses two ranks on one device. Every rank must
  // skip alike, or the others would wait for it in a collective.
  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int local_ranks = 1, gpus = 0;
  MPI_Comm_size(node, &local_ranks);
  MPI_Comm_free(&node);
  if (cudaGetDeviceCount(&gpus) != cudaSuccess) {
    cudaGetLastError();
    gpus = 0;
  }
  int here = local_ranks <= gpus ? 1 : 0, everywhere = 0;
  MPI_Allreduce(&here, &everywhere, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (everywhere == 0)
    *why = "NCCL needs one GPU per rank and some node has fewer GPUs than ranks (" +
           std::to_string(gpus) + " GPUs for " + std::to_string(local_ranks) + " ranks here)";
  return everywhere != 0;
#else
  *why = "this build has no CUDA";
  return false;
#endif
}

Device backend_device(const std::string& backend) {
  if (backend == "sim") return Device::SIMULATED;
  return backend == "nccl" ? Device::CUDA : Device::CPU;
}

std::unique_ptr<comm::Communicator> make_backend(const std::string& backend,
                                                 comm::CommOptions options) {
  options.timeout_seconds = 120;  // a hang in a test ends the run with a message
  if (backend == "single") return std::make_unique<comm::SingleRankCommunicator>(Device::CPU);
  if (backend == "mpi") return std::make_unique<comm::MpiCommunicator>(MPI_COMM_WORLD);
  // Tensors on the simulated device, staged through host memory: the MPI fallback of a GPU job.
  if (backend == "sim") return comm::make_communicator(MPI_COMM_WORLD, Device::SIMULATED, options);
  options.allow_fallback = false;
  return comm::make_communicator(MPI_COMM_WORLD, Device::CUDA, options);
}

int small_value(uint64_t seed, int rank, int64_t index) {
  uint64_t h = seed * 0x9E3779B97F4A7C15ull ^
               (static_cast<uint64_t>(rank) + 1) * 0xBF58476D1CE4E5B9ull ^
               static_cast<uint64_t>(index) * 0x94D049BB133111EBull;
  h ^= h >> 31;
  h *= 0xD6E8FEB86659FD93ull;
  h ^= h >> 32;
  return static_cast<int>(h % 17) - 8;
}

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int world_size() {
  int s = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &s);
  return s;
}

void CommBackendTest::SetUp() {
  std::string why;
  if (!backend_available(GetParam(), &why)) GTEST_SKIP() << GetParam() << ": " << why;
  comm_ = make_backend(GetParam());
  rank_ = comm_->rank();
  size_ = comm_->size();
}

std::string backend_test_name(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

}  // namespace mowe::test
