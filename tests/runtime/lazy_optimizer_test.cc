// Optimizers on stacked parameters whose gradient has few non-zero rows (expert blocks): lazy
// Adafactor against the dense algorithm (every slice every update), the closed-form decay of
// skipped slices, skipped updates, bit-exact resume, and that untouched rows are never read.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "runtime/optimizer.h"
#include "tests/util/gradcheck.h"

namespace mowe {
namespace {

using testing::get;

constexpr int64_t kSlices = 12, kRows = 4, kCols = 5;

// One stacked parameter [kSlices, kRows, kCols] with a gradient that is non-zero on the touched
// slices only, as the expert bank leaves it.
struct Stack {
  Buffer value, grad;
  TouchedRows touched;
  explicit Stack(DType dtype)
      : value(testing::random_buffer({kSlices, kRows, kCols}, 3, -1, 1, dtype)),
        grad(testing::host_buffer({kSlices, kRows, kCols}, dtype)) {
    touched.enable(kSlices);
  }
  ParamSlot slot(bool lazy) const {
    return {"experts.wi", value.tensor(), grad.tensor(), lazy ? &touched : nullptr};
  }
  // Random gradients on `rows`, zero elsewhere; `scale` varies the magnitude per step.
  void set_grads(const std::set<int64_t>& rows, uint64_t seed, double scale) {
    const Tensor g = grad.tensor();
    std::memset(g.data, 0, g.nbytes());
    touched.clear();
    Buffer r = testing::random_buffer(g.shape, seed, -scale, scale, g.dtype);
    const int64_t per = kRows * kCols, bytes = per * static_cast<int64_t>(dtype_size(g.dtype));
    for (int64_t e : rows) {
      std::memcpy(static_cast<char*>(g.data) + e * bytes,
                  static_cast<const char*>(r.tensor().data) + e * bytes, bytes);
      touched.add(e);
    }
  }
};

std::vector<double> values_of(const Tensor& t) {
  std::vector<double> v(static_cast<size_t>(t.numel()));
  for (int64_t i = 0; i < t.numel(); ++i) v[static_cast<size_t>(i)] = get(t, i);
  return v;
}

const Tensor& state(const Optimizer& opt, const std::string& name) {
  static std::vector<NamedTensor> all;
  all = opt.state_tensors();
  for (const NamedTensor& t : all)
    if (t.name == name) return t.tensor;
  ADD_FAILURE() << "no state " << name;
  return all.front().tensor;
}

// The touched experts of step t: a few, changing, some slices untouched for many steps, slice
// 11 never (its statistics only decay).
std::set<int64_t> touched_at(int t) {
  std::set<int64_t> rows = {static_cast<int64_t>(t % 3), static_cast<int64_t>((t * 5) % 11)};
  if (t % 4 == 0) rows.insert(7);
  return rows;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double rel,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], rel * std::abs(want[i]) + 1e-300) << what << "[" << i << "]";
}

// Runs `steps` updates (skipping the updates in `skipped`) on a lazy and a dense optimizer from
// the same start and compares values, and statistics once the lazy one is brought up to date.
void compare_lazy_with_dense(DType dtype, int steps, const std::set<int>& skipped, double rel) {
  Stack lazy(dtype), dense(dtype);
  Adafactor a(host_allocator()), b(host_allocator());
  for (int t = 1; t <= steps; ++t) {
    const double scale = t == 6 ? 50.0 : 1.0;  // a burst: clipping and lagging moments act
    lazy.set_grads(touched_at(t), 100 + t, scale);
    dense.set_grads(touched_at(t), 100 + t, scale);
    const ParamSlot sa = lazy.slot(true), sb = dense.slot(false);
    if (skipped.count(t)) {
      a.skip({}, {&sa, 1}, t);
      b.skip({}, {&sb, 1}, t);
      continue;
    }
    a.step({}, {&sa, 1}, 0.01, 0.7, t);
    b.step({}, {&sb, 1}, 0.01, 0.7, t);
  }
  expect_close(values_of(lazy.value.tensor()), values_of(dense.value.tensor()), rel, "values");
  const ParamSlot sa = lazy.slot(true);
  a.catch_up_all({&sa, 1}, steps);
  for (const char* s : {"experts.wi/v_row", "experts.wi/v_col"})
    expect_close(values_of(state(a, s)), values_of(state(b, s)), rel, s);
  // Slice 11 never had a gradient: update 1 set its statistics to eps1 (beta2_1 = 0), which
  // every decay since keeps.
  if (!skipped.count(1)) {
    EXPECT_NEAR(get(state(a, "experts.wi/v_row"), 11 * kRows), 1e-30, 1e-36);
  }
}

TEST(LazyAdafactor, EqualsDenseAdafactorWhenFewSlicesHaveGradients) {
  compare_lazy_with_dense(DType::F64, 20, {}, 1e-13);
  compare_lazy_with_dense(DType::F32, 20, {}, 2e-6);
}

TEST(LazyAdafactor, SkippedUpdatesDoNotDecayTheStatistics) {
  // Update 1 skipped (no statistics exist yet), and two later ones.
  compare_lazy_with_dense(DType::F64, 20, {1, 9, 10}, 1e-13);
}

