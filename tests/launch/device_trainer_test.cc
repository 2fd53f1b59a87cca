// The trainer on the simulated device at 1, 2 and 4 ranks, against the same trainer on the CPU
// (the tiny config, dropout on): dense with AdamW and with Adafactor; MoWE with AdamW and with
// lazy Adafactor over the flat all-to-all, with AdamW over the hierarchical one (GELU experts),
// and with shared gated-GELU experts:
// - losses, gradient norms, parameters and optimizer state are bit-equal;
// - a checkpoint written on the CPU resumes on the device and the other way round, exactly;
// - a steady-state step synchronises the host at most 3 times (the MPI fallback's staging of
//   device tensors, which NCCL does not need, is counted apart) and allocates no device memory;
// - greedy decoding on the device gives the CPU's tokens;
// - what does not run on a device yet is refused by name.
#include <gtest/gtest.h>
#include <mpi.h>

#include <filesystem>
#include <map>

#include "launch/train/config_rules.h"
#include "launch/train/decode.h"
#include "launch/train/device_choice.h"
#include "launch/train/trainer.h"
#include "runtime/device.h"
#include "runtime/optimizer.h"
#include "runtime/sim/sim_device.h"
#include "tests/util/expect_error.h"

namespace mowe::train {
namespace {

namespace fs = std::filesystem;

struct Env {
  std::unique_ptr<comm::Communicator> world = comm::make_communicator(
      MPI_COMM_WORLD, Device::CPU, comm::CommOptions{.timeout_seconds = 120});
  std::string dir;
  explicit Env(const std::string& test) {
    dir = fmt::format("{}/device_trainer_test.np{}/{}", MOWE_TEST_TMP, world->size(), test);
    if (world->rank() == 0) {
      fs::remove_all(dir);
      fs::create_directories(dir);
    }
    world->barrier();
  }
};

// One model and optimizer of the tiny config, as --set overrides.
struct Variant {
  const char* name;
  std::vector<std::string> sets;
  bool mowe;
};

const std::vector<std::string> kDense = {"model.mowe.encoder_layers=[]",
                                         "model.mowe.decoder_layers=[]"};

std::vector<Variant> variants() {
  auto with = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  return {
      {"dense_adamw", with(kDense, {"training.optimizer=ADAMW"}), false},
      {"dense_adafactor", with(kDense, {"training.optimizer=ADAFACTOR"}), false},
      {"mowe_adamw", {"training.optimizer=ADAMW"}, true},
      // Lazy Adafactor: experts no token reached catch up by decay on the device; the decay log
      // stays in host memory.
      {"mowe_adafactor", {"training.optimizer=ADAFACTOR"}, true},
      // ranks_per_node 2: at 4 ranks two nodes of two, both stages of the exchange.
      {"mowe_hierarchical", {"training.optimizer=ADAMW", "parallel.alltoall=HIERARCHICAL"}, true},
      // Both expert forms: GELU above (the default), gated GELU here.
      {"mowe_shared_gated",
       {"training.optimizer=ADAMW", "model.mowe.share_expert_parameters=true",
        "model.mowe.expert_activation=GATED_GELU"},
       true},
  };
}

config::Config tiny(const std::string& checkpoint_dir, const std::string& device,
                    const std::vector<std::string>& variant, int world_size) {
  const std::string data = MOWE_TEST_DATA;
  std::vector<std::string> sets = {
      "data.tokenizer_model=" + data + "/spm.model",
      "data.routing_vocab=" + data + "/vocab.pb",
      "training.checkpoint_dir=" + checkpoint_dir,
      "parallel.device=" + device,
      "model.dropout_rate=0.1",
      "training.learning_rate=1e-2",
      "parallel.grad_bucket_mb=0.002",
      "training.eval_every=0",
      "training.checkpoint_every=0",
      "parallel.ranks_per_node=" + std::to_string(world_size % 2 == 0 ? 2 : 1)};
  sets.insert(sets.end(), variant.begin(), variant.end());
  return train::load_config(std::string(MOWE_SOURCE_DIR) + "/configs/tiny.textproto", sets);
}

// Every tensor a rank holds (parameters, optimizer state) as host bytes, by name.
std::map<std::string, std::vector<char>> snapshot(Job& job) {
  std::map<std::string, std::vector<char>> out;
  auto add = [&](const std::string& name, const Tensor& t) {
    std::vector<char>& bytes = out[name];
    bytes.resize(t.nbytes());
    download(bytes.data(), t);
  };
  for (const auto& p : job.parameters().all()) add(p->name, p->value.tensor());
  for (const NamedTensor& s : job.optimizer().prepare_state(job.parameters().slots()))
    add(s.name, s.tensor);
  return out;
}

void expect_same_steps(Trainer& a, Trainer& b, int steps) {
  for (int i = 0; i < steps; ++i) {
    const StepResult ra = a.step(), rb = b.step();
    ASSERT_EQ(ra.loss, rb.loss) << "step " << a.state().step;
    ASSERT_EQ(ra.grad_norm, rb.grad_norm) << "step " << a.state().step;
    ASSERT_FALSE(ra.skipped);
  }
}

void expect_same_state(Job& a, Job& b, const std::string& what) {
  const auto sa = snapshot(a), sb = snapshot(b);
  ASSERT_EQ(sa.size(), sb.size()) << what;
  for (const auto& [name, bytes] : sa) {
    auto it = sb.find(name);
    ASSERT_NE(it, sb.end()) << what << ": " << name;
    EXPECT_TRUE(bytes == it->second) << what << ": " << name << " differs";
  }
}

class DeviceTrainerTest : public ::testing::TestWithParam<Variant> {
 protected:
  config::Config config(const Env& env, const std::string& dir, const std::string& device) {
    return tiny(env.dir + "/" + dir, device, GetParam().sets, env.world->size());
  }
};

TEST_P(DeviceTrainerTest, SimulatedDeviceTrainsBitEqualToTheCpu) {
  Env env(std::string("match_") + GetParam().name);
  Trainer cpu(config(env, "cpu", "CPU"), *env.world);
  Trainer sim(config(env, "sim", "SIMULATED"), *env.world);
  ASSERT_EQ(cpu.job().device(), Device::CPU);
  ASSERT_EQ(sim.job().device(), Device::SIMULATED);
  EXPECT_EQ(sim.job().parameters().all().front()->value.tensor().device, Device::SIMULATED);
  expect_same_steps(cpu, sim, 4);
  expect_same_state(cpu.job(), sim.job(), "after 4 steps");
}

TEST_P(DeviceTrainerTest, CheckpointsMoveBetweenTheCpuAndTheDevice) {
  Env env(std::string("checkpoint_") + GetParam().name);
  Trainer cpu(config(env, "cpu", "CPU"), *env.world);
  for (int i = 0; i < 3; ++i) cpu.step();
  const std::string from_cpu = cpu.save();
  Trainer sim(config(env, "sim", "SIMULATED"), *env.world);
  sim.resume(from_cpu);
  ASSERT_EQ(sim.state().step, 3);
  expect_same_state(cpu.job(), sim.job(), "a CPU checkpoint read on the device");
  expect_same_steps(cpu, sim, 2);

  const std::string from_sim = sim.save();
  Trainer back(config(env, "back", "CPU"), *env.world);
  back.resume(from_sim);
  ASSERT_EQ(back.state().step, 5);
  expect_same_state(back.job(), sim.job(), "a device checkpoint read on the CPU");
  expect_same_steps(back, sim, 2);
}

TEST_P(DeviceTrainerTest, SteadyStepsSynchroniseAtMostThreeTimesAndAllocateNothing) {
  Env env(std::string("counts_") + GetParam().name);
  Trainer sim(config(env, "sim", "SIMULATED"), *env.world);
  sim.step();
  sim.step();
  for (int i = 0; i < 2; ++i) {
    sim::reset_counters();
    sim.step();
    const sim::Counters c = sim::counters();
    const std::string what = sim::format_counters(c);
    EXPECT_LE(c.host_syncs, 3u) << what;
    EXPECT_EQ(c.allocations, 0u) << what;
    EXPECT_EQ(c.deallocations, 0u) << what;
    EXPECT_GT(c.launches, 100u) << what;
    // Only the loss and the gradient norm come down; up go the token arrays, and with MoWE
    // layers each stack's index arrays (2 for a local dispatch, 3 for an exchange).
    EXPECT_EQ(c.downloads, 2u + c.staging_syncs / 2) << what;
    if (!GetParam().mowe) {
      EXPECT_EQ(c.uploads, 6u + c.staging_syncs / 2) << what;
    }
    if (env.world->size() == 1) {
      EXPECT_EQ(c.staging_syncs, 0u) << what;
    }
    if (env.world->rank() == 0 && i == 1)
      std::printf("a steady step on the device: %s\n", what.c_str());
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, DeviceTrainerTest, ::testing::ValuesIn(variants()),
                         [](const ::testing::TestParamInfo<Variant>& info) {
                           return std::string(info.param.name);
                         });

TEST(DeviceTrainer, GreedyDecodingOnTheDeviceGivesTheCpuTokens) {
  Env env("decode");
  const std::vector<std::string> mowe = {"training.optimizer=ADAMW"};
  Trainer cpu(tiny(env.dir + "/cpu", "CPU", mowe, env.world->size()), *env.world);
  Trainer sim(tiny(env.dir + "/sim", "SIMULATED", mowe, env.world->size()), *env.world);
  expect_same_steps(cpu, sim, 3);
  std::vector<DecodeRequest> requests;
  for (int i = 0; i < 5; ++i) requests.push_back({cpu.job().eval_loader().example(i).inputs, {}});
  const auto want = greedy_decode(cpu.runner(), cpu.job(), requests, 6, false, 2);
  EXPECT_EQ(greedy_decode(sim.runner(), sim.job(), requests, 6, false, 2), want);
  int tokens = 0;
  for (const auto& d : want) tokens += static_cast<int>(d.size());
  EXPECT_GT(tokens, 0);
}

TEST(DeviceTrainer, WhatDoesNotRunOnADeviceYetIsRefusedByName) {
  Env env("refused");
  const int world = env.world->size();
  testing::expect_error(
      [&] {
        Trainer t(tiny(env.dir, "SIMULATED",
                       {"training.optimizer=ADAMW", "model.mowe.expert_dropout_rate=0.1"}, world),
                  *env.world);
      },
      {"parallel.device: SIMULATED", "model.mowe.expert_dropout_rate > 0"});
}

TEST(DeviceChoice, RulesOfTheSetting) {
  using P = config::ParallelConfig;
  const std::string why = "model.x > 0";
  EXPECT_EQ(resolve_device(P::AUTO, true, 8, "").device, Device::CUDA);
  EXPECT_EQ(resolve_device(P::AUTO, true, 0, "").device, Device::CPU);
  EXPECT_EQ(resolve_device(P::AUTO, false, 8, "").device, Device::CPU);
  const DeviceChoice held_back = resolve_device(P::AUTO, true, 8, why);
  EXPECT_EQ(held_back.device, Device::CPU);
  EXPECT_NE(held_back.reason.find("model.x > 0 does not run on a device yet"), std::string::npos);
  EXPECT_EQ(resolve_device(P::SIMULATED, false, 0, "").device, Device::SIMULATED);
  EXPECT_EQ(resolve_device(P::CPU, true, 8, why).device, Device::CPU);
  testing::expect_error([] { resolve_device(P::CUDA, false, 0, ""); },
                        {"this build has no CUDA backend"});
  testing::expect_error([] { resolve_device(P::CUDA, true, 0, ""); },
                        {"no GPU is visible", "CUDA_VISIBLE_DEVICES"});
  testing::expect_error([&] { resolve_device(P::CUDA, true, 4, why); },
                        {"parallel.device: CUDA", "model.x > 0"});
  EXPECT_EQ(gpu_for_local_rank(3, 4, 4), 3);
  testing::expect_error(
      [] { gpu_for_local_rank(0, 8, 4); },
      {"8 ranks run on this node but it has 4 visible GPUs", "--gpus-per-node=4"});
}

}  // namespace
}  // namespace mowe::train
