#include "runtime/cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/backend.h"
#include "runtime/check.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MOWE_CPU_RELAX() _mm_pause()
#else
#define MOWE_CPU_RELAX() std::this_thread::yield()
#endif

namespace mowe::cpu {
namespace {

thread_local bool t_in_region = false;

// Spin this many pauses (~tens of microseconds) before sleeping: back-to-back ops of a step
// reuse awake workers, while a long BLAS call finds them asleep rather than burning its cores.
constexpr int kSpinPauses = 4000;
// A call is cut into at most this many tasks per thread: enough for dynamic balancing on a
// noisy machine, few enough to keep the per-task cost small.
constexpr int64_t kTasksPerThread = 8;

class Pool {
 public:
  explicit Pool(int threads) { start(threads); }
  ~Pool() { stop(); }

  int size() const { return size_; }

  void resize(int threads) {
    MOWE_CHECK(threads >= 1, "pool threads must be >= 1, not {}", threads);
    if (threads == size_) return;
    stop();
    start(threads);
  }

  void run(int64_t n, int64_t grain, const RangeFn& body) {
    // Tasks are whole multiples of grain, so task starts are multiples of grain.
    const int64_t max_tasks = int64_t{size_} * kTasksPerThread;
    int64_t task = grain;
    if ((n + task - 1) / task > max_tasks) {
      const int64_t grains = (n + grain - 1) / grain;
      task = grain * ((grains + max_tasks - 1) / max_tasks);
    }
    body_ = &body;
    n_ = n;
    task_ = task;
    const uint64_t tasks = uint64_t((n + task - 1) / task);
    done_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    const uint32_t gen = generation_.load(std::memory_order_relaxed) + 1;
    claim_.store(pack(gen, tasks, 0), std::memory_order_release);
    generation_.store(gen, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      { std::lock_guard<std::mutex> lock(mutex_); }
      wake_.notify_all();
    }
    t_in_region = true;
    work(gen);
    t_in_region = false;
    // Only tasks that were claimed are waited for: a worker that wakes late finds none left and
    // touches nothing of this call.
    for (int spins = 0; done_.load(std::memory_order_acquire) != tasks; ++spins) {
      if (spins < kSpinPauses) {
        MOWE_CPU_RELAX();
      } else {
        std::this_thread::yield();  // a worker descheduled mid-task on a shared machine
      }
    }
    body_ = nullptr;
    if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
  }

 private:
  // claim_ holds the call's generation (24 bits), its task count and the next task (20 bits
  // each; tasks are at most kTasksPerThread per thread), so a claim succeeds only for the call
  // the worker woke for.
  static uint64_t pack(uint32_t gen, uint64_t tasks, uint64_t next) {
    return (uint64_t(gen & 0xffffff) << 40) | (tasks << 20) | next;
  }

  void start(int threads) {
    MOWE_CHECK(int64_t{threads} * kTasksPerThread < (1 << 20), "too many pool threads: {}",
               threads);
    size_ = threads;
    quit_.store(false);
    // The generation is read here, not by the new thread: a stop() before it runs must wake it.
    const uint32_t now = generation_.load(std::memory_order_acquire);
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this, now] { worker_loop(now); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_.store(true);
      generation_.fetch_add(1, std::memory_order_seq_cst);
    }
    wake_.notify_all();
    for (std::thread& t : workers_) t.join();
    workers_.clear();
    size_ = 1;
  }

  // Claims tasks of call `gen` until none is left; the first exception is kept for the caller.
  void work(uint32_t gen) {
    uint64_t c = claim_.load(std::memory_order_acquire);
    for (;;) {
      if ((c >> 40) != (gen & 0xffffff)) return;
      const uint64_t tasks = (c >> 20) & 0xfffff, next = c & 0xfffff;
      if (next >= tasks) return;
      if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel,
                                        std::memory_order_acquire))
        continue;
      // The call cannot end before this task is done, so its fields are stable.
      const int64_t begin = int64_t(next) * task_;
      try {
        (*body_)(begin, std::min(n_, begin + task_));
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      done_.fetch_add(1, std::memory_order_acq_rel);
      c = claim_.load(std::memory_order_acquire);
    }
  }

  void worker_loop(uint32_t seen) {
    t_in_region = true;
    for (;;) {
      uint32_t now = seen;
      for (int i = 0; i < kSpinPauses && now == seen; ++i) {
        MOWE_CPU_RELAX();
        now = generation_.load(std::memory_order_acquire);
      }
      if (now == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        sleepers_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] { return generation_.load(std::memory_order_seq_cst) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_relaxed);
        now = generation_.load(std::memory_order_acquire);
      }
      if (quit_.load(std::memory_order_acquire)) return;
      seen = now;
      work(now);
    }
  }

  int size_ = 1;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<bool> quit_{false};
  std::atomic<uint32_t> generation_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<uint64_t> claim_{0};
  std::atomic<uint64_t> done_{0};  // tasks of the current call finished
  // The current call, published by the release of claim_.
  const RangeFn* body_ = nullptr;
  int64_t n_ = 0, task_ = 1;
  std::exception_ptr error_;  // under mutex_ while workers run
};

Pool& pool() {
  static Pool instance(std::max(1, cpu_threads()));
  return instance;
}

}  // namespace

namespace detail {
bool in_parallel_region() {
  return t_in_region;
}
void run_parallel(int64_t n, int64_t grain, const RangeFn& body) {
  // One caller at a time uses the pool; a second thread calling meanwhile (the simulated
  // device's stream worker beside the training thread) runs its call inline, which gives the
  // same results, since they do not depend on the split.
  static std::mutex* caller = new std::mutex;
  std::unique_lock<std::mutex> lock(*caller, std::try_to_lock);
  if (!lock.owns_lock()) {
    struct Region {
      Region() { t_in_region = true; }
      ~Region() { t_in_region = false; }
    } region;
    body(0, n);
    return;
  }
  pool().run(n, grain, body);
}
}  // namespace detail

int pool_threads() {
  return pool().size();
}

void set_pool_threads(int threads) {
  pool().resize(threads);
}

}  // namespace mowe::cpu
