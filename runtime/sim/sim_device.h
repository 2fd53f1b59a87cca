// The simulated device: a test device with the semantics of a GPU, run by CPU kernels.
//
// - Its memory is host memory handed out at a non-canonical x86-64 address (host address +
//   2^62), so a host dereference of a device pointer faults at once instead of reading stale
//   data; only the simulator's own work translates it back (host_address).
// - Work (ops, memsets, copies) is queued on streams, each served by one worker thread in queue
//   order; streams are ordered among themselves only by events. Kernels of all streams run one
//   at a time, so the CPU backend's thread pool is never entered twice.
// - A device-to-host copy lands only when the host synchronises that stream: until then its
//   destination is poisoned (0xFF bytes: NaN as a float, -1 as an integer).
// - It counts what a GPU would make the host pay for: synchronisations, launches, transfers and
//   allocations (counters(), per process).
//
// Results are bit-identical to the CPU backend: the kernels are the CPU backend's.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/memory.h"

namespace mowe::sim {

constexpr uintptr_t kAddressOffset = uintptr_t{1} << 62;

// Device address -> the host memory behind it; throws Error for an address the simulator did
// not hand out (a host pointer passed as device memory). Null stays null.
void* host_address(const void* device_ptr);
void* device_address(void* host_ptr);
// The tensor seen by a CPU kernel: same shape and dtype, host memory, Device::CPU.
Tensor host_view(const Tensor& t);

struct Counters {
  uint64_t host_syncs = 0;     // synchronize() calls, and reductions returned to the host
  uint64_t staging_syncs = 0;  // synchronize_for_staging(): the MPI fallback's, not NCCL's
  uint64_t launches = 0;       // ops queued
  uint64_t memsets = 0;
  uint64_t uploads = 0, upload_bytes = 0;      // host -> device
  uint64_t downloads = 0, download_bytes = 0;  // device -> host
  uint64_t device_copies = 0;                  // device -> device
  uint64_t allocations = 0;  // device memory taken from the system, kernels' scratch included
  uint64_t deallocations = 0;
};
Counters counters();
void reset_counters();
// What a test or a log line reads of the counters: "3 syncs, 120 launches, ...".
std::string format_counters(const Counters& c);

// Counting, for the simulator's own files.
void count_host_sync();
void count_staging_sync();
void count_memset();
void count_upload(size_t bytes);
void count_device_copy();
void count_allocation(bool allocated);

// One in-order queue of work served by its own thread.
class Stream {
 public:
  Stream();
  ~Stream();  // waits for the queued work
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  // Queues work; returns its ticket (1, 2, ...). Work after a failed one is skipped, and the
  // failure is rethrown by the next synchronize().
  uint64_t enqueue(std::function<void()> work);
  // Queues a kernel of the CPU backend: run one at a time over all streams, with this stream's
  // host scratch arena for its temporaries.
  uint64_t enqueue_kernel(std::function<void(Arena& scratch)> kernel);
  // Queues a device-to-host copy whose bytes reach dst at the next synchronize().
  void enqueue_download(void* dst, const void* device_src, size_t bytes);
  // Tickets queued so far (the ticket an event recorded now waits for).
  uint64_t queued() const;
  // Blocks the calling thread until work `ticket` has completed (not counted as a host sync:
  // the waits between streams call it from a worker).
  void wait_for(uint64_t ticket);
  // The host waits for all queued work, lands the pending downloads and rethrows a failure.
  void synchronize();

 private:
  void serve();

  mutable std::mutex mutex_;
  std::condition_variable work_ready_, work_done_;
  std::deque<std::pair<uint64_t, std::function<void()>>> queue_;
  uint64_t queued_ = 0, completed_ = 0;
  bool stopping_ = false;
  std::exception_ptr failure_;
  struct PendingDownload {
    void* dst;
    std::vector<char> bytes;
  };
  std::vector<PendingDownload> landed_;  // copied on the device, reaching the host at sync
  std::unique_ptr<Arena> scratch_;       // the kernels' temporaries, host memory
  std::thread worker_;
};

// The stream a handle names: null is the device's compute stream.
Stream& stream_of(void* handle);
// Waits for the work queued on every stream, as cudaFree does before it frees: memory freed by the
// host may still be in use by queued work. Counted as a host synchronisation.
void wait_for_all_streams();

}  // namespace mowe::sim
