// The CUDA backend's error reporting and host-side validation, which run without a GPU. Its ops
// against the CPU backend are in device_twin_test.cc.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"
#include "tests/util/expect_error.h"
#include "tests/util/gradcheck.h"

namespace mowe {
namespace {

using testing::expect_error;
using testing::get;

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// ---- checks and validation: no GPU needed ------------------------------------------------------

TEST(CudaCheck, DeviceCountSucceedsOrReportsTheNamedError) {
  int n = -1;
  try {
    CUDA_CHECK(cudaGetDeviceCount(&n));
    EXPECT_GE(n, 0);
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(contains(msg, "CUDA failed on rank")) << msg;
    EXPECT_TRUE(contains(msg, "cudaGetDeviceCount")) << msg;
    EXPECT_TRUE(contains(msg, "cudaError")) << msg;  // the name, e.g. cudaErrorNoDevice
    EXPECT_TRUE(contains(msg, "cuda_backend_test.cc:")) << msg;
  }
  EXPECT_NO_THROW(cuda_device_available());
}

TEST(CudaCheck, CublasFailureNamesTheStatus) {
  expect_error([] { CUBLAS_CHECK(CUBLAS_STATUS_INVALID_VALUE); },
               {"cuBLAS failed on rank", "CUBLAS_STATUS_INVALID_VALUE"});
}

ncclResult_t failing_nccl_call() {
  return ncclInvalidArgument;
}

TEST(CudaCheck, NcclFailureNamesTheStatus) {
  expect_error([] { NCCL_CHECK(failing_nccl_call()); },
               {"NCCL failed on rank", "failing_nccl_call()", "ncclInvalidArgument"});
}

TEST(CudaBackend, IsChosenForCudaWithoutTouchingTheGpu) {
  EXPECT_TRUE(cuda_backend_compiled());
  EXPECT_STREQ(backend_for(Device::CUDA).name(), "cuda");
  EXPECT_EQ(backend_for(Device::CUDA).device(), Device::CUDA);
}

// Validation fails before any CUDA call, so these device tensors are never dereferenced.
Tensor fake_device(Shape shape, DType dtype = DType::F32) {
  return Tensor(reinterpret_cast<void*>(uintptr_t{4096}), dtype, Device::CUDA, shape);
}

TEST(CudaBackend, ValidatesOnTheHostLikeTheCpu) {
  Backend& gpu = cuda_backend();
  Buffer host = testing::host_buffer({2, 3}, DType::F32);
  expect_error([&] { gpu.gelu_forward({}, host, host); }, {"is not in device memory"});
  expect_error(
      [&] {
        gpu.matmul({}, fake_device({2, 3}), fake_device({2, 3}), fake_device({2, 3}), false, false);
      },
      {"matmul: shapes do not chain"});
  expect_error(
      [&] { gpu.gelu_forward({}, fake_device({4}, DType::BF16), fake_device({4}, DType::BF16)); },
      {"not supported on the CUDA backend"});
  expect_error(
      [&] {
        gpu.rmsnorm_forward({}, fake_device({2, 3}), fake_device({4}), fake_device({2, 3}),
                            fake_device({2}), 1e-6);
      },
      {"scale has shape [4], expected [3]"});
  const Tensor q = fake_device({1, 2, 1, 4}), p = fake_device({1, 1, 2, 2});
  Arena host_arena(host_allocator());
  expect_error(
      [&] { gpu.attention_backward({.scratch = &host_arena}, q, q, q, q, p, q, q, q, {}, {}); },
      {"needs a device arena"});
  // Attention dropout has no CUDA kernel: refused, never silently skipped.
  expect_error(
      [&] {
        gpu.attention_forward({}, q, q, q, {}, {}, {.dropout = {0.1f, 1}}, p, q);
      },
      {"attention dropout", "not supported on GPU"});
  expect_error(
      [&] {
        gpu.attention_backward({}, q, q, q, q, p, q, q, q, {}, {0.1f, 1});
      },
      {"attention dropout", "not supported on GPU"});
}

TEST(CudaBackend, ValidatesOptimizerOpsOnTheHost) {
  Backend& gpu = cuda_backend();
  const Tensor x = fake_device({4}), m = fake_device({4}), bad = fake_device({5});
  expect_error([&] { gpu.sum({}, x); }, {"sum needs a scratch arena"});
  expect_error([&] { gpu.sum_squares({}, fake_device({2}, DType::I32)); }, {"not supported"});
  expect_error([&] { gpu.adamw_update({}, x, x, m, bad, {}); }, {"adamw_update: tensors differ"});
  expect_error(
      [&] {
        gpu.adafactor_update({}, x, x, fake_device({1, 1}), fake_device({1, 4}), {}, {});
      },
      {"parameters of rank >= 2"});
}

}  // namespace
}  // namespace mowe
