// The row-gathered expert products against a plain triple loop, over the shapes that select
// their different kernels: one output column, short and long inner widths, blocks of rows of
// one expert longer than a kernel block.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "runtime/backend.h"
#include "tests/util/gradcheck.h"

namespace mowe::model {
namespace {

using testing::get;

// Rows grouped by expert as a dispatch makes them: runs of 1, 3, 11 (longer than a block) and 2.
std::vector<int32_t> row_experts() {
  std::vector<int32_t> e;
  for (auto [expert, n] : {std::pair{2, 1}, {0, 3}, {3, 11}, {1, 2}})
    for (int i = 0; i < n; ++i) e.push_back(expert);
  return e;
}

TEST(ExpertGather, MatmulMatchesReference) {
  const std::vector<int32_t> experts = row_experts();
  const int64_t rows = static_cast<int64_t>(experts.size()), num_experts = 4;
  Buffer ids = testing::ids_buffer(experts);
  for (bool trans : {false, true}) {
    for (int64_t k : {1, 3, 8, 13}) {
      for (int64_t m : {1, 5, 16}) {
        for (float beta : {0.0f, 1.0f}) {
          Buffer x = testing::random_buffer({rows, k}, 1);
          Buffer w = testing::random_buffer(
              trans ? Shape{num_experts, m, k} : Shape{num_experts, k, m}, 2);
          Buffer out = testing::random_buffer({rows, m}, 3);
          std::vector<double> want(rows * m);
          for (int64_t r = 0; r < rows; ++r) {
            for (int64_t j = 0; j < m; ++j) {
              double s = beta * get(out, r * m + j);
              for (int64_t i = 0; i < k; ++i) {
                const int64_t wi = experts[r] * k * m + (trans ? j * k + i : i * m + j);
                s += get(x, r * k + i) * get(w, wi);
              }
              want[r * m + j] = s;
            }
          }
          cpu_backend().expert_gather_matmul({}, x, w, ids, out, trans, beta);
          for (int64_t i = 0; i < rows * m; ++i)
            ASSERT_NEAR(get(out, i), want[i], 1e-12)
                << "trans=" << trans << " K=" << k << " M=" << m << " beta=" << beta << " [" << i
                << "]";
        }
      }
    }
  }
}

TEST(ExpertGather, WeightGradMatchesReference) {
  const std::vector<int32_t> experts = row_experts();
  const int64_t rows = static_cast<int64_t>(experts.size()), num_experts = 4;
  Buffer ids = testing::ids_buffer(experts);
  for (int64_t k : {1, 3, 8, 13}) {
    for (int64_t m : {1, 5, 16}) {
      Buffer x = testing::random_buffer({rows, k}, 4);
      Buffer g = testing::random_buffer({rows, m}, 5);
      Buffer dw = testing::random_buffer({num_experts, k, m}, 6);  // accumulated into
      std::vector<double> want(num_experts * k * m);
      for (int64_t i = 0; i < num_experts * k * m; ++i) want[i] = get(dw, i);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t i = 0; i < k; ++i)
          for (int64_t j = 0; j < m; ++j)
            want[(experts[r] * k + i) * m + j] += get(x, r * k + i) * get(g, r * m + j);
      cpu_backend().expert_gather_weight_grad({}, x, g, ids, dw);
      for (int64_t i = 0; i < num_experts * k * m; ++i)
        ASSERT_NEAR(get(dw, i), want[i], 1e-12) << "K=" << k << " M=" << m << " [" << i << "]";
    }
  }
}

TEST(ExpertGather, RejectsBadArguments) {
  Buffer x = testing::random_buffer({3, 4}, 1), w = testing::random_buffer({2, 4, 5}, 2);
  Buffer out = testing::host_buffer({3, 5});
  Buffer bad_ids = testing::ids_buffer({0, 2, 1});  // expert 2 of 2
  EXPECT_THROW(cpu_backend().expert_gather_matmul({}, x, w, bad_ids, out, false, 0.0f), Error);
  Buffer ids = testing::ids_buffer({0, 1, 1});
  EXPECT_THROW(cpu_backend().expert_gather_matmul({}, x, w, ids, out, true, 0.0f), Error)
      << "w is not [E,M,K]";
  EXPECT_THROW(cpu_backend().expert_gather_matmul({}, x, w, ids, out, false, 0.5f), Error)
      << "beta 0 or 1";
  Buffer f32 = testing::host_buffer({3, 5}, DType::F32);
  EXPECT_THROW(cpu_backend().expert_gather_matmul({}, x, w, ids, f32, false, 0.0f), Error);
}

}  // namespace
}  // namespace mowe::model
