#include "launch/train/device_choice.h"

#include <spdlog/spdlog.h>

#include "comm/agree.h"
#include "model/memory_estimate.h"
#include "model/mowe_layers.h"
#include "runtime/backend.h"
#include "runtime/device.h"

namespace mowe::train {

std::string device_unsupported(const config::Config& config) {
  const config::MoweConfig& mowe = config.model().mowe();
  if (!model::has_mowe_layers(mowe)) return "";
  if (mowe.expert_dropout_rate() > 0)
    return "model.mowe.expert_dropout_rate > 0 (expert dropout is computed on the host; set it to "
           "0)";
  return "";
}

DeviceChoice resolve_device(config::ParallelConfig::Device setting, bool cuda_compiled,
                            int visible_gpus, const std::string& unsupported) {
  using P = config::ParallelConfig;
  auto refuse = [&](const char* name) {
    throw UserError(fmt::format(
        "parallel.device: {}: {} does not run on a device yet (docs/gpu.md); change it, or set "
        "parallel.device: CPU",
        name, unsupported));
  };
  switch (setting) {
    case P::CPU:
      return {Device::CPU, -1, "parallel.device: CPU"};
    case P::SIMULATED:
      if (!unsupported.empty()) refuse("SIMULATED");
      return {Device::SIMULATED, -1, "parallel.device: SIMULATED (the test device, docs/gpu.md)"};
    case P::CUDA:
      if (!unsupported.empty()) refuse("CUDA");
      MOWE_REQUIRE(cuda_compiled,
                   "parallel.device: CUDA, but this build has no CUDA backend: build on a machine "
                   "with nvcc and NCCL (-DMOWE_WITH_CUDA=ON), or set parallel.device: CPU");
      MOWE_REQUIRE(visible_gpus > 0,
                   "parallel.device: CUDA, but no GPU is visible to this process (check "
                   "CUDA_VISIBLE_DEVICES and the job's GPU request, e.g. sbatch --gpus-per-node), "
                   "or set parallel.device: CPU");
      return {Device::CUDA, -1, "parallel.device: CUDA"};
    case P::AUTO:
      break;
  }
  if (!cuda_compiled) return {Device::CPU, -1, "parallel.device: AUTO and a build without CUDA"};
  if (visible_gpus == 0) return {Device::CPU, -1, "parallel.device: AUTO and no GPU visible"};
  if (!unsupported.empty())
    return {Device::CPU, -1,
            fmt::format("parallel.device: AUTO, {} GPUs visible, but {} does not run on a device "
                        "yet (docs/gpu.md)",
                        visible_gpus, unsupported)};
  return {Device::CUDA, -1, fmt::format("parallel.device: AUTO and {} GPUs visible", visible_gpus)};
}

int gpu_for_local_rank(int local_rank, int local_ranks, int gpus) {
  MOWE_REQUIRE(local_ranks <= gpus,
               "{} ranks run on this node but it has {} visible GPU{}: a rank needs a GPU of its "
               "own (NCCL refuses two ranks on one). Start one rank per GPU (mpirun -np <nodes x "
               "{}>, or sbatch --ntasks-per-node={} --gpus-per-node={}), or set parallel.device: "
               "CPU",
               local_ranks, gpus, gpus == 1 ? "" : "s", gpus, gpus, gpus);
  return local_rank;
}

DeviceChoice choose_device(const config::Config& config, comm::Communicator& comm) {
  DeviceChoice choice;
  comm::run_agreed(comm, [&] {
    const int gpus = cuda_backend_compiled() ? device_runtime(Device::CUDA).count() : 0;
    choice = resolve_device(config.parallel().device(), cuda_backend_compiled(), gpus,
                            device_unsupported(config));
  });
  // Every rank must compute on the same kind of device: the collectives of two kinds cannot
  // meet (AUTO on a node without GPUs beside nodes with them).
  comm::check_same_everywhere(
      comm, static_cast<uint64_t>(choice.device) + 1,
      fmt::format("ranks resolved parallel.device to different devices (this rank: {}, {})",
                  device_name(choice.device), choice.reason),
      "give every node the same GPUs, or set parallel.device explicitly");
  const model::HostPosition where = model::host_position(comm);
  comm::run_agreed(comm, [&] {
    if (choice.device != Device::CUDA) return;
    DeviceRuntime& cuda = device_runtime(Device::CUDA);
    choice.gpu = gpu_for_local_rank(where.local_rank, where.local_ranks, cuda.count());
    cuda.use(choice.gpu);
  });
  if (comm.rank() == 0)
    spdlog::info("[train] device: {} ({}){}", device_name(choice.device), choice.reason,
                 choice.device == Device::CUDA ? ", local rank r uses GPU r" : "");
  return choice;
}

}  // namespace mowe::train
