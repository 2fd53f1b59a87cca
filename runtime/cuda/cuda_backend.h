// The CUDA backend: cuBLAS for products, kernels for the rest (kernels.h). Every op validates
// shapes on the host with the checks its CPU twin uses (runtime/op_checks.h), then queues work on
// ctx.stream and returns without synchronising. Constructing the backend does not touch the GPU:
// the cuBLAS handle of each device is created on first use.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <map>
#include <mutex>

#include "runtime/backend.h"
#include "runtime/memory.h"
#include "runtime/op_checks.h"

namespace mowe {

Backend& cuda_backend();
// cudaMalloc / cudaFree; zero() is queued on the compute stream.
DeviceAllocator& cuda_allocator();
// True when the CUDA runtime finds at least one device; never throws.
bool cuda_device_available();

namespace cuda {

class CudaBackend final : public Backend {
 public:
  Device device() const override { return Device::CUDA; }
  const char* name() const override { return "cuda"; }

  // The current device's cuBLAS handle, bound to ctx.stream.
  cublasHandle_t cublas(const Context& ctx);

  // Every op of runtime/backend_ops.def, defined in runtime/cuda/*_ops.cc.
#define MOWE_BACKEND_OP(return_type, name, parameters) return_type name parameters override;
#include "runtime/backend_ops.def"
#undef MOWE_BACKEND_OP

 private:
  std::mutex mutex_;
  std::map<int, cublasHandle_t> handles_;  // by device ordinal
};

// ---- helpers shared by the op files ------------------------------------------------------------

// The current device's compute stream (runtime/cuda/cuda_runtime.cc): what a null stream handle
// in a Context or in the device seam stands for.
cudaStream_t compute_stream();
cudaStream_t resolve_stream(void* handle);

inline cudaStream_t stream_of(const Context& ctx) {
  return resolve_stream(ctx.stream);
}

// Checks that a tensor (if not empty) lives on the GPU: ops never copy implicitly.
void check_cuda(const char* op, const Tensor& t);
// The scratch arena of ctx, which must exist and hold device memory.
Arena& cuda_scratch(const char* op, const Context& ctx);

// Row-major strided-batched GEMM: for g < batch,
// c[g][M,N] = alpha * op(a[g]) op(b[g]) + beta * c[g], with a[g] = a + g * stride_a and row
// strides lda, ldb, ldc (elements). batch == 1 is a plain GEMM.
template <typename T>
void gemm(cublasHandle_t handle, bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
          T alpha, const T* a, int64_t lda, int64_t stride_a, const T* b, int64_t ldb,
          int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c, int64_t batch);

// Pointer of an optional operand: null when the tensor is empty.
template <typename T>
T* optional_ptr(const Tensor& t) {
  return t.empty() ? nullptr : t.ptr<T>();
}

}  // namespace cuda
}  // namespace mowe