TEST(LazyAdafactor, ClosedFormDecayMatchesTheRecurrence) {
  // A slice with a gradient at update 1 only, then none until 40: its statistics at 40 follow
  // x = beta x + (1 - beta) eps1 applied 38 times (updates 2..39), computed here by hand.
  Stack s(DType::F64);
  Adafactor opt(host_allocator());
  const ParamSlot slot = s.slot(true);
  s.set_grads({0}, 7, 1.0);
  opt.step({}, {&slot, 1}, 0.01, 1.0, 1);
  const double row0 = get(state(opt, "experts.wi/v_row"), 0);
  for (int t = 2; t <= 39; ++t) {
    s.set_grads({1}, 7 + t, 1.0);
    opt.step({}, {&slot, 1}, 0.01, 1.0, t);
  }
  EXPECT_EQ(get(state(opt, "experts.wi/v_row"), 0), row0) << "an untouched slice was visited";
  double x = row0;
  for (int i = 2; i <= 39; ++i) {
    const double beta = 1 - std::pow(double(i), -0.8);
    x = beta * x + (1 - beta) * 1e-30;
  }
  opt.catch_up_all({&slot, 1}, 39);
  EXPECT_NEAR(get(state(opt, "experts.wi/v_row"), 0), x, 1e-14 * x);
}

TEST(LazyAdafactor, NeverReadsRowsWithoutGradient) {
  // NaN in the gradient rows of untouched slices: a dense pass would spread it into their
  // statistics and values; the lazy one must not look there.
  Stack s(DType::F32);
  Adafactor opt(host_allocator());
  const ParamSlot slot = s.slot(true);
  for (int t = 1; t <= 6; ++t) {
    s.set_grads(touched_at(t), 30 + t, 1.0);
    // Update 1 included: untouched slices get their first statistics without being read.
    float* g = s.grad.tensor().ptr<float>();
    for (int64_t e = 0; e < kSlices; ++e)
      if (!touched_at(t).count(e)) g[e * kRows * kCols] = std::numeric_limits<float>::quiet_NaN();
    opt.step({}, {&slot, 1}, 0.01, 1.0, t);
  }
  for (double v : values_of(s.value.tensor())) ASSERT_TRUE(std::isfinite(v));
  for (double v : values_of(state(opt, "experts.wi/v_row"))) ASSERT_TRUE(std::isfinite(v));
}

TEST(LazyAdafactor, ResumeFromCopiedStateIsBitExact) {
  Stack a(DType::F32);
  Adafactor first(host_allocator());
  const ParamSlot sa = a.slot(true);
  for (int t = 1; t <= 7; ++t) {
    a.set_grads(touched_at(t), 60 + t, 1.0);
    first.step({}, {&sa, 1}, 0.01, 1.0, t);
  }
  // A new process: the values and the state tensors as a checkpoint restores them.
  Stack b(DType::F32);
  std::memcpy(b.value.tensor().data, a.value.tensor().data, a.value.tensor().nbytes());
  Adafactor second(host_allocator());
  const ParamSlot sb = b.slot(true);
  const std::vector<NamedTensor> from = first.state_tensors();
  const std::vector<NamedTensor> to = second.prepare_state({&sb, 1});
  ASSERT_EQ(from.size(), 3u);
  ASSERT_EQ(to.size(), 3u);
  for (size_t i = 0; i < from.size(); ++i) {
    EXPECT_EQ(from[i].name, to[i].name);
    std::memcpy(to[i].tensor.data, from[i].tensor.data, from[i].tensor.nbytes());
  }
  for (int t = 8; t <= 15; ++t) {
    a.set_grads(touched_at(t), 60 + t, 1.0);
    b.set_grads(touched_at(t), 60 + t, 1.0);
    first.step({}, {&sa, 1}, 0.01, 1.0, t);
    second.step({}, {&sb, 1}, 0.01, 1.0, t);
  }
  EXPECT_EQ(std::memcmp(a.value.tensor().data, b.value.tensor().data, a.value.tensor().nbytes()),
            0);
  const std::vector<NamedTensor> sa_end = first.state_tensors(), sb_end = second.state_tensors();
  for (size_t i = 0; i < sa_end.size(); ++i)
    EXPECT_EQ(std::memcmp(sa_end[i].tensor.data, sb_end[i].tensor.data, sa_end[i].tensor.nbytes()),
              0)
        << sa_end[i].name;
}

TEST(LazyAdamW, UpdatesTouchedRowsOnlyAndMatchesDenseOnThem) {
  // The documented approximation: touched rows get exactly AdamW's update, the others nothing.
  Stack lazy(DType::F64), dense(DType::F64);
  AdamW a(host_allocator(), {.weight_decay = 0.1, .lazy_rows = true});
  AdamW b(host_allocator(), {.weight_decay = 0.1});
  const std::set<int64_t> rows = {2, 3, 9};
  lazy.set_grads(rows, 5, 1.0);
  dense.set_grads(rows, 5, 1.0);
  const std::vector<double> before = values_of(lazy.value.tensor());
  const ParamSlot sa = lazy.slot(true), sb = dense.slot(true);
  a.step({}, {&sa, 1}, 0.01, 1.0, 1);
  b.step({}, {&sb, 1}, 0.01, 1.0, 1);
  const std::vector<double> got = values_of(lazy.value.tensor()),
                            want = values_of(dense.value.tensor());
  const int64_t per = kRows * kCols;
  for (int64_t i = 0; i < kSlices * per; ++i) {
    if (rows.count(i / per)) {
      ASSERT_EQ(got[i], want[i]) << i;
    } else {
      ASSERT_EQ(got[i], before[i]) << i;
      ASSERT_NE(want[i], before[i]) << "dense AdamW moves untouched rows (weight decay)";
    }
  }
}

}  // namespace
}  // namespace mowe
