// Shared by the collective tests (nccl-tests style): one test body per compiled backend, seeded
// inputs that every rank can recompute for every other rank, and values that add exactly in
// floating point (small integers), so results are compared exactly.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/communicator.h"
#include "comm/device_copy.h"
#include "runtime/memory.h"

namespace mowe::test {

// Backends compiled into this build: "mpi", "single" and, with CUDA, "nccl".
std::vector<std::string> compiled_backends();
// False (and why) when the backend cannot run here, e.g. NCCL without a GPU.
bool backend_available(const std::string& backend, std::string* why);
// The device a backend's tensors live on.
Device backend_device(const std::string& backend);
// A communicator over MPI_COMM_WORLD (or one process, for "single").
std::unique_ptr<comm::Communicator> make_backend(const std::string& backend,
                                                 comm::CommOptions options = {});

// A small integer in [-8, 8] from (seed, rank, index): sums over 4 ranks stay exact in f32.
int small_value(uint64_t seed, int rank, int64_t index);

int world_rank();
int world_size();

// An owning tensor on a device, filled from and read back to host vectors.
class DeviceTensor {
 public:
  DeviceTensor(Device device, Shape shape, DType dtype)
      : buffer_(comm::allocator_for(device), shape, dtype) {}
  const Tensor& tensor() const { return buffer_.tensor(); }
  operator const Tensor&() const { return buffer_.tensor(); }

  template <typename T>
  void upload(const std::vector<T>& host) {
    EXPECT_EQ(static_cast<int64_t>(host.size()), tensor().numel());
    comm::copy_from_host(tensor(), host.data(), nullptr);
  }
  template <typename T>
  std::vector<T> download() const {
    std::vector<T> host(static_cast<size_t>(tensor().numel()));
    comm::copy_to_host(host.data(), tensor(), nullptr);
    return host;
  }

 private:
  Buffer buffer_;
};

// Fixture of the tests run once per backend; skips where the backend cannot run, before
// constructing anything on its device.
class CommBackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override;
  Device device() const { return backend_device(GetParam()); }

  std::unique_ptr<comm::Communicator> comm_;
  int rank_ = 0;
  int size_ = 1;
};

std::string backend_test_name(const ::testing::TestParamInfo<std::string>& info);

}  // namespace mowe::test
