// The device seam: everything the trainer asks of a device besides its ops (runtime/backend.h).
// Memory, queued memsets and copies, streams, events and host synchronisation, implemented once
// per device: the host (trivially), CUDA (runtime/cuda/cuda_runtime.cc) and the simulated device
// (runtime/sim/), which tests and `parallel.device: SIMULATED` use to prove on a CPU machine that
// the code above this seam never touches device memory from the host and synchronises only where
// it says so (docs/gpu.md).
//
// Streams and events are opaque handles. The null stream means the device's compute stream, the
// one ops run on unless a Context names another and the one DeviceAllocator::zero is ordered on.
// Work on one stream runs in the order it was queued; work on two streams is ordered only by
// events.
#pragma once

#include <cstddef>

#include "runtime/memory.h"

namespace mowe {

enum class CopyKind : uint8_t { HostToDevice, DeviceToHost, DeviceToDevice };

class DeviceRuntime {
 public:
  virtual ~DeviceRuntime() = default;
  virtual Device device() const = 0;
  // The device's memory; zero() is queued on the compute stream.
  virtual DeviceAllocator& allocator() = 0;
  // Devices of this kind the process sees (GPUs; 1 for the host and the simulated device), and
  // the one this thread's work goes to from now on.
  virtual int count() { return 1; }
  virtual void use(int ordinal) {
    MOWE_CHECK(ordinal == 0, "there is one {} device, not {}", device_name(device()), ordinal + 1);
  }

  // The handle of the compute stream, for code that must name it (the NCCL data communicator
  // queues its collectives there, ordered with the step); null where null already means it.
  virtual void* compute_stream() { return nullptr; }
  virtual void* create_stream() = 0;
  virtual void destroy_stream(void* stream) = 0;
  virtual void* create_event() = 0;
  virtual void destroy_event(void* event) = 0;
  // The event completes when the work queued on `stream` so far has completed.
  virtual void record_event(void* event, void* stream) = 0;
  // Work queued on `stream` after this call waits for the event; the host does not.
  virtual void wait_event(void* stream, void* event) = 0;

  // Queued on `stream`. A host source may be reused as soon as copy_async returns (it is staged,
  // as CUDA does for pageable memory); a host destination holds the data only after
  // synchronize(stream).
  virtual void memset_async(void* dst, int value, size_t bytes, void* stream) = 0;
  virtual void copy_async(void* dst, const void* src, size_t bytes, CopyKind kind,
                          void* stream) = 0;
  // The host waits for everything queued on `stream`; errors of queued work surface here.
  virtual void synchronize(void* stream) = 0;
  // The same wait, made by the MPI fallback to stage a device tensor through host memory for a
  // collective: a cost NCCL does not have, so the simulated device counts it apart.
  virtual void synchronize_for_staging(void* stream) { synchronize(stream); }
};

// Whether `device` can run here: the host and the simulated device always; CUDA when compiled in
// and a GPU is visible. Never throws.
bool device_available(Device device);

// The runtime of `device`; throws Error naming the build option for CUDA in a build without it.
DeviceRuntime& device_runtime(Device device);

// A copy of the host tensor `host` in a new tensor of `arena` (on the arena's device), queued
// without a wait; the source may change at once.
Tensor upload_to(Arena& arena, const Tensor& host);

// Convenience over the seam for whole tensors (dst and src of the same size).
void upload(const Tensor& dst, const void* host_src, void* stream = nullptr);
// Queues the copy and synchronises `stream`: the host holds the data when it returns.
void download(void* host_dst, const Tensor& src, void* stream = nullptr);

}  // namespace mowe
