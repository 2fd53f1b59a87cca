#include "runtime/optimizer.h"

#include "runtime/math.h"
#include "runtime/op_checks.h"

#include <algorithm>
#include <cmath>
#include <string_view>
#include <vector>

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
  check_unique_names(slots);
  MOWE_CHECK(update >= 1, "{}: update number {} must be >= 1", name(), update);
  for (const ParamSlot& slot : slots) {
    if (slot.grad.empty()) continue;
    Entry& entry = state_of(slot);
    this->update(backend_for(slot.value.device), ctx, slot, entry.views, lr, grad_scale, update);
  }
}

void Optimizer::skip(const Context&, std::span<const ParamSlot>, int64_t) {}

void Optimizer::check_unique_names(std::span<const ParamSlot> slots) {
  if (slots.data() == checked_slots_ && slots.size() == checked_count_) return;
  // Two slots with one name would silently share (and corrupt) one state.
  std::vector<std::string_view> names;
  for (const ParamSlot& slot : slots) names.push_back(slot.name);
  std::sort(names.begin(), names.end());
  const auto twice = std::adjacent_find(names.begin(), names.end());
  MOWE_CHECK(twice == names.end(), "{}: parameter '{}' appears twice", name(), *twice);
  checked_slots_ = slots.data();
  checked_count_ = slots.size();
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
    entry.buffers.emplace_back(spec.on_host ? host_allocator() : allocator_, spec.shape,
                               spec.own_dtype ? spec.dtype : p.dtype);
    const Tensor& t = entry.buffers.back().tensor();  // zero-filled
    entry.views.push_back(t);
    if (spec.fill != 0) backend_for(t.device).fill(Context{.device = t.device}, t, spec.fill);
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
  if (!options_.lazy_rows || slot.touched == nullptr || !slot.touched->enabled() ||
      slot.value.shape.ndim() < 2) {
    backend.adamw_update(ctx, slot.value, slot.grad, state[0], state[1], s);
    return;
  }
  slot.touched->for_each_run(slot.value.dim(0), [&](int64_t begin, int64_t end) {
    backend.adamw_update(ctx, slot.value.rows_slice(begin, end), slot.grad.rows_slice(begin, end),
                         state[0].rows_slice(begin, end), state[1].rows_slice(begin, end), s);
  });
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
  std::vector<StateSpec> spec{{"v_row", {batch, rows}}, {"v_col", {batch, cols}}};
  if (lazy(shape))
    spec.push_back({.suffix = "decay_log",
                    .shape = {batch},
                    .dtype = DType::F64,
                    .own_dtype = true,
                    .fill = kNeverUpdated,
                    .on_host = true});
  return spec;
}

double Adafactor::decay_log(int64_t t) {
  if (t == decay_t_ - 1 && t >= 1) return decay_prev_;
  if (t < decay_t_) decay_t_ = 1, decay_sum_ = decay_prev_ = 0;
  for (; decay_t_ < t; ++decay_t_) {
    const double i = static_cast<double>(decay_t_ + 1);
    decay_prev_ = decay_sum_;
    decay_sum_ += std::log1p(-std::pow(i, -options_.decay_rate));  // beta2_i = 1 - i^-rate
  }
  return decay_sum_;
}

