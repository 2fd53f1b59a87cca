// Copies comm/ needs on either device: packing all-to-all chunks, gradient buckets, and the host
// staging of the MPI fallback for CUDA tensors. CUDA copies are queued on `stream` and ordered
// with the collectives queued there; the *_host ones return when the data has arrived.
#pragma once

#include <cstddef>

#include "runtime/memory.h"

namespace mowe::comm {

// dst and src on `device`, queued on stream (the device seam, runtime/device.h).
void copy_bytes(Device device, void* stream, void* dst, const void* src, size_t bytes);
// Host <-> tensor memory; synchronous: the MPI fallback's staging of device tensors (the
// simulated device counts these waits apart from the trainer's own).
void copy_to_host(void* dst, const Tensor& src, void* stream);
void copy_from_host(const Tensor& dst, const void* src, void* stream);
// Waits for the work queued on stream; nothing on CPU.
void sync_stream(Device device, void* stream);
// The allocator of a device's memory.
DeviceAllocator& allocator_for(Device device);

}  // namespace mowe::comm
