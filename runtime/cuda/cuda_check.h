// CUDA_CHECK, CUBLAS_CHECK and NCCL_CHECK: failures of the CUDA runtime, cuBLAS and NCCL reported
// like every other failure (expression, file, line, rank, status name and text), then thrown.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <string>

#include "runtime/check.h"

namespace mowe::cuda {

inline bool cuda_ok(cudaError_t status) {
  return status == cudaSuccess;
}
inline bool cublas_ok(cublasStatus_t status) {
  return status == CUBLAS_STATUS_SUCCESS;
}
inline bool nccl_ok(ncclResult_t status) {
  return status == ncclSuccess;
}

std::string cuda_error_string(cudaError_t status);       // "cudaErrorNoDevice: no CUDA-capable ..."
std::string cublas_error_string(cublasStatus_t status);  // "CUBLAS_STATUS_INVALID_VALUE: ..."
std::string nccl_error_string(ncclResult_t status);      // "ncclInvalidArgument: invalid ..."

}  // namespace mowe::cuda

#define CUDA_CHECK(call) \
  MOWE_CHECK_GEN("CUDA", call, ::mowe::cuda::cuda_ok, ::mowe::cuda::cuda_error_string)
#define CUBLAS_CHECK(call) \
  MOWE_CHECK_GEN("cuBLAS", call, ::mowe::cuda::cublas_ok, ::mowe::cuda::cublas_error_string)
#define NCCL_CHECK(call) \
  MOWE_CHECK_GEN("NCCL", call, ::mowe::cuda::nccl_ok, ::mowe::cuda::nccl_error_string)
// After a kernel launch: launches report configuration errors only through cudaGetLastError.
#define CUDA_CHECK_LAST() CUDA_CHECK(cudaGetLastError())
