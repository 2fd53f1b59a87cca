#include "comm/device_copy.h"

#include <cstring>

#ifdef MOWE_WITH_CUDA
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/cuda_check.h"
#endif

namespace mowe::comm {
#ifdef MOWE_WITH_CUDA

void copy_bytes(Device device, void* stream, void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  if (device == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice,
                             static_cast<cudaStream_t>(stream)));
}

void copy_to_host(void* dst, const Tensor& src, void* stream) {
  if (src.nbytes() == 0) return;
  if (src.device == Device::CPU) {
    std::memcpy(dst, src.data, src.nbytes());
    return;
  }
  auto s = static_cast<cudaStream_t>(stream);
  CUDA_CHECK(cudaMemcpyAsync(dst, src.data, src.nbytes(), cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_from_host(const Tensor& dst, const void* src, void* stream) {
  if (dst.nbytes() == 0) return;
  if (dst.device == Device::CPU) {
    std::memcpy(dst.data, src, dst.nbytes());
    return;
  }
  auto s = static_cast<cudaStream_t>(stream);
  CUDA_CHECK(cudaMemcpyAsync(dst.data, src, dst.nbytes(), cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
}

void sync_stream(Device device, void* stream) {
  if (device == Device::CUDA) CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)));
}

DeviceAllocator& allocator_for(Device device) {
  return device == Device::CUDA ? cuda_allocator() : host_allocator();
}

#else

namespace {

[[noreturn]] void no_cuda(const char* what) {
  throw Error(
      fmt::format("[comm] {}: CUDA tensor in a build without CUDA (MOWE_WITH_CUDA=OFF)", what));
}

}  // namespace

void copy_bytes(Device device, void*, void* dst, const void* src, size_t bytes) {
  if (device != Device::CPU) no_cuda("copy");
  if (bytes != 0 && dst != src) std::memcpy(dst, src, bytes);
}

void copy_to_host(void* dst, const Tensor& src, void*) {
  if (src.device != Device::CPU) no_cuda("copy to host");
  if (src.nbytes() != 0) std::memcpy(dst, src.data, src.nbytes());
}

void copy_from_host(const Tensor& dst, const void* src, void*) {
  if (dst.device != Device::CPU) no_cuda("copy from host");
  if (dst.nbytes() != 0) std::memcpy(dst.data, src, dst.nbytes());
}

void sync_stream(Device device, void*) {
  if (device != Device::CPU) no_cuda("stream synchronisation");
}

DeviceAllocator& allocator_for(Device device) {
  if (device != Device::CPU) no_cuda("allocation");
  return host_allocator();
}

#endif

}  // namespace mowe::comm