// The statistics of slices with zero gradient since their last update decay toward eps1 (the
// closed form of the skipped updates), where they live; the log is host memory on any device.
void Adafactor::bring_up_to_date(const Context& ctx, std::span<const Tensor> state, int64_t begin,
                                 int64_t end, int64_t update) {
  const Tensor &row = state[0], &col = state[1];
  MOWE_CHECK(state[2].device == Device::CPU, "adafactor: the decay log must be host memory, not {}",
             state[2].str());
  double* log = state[2].ptr<double>();
  Backend& backend = backend_for(row.device);
  const Context on{.device = row.device, .stream = ctx.stream};
  const double now = decay_log(update);
  for (int64_t b = begin; b < end; ++b) {
    if (log[b] == kNeverUpdated || log[b] == now) continue;
    const double factor = std::exp(now - log[b]);
    backend.decay_toward(on, row.rows_slice(b, b + 1), options_.eps1, factor);
    backend.decay_toward(on, col.rows_slice(b, b + 1), options_.eps1, factor);
    log[b] = now;
  }
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
  if (state.size() == 1) {
    backend.adafactor_update(ctx, slot.value, slot.grad, {}, {}, state[0], s);
    return;
  }
  if (!lazy(slot.value.shape)) {
    backend.adafactor_update(ctx, slot.value, slot.grad, state[0], state[1], {}, s);
    return;
  }
  // Slices are whole rows of dim 0 when the stack has one leading dimension (experts [E, C, F]).
  MOWE_CHECK(slot.value.shape.ndim() == 3, "adafactor: '{}' is {}; stacked parameters are [B,R,C]",
             slot.name, slot.value.shape.str());
  const double* log = state[2].ptr<double>();
  const int64_t slices = slot.value.dim(0);
  // The first applied update reaches every slice: beta2 restarts all statistics (it is 0 at
  // update 1), which the closed form (a product of betas) cannot express. Slices are never
  // partly updated, so the first one tells.
  const bool first = slices > 0 && log[0] == kNeverUpdated;
  const TouchedRows* touched =
      slot.touched != nullptr && slot.touched->enabled() ? slot.touched : nullptr;
  const double now = decay_log(step);
  double* marks = state[2].ptr<double>();
  auto run = [&](int64_t begin, int64_t end) {
    bring_up_to_date(ctx, state, begin, end, step - 1);
    backend.adafactor_update(ctx, slot.value.rows_slice(begin, end),
                             slot.grad.rows_slice(begin, end), state[0].rows_slice(begin, end),
                             state[1].rows_slice(begin, end), {}, s);
    std::fill(marks + begin, marks + end, now);
  };
  if (touched == nullptr) {
    if (slices > 0) run(0, slices);
    return;
  }
  touched->for_each_run(slices, run);
  if (!first) return;
  // The untouched slices' first update, without reading them: with g = 0 the values stay and
  // every statistic becomes beta2 * 0 + (1 - beta2) * eps1, as the dense update computes it.
  const math::AdafactorCoeffs c = adafactor_coeffs(s);
  const double fresh = math::adafactor_moment<double>(0.0, 0.0, c.beta2, c.one_minus_beta2, c.eps1);
  int64_t next = 0;
  auto fill_untouched = [&](int64_t begin, int64_t end) {
    if (begin >= end) return;
    backend.fill(ctx, state[0].rows_slice(begin, end), fresh);
    backend.fill(ctx, state[1].rows_slice(begin, end), fresh);
    std::fill(marks + begin, marks + end, now);
  };
  touched->for_each_run(slices, [&](int64_t begin, int64_t end) {
    fill_untouched(next, begin);
    next = end;
  });
  fill_untouched(next, slices);
}

void Adafactor::catch_up_all(std::span<const ParamSlot> slots, int64_t update) {
  for (const ParamSlot& slot : slots) {
    if (slot.grad.empty() || !lazy(slot.value.shape)) continue;
    const std::vector<NamedTensor> all = state_tensors();
    std::vector<Tensor> state;
    for (const char* suffix : {"/v_row", "/v_col", "/decay_log"}) {
      for (const NamedTensor& t : all)
        if (t.name == slot.name + suffix) state.push_back(t.tensor);
    }
    if (state.empty()) continue;  // never updated: nothing to decay
    MOWE_CHECK(state.size() == 3, "adafactor: incomplete state for '{}'", slot.name);
    bring_up_to_date(Context{.device = slot.value.device}, state, 0, slot.value.dim(0), update);
  }
}

void Adafactor::skip(const Context&, std::span<const ParamSlot> slots, int64_t update) {
  // Slices behind the skipped update are brought to update - 1 and marked as if they had
  // received `update` with no decay: the closed form afterwards starts after it.
  catch_up_all(slots, update - 1);
  const double at = decay_log(update);
  for (const NamedTensor& t : state_tensors()) {
    if (!t.name.ends_with("/decay_log")) continue;
    double* log = t.tensor.ptr<double>();
    for (int64_t b = 0; b < t.tensor.numel(); ++b)
      if (log[b] != kNeverUpdated) log[b] = at;
  }
}

}  // namespace mowe
