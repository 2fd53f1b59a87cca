#include "runtime/sim/sim_device.h"

#include <atomic>
#include <cstring>

#include <fmt/format.h>

namespace mowe::sim {
namespace {

// 57 bits: the user address space of x86-64 with five-level paging, so every host address
// translates.
constexpr uintptr_t kAddressSpan = uintptr_t{1} << 57;

struct AtomicCounters {
  std::atomic<uint64_t> host_syncs{0}, staging_syncs{0}, launches{0}, memsets{0}, uploads{0},
      upload_bytes{0}, downloads{0}, download_bytes{0}, device_copies{0}, allocations{0},
      deallocations{0};
};

AtomicCounters& live_counters() {
  static AtomicCounters* c = new AtomicCounters;
  return *c;
}

// Kernels of every stream run one at a time, each with the whole thread pool and BLAS: two
// streams' kernels side by side would oversubscribe the cores. Streams still order only by
// events; this lock gives no ordering.
std::mutex& kernel_mutex() {
  static std::mutex* m = new std::mutex;
  return *m;
}

// Host memory for the kernels' temporaries; counted as device allocations, which is what they
// are on a GPU.
class ScratchAllocator final : public DeviceAllocator {
 public:
  Device device() const override { return Device::CPU; }
  void* allocate(size_t bytes) override {
    ++live_counters().allocations;
    return host_allocator().allocate(bytes);
  }
  void deallocate(void* ptr) override {
    ++live_counters().deallocations;
    host_allocator().deallocate(ptr);
  }
  void zero(void* ptr, size_t bytes) override { std::memset(ptr, 0, bytes); }
};

ScratchAllocator& scratch_allocator() {
  static ScratchAllocator* a = new ScratchAllocator;
  return *a;
}

}  // namespace

void* host_address(const void* device_ptr) {
  if (device_ptr == nullptr) return nullptr;
  const uintptr_t a = reinterpret_cast<uintptr_t>(device_ptr);
  MOWE_CHECK(a >= kAddressOffset && a - kAddressOffset < kAddressSpan,
             "address {} is not memory of the simulated device (a host pointer passed as a "
             "device tensor?)",
             device_ptr);
  return reinterpret_cast<void*>(a - kAddressOffset);
}

void* device_address(void* host_ptr) {
  if (host_ptr == nullptr) return nullptr;
  const uintptr_t a = reinterpret_cast<uintptr_t>(host_ptr);
  MOWE_CHECK(a < kAddressSpan, "host address {} is outside the range the simulator maps", host_ptr);
  return reinterpret_cast<void*>(a + kAddressOffset);
}

Tensor host_view(const Tensor& t) {
  if (t.empty()) return Tensor(nullptr, t.dtype, Device::CPU, t.shape);
  MOWE_CHECK(t.device == Device::SIMULATED, "{} is not memory of the simulated device", t.str());
  return Tensor(host_address(t.data), t.dtype, Device::CPU, t.shape);
}

Counters counters() {
  const AtomicCounters& c = live_counters();
  return Counters{c.host_syncs,    c.staging_syncs, c.launches,     c.memsets,
                  c.uploads,       c.upload_bytes,  c.downloads,    c.download_bytes,
                  c.device_copies, c.allocations,   c.deallocations};
}

void reset_counters() {
  AtomicCounters& c = live_counters();
  for (auto* a :
       {&c.host_syncs, &c.staging_syncs, &c.launches, &c.memsets, &c.uploads, &c.upload_bytes,
        &c.downloads, &c.download_bytes, &c.device_copies, &c.allocations, &c.deallocations})
    a->store(0);
}

std::string format_counters(const Counters& c) {
  return fmt::format(
      "{} host syncs, {} launches, {} memsets, {} uploads ({} B), {} downloads ({} B), "
      "{} device copies, {} allocations, {} frees, {} staging syncs of the MPI fallback",
      c.host_syncs, c.launches, c.memsets, c.uploads, c.upload_bytes, c.downloads, c.download_bytes,
      c.device_copies, c.allocations, c.deallocations, c.staging_syncs);
}

// Counting helpers for the runtime and the backend (runtime/sim/sim_runtime.cc).
void count_host_sync() {
  ++live_counters().host_syncs;
}
void count_staging_sync() {
  ++live_counters().staging_syncs;
}
void count_memset() {
  ++live_counters().memsets;
}
void count_upload(size_t bytes) {
  ++live_counters().uploads;
  live_counters().upload_bytes += bytes;
}
void count_device_copy() {
  ++live_counters().device_copies;
}
void count_allocation(bool allocated) {
  ++(allocated ? live_counters().allocations : live_counters().deallocations);
}

namespace {

struct StreamRegistry {
  std::mutex mutex;
  std::vector<Stream*> streams;
};

StreamRegistry& registry() {
  static StreamRegistry* r = new StreamRegistry;
  return *r;
}

}  // namespace

void wait_for_all_streams() {
  count_host_sync();
  std::lock_guard<std::mutex> lock(registry().mutex);
  for (Stream* s : registry().streams) s->wait_for(s->queued());
}

Stream::Stream()
    : scratch_(std::make_unique<Arena>(scratch_allocator(), size_t{16} << 20)),
      worker_([this] { serve(); }) {
  std::lock_guard<std::mutex> lock(registry().mutex);
  registry().streams.push_back(this);
}

Stream::~Stream() {
  {
    std::lock_guard<std::mutex> lock(registry().mutex);
    std::erase(registry().streams, this);
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  worker_.join();
}

uint64_t Stream::enqueue(std::function<void()> work) {
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ticket = ++queued_;
    queue_.emplace_back(ticket, std::move(work));
  }
  work_ready_.notify_one();
  return ticket;
}

uint64_t Stream::enqueue_kernel(std::function<void(Arena& scratch)> kernel) {
  ++live_counters().launches;
  return enqueue([this, kernel = std::move(kernel)] {
    std::lock_guard<std::mutex> lock(kernel_mutex());
    ArenaScope scope(*scratch_);
    kernel(*scratch_);
  });
}

void Stream::enqueue_download(void* dst, const void* device_src, size_t bytes) {
  ++live_counters().downloads;
  live_counters().download_bytes += bytes;
  const void* src = host_address(device_src);
  std::memset(dst, 0xFF, bytes);  // poisoned until the host synchronises
  enqueue([this, dst, src, bytes] {
    PendingDownload d{dst, std::vector<char>(bytes)};
    std::memcpy(d.bytes.data(), src, bytes);
    std::lock_guard<std::mutex> lock(mutex_);
    landed_.push_back(std::move(d));
  });
}

uint64_t Stream::queued() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return queued_;
}

