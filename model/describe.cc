#include "model/describe.h"

#include <fmt/format.h>

#include "model/expert_form.h"
#include "model/mowe_layers.h"

namespace mowe::model {
namespace {

std::string human(double n) {
  if (n >= 1e9) return fmt::format("{:.3f}B", n / 1e9);
  if (n >= 1e6) return fmt::format("{:.2f}M", n / 1e6);
  if (n >= 1e3) return fmt::format("{:.1f}K", n / 1e3);
  return fmt::format("{:.0f}", n);
}

bool is_mowe(const google::protobuf::RepeatedField<int32_t>& layers, int block) {
  for (int l : layers)
    if (l == block) return true;
  return false;
}

}  // namespace

ModelSize describe(const config::ModelConfig& c, int64_t input_length, int64_t target_length) {
  ModelSize s;
  const int64_t d = c.d_model(), hd = int64_t(c.num_heads()) * c.d_kv(), f = c.d_ff();
  const int64_t v = c.vocab_size(), heads = c.num_heads();
  const int64_t attention = 4 * d * hd + d;  // q, k, v, o and the pre-norm
  const int64_t ffn = 3 * d * f + d;         // wi_0, wi_1, wo and the pre-norm
  const int64_t stack_extra = int64_t(c.relative_attention_num_buckets()) * heads + d;
  const auto& w = c.mowe();
  auto stack = [&](bool decoder) {
    const int layers = decoder ? c.num_decoder_layers() : c.num_encoder_layers();
    const auto& mowe_layers = stack_mowe_layers(w, decoder);
    int64_t params = stack_extra;
    for (int i = 0; i < layers; ++i)
      params += attention * (decoder ? 2 : 1) + (is_mowe(mowe_layers, i) ? d : ffn);
    return params;
  };
  s.dense = {{"token embedding", v * d},
             {"output projection", d * v},
             {"encoder", stack(false)},
             {"decoder", stack(true)}};
  for (const auto& comp : s.dense) s.dense_params += comp.params;

  const int64_t mowe_layers = mowe_layer_count(w);
  for (int i = 0; i < w.buckets_size(); ++i) {
    if (mowe_layers == 0) break;  // buckets without MoWE layers allocate nothing
    const config::BucketConfig& b = w.buckets(i);
    const int64_t matrices = expert_matrices(bucket_activation(w, i));
    ModelSize::Bucket bucket;
    bucket.activation = bucket_activation(w, i);
    bucket.experts = int64_t(b.num_blocks()) * b.experts_per_block();
    bucket.expert_d_ff = b.expert_d_ff();
    bucket.params = matrices * d * bucket.expert_d_ff * bucket.experts;
    bucket.flops_per_token = 2 * matrices * d * bucket.expert_d_ff;
    bucket.routing_ids = bucket_routing_ids(w, i);
    bucket.unreachable_experts = bucket_unreachable_experts(w, i);
    bucket.unreachable_params = bucket_unreachable_params(w, i, d);
    s.expert_params += bucket.params;
    s.unreachable_expert_params += bucket.unreachable_params;
    s.buckets.push_back(bucket);
  }
  if (mowe_layers > 0 && !w.share_expert_parameters()) {
    s.expert_params *= mowe_layers;
    s.unreachable_expert_params *= mowe_layers;
  }

  // Per token: 2 FLOPs per weight it meets, plus q.k and p.v over the keys it attends to.
  auto token_flops = [&](bool decoder, int64_t self_len, int64_t cross_len) {
    const int layers = decoder ? c.num_decoder_layers() : c.num_encoder_layers();
    const auto& mowe = stack_mowe_layers(w, decoder);
    int64_t flops = 0;
    for (int i = 0; i < layers; ++i) {
      flops += 2 * 4 * d * hd + 4 * hd * self_len;
      if (decoder) flops += 2 * 2 * d * hd + 4 * hd * cross_len;  // cross Q and O projections
      if (!is_mowe(mowe, i)) flops += 2 * 3 * d * f;
    }
    return flops;
  };
  const int64_t cross_kv_per_encoder_token = c.num_decoder_layers() * 2 * 2 * d * hd;
  s.encoder_flops_per_token = token_flops(false, input_length, 0) + cross_kv_per_encoder_token;
  s.decoder_flops_per_token = token_flops(true, target_length, input_length) + 2 * d * v;
  s.dense_flops_per_sequence =
      input_length * s.encoder_flops_per_token + target_length * s.decoder_flops_per_token;
  return s;
}

std::string describe_report(const ModelSize& s) {
  std::string out = "component                    parameters\n";
  for (const auto& comp : s.dense)
    out += fmt::format("  {:<26} {:>12} ({})\n", comp.name, comp.params, human(comp.params));
  out +=
      fmt::format("  {:<26} {:>12} ({})\n", "dense total", s.dense_params, human(s.dense_params));
  for (size_t i = 0; i < s.buckets.size(); ++i) {
    const auto& b = s.buckets[i];
    out +=
        fmt::format("  bucket {} experts {:>7} x width {:>5} {:<10} {:>12} ({}), {} FLOPs/token\n",
                    i, b.experts, b.expert_d_ff, config::Activation_Name(b.activation), b.params,
                    human(b.params), human(b.flops_per_token));
    if (b.unreachable_experts > 0)
      out += fmt::format(
          "           {} of them never routed: {} routing ids for {} experts, {} "
          "parameters ({}) that never train\n",
          b.unreachable_experts, b.routing_ids, b.experts, b.unreachable_params,
          human(b.unreachable_params));
  }
  out += fmt::format("  {:<26} {:>12} ({})\n", "expert total", s.expert_params,
                     human(s.expert_params));
  if (s.unreachable_expert_params > 0)
    out += fmt::format(
        "  {:<26} {:>12} ({}) of the expert total: more experts than routing "
        "ids\n",
        "never routed", s.unreachable_expert_params, human(s.unreachable_expert_params));
  out += fmt::format("  {:<26} {:>12} ({})\n", "model total", s.total_params(),
                     human(s.total_params()));
  out += fmt::format("dense forward FLOPs per sequence: {} (training step ~3x: {})\n",
                     human(s.dense_flops_per_sequence), human(3.0 * s.dense_flops_per_sequence));
  return out;
}

}  // namespace mowe::model
