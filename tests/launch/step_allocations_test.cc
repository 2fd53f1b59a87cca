// A training step in its steady state allocates no heap memory on any thread, except inside Open
// MPI: steps 5..10 of a real training loop on the tiny MoWE config (the loader's prefetch thread
// building the next batches and routing them, the CPU thread pool's workers, OpenBLAS's threads,
// Open MPI's threads; the exchange, forward, backward, bucketed allreduce, norm, optimizer, the
// step record) make no call to operator new, and no call to malloc, calloc or realloc other than
// Open MPI's own (counted and printed, see kOpenMpiMalloc), on whatever thread. Counted by
// replacing operator new and malloc in this binary (so the shared libraries' calls reach them
// too), per thread: on failure each allocating thread is listed with its counts and the call
// stack of its first allocations (MOWE_ALLOC_TRACE=N stacks in all, default 6).
#include <dlfcn.h>
#include <execinfo.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <new>

#include "launch/train/config_rules.h"
#include "launch/train/trainer.h"
#include "runtime/backend.h"
#include "runtime/config/config.h"

extern "C" {
// glibc's allocator under its own names, so that the replacements below can forward to it.
void* __libc_malloc(size_t size);
void* __libc_calloc(size_t count, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t align, size_t size);
void __libc_free(void* p);
}

namespace {

// kOpenMpiMalloc: a malloc called by Open MPI itself (libmpi, libopen-pal, libopen-rte or one
// of its mca_*.so components). Its non-blocking allreduce (coll/libnbc) builds a schedule with
// malloc on every MPI_Iallreduce and frees it when done; this trainer cannot change that, so such
// calls are counted and reported but not failed. Every other allocation fails the test.
enum Kind { kNew, kMalloc, kOpenMpiMalloc, kKinds };
const char* const kKindNames[kKinds] = {"operator new", "malloc", "malloc by Open MPI"};

// One thread's counts. Claimed by a thread at its first counted allocation from a fixed table,
// so counting itself never allocates.
struct ThreadCounts {
  std::atomic<long> tid{0};
  bool training_thread = false;
  std::atomic<int64_t> calls[kKinds] = {0, 0, 0};
  std::atomic<int64_t> bytes[kKinds] = {0, 0, 0};
};
constexpr int kMaxThreads = 64;
ThreadCounts thread_counts[kMaxThreads];
std::atomic<int> threads_seen{0};
std::atomic<int64_t> total_calls{0}, open_mpi_calls{0}, lost_threads{0};

std::atomic<bool> counting{false};
std::atomic<int> traces_left{0};
std::atomic<int> generation{0};  // a new one for every count: threads claim a new slot in each
thread_local ThreadCounts* my_counts = nullptr;
thread_local int my_generation = -1;
thread_local bool in_trace = false;
thread_local bool stepping_thread = false;  // the thread that calls Trainer::step

ThreadCounts* counts_of_this_thread() {
  if (my_generation == generation.load(std::memory_order_relaxed)) return my_counts;
  my_generation = generation.load(std::memory_order_relaxed);
  my_counts = nullptr;
  const int i = threads_seen.fetch_add(1);
  if (i >= kMaxThreads) return nullptr;
  my_counts = &thread_counts[i];
  my_counts->training_thread = stepping_thread;
  my_counts->tid = syscall(SYS_gettid);
  return my_counts;
}

// Whether the code at `caller` belongs to Open MPI (dladdr does not allocate).
bool in_open_mpi(const void* caller) {
  Dl_info info;
  if (caller == nullptr || dladdr(caller, &info) == 0 || info.dli_fname == nullptr) return false;
  const char* name = info.dli_fname;
  return std::strstr(name, "/openmpi/") || std::strstr(name, "libmpi.so") ||
         std::strstr(name, "libopen-pal.so") || std::strstr(name, "libopen-rte.so");
}

void trace(Kind kind, size_t size) {
  char line[128];
  const int n = std::snprintf(
      line, sizeof line, "---- %s of %zu bytes on thread %ld%s, during a steady-state step:\n",
      kKindNames[kind], size, syscall(SYS_gettid), stepping_thread ? " (the training thread)" : "");
  (void)!write(2, line, n);
  void* frames[24];
  backtrace_symbols_fd(frames, backtrace(frames, 24), 2);
}

// caller: the return address of malloc, calloc or realloc (nullptr for operator new).
[[maybe_unused]] void note(Kind kind, size_t size, const void* caller = nullptr) {
  if (!counting.load(std::memory_order_relaxed) || in_trace) return;
  in_trace = true;  // backtrace() and dladdr may allocate: never count or trace inside them
  if (kind == kMalloc && in_open_mpi(caller)) kind = kOpenMpiMalloc;
  (kind == kOpenMpiMalloc ? open_mpi_calls : total_calls).fetch_add(1, std::memory_order_relaxed);
  if (ThreadCounts* c = counts_of_this_thread()) {
    c->calls[kind].fetch_add(1, std::memory_order_relaxed);
    c->bytes[kind].fetch_add(static_cast<int64_t>(size), std::memory_order_relaxed);
  } else if (kind != kOpenMpiMalloc) {
    lost_threads.fetch_add(1, std::memory_order_relaxed);
  }
  if (kind != kOpenMpiMalloc && traces_left.fetch_sub(1) > 0) trace(kind, size);
  in_trace = false;
}

void* checked(void* p) {
  if (!p) throw std::bad_alloc();
  return p;
}

}  // namespace

// AddressSanitizer owns malloc and operator new; replacing them would bypass it, so its builds
// count nothing and skip the test.
#if !defined(__SANITIZE_ADDRESS__)
#define MOWE_COUNT_ALLOCATIONS 1

