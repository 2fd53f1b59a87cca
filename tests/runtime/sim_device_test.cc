// The simulated device keeps a GPU's contract: its memory cannot be read by the host, work is
// asynchronous and runs in stream order, streams are ordered only by events, downloads land only
// at synchronisation, failures of queued work surface there, and what the host pays is counted.
#include <gtest/gtest.h>

#include <cstring>
#include <future>
#include <vector>

#include "runtime/backend.h"
#include "runtime/device.h"
#include "runtime/sim/sim_device.h"
#include "tests/util/expect_error.h"

namespace mowe {
namespace {

using testing::expect_error;

DeviceRuntime& rt() {
  return device_runtime(Device::SIMULATED);
}

Buffer device_floats(const std::vector<float>& values) {
  Buffer b(rt().allocator(), Shape{static_cast<int64_t>(values.size())}, DType::F32);
  upload(b.tensor(), values.data());
  return b;
}

std::vector<float> host_floats(const Tensor& t) {
  std::vector<float> v(t.numel());
  download(v.data(), t);
  return v;
}

// Blocks a stream until the test lets it go, so that what the host sees meanwhile is certain.
struct Gate {
  std::promise<void> open;
  std::shared_future<void> opened = open.get_future().share();
  void hold(void* stream) {
    sim::stream_of(stream).enqueue([f = opened] { f.wait(); });
  }
};

TEST(SimDevice, IsAvailableAndNamed) {
  EXPECT_TRUE(device_available(Device::SIMULATED));
  EXPECT_STREQ(device_name(Device::SIMULATED), "sim");
  EXPECT_EQ(backend_for(Device::SIMULATED).device(), Device::SIMULATED);
  EXPECT_EQ(rt().allocator().device(), Device::SIMULATED);
}

TEST(SimDevice, DevicePointersAreNotHostAddresses) {
  Buffer b = device_floats({1, 2, 3});
  const uintptr_t a = reinterpret_cast<uintptr_t>(b.tensor().data);
  EXPECT_GE(a, sim::kAddressOffset);  // non-canonical on x86-64: a host load faults
  int on_host = 0;
  expect_error([&] { sim::host_address(&on_host); }, {"is not memory of the simulated device"});
  EXPECT_EQ(host_floats(b), (std::vector<float>{1, 2, 3}));
}

TEST(SimDeviceDeathTest, HostReadOfDeviceMemoryFaultsAtOnce) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Buffer b = device_floats({42});
  const volatile float* p = static_cast<const float*>(b.tensor().data);
  EXPECT_DEATH({ [[maybe_unused]] float x = *p; }, "");
}

TEST(SimDevice, OpsRefuseHostTensors) {
  Buffer host(host_allocator(), {4}, DType::F32);
  Buffer dev = device_floats({1, 2, 3, 4});
  expect_error([&] { backend_for(Device::SIMULATED).gelu_forward({}, host, dev); },
               {"gelu_forward", "is not in device memory"});
  expect_error([&] { backend_for(Device::SIMULATED).axpy({}, 1.0, dev, device_floats({1})); },
               {"axpy"});
  Arena host_arena(host_allocator());
  expect_error([&] { backend_for(Device::SIMULATED).sum({.scratch = &host_arena}, dev); },
               {"sum", "needs a device arena"});
}

TEST(SimDevice, OpsReturnBeforeTheyRunAndDownloadsLandOnlyAtSync) {
  Buffer x = device_floats({1, 2, 3, 4});
  Gate gate;
  gate.hold(nullptr);
  backend_for(Device::SIMULATED).fill({}, x, 7.0);  // queued behind the gate: returns at once
  std::vector<float> out(4, 0.0f);
  rt().copy_async(out.data(), x.tensor().data, x.tensor().nbytes(), CopyKind::DeviceToHost,
                  nullptr);
  for (float v : out) EXPECT_TRUE(std::isnan(v)) << "a download must be poisoned until sync";
  gate.open.set_value();
  // The work has run soon after the gate opens, but the bytes wait for the host's sync.
  sim::stream_of(nullptr).wait_for(sim::stream_of(nullptr).queued());
  for (float v : out) EXPECT_TRUE(std::isnan(v));
  rt().synchronize(nullptr);
  EXPECT_EQ(out, (std::vector<float>{7, 7, 7, 7}));
}

TEST(SimDevice, UploadsStageTheSourceSoItMayBeReusedAtOnce) {
  Buffer x(rt().allocator(), {3}, DType::F32);
  Gate gate;
  gate.hold(nullptr);
  std::vector<float> src = {1, 2, 3};
  upload(x.tensor(), src.data());
  src = {9, 9, 9};  // the copy still waits behind the gate
  gate.open.set_value();
  EXPECT_EQ(host_floats(x), (std::vector<float>{1, 2, 3}));
}

TEST(SimDevice, StreamsAreOrderedOnlyByEvents) {
  void* side = rt().create_stream();
  void* done = rt().create_event();
  Buffer a = device_floats({0, 0}), b = device_floats({5, 5});
  Gate gate;
  gate.hold(side);
  backend_for(Device::SIMULATED).fill({.stream = side}, a, 3.0);
  rt().record_event(done, side);
  rt().wait_event(nullptr, done);
  // Without the event this copy could read a before the fill; with it, never.
  rt().copy_async(b.tensor().data, a.tensor().data, a.tensor().nbytes(), CopyKind::DeviceToDevice,
                  nullptr);
  gate.open.set_value();
  EXPECT_EQ(host_floats(b), (std::vector<float>{3, 3}));
  rt().destroy_event(done);
  rt().destroy_stream(side);
}

TEST(SimDevice, ZeroingIsOrderedWithEarlierWorkOnTheComputeStream) {
  Arena arena(rt().allocator(), 1 << 20);
  const Arena::Mark mark = arena.mark();
  Tensor x = arena.alloc({4}, DType::F32);
  Gate gate;
  gate.hold(nullptr);
  backend_for(Device::SIMULATED).fill({}, x, 5.0);
  arena.rewind(mark);
  Tensor y = arena.alloc_zeros({4}, DType::F32);  // same memory, zeroed after the fill
  ASSERT_EQ(y.data, x.data);
  gate.open.set_value();
  EXPECT_EQ(host_floats(y), (std::vector<float>{0, 0, 0, 0}));
}

TEST(SimDevice, FailuresOfQueuedWorkSurfaceAtSynchronisation) {
  Buffer table = device_floats({1, 2, 3, 4});
  Tensor t = table.tensor().reshape({2, 2});
  std::vector<int32_t> bad_ids = {0, 5};
  Buffer ids(rt().allocator(), {2}, DType::I32);
  upload(ids.tensor(), bad_ids.data());
  Buffer out(rt().allocator(), {2, 2}, DType::F32);
  // Id ranges live in device memory: checked by the kernel, reported by the next sync.
  EXPECT_NO_THROW(backend_for(Device::SIMULATED).embedding_forward({}, t, ids, out));
  expect_error([] { rt().synchronize(nullptr); }, {"embedding_forward: id 5 at position 1"});
  // The failure was reported once; the stream works again.
  EXPECT_EQ(host_floats(table), (std::vector<float>{1, 2, 3, 4}));
}

TEST(SimDevice, CountsWhatTheHostPays) {
  Buffer x = device_floats({1, 2, 3});  // allocation, upload (and the zeroing memset)
  Arena arena(rt().allocator(), 1 << 20);
  rt().synchronize(nullptr);
  sim::reset_counters();
  Backend& dev = backend_for(Device::SIMULATED);
  dev.axpy({}, 2.0, x, x);
  dev.gelu_forward({}, x, x);
  const double s = dev.sum({.scratch = &arena}, x);  // a reduction returned to the host: a sync
  std::vector<float> h(3);
  download(h.data(), x);
  const sim::Counters c = sim::counters();
  EXPECT_EQ(c.launches, 3u);
  EXPECT_EQ(c.host_syncs, 2u);
  EXPECT_EQ(c.downloads, 1u);
  EXPECT_EQ(c.download_bytes, 12u);
  EXPECT_EQ(c.uploads, 0u);
  EXPECT_EQ(c.allocations, 0u);
  EXPECT_DOUBLE_EQ(s, double(h[0]) + h[1] + h[2]);
  EXPECT_NE(sim::format_counters(c).find("2 host syncs, 3 launches"), std::string::npos)
      << sim::format_counters(c);
}

}  // namespace
}  // namespace mowe
