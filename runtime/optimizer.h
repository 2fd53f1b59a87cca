// Optimizers of the update step (docs/optimizers.md): AdamW and T5X's Adafactor over a
// list of named parameters, plus the global gradient norm and the clipping factor. Formulas,
// defaults and sources: docs/optimizers.md; the per-element math is in runtime/math.h and runs
// through the backend ops adamw_update and adafactor_update on the parameters' device.
//
//   Adafactor opt(allocator);                        // state allocated lazily, keyed by name
//   double norm = global_grad_norm(backend, ctx, slots);
//   opt.step(ctx, slots, learning_rate(schedule, step), clip_scale(norm, max_norm), step + 1);
//
// The optimizer keeps no step counter of its own: the caller's training state is the only one,
// and passes the update number in (bias correction and Adafactor's decay depend on it).
//
// runtime/ does not depend on model/: the caller turns its parameter store into ParamSlots.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "runtime/backend.h"
#include "runtime/memory.h"
#include "runtime/touched_rows.h"

namespace mowe {

// A parameter and its gradient (empty for a frozen parameter, which is skipped). Names are
// unique; they key the optimizer state and name it in checkpoints.
struct ParamSlot {
  std::string name;
  Tensor value, grad;
  // For stacked parameters [E, ...]: the rows whose gradient may be non-zero this step (the
  // others are exactly zero). Null or disabled: any row may be.
  const TouchedRows* touched = nullptr;
};

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

// Sum over the slots of the squared gradient entries (slots without a gradient skipped). With
// sharded parameters (experts) the caller adds these sums over the ranks before the square root.
double grad_sum_squares(Backend& backend, const Context& ctx, std::span<const ParamSlot> slots);
// sqrt(grad_sum_squares): the global L2 norm of all gradients as one vector.
double global_grad_norm(Backend& backend, const Context& ctx, std::span<const ParamSlot> slots);
// The grad_scale that brings gradients of global norm `norm` to a norm of at most max_norm:
// min(1, max_norm / norm). 1 when max_norm is 0 (clipping off) or norm is 0; a NaN norm gives NaN.
// When gradients are also scaled by s (loss normalisation), pass the norm of s * grad.
double clip_scale(double norm, double max_norm);

class Optimizer {
 public:
  // State buffers are allocated from `allocator`, which must serve the parameters' device.
  explicit Optimizer(DeviceAllocator& allocator) : allocator_(allocator) {}
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual const char* name() const = 0;

  // Update number `update` (1-based: bias correction and Adafactor's decay depend on it) of every
  // slot that has a gradient, with the gradient multiplied by grad_scale (clipping and loss
  // normalisation) and learning rate lr.
  void step(const Context& ctx, std::span<const ParamSlot> slots, double lr, double grad_scale,
            int64_t update);
  // Update number `update` was not applied (a non-finite step). Optimizers that bring rows up
  // to date lazily must know, since the rows they skip meanwhile assume every update ran.
  virtual void skip(const Context& ctx, std::span<const ParamSlot> slots, int64_t update);

  size_t state_bytes() const;

  // Views of every state tensor, named "<parameter>/<state>" and sorted by name, on the
  // parameters' device: a checkpoint writer copies them out.
  std::vector<NamedTensor> state_tensors() const;
  // Creates the missing (zero) state of every slot with a gradient and returns state_tensors():
  // a checkpoint reader fills these in place.
  std::vector<NamedTensor> prepare_state(std::span<const ParamSlot> slots);

 protected:
  struct StateSpec {
    const char* suffix;
    Shape shape;
    DType dtype = DType::F32;
    bool own_dtype = false;  // false: the parameter's dtype
    double fill = 0;         // initial value
    // In host memory whatever the parameter's device: bookkeeping the host reads every step.
    bool on_host = false;
  };
  // The state tensors a parameter of this shape needs (same dtype as the parameter).
  virtual std::vector<StateSpec> state_spec(const Shape& shape) const = 0;
  // One update of one slot; state[i] follows state_spec(). step is 1-based.
  virtual void update(Backend& backend, const Context& ctx, const ParamSlot& slot,
                      std::span<const Tensor> state, double lr, double grad_scale,
                      int64_t step) = 0;

 private:
  struct Entry {
    Shape shape;
    DType dtype;
    std::vector<std::string> names;
    std::vector<Buffer> buffers;
    std::vector<Tensor> views;
  };
  Entry& state_of(const ParamSlot& slot);
  void check_unique_names(std::span<const ParamSlot> slots);

