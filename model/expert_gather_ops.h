// Row-gathered expert products: the lookup-table path for experts that receive very few tokens
// (paper, Appendix A.1: "the Expert Blocks are implemented as lookup tables" in the bucket with
// 30K experts). Each row r is multiplied by the weights of its own expert, expert[r], in one pass
// over the rows, instead of one GEMM call per expert.
//
// These are model-level helpers on the host for now; they are shaped as Backend ops (tensors in,
// a Context, f32/f64) so they can move to runtime/ with a CUDA twin unchanged. CPU only.
// Letters: R rows, E experts, K inner width, M output width.
#pragma once

#include "runtime/context.h"
#include "runtime/tensor.h"

namespace mowe::model {

// out[r] = x[r] @ op(w[expert[r]]) + beta * out[r].
// x [R,K]; w [E,K,M] (trans_w = false) or [E,M,K] (trans_w = true); expert [R] i32 in [0, E);
// out [R,M]; beta is 0 (overwrite) or 1 (accumulate).
void expert_gather_matmul(const Context& ctx, const Tensor& x, const Tensor& w,
                          const Tensor& expert, const Tensor& out, bool trans_w, float beta);

// dw[expert[r]] += x[r]^T g[r] for every row: x [R,K]; g [R,M]; dw [E,K,M].
void expert_gather_weight_grad(const Context& ctx, const Tensor& x, const Tensor& g,
                               const Tensor& expert, const Tensor& dw);

}  // namespace mowe::model
