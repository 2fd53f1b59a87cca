// The one process-wide pool for the CPU backend's non-BLAS work (element-wise ops, softmax rows,
// reductions, optimizer updates). It has cpu_threads() threads counting the caller: the step
// never runs BLAS and the pool at once, so the two together never oversubscribe the cores a job
// gives a rank. See docs/cpu_kernels.md.
//
// Contract: one thread at a time uses the pool (the training loop); a call from another thread
// meanwhile (the simulated device's stream worker) runs inline in that thread, as does a call
// from inside a body. Results must not depend on the split: bodies either write disjoint
// outputs element by element, or write per-chunk partials at chunk boundaries fixed by the
// caller (every `begin` handed to a body is a multiple of `grain`).
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

namespace mowe::cpu {

// A non-owning reference to a callable body(begin, end): no allocation per call.
class RangeFn {
 public:
  template <class F>
  explicit RangeFn(F& f)
      : obj_(const_cast<void*>(static_cast<const void*>(&f))),
        call_([](void* o, int64_t b, int64_t e) { (*static_cast<F*>(o))(b, e); }) {}
  void operator()(int64_t begin, int64_t end) const { call_(obj_, begin, end); }

 private:
  void* obj_;
  void (*call_)(void*, int64_t, int64_t);
};

namespace detail {
// True inside a body (workers always, the caller during a call): nested calls run inline.
bool in_parallel_region();
// Runs body over [0, n) in tasks of a multiple of grain elements on the pool.
void run_parallel(int64_t n, int64_t grain, const RangeFn& body);
}  // namespace detail

// Threads of the pool, the caller included (>= 1).
int pool_threads();
// Resizes the pool (set_cpu_threads does so); not while a parallel_for is running.
void set_pool_threads(int threads);

// body(begin, end) over [0, n), split into tasks of at least `grain` elements whose starts are
// multiples of grain. Inline, in one call, with one thread, nested, or when n <= grain.
template <class F>
void parallel_for(int64_t n, int64_t grain, F&& body) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  if (n <= grain || detail::in_parallel_region() || pool_threads() == 1) {
    body(int64_t{0}, n);
    return;
  }
  using Body = std::remove_reference_t<F>;
  Body& ref = body;
  detail::run_parallel(n, grain, RangeFn(ref));
}

}  // namespace mowe::cpu
