#include "tests/util/gradcheck.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace mowe::testing {

Buffer host_buffer(Shape shape, DType dtype) {
  return Buffer(host_allocator(), shape, dtype);
}

Buffer random_buffer(Shape shape, uint64_t seed, double lo, double hi, DType dtype) {
  Buffer buf(host_allocator(), shape, dtype);
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  for (int64_t i = 0; i < buf.tensor().numel(); ++i) set(buf, i, dist(rng));
  return buf;
}

Buffer ids_buffer(const std::vector<int32_t>& ids) {
  Buffer buf(host_allocator(), {static_cast<int64_t>(ids.size())}, DType::I32);
  std::copy(ids.begin(), ids.end(), buf.tensor().ptr<int32_t>());
  return buf;
}

double get(const Tensor& t, int64_t i) {
  if (t.dtype == DType::F32) return t.ptr<float>()[i];
  if (t.dtype == DType::I32) return t.ptr<int32_t>()[i];
  return t.ptr<double>()[i];
}

void set(const Tensor& t, int64_t i, double value) {
  if (t.dtype == DType::F32) {
    t.ptr<float>()[i] = static_cast<float>(value);
  } else {
    t.ptr<double>()[i] = value;
  }
}

double dot(const Tensor& a, const Tensor& b) {
  MOWE_CHECK(a.numel() == b.numel(), "dot of {} and {}", a.str(), b.str());
  double s = 0;
  for (int64_t i = 0; i < a.numel(); ++i) s += get(a, i) * get(b, i);
  return s;
}

double check_gradients(const std::function<double()>& loss, const std::vector<GradInput>& inputs,
                       double tol, double step, int64_t max_elements) {
  double worst = 0;
  for (const GradInput& in : inputs) {
    EXPECT_EQ(in.value.shape, in.gradient.shape) << in.name;
    const int64_t n = in.value.numel();
    const int64_t stride = max_elements > 0 && n > max_elements ? n / max_elements : 1;
    for (int64_t i = 0; i < n; i += stride) {
      const double x0 = get(in.value, i);
      set(in.value, i, x0 + step);
      const double up = loss();
      set(in.value, i, x0 - step);
      const double down = loss();
      set(in.value, i, x0);
      const double fd = (up - down) / (2 * step);
      const double an = get(in.gradient, i);
      const double err = std::abs(fd - an) / std::max(1.0, std::abs(fd));
      worst = std::max(worst, err);
      EXPECT_LE(err, tol) << in.name << "[" << i << "]: finite difference " << fd << ", analytic "
                          << an;
    }
  }
  return worst;
}

}  // namespace mowe::testing
