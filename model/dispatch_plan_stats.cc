#include "model/dispatch_plan_stats.h"

#include <algorithm>

#include "runtime/check.h"

namespace mowe::model {
namespace {

std::string human_bytes(double bytes) {
  if (bytes >= 1e9) return fmt::format("{:.2f} GB", bytes / 1e9);
  if (bytes >= 1e6) return fmt::format("{:.2f} MB", bytes / 1e6);
  return fmt::format("{:.1f} kB", bytes / 1e3);
}

std::string layout_text(const DispatchPlan& plan, int b) {
  if (plan.replicas(b) > 1) return fmt::format("{} replicas/block", plan.replicas(b));
  return fmt::format("{} block{}/rank", plan.blocks_per_rank(b),
                     plan.blocks_per_rank(b) == 1 ? "" : "s");
}

int64_t messages_per_alltoall_hierarchical(int n, int per_node) {
  if (n <= per_node) return n - 1;  // one node: the intra-node stage only
  if (n % per_node != 0) return -1;
  return (per_node - 1) + (n / per_node - 1);
}

}  // namespace

TrafficOptions traffic_options(const config::Config& config, int ranks_per_node) {
  TrafficOptions o;
  o.d_model = config.model().d_model();
  o.encoder_layers = config.model().mowe().encoder_layers_size();
  o.decoder_layers = config.model().mowe().decoder_layers_size();
  o.ranks_per_node = ranks_per_node;
  return o;
}

double tokens_sent(const DispatchPlan& plan, int rank, int64_t tokens) {
  // Source s holds tokens/N tokens. Of those, the share that belongs to s's own blocks stays
  // home: with replicas, s mod R is s's own replica index, so that share is the whole block's
  // mass, i.e. load_share x replicas.
  const double n = plan.world_size();
  double load = 0, own = 0;
  for (int b = 0; b < plan.num_buckets(); ++b) {
    load += plan.load_share(rank, b);
    own += plan.load_share(rank, b) * plan.replicas(b);
  }
  const double per_rank = static_cast<double>(tokens) / n;
  const double dispatch = per_rank * (plan.routed_share() - own);
  const double combine = static_cast<double>(tokens) * load - per_rank * own;
  return dispatch + combine;
}

PlanTraffic plan_traffic(const DispatchPlan& plan, const TrafficOptions& o) {
  PlanTraffic t;
  const int n = plan.world_size();
  const int layers = o.encoder_layers + o.decoder_layers;
  // x 2: forward and backward; each pass has one dispatch and one combine (tokens_sent).
  const double bytes_per_token = 2.0 * static_cast<double>(o.d_model) * o.bytes_per_value;
  for (int r = 0; r < n; ++r) {
    const double bytes =
        bytes_per_token * (o.encoder_layers * tokens_sent(plan, r, plan.encoder_tokens_per_step()) +
                           o.decoder_layers * tokens_sent(plan, r, plan.decoder_tokens_per_step()));
    t.bytes_sent_mean += bytes / n;
    t.bytes_sent_max = std::max(t.bytes_sent_max, bytes);
  }
  t.alltoalls = int64_t{2} * 2 * layers;
  t.messages_flat = t.alltoalls * (n - 1);
  const int64_t h = messages_per_alltoall_hierarchical(n, o.ranks_per_node);
  t.messages_hierarchical = h < 0 ? -1 : t.alltoalls * h;
  return t;
}

std::string format_plan_header(const DispatchPlan& plan) {
  return fmt::format(
      "frequencies:     {}\n"
      "tokens per step: {} (encoder {} + decoder {}); {:.1f}% reach an expert (the rest are the "
      "unrouted ids)\n",
      plan.frequency_source(), plan.tokens_per_step(), plan.encoder_tokens_per_step(),
      plan.decoder_tokens_per_step(), 100 * plan.routed_share());
}

std::string format_plan_table(const DispatchPlan& plan, const TrafficOptions& o,
                              const DispatchPlan* contiguous) {
  const int n = plan.world_size();
  std::string out = fmt::format(
      "world size {}: blocks assigned {}\n"
      "  bucket  blocks x experts  d_ff  layout              mean tok/rank  max tok/rank  "
      "max/mean  {}capacity\n",
      n,
      plan.assignment() == BlockAssignment::kBalanced ? "balanced (LPT + swaps, equal block counts)"
                                                      : "contiguously",
      contiguous ? "contiguous  " : "");
  std::vector<double> total(n, 0.0);
  for (int b = 0; b < plan.num_buckets(); ++b) {
    const BucketLayout& l = plan.table().bucket(b);
    double sum = 0, max = 0;
    for (int r = 0; r < n; ++r) {
      const double t = plan.expected_tokens(r, b);
      sum += t, max = std::max(max, t), total[r] += t;
    }
    out += fmt::format("  {:>6}  {:>6} x {:<7}  {:>4}  {:<18}  {:>13.0f}  {:>12.0f}  {:>8.2f}  ", b,
                       l.num_blocks, l.experts_per_block, l.expert_d_ff, layout_text(plan, b),
                       sum / n, max, plan.imbalance(b));
    if (contiguous) out += fmt::format("{:>10.2f}  ", contiguous->imbalance(b));
    out += fmt::format("{:>8}\n", plan.capacity(b));
  }
  double sum = 0, max = 0;
  for (double t : total) sum += t, max = std::max(max, t);
  out += fmt::format("  {:>6}  {:42}  {:>13.0f}  {:>12.0f}  {:>8.2f}\n", "all", "", sum / n, max,
                     sum > 0 ? max * n / sum : 1.0);
  out += fmt::format(
      "  (expected tokens per rank and step, encoder + decoder; max/mean over ranks; {}capacity: "
      "the max, rounded up)\n",
      contiguous ? "contiguous: max/mean if every rank held one contiguous range of blocks; " : "");
  const PlanTraffic t = plan_traffic(plan, o);
  out += fmt::format(
      "  all-to-all per rank and step ({} MoWE layers: {} encoder + {} decoder; dispatch + "
      "combine, forward + backward: {} all-to-alls; fp32, d_model {}):\n"
      "    volume sent   mean {}, max {}\n",
      o.encoder_layers + o.decoder_layers, o.encoder_layers, o.decoder_layers, t.alltoalls,
      o.d_model, human_bytes(t.bytes_sent_mean), human_bytes(t.bytes_sent_max));
  out += fmt::format("    messages      flat {} ({} per all-to-all)", t.messages_flat, n - 1);
  if (t.messages_hierarchical < 0) {
    out +=
        fmt::format("; hierarchical: {} ranks per node does not divide {}\n", o.ranks_per_node, n);
  } else {
    out += fmt::format("; hierarchical with {} ranks per node {} ({} per all-to-all)\n",
                       o.ranks_per_node, t.messages_hierarchical,
                       t.messages_hierarchical / std::max<int64_t>(t.alltoalls, 1));
  }
  return out;
}

}  // namespace mowe::model
