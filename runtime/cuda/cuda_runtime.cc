// CUDA behind the device seam (runtime/device.h). The null stream handle means the current
// device's compute stream: a non-blocking stream created on first use, so that zeroing, copies
// and ops the trainer queues without naming a stream are ordered with each other and not with the
// legacy default stream, which the NCCL communicator's non-blocking streams ignore.
#include <spdlog/spdlog.h>

#include <map>
#include <mutex>

#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"
#include "runtime/device.h"

namespace mowe {
namespace cuda {

cudaStream_t compute_stream() {
  static std::mutex mutex;
  static std::map<int, cudaStream_t>* streams = new std::map<int, cudaStream_t>;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  cudaStream_t& s = (*streams)[device];
  if (s == nullptr) CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}

cudaStream_t resolve_stream(void* handle) {
  return handle != nullptr ? static_cast<cudaStream_t>(handle) : compute_stream();
}

}  // namespace cuda

namespace {

cudaMemcpyKind memcpy_kind(CopyKind kind) {
  switch (kind) {
    case CopyKind::HostToDevice:
      return cudaMemcpyHostToDevice;
    case CopyKind::DeviceToHost:
      return cudaMemcpyDeviceToHost;
    case CopyKind::DeviceToDevice:
      break;
  }
  return cudaMemcpyDeviceToDevice;
}

class CudaRuntime final : public DeviceRuntime {
 public:
  Device device() const override { return Device::CUDA; }
  DeviceAllocator& allocator() override { return cuda_allocator(); }
  int count() override {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
      cudaGetLastError();
      return 0;
    }
    return n;
  }
  void use(int ordinal) override { CUDA_CHECK(cudaSetDevice(ordinal)); }

  void* compute_stream() override { return cuda::compute_stream(); }
  void* create_stream() override {
    cudaStream_t s = nullptr;
    CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    return s;
  }
  void destroy_stream(void* stream) override {
    if (stream != nullptr) CUDA_CHECK(cudaStreamDestroy(static_cast<cudaStream_t>(stream)));
  }
  void* create_event() override {
    cudaEvent_t e = nullptr;
    CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    return e;
  }
  void destroy_event(void* event) override {
    if (event != nullptr) CUDA_CHECK(cudaEventDestroy(static_cast<cudaEvent_t>(event)));
  }
  void record_event(void* event, void* stream) override {
    CUDA_CHECK(cudaEventRecord(static_cast<cudaEvent_t>(event), cuda::resolve_stream(stream)));
  }
  void wait_event(void* stream, void* event) override {
    CUDA_CHECK(
        cudaStreamWaitEvent(cuda::resolve_stream(stream), static_cast<cudaEvent_t>(event), 0));
  }
  void memset_async(void* dst, int value, size_t bytes, void* stream) override {
    if (bytes != 0) CUDA_CHECK(cudaMemsetAsync(dst, value, bytes, cuda::resolve_stream(stream)));
  }
  void copy_async(void* dst, const void* src, size_t bytes, CopyKind kind, void* stream) override {
    if (bytes == 0) return;
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, memcpy_kind(kind), cuda::resolve_stream(stream)));
  }
  void synchronize(void* stream) override {
    CUDA_CHECK(cudaStreamSynchronize(cuda::resolve_stream(stream)));
  }
};

}  // namespace

DeviceRuntime& cuda_runtime() {
  static CudaRuntime* runtime = new CudaRuntime;
  return *runtime;
}

}  // namespace mowe