  DeviceAllocator& allocator_;
  // The slot list whose names were last checked for duplicates: a training loop passes the same
  // list every step, and checking it once keeps the step free of allocations.
  const ParamSlot* checked_slots_ = nullptr;
  size_t checked_count_ = 0;
  std::map<std::string, Entry> state_;  // by parameter name
};

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  double weight_decay = 0.0;  // decoupled, applied to every parameter
  // An approximation, off by default: stacked parameters update only the rows with a gradient
  // this step (ParamSlot::touched). Exact AdamW moves every row, since momentum and weight decay
  // act without a gradient; lazily, untouched rows keep their values and moments as they are.
  bool lazy_rows = false;
};

// Adam with decoupled weight decay and bias correction (Loshchilov & Hutter 2019), as PyTorch's
// AdamW. State: "m" and "v", like the parameter.
class AdamW final : public Optimizer {
 public:
  explicit AdamW(DeviceAllocator& allocator, AdamWOptions options = {})
      : Optimizer(allocator), options_(options) {}
  const char* name() const override { return "adamw"; }

 protected:
  std::vector<StateSpec> state_spec(const Shape& shape) const override;
  void update(Backend& backend, const Context& ctx, const ParamSlot& slot,
              std::span<const Tensor> state, double lr, double grad_scale, int64_t step) override;

 private:
  AdamWOptions options_;
};

// T5X's defaults (t5x/adafactor.py with the T5.1.1 settings): no momentum, no weight decay,
// learning rate from the schedule (relative step off).
struct AdafactorOptions {
  double decay_rate = 0.8;      // beta2 at update t = 1 - t^-decay_rate
  double clip_threshold = 1.0;  // update clipping by RMS; 0 = off
  double eps1 = 1e-30;          // added to g^2
  double eps2 = 1e-3;           // floor of the parameter scale
  bool multiply_by_parameter_scale = true;
  // A matrix is factored when both dimensions are at least this (T5X's heuristic); stacked
  // matrices (rank >= 3, leading dimensions are slices) are always factored, as T5X does for
  // parameters with BATCH axes.
  int64_t min_dim_size_to_factor = 128;
};

// Adafactor (Shazeer & Stern 2018) as in T5X. Factored state: "v_row" [B, R] and "v_col" [B, C];
// otherwise "v", like the parameter. See Backend::adafactor_update and docs/optimizers.md.
//
// Stacked parameters (rank >= 3: expert blocks) are updated lazily, exactly: without momentum a
// slice with zero gradient keeps its values, and its statistics only decay towards eps1,
//   x_t = eps1 + (x_u - eps1) * prod_{i=u+1..t} beta2_i,
// so a slice is brought up to date in closed form when it next has a gradient. "decay_log" [B]
// (f64) holds, per slice, log prod_{i=2..u} beta2_i of its last update u (kNeverUpdated before
// the first). Only ParamSlot::touched rows are visited: the cost of a step follows the experts
// that received tokens. The first applied update visits every slice (beta2_1 = 0).
class Adafactor final : public Optimizer {
 public:
  explicit Adafactor(DeviceAllocator& allocator, AdafactorOptions options = {})
      : Optimizer(allocator), options_(options) {}
  const char* name() const override { return "adafactor"; }

  // Whether a parameter of this shape gets factored second moments.
  bool factored(const Shape& shape) const;
  // Whether a parameter of this shape is updated lazily (stacked slices).
  static bool lazy(const Shape& shape) { return shape.ndim() >= 3; }
  static constexpr double kNeverUpdated = 1.0;  // log-decays are <= 0

  void skip(const Context& ctx, std::span<const ParamSlot> slots, int64_t update) override;
  // Brings every slice of every lazily updated parameter up to date after `update` updates, as
  // the dense algorithm would have them (tests; exporting statistics).
  void catch_up_all(std::span<const ParamSlot> slots, int64_t update);

 protected:
  std::vector<StateSpec> state_spec(const Shape& shape) const override;
  void update(Backend& backend, const Context& ctx, const ParamSlot& slot,
              std::span<const Tensor> state, double lr, double grad_scale, int64_t step) override;

 private:
  // log prod_{i=2..t} beta2_i, summed in order from i = 2 whatever was asked before, so a
  // resumed run computes the same bits. t <= 1 gives 0.
  double decay_log(int64_t t);
  // Slices [begin, end) of a lazily updated parameter decayed from their last update to
  // `update` (statistics only, on their device, queued on ctx.stream; the log is host memory).
  void bring_up_to_date(const Context& ctx, std::span<const Tensor> state, int64_t begin,
                        int64_t end, int64_t update);

  AdafactorOptions options_;
  int64_t decay_t_ = 1;  // decay_sum_ = decay_log(decay_t_), decay_prev_ = decay_log(decay_t_ - 1)
  double decay_sum_ = 0, decay_prev_ = 0;
};

}  // namespace mowe
