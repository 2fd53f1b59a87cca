// The simulated device behind the device seam (runtime/device.h): its allocator, streams, events
// and copies.
#include <cstring>
#include <memory>

#include "runtime/device.h"
#include "runtime/sim/sim_device.h"

namespace mowe::sim {
namespace {

class SimAllocator final : public DeviceAllocator {
 public:
  Device device() const override { return Device::SIMULATED; }
  void* allocate(size_t bytes) override {
    count_allocation(true);
    return device_address(host_allocator().allocate(bytes));
  }
  // As cudaFree, waits for the device first: queued work may still use the memory.
  void deallocate(void* ptr) override {
    wait_for_all_streams();
    count_allocation(false);
    host_allocator().deallocate(host_address(ptr));
  }
  // Ordered on the compute stream, as on CUDA: memory rewound in an arena may still be in use by
  // work queued there before.
  void zero(void* ptr, size_t bytes) override;
};

struct Event {
  Stream* stream = nullptr;  // null until recorded: waiting on it waits for nothing
  uint64_t ticket = 0;
};

class SimRuntime final : public DeviceRuntime {
 public:
  Device device() const override { return Device::SIMULATED; }
  DeviceAllocator& allocator() override { return allocator_; }

  void* create_stream() override { return new Stream; }
  void destroy_stream(void* stream) override { delete static_cast<Stream*>(stream); }
  void* create_event() override { return new Event; }
  void destroy_event(void* event) override { delete static_cast<Event*>(event); }
  void record_event(void* event, void* stream) override {
    Event& e = *static_cast<Event*>(event);
    e.stream = &stream_of(stream);
    e.ticket = e.stream->queued();
  }
  void wait_event(void* stream, void* event) override {
    const Event e = *static_cast<Event*>(event);
    if (e.stream == nullptr) return;
    stream_of(stream).enqueue([e] { e.stream->wait_for(e.ticket); });
  }

  void memset_async(void* dst, int value, size_t bytes, void* stream) override {
    if (bytes == 0) return;
    count_memset();
    void* p = host_address(dst);
    stream_of(stream).enqueue([p, value, bytes] { std::memset(p, value, bytes); });
  }

  void copy_async(void* dst, const void* src, size_t bytes, CopyKind kind, void* stream) override {
    if (bytes == 0) return;
    Stream& s = stream_of(stream);
    switch (kind) {
      case CopyKind::HostToDevice: {
        count_upload(bytes);
        auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src),
                                                          static_cast<const char*>(src) + bytes);
        void* p = host_address(dst);
        s.enqueue([p, staged] { std::memcpy(p, staged->data(), staged->size()); });
        break;
      }
      case CopyKind::DeviceToHost:
        s.enqueue_download(dst, src, bytes);
        break;
      case CopyKind::DeviceToDevice: {
        count_device_copy();
        void* d = host_address(dst);
        const void* from = host_address(src);
        s.enqueue([d, from, bytes] { std::memmove(d, from, bytes); });
        break;
      }
    }
  }

  void synchronize(void* stream) override {
    count_host_sync();
    stream_of(stream).synchronize();
  }
  void synchronize_for_staging(void* stream) override {
    count_staging_sync();
    stream_of(stream).synchronize();
  }

 private:
  SimAllocator allocator_;
};

SimRuntime& runtime() {
  static SimRuntime* r = new SimRuntime;
  return *r;
}

void SimAllocator::zero(void* ptr, size_t bytes) {
  runtime().memset_async(ptr, 0, bytes, nullptr);
}

}  // namespace

DeviceRuntime& sim_runtime() {
  return runtime();
}

}  // namespace mowe::sim
