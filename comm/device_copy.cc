#include "comm/device_copy.h"

#include "runtime/device.h"

namespace mowe::comm {

void copy_bytes(Device device, void* stream, void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  device_runtime(device).copy_async(dst, src, bytes, CopyKind::DeviceToDevice, stream);
}

void copy_to_host(void* dst, const Tensor& src, void* stream) {
  if (src.nbytes() == 0) return;
  DeviceRuntime& rt = device_runtime(src.device);
  rt.copy_async(dst, src.data, src.nbytes(), CopyKind::DeviceToHost, stream);
  rt.synchronize_for_staging(stream);
}

void copy_from_host(const Tensor& dst, const void* src, void* stream) {
  if (dst.nbytes() == 0) return;
  DeviceRuntime& rt = device_runtime(dst.device);
  rt.copy_async(dst.data, src, dst.nbytes(), CopyKind::HostToDevice, stream);
  rt.synchronize_for_staging(stream);
}

void sync_stream(Device device, void* stream) {
  device_runtime(device).synchronize(stream);
}

DeviceAllocator& allocator_for(Device device) {
  return device_runtime(device).allocator();
}

}  // namespace mowe::comm
