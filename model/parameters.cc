#include "model/parameters.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "runtime/device.h"
#include "runtime/hash.h"
#include "runtime/math.h"

namespace mowe::model {
namespace {

uint64_t name_hash(const std::string& name) {
  return fnv1a(name);
}

}  // namespace

ParameterStore::ParameterStore(DeviceAllocator& allocator, DType dtype, uint64_t seed)
    : allocator_(allocator), dense_grads_(allocator), dtype_(dtype), seed_(seed) {
  MOWE_CHECK(dtype == DType::F32 || dtype == DType::F64, "parameters must be f32 or f64, not {}",
             dtype_name(dtype));
}

Parameter& ParameterStore::add(const std::string& name, Shape shape, ParamKind kind, Init init,
                               bool trainable, RowMap rows) {
  MOWE_CHECK(!contains(name), "parameter '{}' registered twice", name);
  auto p = std::make_unique<Parameter>();
  p->name = name;
  p->kind = kind;
  p->init = init;
  p->trainable = trainable;
  MOWE_CHECK(rows.rows.empty() || static_cast<int64_t>(rows.rows.size()) == shape[0],
             "parameter '{}': {} rows listed for a tensor of {} rows", name, rows.rows.size(),
             shape.ndim() ? shape[0] : 0);
  p->rows = std::move(rows);
  p->sharding.global_shape = shape;
  p->value = Buffer(allocator_, shape, dtype_);
  // Dense gradients back to back, so the data-parallel allreduce works on them in place.
  if (trainable) {
    p->grad =
        Buffer(kind == ParamKind::Dense ? static_cast<DeviceAllocator&>(dense_grads_) : allocator_,
               shape, dtype_);
  }
  if (trainable && kind == ParamKind::Expert && shape.ndim() >= 2) p->touched.enable(shape[0]);
  initialise(*p);
  index_[name] = p.get();
  params_.push_back(std::move(p));
  return *params_.back();
}

Parameter& ParameterStore::get(const std::string& name) {
  auto it = index_.find(name);
  MOWE_CHECK(it != index_.end(), "no parameter named '{}'", name);
  return *it->second;
}

const Parameter& ParameterStore::get(const std::string& name) const {
  auto it = index_.find(name);
  MOWE_CHECK(it != index_.end(), "no parameter named '{}'", name);
  return *it->second;
}

void ParameterStore::zero_grads() {
  for (auto& p : params_) {
    if (!p->trainable) continue;
    const Tensor& g = p->grad.tensor();
    if (!p->touched.enabled()) {
      allocator_.zero(g.data, g.nbytes());
      continue;
    }
    p->touched.for_each_run(g.dim(0), [&](int64_t begin, int64_t end) {
      const Tensor rows = g.rows_slice(begin, end);
      allocator_.zero(rows.data, rows.nbytes());
    });
    p->touched.clear();
  }
}

std::vector<ParamSlot> ParameterStore::slots() const {
  std::vector<ParamSlot> out;
  for (const auto& p : params_)
    if (p->trainable) out.push_back({p->name, p->value.tensor(), p->grad.tensor(), &p->touched});
  return out;
}

int64_t ParameterStore::count(ParamKind kind) const {
  int64_t n = 0;
  for (const auto& p : params_)
    if (p->kind == kind) n += p->value.tensor().numel();
  return n;
}

// Uniform in [0, 1) with 53 bits, draw number `slot` of element `index`: no generator state, so
// any shard computes its own elements alone.
static double uniform_at(uint64_t key, uint64_t index, uint64_t slot) {
  return static_cast<double>(mix64(key + index * 32 + slot) >> 11) * 0x1.0p-53;
}

// Standard normal draw number `attempt` (< 16) for element `index`, by Box-Muller on two hashed
// uniforms.
static double normal_at(uint64_t key, uint64_t index, uint64_t attempt) {
  const double u1 = uniform_at(key, index, 2 * attempt) + 0x1.0p-53;  // in (0, 1]
  const double u2 = uniform_at(key, index, 2 * attempt + 1);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

// One value of `init` for element `global` of the parameter keyed `key`.
static double draw(const Init& init, uint64_t key, uint64_t global) {
  switch (init.kind) {
    case Init::Zeros:
      return 0.0;
    case Init::Ones:
      return 1.0;
    case Init::Normal:
      return normal_at(key, global, 0) * init.stddev;
    case Init::TruncatedNormal: {
      double z = normal_at(key, global, 0);
      // Truncation by redrawing, as a truncated normal does; 16 attempts always suffice in
      // practice (P(|z| > 2)^16 < 1e-20), and the last draw is clamped to stay in range.
      for (uint64_t a = 1; std::abs(z) > 2.0 && a < 16; ++a) z = normal_at(key, global, a);
      return std::clamp(z, -2.0, 2.0) * (init.stddev / kTruncatedNormalStd);
    }
    case Init::Uniform:
      return (2.0 * uniform_at(key, global, 0) - 1.0) * std::sqrt(3.0) * init.stddev;
  }
  return 0.0;
}

// Values are drawn on the host, the same on every device, and uploaded where the parameter lives.
void ParameterStore::initialise(Parameter& p) const {
  const Tensor& dst = p.value.tensor();
  std::vector<char> staging(dst.device == Device::CPU ? 0 : dst.nbytes());
  const Tensor t =
      dst.device == Device::CPU ? dst : Tensor(staging.data(), dst.dtype, Device::CPU, dst.shape);
  const int64_t n = t.numel();
  const int64_t row_elems = t.shape.ndim() == 0 || t.dim(0) == 0 ? 0 : n / t.dim(0);
  const uint64_t key = mix64(seed_ ^ name_hash(p.name));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = row_elems ? i / row_elems : 0;
    const uint64_t global =
        static_cast<uint64_t>(p.rows.global(row) * row_elems + (row_elems ? i % row_elems : 0));
    const double v = draw(p.init, key, global);
    if (dtype_ == DType::F32) {
      t.ptr<float>()[i] = static_cast<float>(v);
    } else {
      t.ptr<double>()[i] = v;
    }
  }
  if (dst.device != Device::CPU) upload(dst, staging.data());
}

}  // namespace mowe::model
