#include "runtime/cuda/cuda_check.h"

#include <fmt/format.h>

namespace mowe::cuda {
namespace {

// ncclGetErrorString gives only the text; the enumerator name is what users search for.
const char* nccl_status_name(ncclResult_t status) {
  switch (status) {
    case ncclSuccess:
      return "ncclSuccess";
    case ncclUnhandledCudaError:
      return "ncclUnhandledCudaError";
    case ncclSystemError:
      return "ncclSystemError";
    case ncclInternalError:
      return "ncclInternalError";
    case ncclInvalidArgument:
      return "ncclInvalidArgument";
    case ncclInvalidUsage:
      return "ncclInvalidUsage";
    case ncclRemoteError:
      return "ncclRemoteError";
    case ncclInProgress:
      return "ncclInProgress";
    default:
      return "ncclResult_t(unknown)";
  }
}

}  // namespace

std::string cuda_error_string(cudaError_t status) {
  return fmt::format("{}: {}", cudaGetErrorName(status), cudaGetErrorString(status));
}

std::string cublas_error_string(cublasStatus_t status) {
  return fmt::format("{}: {}", cublasGetStatusName(status), cublasGetStatusString(status));
}

std::string nccl_error_string(ncclResult_t status) {
  return fmt::format("{} ({}): {}", nccl_status_name(status), static_cast<int>(status),
                     ncclGetErrorString(status));
}

}  // namespace mowe::cuda
