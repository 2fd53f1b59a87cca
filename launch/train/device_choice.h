// Which device a training job computes on (parallel.device), and which GPU each rank takes.
#pragma once

#include <string>

#include "comm/communicator.h"
#include "runtime/config/config.h"

namespace mowe::train {

struct DeviceChoice {
  Device device = Device::CPU;
  int gpu = -1;        // CUDA: this rank's GPU on its node (its local rank)
  std::string reason;  // why, for the start-up log: "parallel.device: AUTO and 8 GPUs visible"
};

// What of the config does not run on a device yet, naming the field and the way out; "" when
// everything does.
std::string device_unsupported(const config::Config& config);

// The rules, without the machine: AUTO takes CUDA when the build has it and a GPU is visible,
// and the config can run there (`unsupported` empty); otherwise CPU. An explicit CUDA or
// SIMULATED with an unsupported config is a UserError that says why.
DeviceChoice resolve_device(config::ParallelConfig::Device setting, bool cuda_compiled,
                            int visible_gpus, const std::string& unsupported);

// CUDA: local rank r takes GPU r. More ranks on a node than GPUs is a UserError naming both
// numbers and the fix (one rank per GPU).
int gpu_for_local_rank(int local_rank, int local_ranks, int gpus);

// Resolves parallel.device on every rank, selects this rank's GPU and logs the choice once.
// Collective over `comm` (a host communicator); errors agreed.
DeviceChoice choose_device(const config::Config& config, comm::Communicator& comm);

}  // namespace mowe::train
