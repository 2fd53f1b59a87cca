#include "runtime/backend.h"

#include "runtime/cpu/cpu_backend.h"

namespace mowe {

#ifdef MOWE_WITH_CUDA
Backend& cuda_backend();  // runtime/cuda/cuda_backend.cc
#endif
namespace sim {
Backend& sim_backend();  // runtime/sim/sim_backend.cc
}

void matmul_backward(Backend& backend, const Context& ctx, const Tensor& dc, const Tensor& a,
                     const Tensor& b, const Tensor& da, const Tensor& db, bool trans_a,
                     bool trans_b) {
  // [G,M,N] results come from batched_matmul; everything else from matmul.
  const bool batched = dc.shape.ndim() == 3 && a.shape.ndim() == 3 && b.shape.ndim() == 3;
  auto mm = [&](const Tensor& x, const Tensor& y, const Tensor& out, bool tx, bool ty) {
    if (batched) {
      backend.batched_matmul(ctx, x, y, out, tx, ty, 1.0f, 1.0f);
    } else {
      backend.matmul(ctx, x, y, out, tx, ty, 1.0f, 1.0f);
    }
  };
  // c = op(a) op(b): da = dc op(b)^T and db = op(a)^T dc, rewritten so that each result is
  // produced in the stored (possibly transposed) layout of a and b.
  if (!da.empty()) {
    if (!trans_a) {
      mm(dc, b, da, false, !trans_b);
    } else {
      mm(b, dc, da, trans_b, true);
    }
  }
  if (!db.empty()) {
    if (!trans_b) {
      mm(a, dc, db, !trans_a, false);
    } else {
      mm(dc, a, db, true, trans_a);
    }
  }
}

Backend& cpu_backend() {
  static cpu::CpuBackend backend;
  return backend;
}

bool cuda_backend_compiled() {
#ifdef MOWE_WITH_CUDA
  return true;
#else
  return false;
#endif
}

Backend& backend_for(Device device) {
  if (device == Device::CPU) return cpu_backend();
  if (device == Device::SIMULATED) return sim::sim_backend();
#ifdef MOWE_WITH_CUDA
  return cuda_backend();
#else
  MOWE_REQUIRE(false,
               "the CUDA backend was not compiled in: configure with -DMOWE_WITH_CUDA=ON "
               "on a machine with nvcc and NCCL, or set parallel.device: CPU");
  return cpu_backend();
#endif
}

namespace cpu {
void check_cpu(const char* op, const Tensor& t) {
  MOWE_CHECK(t.empty() || t.device == Device::CPU, "{}: {} is not in host memory", op, t.str());
}
}  // namespace cpu

}  // namespace mowe
