#include "runtime/optimizer.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <string_view>

namespace mowe {

double grad_sum_squares(Backend& backend, const Context& ctx, std::span<const ParamSlot> slots) {
  double total = 0;
  for (const ParamSlot& slot : slots) {
    if (!slot.grad.empty()) total += backend.sum_squares(ctx, slot.grad);
  }
  return total;
}

double global_grad_norm(Backend& backend, const Context& ctx, std::span<const ParamSlot> slots) {
  return std::sqrt(grad_sum_squares(backend, ctx, slots));
}

double clip_scale(double norm, double max_norm) {
  MOWE_CHECK(max_norm >= 0, "clip_scale: max_norm {} must be >= 0 (0 = off)", max_norm);
  if (max_norm == 0 || norm == 0) return 1.0;
  if (std::isnan(norm)) return norm;
  return std::min(1.0, max_norm / norm);
}

// ---- Optimizer ---------------------------------------------------------------------------------

void Optimizer::step(const Context& ctx, std::span<const ParamSlot> slots, double lr,
                     double grad_scale, int64_t update) {
  MOWE_CHECK(std::isfinite(lr) && lr >= 0, "{}: learning rate {} must be finite and >= 0", name(),
             lr);
  // Two slots with one name would silently share (and corrupt) one state.
  std::set<std::string_view> seen;
  for (const ParamSlot& slot : slots) {
    MOWE_CHECK(seen.insert(slot.name).second, "{}: parameter '{}' appears twice", name(),
               slot.name);
  }
  MOWE_CHECK(update >= 1, "{}: update number {} must be >= 1", name(), update);
  for (const ParamSlot& slot : slots) {
    if (slot.grad.empty()) continue;
    Entry& entry = state_of(slot);
    this->update(backend_for(slot.value.device), ctx, slot, entry.views, lr, grad_scale, update);
  }
}

size_t Optimizer::state_bytes() const {
  size_t bytes = 0;
  for (const auto& [param, entry] : state_) {
    for (const Tensor& t : entry.views) bytes += t.nbytes();
  }
  return bytes;
}

std::vector<NamedTensor> Optimizer::state_tensors() const {
  std::vector<NamedTensor> out;
  for (const auto& [param, entry] : state_) {
    for (size_t i = 0; i < entry.views.size(); ++i) out.push_back({entry.names[i], entry.views[i]});
  }
  // Parameter order is not name order once suffixes are added ("a.b/m" vs "a/m").
  std::sort(out.begin(), out.end(),
            [](const NamedTensor& a, const NamedTensor& b) { return a.name < b.name; });
  return out;
}

std::vector<NamedTensor> Optimizer::prepare_state(std::span<const ParamSlot> slots) {
  for (const ParamSlot& slot : slots) {
    if (!slot.grad.empty()) state_of(slot);
  }
  return state_tensors();
}

Optimizer::Entry& Optimizer::state_of(const ParamSlot& slot) {
  const Tensor& p = slot.value;
  auto it = state_.find(slot.name);
  if (it != state_.end()) {
    MOWE_CHECK(it->second.shape == p.shape && it->second.dtype == p.dtype,
               "{}: parameter '{}' is now {}, its optimizer state was made for {}{}", name(),
               slot.name, p.str(), dtype_name(it->second.dtype), it->second.shape.str());
    return it->second;
  }
  MOWE_CHECK(allocator_.device() == p.device,
             "{}: parameter '{}' is {} but the optimizer allocates {} memory", name(), slot.name,
             p.str(), device_name(allocator_.device()));
  Entry entry{p.shape, p.dtype, {}, {}, {}};
  for (const StateSpec& spec : state_spec(p.shape)) {
    entry.names.push_back(slot.name + "/" + spec.suffix);
    entry.buffers.emplace_back(allocator_, spec.shape, p.dtype);  // zero-filled
    entry.views.push_back(entry.buffers.back().tensor());
  }
  return state_.emplace(slot.name, std::move(entry)).first->second;
}

// ---- AdamW -------------------------------------------------------------------------------------

std::vector<Optimizer::StateSpec> AdamW::state_spec(const Shape& shape) const {
  return {{"m", shape}, {"v", shape}};
}

void AdamW::update(Backend& backend, const Context& ctx, const ParamSlot& slot,
                   std::span<const Tensor> state, double lr, double grad_scale, int64_t step) {
  const AdamWStep s{.lr = lr,
                    .beta1 = options_.beta1,
                    .beta2 = options_.beta2,
                    .eps = options_.eps,
                    .weight_decay = options_.weight_decay,
                    .step = step,
                    .grad_scale = grad_scale};
  backend.adamw_update(ctx, slot.value, slot.grad, state[0], state[1], s);
}

// ---- Adafactor ---------------------------------------------------------------------------------

bool Adafactor::factored(const Shape& shape) const {
  if (shape.ndim() >= 3) return true;
  return shape.ndim() == 2 && std::min(shape[0], shape[1]) >= options_.min_dim_size_to_factor;
}

std::vector<Optimizer::StateSpec> Adafactor::state_spec(const Shape& shape) const {
  if (!factored(shape)) return {{"v", shape}};
  const int64_t rows = shape[-2], cols = shape[-1];
  const int64_t batch = rows * cols == 0 ? 0 : shape.numel() / (rows * cols);
  return {{"v_row", {batch, rows}}, {"v_col", {batch, cols}}};
}

void Adafactor::update(Backend& backend, const Context& ctx, const ParamSlot& slot,
                       std::span<const Tensor> state, double lr, double grad_scale, int64_t step) {
  const AdafactorStep s{.lr = lr,
                        .step = step,
                        .decay_rate = options_.decay_rate,
                        .clip_threshold = options_.clip_threshold,
                        .eps1 = options_.eps1,
                        .eps2 = options_.eps2,
                        .multiply_by_parameter_scale = options_.multiply_by_parameter_scale,
                        .grad_scale = grad_scale};
  if (state.size() == 2) {
    backend.adafactor_update(ctx, slot.value, slot.grad, state[0], state[1], {}, s);
  } else {
    backend.adafactor_update(ctx, slot.value, slot.grad, {}, {}, state[0], s);
  }
}

}  // namespace mowe
