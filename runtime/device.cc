#include "runtime/device.h"

#include <cstring>

namespace mowe {

#ifdef MOWE_WITH_CUDA
DeviceRuntime& cuda_runtime();  // runtime/cuda/cuda_runtime.cc
bool cuda_device_available();   // runtime/cuda/cuda_backend.cc
#endif
namespace sim {
DeviceRuntime& sim_runtime();  // runtime/sim/sim_runtime.cc
}

namespace {

// The host as a device: one implicit stream on which everything has completed when queued.
class HostRuntime final : public DeviceRuntime {
 public:
  Device device() const override { return Device::CPU; }
  DeviceAllocator& allocator() override { return host_allocator(); }
  void* create_stream() override { return nullptr; }
  void destroy_stream(void*) override {}
  void* create_event() override { return nullptr; }
  void destroy_event(void*) override {}
  void record_event(void*, void*) override {}
  void wait_event(void*, void*) override {}
  void memset_async(void* dst, int value, size_t bytes, void*) override {
    if (bytes != 0) std::memset(dst, value, bytes);
  }
  void copy_async(void* dst, const void* src, size_t bytes, CopyKind, void*) override {
    if (bytes != 0 && dst != src) std::memmove(dst, src, bytes);
  }
  void synchronize(void*) override {}
};

}  // namespace

bool device_available(Device device) {
  if (device != Device::CUDA) return true;
#ifdef MOWE_WITH_CUDA
  return cuda_device_available();
#else
  return false;
#endif
}

DeviceRuntime& device_runtime(Device device) {
  switch (device) {
    case Device::CPU: {
      static HostRuntime* host = new HostRuntime;
      return *host;
    }
    case Device::SIMULATED:
      return sim::sim_runtime();
    case Device::CUDA:
#ifdef MOWE_WITH_CUDA
      return cuda_runtime();
#else
      break;
#endif
  }
  throw Error(
      "the CUDA device was not compiled in: configure with -DMOWE_WITH_CUDA=ON on a machine with "
      "nvcc and NCCL, or set parallel.device: CPU");
}

Tensor upload_to(Arena& arena, const Tensor& host) {
  Tensor t = arena.alloc(host.shape, host.dtype);
  upload(t, host.data);
  return t;
}

void upload(const Tensor& dst, const void* host_src, void* stream) {
  device_runtime(dst.device)
      .copy_async(dst.data, host_src, dst.nbytes(), CopyKind::HostToDevice, stream);
}

void download(void* host_dst, const Tensor& src, void* stream) {
  DeviceRuntime& rt = device_runtime(src.device);
  rt.copy_async(host_dst, src.data, src.nbytes(), CopyKind::DeviceToHost, stream);
  rt.synchronize(stream);
}

}  // namespace mowe
