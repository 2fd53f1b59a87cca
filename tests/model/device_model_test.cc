// The T5 model on the simulated device: parameters drawn on the host and uploaded, inputs and
// activations in device memory, the CPU kernels run asynchronously behind addresses the host
// cannot read. Training steps must give the CPU's bits exactly (losses, gradients, parameters),
// with one host synchronisation per step (the loss) and no device allocation after step 2.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "model/t5_model.h"
#include "runtime/device.h"
#include "runtime/optimizer.h"
#include "runtime/sim/sim_device.h"
#include "tests/util/gradcheck.h"

namespace mowe::model {
namespace {

constexpr int kVocab = 40, kBatch = 3, kEnc = 9, kDec = 6;

config::ModelConfig dense_config() {
  config::ModelConfig c;
  c.set_d_model(16);
  c.set_num_heads(2);
  c.set_d_kv(8);
  c.set_d_ff(32);
  c.set_num_encoder_layers(2);
  c.set_num_decoder_layers(2);
  c.set_vocab_size(kVocab);
  c.set_relative_attention_num_buckets(8);
  c.set_relative_attention_max_distance(16);
  return c;
}

// Token ids with some padding, the same on both devices.
struct HostBatch {
  std::vector<int32_t> enc, enc_valid, dec, dec_valid, targets;
  std::vector<float> weights;
  HostBatch() {
    for (int b = 0; b < kBatch; ++b) {
      for (int t = 0; t < kEnc; ++t) {
        const bool real = t < kEnc - b;
        enc.push_back(real ? 2 + (b * 7 + t * 3) % (kVocab - 2) : 0);
        enc_valid.push_back(real);
      }
      for (int t = 0; t < kDec; ++t) {
        const bool real = t < kDec - b;
        dec.push_back(real ? 2 + (b * 5 + t * 11) % (kVocab - 2) : 0);
        dec_valid.push_back(real);
        targets.push_back(real ? 2 + (b * 13 + t * 5) % (kVocab - 2) : 0);
        weights.push_back(real ? 1.0f : 0.0f);
      }
    }
  }
};

// Model, optimizer and memory of one device.
struct Replica {
  Device device;
  DeviceAllocator& alloc;
  ParameterStore store;
  T5Model model;
  AdamW adamw;
  Arena scratch, acts, inputs;
  ModelInputs in;

  Replica(Device d, const config::ModelConfig& c, const HostBatch& h)
      : device(d),
        alloc(device_runtime(d).allocator()),
        store(alloc, DType::F32, 5),
        model(c, store, nullptr),
        adamw(alloc, {.weight_decay = 0.01}),
        scratch(alloc),
        acts(alloc),
        inputs(alloc) {
    auto put = [&](const auto& v, int64_t len) {
      using T = typename std::decay_t<decltype(v)>::value_type;
      Tensor t = inputs.alloc({kBatch, len}, dtype_of<T>());
      upload(t, v.data());
      return t;
    };
    in.batch = kBatch;
    in.enc_ids = put(h.enc, kEnc);
    in.enc_valid = put(h.enc_valid, kEnc);
    in.dec_ids = put(h.dec, kDec);
    in.dec_valid = put(h.dec_valid, kDec);
    in.targets = put(h.targets, kDec);
    in.weights = put(h.weights, kDec);
  }

  double step(int t) {
    StepContext s;
    s.backend = &backend_for(device);
    s.ctx = {.device = device, .stream = nullptr, .scratch = &scratch};
    s.activations = &acts;
    ArenaScope scope(acts);
    store.zero_grads();
    const double loss = model.forward(s, in, 1e-4);
    model.backward(s, in, 1e-4, 1.0 / 10);
    adamw.step(s.ctx, store.slots(), 1e-2, 1.0, t);
    return loss;
  }

  std::vector<char> bytes(const Tensor& x) const {
    std::vector<char> out(x.nbytes());
    download(out.data(), x);
    return out;
  }
};

TEST(ModelOnDevice, DenseTrainingStepsAreBitEqualToTheCpu) {
  const config::ModelConfig c = dense_config();
  const HostBatch h;
  Replica cpu(Device::CPU, c, h), sim(Device::SIMULATED, c, h);
  for (int t = 1; t <= 4; ++t) {
    sim::reset_counters();
    const double want = cpu.step(t), got = sim.step(t);
    const sim::Counters counters = sim::counters();
    ASSERT_EQ(std::memcmp(&want, &got, sizeof want), 0)
        << "step " << t << ": cpu loss " << want << ", simulated " << got;
    // The loss is the step's only trip to the host; memory comes from the arenas kept since
    // the first steps.
    EXPECT_EQ(counters.host_syncs, 1u) << "step " << t << ": " << sim::format_counters(counters);
    EXPECT_GT(counters.launches, 100u) << "the step ran on the simulated device";
    if (t == 4)
      std::printf("step 4 on the simulated device: %s\n", sim::format_counters(counters).c_str());
    if (t > 2) {
      EXPECT_EQ(counters.allocations, 0u) << "step " << t << ": " << sim::format_counters(counters);
    }
  }
  const auto& a = cpu.store.all();
  const auto& b = sim.store.all();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(cpu.bytes(a[i]->value), sim.bytes(b[i]->value)) << a[i]->name << " value";
    EXPECT_EQ(cpu.bytes(a[i]->grad), sim.bytes(b[i]->grad)) << a[i]->name << " gradient";
  }
}

}  // namespace
}  // namespace mowe::model
