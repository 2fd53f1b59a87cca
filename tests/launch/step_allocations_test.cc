// A training step in its steady state allocates no heap memory: steps 5..10 of a real training
// loop on the tiny MoWE config (the loader's prefetch thread building the next batches and
// routing them, the exchange, forward, backward, bucketed allreduce, norm, optimizer, the step
// record) make no call to operator new on any thread. Counted by replacing the global operator
// new in this binary; on failure the call stacks of the first allocations are printed
// (MOWE_ALLOC_TRACE=N for more, MOWE_ALLOC_TRACE_ALL=1 to include other threads).
#include <execinfo.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <new>

#include "launch/train/config_rules.h"
#include "launch/train/trainer.h"
#include "runtime/config/config.h"

namespace {

std::atomic<bool> counting{false};
std::atomic<int64_t> allocations{0}, other_thread_allocations{0};
std::atomic<int> traces_left{0};
thread_local bool in_trace = false;
thread_local bool stepping_thread = false;  // the thread that calls Trainer::step
bool trace_all_threads = false;

void* counted_alloc(size_t size) {
  if (counting.load(std::memory_order_relaxed)) {
    (stepping_thread ? allocations : other_thread_allocations)
        .fetch_add(1, std::memory_order_relaxed);
    if (!in_trace && (stepping_thread || trace_all_threads) && traces_left.fetch_sub(1) > 0) {
      in_trace = true;
      void* frames[24];
      const int n = backtrace(frames, 24);
      const char line[] = "---- allocation during a steady-state step:\n";
      (void)!write(2, line, sizeof(line) - 1);
      backtrace_symbols_fd(frames, n, 2);
      in_trace = false;
    }
  }
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}

}  // namespace

void* operator new(size_t size) {
  return counted_alloc(size);
}
void* operator new[](size_t size) {
  return counted_alloc(size);
}
void* operator new(size_t size, std::align_val_t align) {
  if (counting.load(std::memory_order_relaxed)) allocations.fetch_add(1);
  const size_t a = static_cast<size_t>(align);
  if (void* p = std::aligned_alloc(a, (size + a - 1) / a * a)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete[](void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t) noexcept {
  std::free(p);
}
void operator delete[](void* p, size_t) noexcept {
  std::free(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  std::free(p);
}
void operator delete(void* p, size_t, std::align_val_t) noexcept {
  std::free(p);
}

namespace mowe::train {
namespace {

namespace fs = std::filesystem;

class StepAllocations : public ::testing::TestWithParam<const char*> {};

TEST_P(StepAllocations, NoneInSteadyStateSteps) {
  auto world = comm::make_communicator(MPI_COMM_WORLD, Device::CPU,
                                       comm::CommOptions{.timeout_seconds = 120});
  const std::string dir =
      fmt::format("{}/step_allocations.np{}/{}", MOWE_TEST_TMP, world->size(), GetParam());
  if (world->rank() == 0) fs::remove_all(dir);
  world->barrier();
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
  const char* env = std::getenv("MOWE_ALLOC_TRACE");
  traces_left = env ? std::atoi(env) : 3;
  trace_all_threads = std::getenv("MOWE_ALLOC_TRACE_ALL") != nullptr;
  allocations = 0;
  other_thread_allocations = 0;
  stepping_thread = true;
  counting = true;
  for (int step = 5; step <= 10; ++step) {
    const StepResult& r = trainer.step();
    ASSERT_TRUE(std::isfinite(r.loss));
  }
  counting = false;
  EXPECT_EQ(allocations.load(), 0) << "heap allocations in steps 5..10 on rank " << world->rank();
  std::printf(
      "[ rank %d ] steps 5..10: %lld allocations on the training thread, %lld on others "
      "(the loader's prefetch thread)\n",
      world->rank(), static_cast<long long>(allocations.load()),
      static_cast<long long>(other_thread_allocations.load()));
  EXPECT_EQ(trainer.state().step, 10);
}

INSTANTIATE_TEST_SUITE_P(Optimizers, StepAllocations, ::testing::Values("ADAMW", "ADAFACTOR"));

}  // namespace
}  // namespace mowe::train