extern "C" {
void* malloc(size_t size) {
  note(kMalloc, size, __builtin_return_address(0));
  return __libc_malloc(size);
}
void* calloc(size_t count, size_t size) {
  note(kMalloc, count * size, __builtin_return_address(0));
  return __libc_calloc(count, size);
}
void* realloc(void* p, size_t size) {
  note(kMalloc, size, __builtin_return_address(0));
  return __libc_realloc(p, size);
}
void free(void* p) {
  __libc_free(p);
}
}

void* operator new(size_t size) {
  note(kNew, size);
  return checked(__libc_malloc(size == 0 ? 1 : size));
}
void* operator new[](size_t size) {
  note(kNew, size);
  return checked(__libc_malloc(size == 0 ? 1 : size));
}
void* operator new(size_t size, std::align_val_t align) {
  note(kNew, size);
  return checked(__libc_memalign(static_cast<size_t>(align), size == 0 ? 1 : size));
}
void* operator new[](size_t size, std::align_val_t align) {
  note(kNew, size);
  return checked(__libc_memalign(static_cast<size_t>(align), size == 0 ? 1 : size));
}
void operator delete(void* p) noexcept {
  __libc_free(p);
}
void operator delete[](void* p) noexcept {
  __libc_free(p);
}
void operator delete(void* p, size_t) noexcept {
  __libc_free(p);
}
void operator delete[](void* p, size_t) noexcept {
  __libc_free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  __libc_free(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  __libc_free(p);
}
void operator delete(void* p, size_t, std::align_val_t) noexcept {
  __libc_free(p);
}
void operator delete[](void* p, size_t, std::align_val_t) noexcept {
  __libc_free(p);
}
#endif  // !__SANITIZE_ADDRESS__

namespace mowe::train {
namespace {

namespace fs = std::filesystem;

void start_counting() {
  for (ThreadCounts& c : thread_counts) {
    c.tid = 0;
    c.training_thread = false;
    for (int k = 0; k < kKinds; ++k) c.calls[k] = c.bytes[k] = 0;
  }
  threads_seen = 0;
  total_calls = 0;
  open_mpi_calls = 0;
  lost_threads = 0;
  const char* env = std::getenv("MOWE_ALLOC_TRACE");
  traces_left = env ? std::atoi(env) : 6;
  stepping_thread = true;
  generation.fetch_add(1);
  counting = true;
}

// One line per thread that allocated: which thread, how often, how much, by which call.
std::string per_thread_report(int rank) {
  std::string report;
  const int n = std::min(threads_seen.load(), kMaxThreads);
  for (int i = 0; i < n; ++i) {
    const ThreadCounts& c = thread_counts[i];
    report += fmt::format("rank {} thread {}{}:", rank, c.tid.load(),
                          c.training_thread ? " (the training thread)" : "");
    for (int k = 0; k < kKinds; ++k)
      report += fmt::format(" {} {} ({} bytes){}", c.calls[k].load(), kKindNames[k],
                            c.bytes[k].load(), k + 1 < kKinds ? "," : "\n");
  }
  if (lost_threads > 0)
    report += fmt::format("and {} calls on untracked threads\n", lost_threads.load());
  return report;
}

class StepAllocations : public ::testing::TestWithParam<const char*> {};

TEST_P(StepAllocations, NoneInSteadyStateStepsOnAnyThread) {
#if !defined(MOWE_COUNT_ALLOCATIONS)
  GTEST_SKIP() << "allocations are not counted under AddressSanitizer";
#endif
  auto world = comm::make_communicator(MPI_COMM_WORLD, Device::CPU,
                                       comm::CommOptions{.timeout_seconds = 120});
  const std::string dir =
      fmt::format("{}/step_allocations.np{}/{}", MOWE_TEST_TMP, world->size(), GetParam());
  if (world->rank() == 0) fs::remove_all(dir);
  world->barrier();
  // A pool worker and a second OpenBLAS thread run during the step, whatever the machine.
  const int saved_threads = cpu_threads();
  set_cpu_threads(2);
  const std::string data = MOWE_TEST_DATA;
  const config::Config cfg = train::load_config(
      std::string(MOWE_SOURCE_DIR) + "/configs/tiny.textproto",
      {"data.tokenizer_model=" + data + "/spm.model", "data.routing_vocab=" + data + "/vocab.pb",
       "training.checkpoint_dir=" + dir, "training.optimizer=" + std::string(GetParam()),
       "model.dropout_rate=0.1", "parallel.grad_bucket_mb=0.002", "training.eval_every=0",
       "training.checkpoint_every=0"});
  Trainer trainer(cfg, *world);
  for (int step = 1; step <= 4; ++step) trainer.step();
  world->barrier();
  start_counting();
  for (int step = 5; step <= 10; ++step) {
    const StepResult& r = trainer.step();
    ASSERT_TRUE(std::isfinite(r.loss));
  }
  counting = false;
  stepping_thread = false;
  const std::string report = per_thread_report(world->rank());
  EXPECT_EQ(total_calls.load(), 0) << "heap allocations in steps 5..10, by thread:\n" << report;
  std::printf("[ rank %d ] steps 5..10: %lld allocations, and %lld mallocs by Open MPI:\n%s",
              world->rank(), static_cast<long long>(total_calls.load()),
              static_cast<long long>(open_mpi_calls.load()), report.c_str());
  EXPECT_EQ(trainer.state().step, 10);
  set_cpu_threads(saved_threads);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, StepAllocations, ::testing::Values("ADAMW", "ADAFACTOR"));

}  // namespace
}  // namespace mowe::train
