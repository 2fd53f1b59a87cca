#include "runtime/tensor.h"

#include <fmt/format.h>

namespace mowe {

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return 4;
    case DType::F64:
      return 8;
    case DType::BF16:
      return 2;
    case DType::I32:
      return 4;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F32:
      return "f32";
    case DType::F64:
      return "f64";
    case DType::BF16:
      return "bf16";
    case DType::I32:
      return "i32";
  }
  return "?";
}

const char* device_name(Device device) {
  switch (device) {
    case Device::CPU:
      return "cpu";
    case Device::CUDA:
      return "cuda";
    case Device::SIMULATED:
      return "sim";
  }
  return "?";
}

Shape::Shape(std::initializer_list<int64_t> dims) {
  MOWE_CHECK(dims.size() <= kMaxDims, "a shape has at most {} dimensions, got {}", kMaxDims,
             dims.size());
  for (int64_t d : dims) {
    MOWE_CHECK(d >= 0, "negative dimension {} in a shape", d);
    dims_[ndim_++] = d;
  }
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int i = 0; i < ndim_; ++i) n *= dims_[i];
  return n;
}

bool Shape::operator==(const Shape& other) const {
  if (ndim_ != other.ndim_) return false;
  for (int i = 0; i < ndim_; ++i)
    if (dims_[i] != other.dims_[i]) return false;
  return true;
}

std::string Shape::str() const {
  std::string s = "[";
  for (int i = 0; i < ndim_; ++i) s += fmt::format("{}{}", i ? ", " : "", dims_[i]);
  return s + "]";
}

Shape Shape::with_dim(int i, int64_t value) const {
  MOWE_CHECK(0 <= i && i < ndim_ && value >= 0, "with_dim({}, {}) on shape {}", i, value, str());
  Shape s = *this;
  s.dims_[i] = value;
  return s;
}

Tensor Tensor::reshape(Shape new_shape) const {
  MOWE_CHECK(new_shape.numel() == numel(), "cannot reshape {} to {}", str(), new_shape.str());
  return Tensor(data, dtype, device, new_shape);
}

Tensor Tensor::rows_slice(int64_t begin, int64_t end) const {
  MOWE_CHECK(shape.ndim() >= 1 && 0 <= begin && begin <= end && end <= shape[0],
             "rows [{}, {}) out of range for {}", begin, end, str());
  int64_t row_elems = shape[0] == 0 ? 0 : numel() / shape[0];
  Shape out = shape.with_dim(0, end - begin);
  char* base = static_cast<char*>(data) + begin * row_elems * dtype_size(dtype);
  return Tensor(base, dtype, device, out);
}

std::string Tensor::str() const {
  return fmt::format("{}{}@{}", dtype_name(dtype), shape.str(), device_name(device));
}

Tensor host_i32_view(const std::vector<int32_t>& v, Shape shape) {
  MOWE_CHECK(shape.numel() == static_cast<int64_t>(v.size()),
             "host_i32_view: shape {} has {} elements, the vector {}", shape.str(), shape.numel(),
             v.size());
  return Tensor(const_cast<int32_t*>(v.data()), DType::I32, Device::CPU, shape);
}

void check_same_shape(const char* op, const Tensor& a, const Tensor& b) {
  MOWE_CHECK(a.shape == b.shape && a.dtype == b.dtype && a.device == b.device,
             "{}: tensors differ: {} vs {}", op, a.str(), b.str());
}

void check_shape(const char* op, const char* name, const Tensor& t, Shape expected) {
  MOWE_CHECK(t.shape == expected, "{}: {} has shape {}, expected {}", op, name, t.shape.str(),
             expected.str());
}

void check_dtype(const char* op, const char* name, const Tensor& t, DType expected) {
  MOWE_CHECK(t.dtype == expected, "{}: {} has dtype {}, expected {}", op, name, dtype_name(t.dtype),
             dtype_name(expected));
}

}  // namespace mowe