void Stream::wait_for(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mutex_);
  work_done_.wait(lock, [&] { return completed_ >= ticket; });
}

void Stream::synchronize() {
  std::vector<PendingDownload> landed;
  std::exception_ptr failure;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    work_done_.wait(lock, [&] { return completed_ >= queued_; });
    landed.swap(landed_);
    std::swap(failure, failure_);
  }
  for (PendingDownload& d : landed) std::memcpy(d.dst, d.bytes.data(), d.bytes.size());
  if (failure) std::rethrow_exception(failure);
}

void Stream::serve() {
  while (true) {
    std::pair<uint64_t, std::function<void()>> item;
    bool skip;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and everything queued has run
      item = std::move(queue_.front());
      queue_.pop_front();
      skip = failure_ != nullptr;
    }
    std::exception_ptr failure;
    if (!skip) {
      try {
        item.second();
      } catch (...) {
        failure = std::current_exception();
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (failure && !failure_) failure_ = failure;
      completed_ = item.first;
    }
    work_done_.notify_all();
  }
}

Stream& stream_of(void* handle) {
  if (handle != nullptr) return *static_cast<Stream*>(handle);
  // Never destroyed: ops may be queued from other statics' destructors at exit.
  static Stream* compute = new Stream;
  return *compute;
}

}  // namespace mowe::sim
