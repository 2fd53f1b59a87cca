// Execution context passed to every op: the device, its stream (CUDA) and the scratch arena.
// Ops never allocate from the system; temporary buffers come from `scratch` and are released
// when the op returns (ArenaScope).
#pragma once

#include "runtime/memory.h"

namespace mowe {

struct Context {
  Device device = Device::CPU;
  void* stream = nullptr;    // cudaStream_t on CUDA; unused on CPU
  Arena* scratch = nullptr;  // on `device`; required by ops that need temporaries
};

}  // namespace mowe
