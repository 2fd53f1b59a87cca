// The simulated device's ops: validated on the host with the checks both other backends share
// (runtime/op_checks.h), then queued on the context's stream, where the CPU backend's kernel runs
// on host views of the tensors. Results are therefore the CPU backend's, bit for bit; what the
// simulator adds is the GPU's contract: device memory only, asynchronous, ordered by stream.
#include <memory>

#include "runtime/backend.h"
#include "runtime/op_checks.h"
#include "runtime/sim/sim_device.h"

namespace mowe::sim {
namespace {

void on_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  for (const Tensor* t : tensors) {
    MOWE_CHECK(t->empty() || t->device == Device::SIMULATED,
               "{}: {} is not in device memory (simulated device)", op, t->str());
  }
}

void float_dtype(const char* op, DType dtype) {
  visit_dtype(Device::SIMULATED, op, dtype, [](auto) {});
}

// As on CUDA, ops that need temporaries need a device arena in the context, even though the
// CPU kernel takes its temporaries from the stream's own host arena.
void device_scratch(const char* op, const Context& ctx) {
  MOWE_CHECK(ctx.scratch != nullptr, "{} needs a scratch arena in the context", op);
  MOWE_CHECK(ctx.scratch->device() == Device::SIMULATED,
             "{}: the scratch arena holds {} memory; the simulated device needs a device arena", op,
             device_name(ctx.scratch->device()));
}

Backend& cpu() {
  return cpu_backend();
}

// Queues kernel(host context) on ctx's stream.
template <typename Kernel>
void launch(const Context& ctx, Kernel kernel) {
  stream_of(ctx.stream).enqueue_kernel([kernel = std::move(kernel)](Arena& scratch) {
    kernel(Context{.device = Device::CPU, .stream = nullptr, .scratch = &scratch});
  });
}

class SimBackend final : public Backend {
 public:
  Device device() const override { return Device::SIMULATED; }
  const char* name() const override { return "simulated"; }

#define MOWE_BACKEND_OP(return_type, name, parameters) return_type name parameters override;
#include "runtime/backend_ops.def"
#undef MOWE_BACKEND_OP
};

void SimBackend::matmul(const Context& ctx, const Tensor& a, const Tensor& b, const Tensor& c,
                        bool trans_a, bool trans_b, float alpha, float beta) {
  on_device("matmul", {&a, &b, &c});
  check_matmul(a, b, c, trans_a, trans_b);
  float_dtype("matmul", a.dtype);
  launch(ctx, [a = host_view(a), b = host_view(b), c = host_view(c), trans_a, trans_b, alpha, beta](
                  const Context& h) { cpu().matmul(h, a, b, c, trans_a, trans_b, alpha, beta); });
}

void SimBackend::batched_matmul(const Context& ctx, const Tensor& a, const Tensor& b,
                                const Tensor& c, bool trans_a, bool trans_b, float alpha,
                                float beta) {
  on_device("batched_matmul", {&a, &b, &c});
  check_batched_matmul(a, b, c, trans_a, trans_b);
  float_dtype("batched_matmul", a.dtype);
  launch(ctx, [a = host_view(a), b = host_view(b), c = host_view(c), trans_a, trans_b, alpha,
               beta](const Context& h) {
    cpu().batched_matmul(h, a, b, c, trans_a, trans_b, alpha, beta);
  });
}

void SimBackend::fill(const Context& ctx, const Tensor& x, double value) {
  on_device("fill", {&x});
  if (x.dtype != DType::I32) float_dtype("fill", x.dtype);
  launch(ctx, [x = host_view(x), value](const Context& h) { cpu().fill(h, x, value); });
}

void SimBackend::axpy(const Context& ctx, double alpha, const Tensor& x, const Tensor& y) {
  on_device("axpy", {&x, &y});
  check_same_shape("axpy", x, y);
  float_dtype("axpy", x.dtype);
  launch(ctx, [alpha, x = host_view(x), y = host_view(y)](const Context& h) {
    cpu().axpy(h, alpha, x, y);
  });
}

void SimBackend::rmsnorm_forward(const Context& ctx, const Tensor& x, const Tensor& scale,
                                 const Tensor& out, const Tensor& rstd, double eps) {
  on_device("rmsnorm_forward", {&x, &scale, &out, &rstd});
  check_rmsnorm_forward(x, scale, out, rstd);
  float_dtype("rmsnorm_forward", x.dtype);
  launch(ctx,
         [x = host_view(x), scale = host_view(scale), out = host_view(out), rstd = host_view(rstd),
          eps](const Context& h) { cpu().rmsnorm_forward(h, x, scale, out, rstd, eps); });
}

void SimBackend::rmsnorm_backward(const Context& ctx, const Tensor& dout, const Tensor& x,
                                  const Tensor& scale, const Tensor& rstd, const Tensor& dx,
                                  const Tensor& dscale) {
  on_device("rmsnorm_backward", {&dout, &x, &scale, &rstd, &dx, &dscale});
  check_rmsnorm_backward(dout, x, scale, rstd, dx, dscale);
  float_dtype("rmsnorm_backward", x.dtype);
  launch(ctx, [dout = host_view(dout), x = host_view(x), scale = host_view(scale),
               rstd = host_view(rstd), dx = host_view(dx),
               dscale = host_view(dscale)](const Context& h) {
    cpu().rmsnorm_backward(h, dout, x, scale, rstd, dx, dscale);
  });
}

void SimBackend::gelu_forward(const Context& ctx, const Tensor& x, const Tensor& out) {
  on_device("gelu_forward", {&x, &out});
  check_same_shape("gelu_forward", x, out);
  float_dtype("gelu_forward", x.dtype);
  launch(ctx, [x = host_view(x), out = host_view(out)](const Context& h) {
    cpu().gelu_forward(h, x, out);
  });
}

void SimBackend::gelu_backward(const Context& ctx, const Tensor& dout, const Tensor& x,
                               const Tensor& dx) {
  on_device("gelu_backward", {&dout, &x, &dx});
  check_unary_backward("gelu_backward", dout, x, dx);
  float_dtype("gelu_backward", x.dtype);
  launch(ctx, [dout = host_view(dout), x = host_view(x), dx = host_view(dx)](const Context& h) {
    cpu().gelu_backward(h, dout, x, dx);
  });
}

void SimBackend::gated_gelu_forward(const Context& ctx, const Tensor& gate, const Tensor& linear,
                                    const Tensor& out) {
  on_device("gated_gelu_forward", {&gate, &linear, &out});
  check_gated_gelu_forward(gate, linear, out);
  float_dtype("gated_gelu_forward", gate.dtype);
  launch(ctx, [gate = host_view(gate), linear = host_view(linear), out = host_view(out)](
                  const Context& h) { cpu().gated_gelu_forward(h, gate, linear, out); });
}

void SimBackend::gated_gelu_backward(const Context& ctx, const Tensor& dout, const Tensor& gate,
                                     const Tensor& linear, const Tensor& dgate,
                                     const Tensor& dlinear) {
  on_device("gated_gelu_backward", {&dout, &gate, &linear, &dgate, &dlinear});
  check_gated_gelu_backward(dout, gate, linear, dgate, dlinear);
  float_dtype("gated_gelu_backward", gate.dtype);
  launch(ctx, [dout = host_view(dout), gate = host_view(gate), linear = host_view(linear),
               dgate = host_view(dgate), dlinear = host_view(dlinear)](const Context& h) {
    cpu().gated_gelu_backward(h, dout, gate, linear, dgate, dlinear);
  });
}

void SimBackend::softmax_forward(const Context& ctx, const Tensor& x, const Tensor& out) {
  on_device("softmax_forward", {&x, &out});
  check_same_shape("softmax_forward", x, out);
  float_dtype("softmax_forward", x.dtype);
  launch(ctx, [x = host_view(x), out = host_view(out)](const Context& h) {
    cpu().softmax_forward(h, x, out);
  });
}

void SimBackend::softmax_backward(const Context& ctx, const Tensor& dout, const Tensor& out,
                                  const Tensor& dx) {
  on_device("softmax_backward", {&dout, &out, &dx});
  check_unary_backward("softmax_backward", dout, out, dx);
  float_dtype("softmax_backward", out.dtype);
  launch(ctx, [dout = host_view(dout), out = host_view(out), dx = host_view(dx)](const Context& h) {
    cpu().softmax_backward(h, dout, out, dx);
  });
}

void SimBackend::dropout_forward(const Context& ctx, const Tensor& x, const Tensor& out, float rate,
                                 uint64_t seed) {
  on_device("dropout_forward", {&x, &out});
  check_dropout("dropout_forward", x, out, rate);
  float_dtype("dropout_forward", x.dtype);
  launch(ctx, [x = host_view(x), out = host_view(out), rate, seed](const Context& h) {
    cpu().dropout_forward(h, x, out, rate, seed);
  });
}

void SimBackend::dropout_backward(const Context& ctx, const Tensor& dout, const Tensor& dx,
                                  float rate, uint64_t seed) {
  on_device("dropout_backward", {&dout, &dx});
  check_dropout("dropout_backward", dout, dx, rate);
  float_dtype("dropout_backward", dout.dtype);
  launch(ctx, [dout = host_view(dout), dx = host_view(dx), rate, seed](const Context& h) {
    cpu().dropout_backward(h, dout, dx, rate, seed);
  });
}

void SimBackend::position_bias_forward(const Context& ctx, const Tensor& table, const Tensor& out,
                                       bool bidirectional, int max_distance) {
  on_device("position_bias_forward", {&table, &out});
  check_position_bias_forward(table, out, max_distance);
  float_dtype("position_bias_forward", table.dtype);
  launch(ctx, [table = host_view(table), out = host_view(out), bidirectional,
               max_distance](const Context& h) {
    cpu().position_bias_forward(h, table, out, bidirectional, max_distance);
  });
}

void SimBackend::position_bias_backward(const Context& ctx, const Tensor& dout,
                                        const Tensor& dtable, bool bidirectional,
                                        int max_distance) {
  on_device("position_bias_backward", {&dout, &dtable});
  check_position_bias_backward(dout, dtable, max_distance);
  float_dtype("position_bias_backward", dtable.dtype);
  launch(ctx, [dout = host_view(dout), dtable = host_view(dtable), bidirectional,
               max_distance](const Context& h) {
    cpu().position_bias_backward(h, dout, dtable, bidirectional, max_distance);
  });
}

void SimBackend::attention_forward(const Context& ctx, const Tensor& q, const Tensor& k,
                                   const Tensor& v, const Tensor& bias, const Tensor& key_valid,
                                   const AttentionArgs& args, const Tensor& probs,
                                   const Tensor& out) {
  on_device("attention_forward", {&q, &k, &v, &bias, &key_valid, &probs, &out});
  check_attention_forward(q, k, v, bias, key_valid, probs, out);
  float_dtype("attention_forward", q.dtype);
  launch(ctx, [q = host_view(q), k = host_view(k), v = host_view(v), bias = host_view(bias),
               key_valid = host_view(key_valid), args, probs = host_view(probs),
               out = host_view(out)](const Context& h) {
    cpu().attention_forward(h, q, k, v, bias, key_valid, args, probs, out);
  });
}

void SimBackend::attention_backward(const Context& ctx, const Tensor& dout, const Tensor& q,
                                    const Tensor& k, const Tensor& v, const Tensor& probs,
                                    const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                    const Tensor& dbias, const AttentionDropout& dropout) {
  on_device("attention_backward", {&dout, &q, &k, &v, &probs, &dq, &dk, &dv, &dbias});
  check_attention_backward(dout, q, k, v, probs, dq, dk, dv, dbias);
  float_dtype("attention_backward", q.dtype);
  device_scratch("attention_backward", ctx);
  launch(ctx, [dout = host_view(dout), q = host_view(q), k = host_view(k), v = host_view(v),
               probs = host_view(probs), dq = host_view(dq), dk = host_view(dk), dv = host_view(dv),
               dbias = host_view(dbias), dropout](const Context& h) {
    cpu().attention_backward(h, dout, q, k, v, probs, dq, dk, dv, dbias, dropout);
  });
}

void SimBackend::embedding_forward(const Context& ctx, const Tensor& table, const Tensor& ids,
                                   const Tensor& out) {
  on_device("embedding_forward", {&table, &ids, &out});
  check_embedding_forward(table, ids, out);
  float_dtype("embedding_forward", table.dtype);
  launch(ctx, [table = host_view(table), ids = host_view(ids), out = host_view(out)](
                  const Context& h) { cpu().embedding_forward(h, table, ids, out); });
}

void SimBackend::embedding_backward(const Context& ctx, const Tensor& dout, const Tensor& ids,
                                    const Tensor& dtable) {
  on_device("embedding_backward", {&dout, &ids, &dtable});
  check_embedding_backward(dout, ids, dtable);
  float_dtype("embedding_backward", dtable.dtype);
  launch(ctx, [dout = host_view(dout), ids = host_view(ids), dtable = host_view(dtable)](
                  const Context& h) { cpu().embedding_backward(h, dout, ids, dtable); });
}

void SimBackend::cross_entropy_forward(const Context& ctx, const Tensor& logits,
                                       const Tensor& targets, const Tensor& weights, double z_loss,
                                       const Tensor& losses, const Tensor& lse) {
  on_device("cross_entropy_forward", {&logits, &targets, &weights, &losses, &lse});
  check_cross_entropy_forward(logits, targets, weights, losses, lse);
  float_dtype("cross_entropy_forward", logits.dtype);
  launch(ctx,
         [logits = host_view(logits), targets = host_view(targets), weights = host_view(weights),
          z_loss, losses = host_view(losses), lse = host_view(lse)](const Context& h) {
           cpu().cross_entropy_forward(h, logits, targets, weights, z_loss, losses, lse);
         });
}

void SimBackend::cross_entropy_backward(const Context& ctx, const Tensor& logits,
                                        const Tensor& targets, const Tensor& weights, double z_loss,
                                        const Tensor& lse, double loss_scale,
                                        const Tensor& dlogits) {
  on_device("cross_entropy_backward", {&logits, &targets, &weights, &lse, &dlogits});
  check_cross_entropy_backward(logits, targets, weights, lse, dlogits);
  float_dtype("cross_entropy_backward", logits.dtype);
  launch(ctx, [logits = host_view(logits), targets = host_view(targets),
               weights = host_view(weights), z_loss, lse = host_view(lse), loss_scale,
               dlogits = host_view(dlogits)](const Context& h) {
    cpu().cross_entropy_backward(h, logits, targets, weights, z_loss, lse, loss_scale, dlogits);
  });
}

void SimBackend::expert_gather_matmul(const Context& ctx, const Tensor& x, const Tensor& w,
                                      const Tensor& expert, const Tensor& out, bool trans_w,
                                      float beta) {
  on_device("expert_gather_matmul", {&x, &w, &expert, &out});
  check_expert_gather_matmul(x, w, expert, out, trans_w, beta);
  float_dtype("expert_gather_matmul", x.dtype);
  launch(ctx, [x = host_view(x), w = host_view(w), expert = host_view(expert), out = host_view(out),
               trans_w, beta](const Context& h) {
    cpu().expert_gather_matmul(h, x, w, expert, out, trans_w, beta);
  });
}

void SimBackend::expert_gather_weight_grad(const Context& ctx, const Tensor& x, const Tensor& g,
                                           const Tensor& expert, const Tensor& dw) {
  on_device("expert_gather_weight_grad", {&x, &g, &expert, &dw});
  check_expert_gather_weight_grad(x, g, expert, dw);
  float_dtype("expert_gather_weight_grad", x.dtype);
  launch(ctx, [x = host_view(x), g = host_view(g), expert = host_view(expert), dw = host_view(dw)](
                  const Context& h) { cpu().expert_gather_weight_grad(h, x, g, expert, dw); });
}

// The host needs the number now: a host synchronisation, as on CUDA.
double reduce(const char* op, const Context& ctx, const Tensor& x, bool squares) {
  on_device(op, {&x});
  check_reduction(op, x);
  float_dtype(op, x.dtype);
  if (x.numel() == 0) return 0;
  device_scratch(op, ctx);
  auto result = std::make_shared<double>(0);
  launch(ctx, [x = host_view(x), squares, result](const Context& h) {
    *result = squares ? cpu().sum_squares(h, x) : cpu().sum(h, x);
  });
  count_host_sync();
  stream_of(ctx.stream).synchronize();
  return *result;
}

double SimBackend::sum(const Context& ctx, const Tensor& x) {
  return reduce("sum", ctx, x, false);
}

double SimBackend::sum_squares(const Context& ctx, const Tensor& x) {
  return reduce("sum_squares", ctx, x, true);
}

void SimBackend::decay_toward(const Context& ctx, const Tensor& x, double floor, double factor) {
  on_device("decay_toward", {&x});
  float_dtype("decay_toward", x.dtype);
  launch(ctx, [x = host_view(x), floor, factor](const Context& h) {
    cpu().decay_toward(h, x, floor, factor);
  });
}

void SimBackend::accumulate_sum_squares(const Context& ctx, const Tensor& x, const Tensor& total) {
  on_device("accumulate_sum_squares", {&x, &total});
  check_accumulate_sum_squares(x, total);
  float_dtype("accumulate_sum_squares", x.dtype);
  if (x.numel() > 0) device_scratch("accumulate_sum_squares", ctx);
  launch(ctx, [x = host_view(x), total = host_view(total)](const Context& h) {
    cpu().accumulate_sum_squares(h, x, total);
  });
}

void SimBackend::adamw_update(const Context& ctx, const Tensor& param, const Tensor& grad,
                              const Tensor& m, const Tensor& v, const AdamWStep& step) {
  on_device("adamw_update", {&param, &grad, &m, &v});
  check_adamw_update(param, grad, m, v, step);
  float_dtype("adamw_update", param.dtype);
  launch(ctx, [param = host_view(param), grad = host_view(grad), m = host_view(m), v = host_view(v),
               step](const Context& h) { cpu().adamw_update(h, param, grad, m, v, step); });
}

void SimBackend::adafactor_update(const Context& ctx, const Tensor& param, const Tensor& grad,
                                  const Tensor& row, const Tensor& col, const Tensor& v,
                                  const AdafactorStep& step) {
  on_device("adafactor_update", {&param, &grad, &row, &col, &v});
  check_adafactor_update(param, grad, row, col, v, step);
  float_dtype("adafactor_update", param.dtype);
  device_scratch("adafactor_update", ctx);
  launch(ctx, [param = host_view(param), grad = host_view(grad), row = host_view(row),
               col = host_view(col), v = host_view(v), step](const Context& h) {
    cpu().adafactor_update(h, param, grad, row, col, v, step);
  });
}

}  // namespace

Backend& sim_backend() {
  static SimBackend* backend = new SimBackend;
  return *backend;
}

}  // namespace mowe::sim
