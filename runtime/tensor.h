// Tensor: a typed, device-tagged view of row-major contiguous memory. It never owns memory
// (parameters live in Buffers, activations in an Arena), so copying one is free.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "runtime/check.h"

namespace mowe {

enum class DType : uint8_t { F32, F64, BF16, I32 };
// SIMULATED: the test device of runtime/sim/ (host memory behind non-host addresses, CPU kernels
// run asynchronously in stream order), which proves device code paths on machines without a GPU.
enum class Device : uint8_t { CPU, CUDA, SIMULATED };

size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
const char* device_name(Device device);

template <typename T>
constexpr DType dtype_of();
template <>
constexpr DType dtype_of<float>() {
  return DType::F32;
}
template <>
constexpr DType dtype_of<double>() {
  return DType::F64;
}
template <>
constexpr DType dtype_of<int32_t>() {
  return DType::I32;
}

class Shape {
 public:
  static constexpr int kMaxDims = 6;

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);

  int ndim() const { return ndim_; }
  int64_t operator[](int i) const { return dims_[i < 0 ? i + ndim_ : i]; }
  int64_t numel() const;
  bool operator==(const Shape& other) const;
  std::string str() const;                     // "[2, 3, 4]"
  Shape with_dim(int i, int64_t value) const;  // a copy with dimension i replaced

 private:
  std::array<int64_t, kMaxDims> dims_{};
  int ndim_ = 0;
};

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::F32;
  Device device = Device::CPU;
  Shape shape;

  Tensor() = default;
  Tensor(void* data, DType dtype, Device device, Shape shape)
      : data(data), dtype(dtype), device(device), shape(shape) {}

  bool empty() const { return data == nullptr; }
  int64_t numel() const { return shape.numel(); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype); }
  int64_t dim(int i) const { return shape[i]; }
  // All dimensions but the last flattened: how row-wise ops see a tensor.
  int64_t rows() const { return shape.ndim() == 0 ? 1 : numel() / shape[-1]; }
  int64_t cols() const { return shape.ndim() == 0 ? 1 : shape[-1]; }

  // Typed pointer; checks the dtype. Device pointers may be taken but never dereferenced on host.
  template <typename T>
  T* ptr() const {
    MOWE_CHECK(dtype == dtype_of<T>(), "tensor of {} accessed as {}", dtype_name(dtype),
               dtype_name(dtype_of<T>()));
    return static_cast<T*>(data);
  }

  Tensor reshape(Shape new_shape) const;                // same numel, same memory
  Tensor rows_slice(int64_t begin, int64_t end) const;  // slice along dim 0
  std::string str() const;                              // "f32[2, 3]@cpu"
};

// A read-only i32 host view of v with the given shape (numel must equal v.size()): index arrays
// kept in std::vector, passed to ops that take them as tensors. Valid while v is unchanged.
Tensor host_i32_view(const std::vector<int32_t>& v, Shape shape);

// Checks used by every op; the message names the op and both shapes.
void check_same_shape(const char* op, const Tensor& a, const Tensor& b);
void check_shape(const char* op, const char* name, const Tensor& t, Shape expected);
void check_dtype(const char* op, const char* name, const Tensor& t, DType expected);

}  // namespace mowe
