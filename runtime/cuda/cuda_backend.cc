// The CUDA backend object, its cuBLAS handles, the device allocator and the checks shared by the
// op files.
#include "runtime/cuda/cuda_backend.h"

#include <spdlog/spdlog.h>

#include "runtime/cuda/cuda_check.h"

namespace mowe {
namespace {

class CudaAllocator final : public DeviceAllocator {
 public:
  Device device() const override { return Device::CUDA; }

  void* allocate(size_t bytes) override {
    void* ptr = nullptr;
    // As on the host, an empty buffer still gets a distinct non-null address.
    const cudaError_t status = cudaMalloc(&ptr, bytes == 0 ? 256 : bytes);
    if (status != cudaSuccess) {
      check_failed("CUDA", "cudaMalloc",
                   fmt::format("{} bytes: {}", bytes, cuda::cuda_error_string(status)), __FILE__,
                   __LINE__);
    }
    return ptr;
  }

  // Runs in destructors (Buffer, Arena), so a failure is logged rather than thrown.
  void deallocate(void* ptr) override {
    const cudaError_t status = cudaFree(ptr);
    if (status != cudaSuccess)
      spdlog::error("[cuda] cudaFree failed: {}", cuda::cuda_error_string(status));
  }

  // Queued on the compute stream (runtime/cuda/cuda_runtime.cc), where the memory is used next:
  // a blocking cudaMemset would run on the legacy stream, unordered with non-blocking streams.
  void zero(void* ptr, size_t bytes) override {
    if (bytes != 0) CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, cuda::compute_stream()));
  }
};

}  // namespace

Backend& cuda_backend() {
  static cuda::CudaBackend backend;
  return backend;
}

DeviceAllocator& cuda_allocator() {
  static CudaAllocator allocator;
  return allocator;
}

bool cuda_device_available() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear it, so that it is not reported by a later unrelated check
    return false;
  }
  return count > 0;
}

namespace cuda {

// Handles are never destroyed: the backend is a static that outlives its users, and at process
// exit the CUDA runtime may already be unloaded when its destructor would run.
cublasHandle_t CudaBackend::cublas(const Context& ctx) {
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex_);
  cublasHandle_t& handle = handles_[device];
  if (handle == nullptr) CUBLAS_CHECK(cublasCreate(&handle));
  CUBLAS_CHECK(cublasSetStream(handle, stream_of(ctx)));
  return handle;
}

void check_cuda(const char* op, const Tensor& t) {
  MOWE_CHECK(t.empty() || t.device == Device::CUDA, "{}: {} is not in device memory", op, t.str());
}

Arena& cuda_scratch(const char* op, const Context& ctx) {
  MOWE_CHECK(ctx.scratch != nullptr, "{} needs a scratch arena in the context", op);
  MOWE_CHECK(ctx.scratch->device() == Device::CUDA,
             "{}: the scratch arena holds {} memory; the CUDA backend needs a device arena", op,
             device_name(ctx.scratch->device()));
  return *ctx.scratch;
}

}  // namespace cuda
}  // namespace mowe
