// Test helpers: host tensors filled from a seed, and a finite-difference gradient check.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "runtime/memory.h"

namespace mowe::testing {

// A zeroed host buffer, or one filled with uniform values in [lo, hi) from `seed`.
Buffer host_buffer(Shape shape, DType dtype = DType::F64);
Buffer random_buffer(Shape shape, uint64_t seed, double lo = -1.0, double hi = 1.0,
                     DType dtype = DType::F64);
Buffer ids_buffer(const std::vector<int32_t>& ids);

// Reads element i of a f32/f64 host tensor as double; writes likewise.
double get(const Tensor& t, int64_t i);
void set(const Tensor& t, int64_t i, double value);
// sum_i a[i] * b[i]: turns an op's output into a scalar loss with a fixed upstream gradient.
double dot(const Tensor& a, const Tensor& b);

struct GradInput {
  std::string name;
  Tensor value;     // perturbed in place, restored afterwards
  Tensor gradient;  // the analytic gradient to check
};

// Compares each analytic gradient with central differences of loss() (both in double) and
// records a GoogleTest failure naming the input and element when
// |fd - analytic| > tol * max(1, |fd|). Returns the largest error seen. With max_elements > 0,
// only that many elements per input are checked, spread evenly (large models).
double check_gradients(const std::function<double()>& loss, const std::vector<GradInput>& inputs,
                       double tol = 1e-6, double step = 1e-6, int64_t max_elements = 0);

}  // namespace mowe::testing
