// The CPU backend's thread pool (runtime/cpu/thread_pool.h): every index exactly once, task
// starts on multiples of the grain, nested calls inline, resizing, errors reaching the caller.
#include "runtime/cpu/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include "runtime/backend.h"
#include "runtime/check.h"

namespace mowe::cpu {
namespace {

// Restores the pool size a test changed.
class ThreadPool : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = pool_threads(); }
  void TearDown() override { set_pool_threads(saved_); }
  int saved_ = 1;
};

TEST_F(ThreadPool, CoversEveryIndexExactlyOnceWithTaskStartsOnTheGrain) {
  for (int threads : {1, 2, 3, 4}) {
    set_pool_threads(threads);
    ASSERT_EQ(pool_threads(), threads);
    for (int64_t n : {0, 1, 2, 7, 63, 64, 65, 1000, 4097, 100003}) {
      for (int64_t grain : {1, 3, 64, 1000, 1 << 20}) {
        std::vector<std::atomic<int>> seen(static_cast<size_t>(n));
        std::atomic<bool> bad_range{false};
        parallel_for(n, grain, [&](int64_t b, int64_t e) {
          if (b % grain != 0 || b >= e || e > n) bad_range = true;
          for (int64_t i = b; i < e; ++i) seen[size_t(i)].fetch_add(1);
        });
        EXPECT_FALSE(bad_range) << threads << " " << n << " " << grain;
        for (int64_t i = 0; i < n; ++i)
          ASSERT_EQ(seen[size_t(i)].load(), 1) << threads << " " << n << " " << grain << " " << i;
      }
    }
  }
}

TEST_F(ThreadPool, UsesSeveralThreadsAndOneThreadRunsInline) {
  set_pool_threads(3);
  std::mutex mutex;
  std::set<std::thread::id> ids;
  for (int round = 0; round < 50 && ids.size() < 2; ++round) {
    parallel_for(3000, 1, [&](int64_t, int64_t) {
      std::this_thread::sleep_for(std::chrono::microseconds(20));
      std::lock_guard<std::mutex> lock(mutex);
      ids.insert(std::this_thread::get_id());
    });
  }
  EXPECT_GE(ids.size(), 2u) << "the workers never ran a task";
  set_pool_threads(1);
  int calls = 0;  // not atomic: with one thread everything runs on the caller, in one call
  const std::thread::id caller = std::this_thread::get_id();
  parallel_for(100000, 1, [&](int64_t b, int64_t e) {
    EXPECT_EQ(std::this_thread::get_id(), caller);
    EXPECT_EQ(b, 0);
    EXPECT_EQ(e, 100000);
    ++calls;
  });
  EXPECT_EQ(calls, 1);
}

TEST_F(ThreadPool, NestedCallsRunInlineOnTheirThread) {
  set_pool_threads(4);
  const int64_t outer = 64, inner = 1000;
  std::vector<std::atomic<int>> seen(size_t(outer * inner));
  std::atomic<bool> moved{false};
  parallel_for(outer, 1, [&](int64_t b, int64_t e) {
    const std::thread::id self = std::this_thread::get_id();
    for (int64_t o = b; o < e; ++o) {
      parallel_for(inner, 7, [&](int64_t ib, int64_t ie) {
        if (std::this_thread::get_id() != self) moved = true;
        for (int64_t i = ib; i < ie; ++i) seen[size_t(o * inner + i)].fetch_add(1);
      });
    }
  });
  EXPECT_FALSE(moved);
  for (const auto& s : seen) ASSERT_EQ(s.load(), 1);
}

TEST_F(ThreadPool, ResizesRepeatedlyAndFollowsSetCpuThreads) {
  for (int round = 0; round < 20; ++round) {
    const int threads = 1 + round % 4;
    set_pool_threads(threads);
    std::atomic<int64_t> total{0};
    parallel_for(10000, 10, [&](int64_t b, int64_t e) { total += e - b; });
    ASSERT_EQ(total.load(), 10000);
  }
  const int blas = cpu_threads();
  const int set = set_cpu_threads(2);
  EXPECT_EQ(pool_threads(), set);
  set_cpu_threads(blas);
  EXPECT_EQ(pool_threads(), cpu_threads());
  EXPECT_THROW(set_pool_threads(0), Error);
}

TEST_F(ThreadPool, AnErrorInABodyReachesTheCallerAndThePoolStaysUsable) {
  set_pool_threads(3);
  EXPECT_THROW(parallel_for(1000, 1,
                            [&](int64_t b, int64_t e) {
                              if (b <= 500 && 500 < e) throw std::runtime_error("index 500");
                            }),
               std::runtime_error);
  std::atomic<int64_t> total{0};
  parallel_for(1000, 1, [&](int64_t b, int64_t e) { total += e - b; });
  EXPECT_EQ(total.load(), 1000);
}

// Two threads calling at once (the simulated device's stream worker beside the training thread):
// each call still covers its range exactly once, whichever of them gets the pool.
TEST_F(ThreadPool, CallsFromTwoThreadsAtOnceEachCoverTheirRange) {
  set_pool_threads(3);
  auto hammer = [](int64_t n, std::atomic<int64_t>* bad) {
    for (int call = 0; call < 300; ++call) {
      std::vector<int> hits(n, 0);
      parallel_for(n, 7, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) ++hits[i];
      });
      for (int h : hits) *bad += h != 1;
    }
  };
  std::atomic<int64_t> bad{0};
  std::thread other(hammer, 5000, &bad);
  hammer(3000, &bad);
  other.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(ThreadPool, ManyShortCallsInARow) {
  // Back-to-back calls as a step makes them, with workers spinning or asleep in between.
  set_pool_threads(2);
  std::vector<int64_t> out(4096);
  for (int call = 0; call < 20000; ++call) {
    parallel_for(4096, 512, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) out[size_t(i)] = call;
    });
    if (call % 5000 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  for (int64_t v : out) ASSERT_EQ(v, 19999);
}

}  // namespace
}  // namespace mowe::cpu
