// The model section's rules: each returns the first field it refuses, with a one-line message
// naming the field, its value and what is allowed.
#include "model/config_rules.h"

#include <fmt/format.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <set>

#include "data/span_lengths.h"
#include "model/mowe_layers.h"

namespace mowe::model {
namespace {

using config::BucketConfig;
using config::Config;
using config::ModelConfig;
using config::MoweConfig;
using config::Result;
using config::violation;

Result check_layer_list(const google::protobuf::RepeatedField<int32_t>& layers, int num_blocks,
                        const std::string& path, const char* stack) {
  std::set<int> seen;
  for (int i = 0; i < layers.size(); ++i) {
    std::string element = fmt::format("{}[{}]", path, i);
    if (layers[i] >= num_blocks)
      return violation(element, fmt::format("{} = {} is not a block index: the {} has {} blocks "
                                            "(0..{})",
                                            element, layers[i], stack, num_blocks, num_blocks - 1));
    if (!seen.insert(layers[i]).second)
      return violation(element, fmt::format("{} = {} is listed twice", element, layers[i]));
  }
  return std::nullopt;
}

Result check_mowe_layers(const Config& c) {
  const ModelConfig& m = c.model();
  if (Result v = check_layer_list(m.mowe().encoder_layers(), m.num_encoder_layers(),
                                  "model.mowe.encoder_layers", "encoder"))
    return v;
  return check_layer_list(m.mowe().decoder_layers(), m.num_decoder_layers(),
                          "model.mowe.decoder_layers", "decoder");
}

Result check_routing_vocab(const Config& c) {
  const MoweConfig& w = c.model().mowe();
  if (!has_mowe_layers(w)) return std::nullopt;
  if (w.routing_vocab_size() < c.data().sp_vocab_size())
    return violation("model.mowe.routing_vocab_size",
                     fmt::format("model.mowe.routing_vocab_size = {} must be >= "
                                 "data.sp_vocab_size ({}): routing ids start with the default "
                                 "vocabulary's pieces",
                                 w.routing_vocab_size(), c.data().sp_vocab_size()));
  if (w.num_unrouted_ids() >= w.routing_vocab_size())
    return violation("model.mowe.num_unrouted_ids",
                     fmt::format("model.mowe.num_unrouted_ids = {} must be < "
                                 "model.mowe.routing_vocab_size ({})",
                                 w.num_unrouted_ids(), w.routing_vocab_size()));
  if (w.buckets().empty())
    return violation("model.mowe.buckets",
                     "model.mowe.buckets is empty, but MoWE layers are configured "
                     "(model.mowe.encoder_layers/decoder_layers): add at least one bucket");
  return std::nullopt;
}

Result check_buckets(const Config& c) {
  const MoweConfig& w = c.model().mowe();
  int64_t total = 0;
  for (int i = 0; i < w.buckets_size(); ++i) {
    int ids = w.buckets(i).num_routing_ids();
    if (ids == 0 && i + 1 < w.buckets_size())
      return violation(fmt::format("model.mowe.buckets[{}].num_routing_ids", i),
                       fmt::format("model.mowe.buckets[{}].num_routing_ids = 0 (all remaining "
                                   "ids) is only allowed on the last bucket",
                                   i));
    total += ids;
  }
  int64_t available = int64_t(w.routing_vocab_size()) - w.num_unrouted_ids();
  bool last_takes_rest = !w.buckets().empty() && w.buckets().rbegin()->num_routing_ids() == 0;
  if (total > available || (last_takes_rest && total == available))
    return violation("model.mowe.buckets",
                     fmt::format("model.mowe.buckets hold {} routing ids{}, but "
                                 "model.mowe.routing_vocab_size ({}) minus "
                                 "model.mowe.num_unrouted_ids ({}) leaves {}",
                                 total, last_takes_rest ? " before the last bucket" : "",
                                 w.routing_vocab_size(), w.num_unrouted_ids(), available));
  return std::nullopt;
}

// Expert indices are 32-bit (routing tables, plans, dispatch): a bucket's expert count must fit,
// and its parameter count must stay far from 64-bit overflow in every size computation.
Result check_expert_counts(const Config& c) {
  const MoweConfig& w = c.model().mowe();
  for (int i = 0; i < w.buckets_size(); ++i) {
    const BucketConfig& b = w.buckets(i);
    const int64_t experts = int64_t(b.num_blocks()) * b.experts_per_block();
    if (experts > std::numeric_limits<int32_t>::max())
      return violation(
          fmt::format("model.mowe.buckets[{}].experts_per_block", i),
          fmt::format("model.mowe.buckets[{}] has num_blocks ({}) x experts_per_block ({}) = {} "
                      "experts; at most {} fit a 32-bit expert index",
                      i, b.num_blocks(), b.experts_per_block(), experts,
                      std::numeric_limits<int32_t>::max()));
    // Three matrices of [C, F] per expert at most (gated GELU): bound them by 2^60 scalars.
    const double scalars = double(experts) * 3 * c.model().d_model() * b.expert_d_ff();
    if (scalars > std::ldexp(1.0, 60))
      return violation(
          fmt::format("model.mowe.buckets[{}].expert_d_ff", i),
          fmt::format("model.mowe.buckets[{}] would hold about {:.3g} expert parameters "
                      "({} experts x d_model {} x expert_d_ff {}), beyond any machine",
                      i, scalars / 3 * 2, experts, c.model().d_model(), b.expert_d_ff()));
  }
  return std::nullopt;
}

// Parameter counts and FLOPs are 64-bit integers everywhere (mowe_pretrain --describe, the
// parameter store): a model whose counts could wrap is refused here, naming the fields, instead
// of being printed with negative sizes. The bounds are far beyond any machine (2^60 parameters
// is 4 EiB of float32) and generous over the exact formulas of model/describe.cc.
Result check_model_size(const Config& c) {
  const ModelConfig& m = c.model();
  const MoweConfig& w = m.mowe();
  const double d = m.d_model(), f = m.d_ff(), v = m.vocab_size();
  const double hd = double(m.num_heads()) * m.d_kv();
  const double layers = double(m.num_encoder_layers()) + m.num_decoder_layers();
  const double embedding = 2 * v * d;
  const double blocks = layers * (8 * d * hd + 3 * d * f + 2 * d) +
                        2 * (double(m.relative_attention_num_buckets()) * m.num_heads() + d);
  double experts = 0;
  const double mowe_layers = double(mowe_layer_count(w));
  if (mowe_layers > 0) {
    for (const BucketConfig& b : w.buckets())
      experts += 3.0 * b.num_blocks() * b.experts_per_block() * d * b.expert_d_ff();
    if (!w.share_expert_parameters()) experts *= mowe_layers;
  }
  const double limit = std::ldexp(1.0, 60);
  if (embedding + blocks + experts > limit) {
    if (embedding >= blocks && embedding >= experts)
      return violation("model.vocab_size",
                       fmt::format("model.vocab_size = {} x model.d_model = {} gives {:.3g} "
                                   "embedding and output parameters, beyond any machine and "
                                   "64-bit counts (at most {:.3g} parameters in all)",
                                   m.vocab_size(), m.d_model(), embedding, limit));
    if (blocks >= experts)
      return violation(
          "model.d_model",
          fmt::format("model.d_model = {} with model.d_ff = {} and model.num_heads x model.d_kv "
                      "= {} over {} blocks gives {:.3g} parameters, beyond any machine and "
                      "64-bit counts (at most {:.3g})",
                      m.d_model(), m.d_ff(), hd, layers, blocks, limit));
    return violation("model.mowe.buckets",
                     fmt::format("model.mowe.buckets hold about {:.3g} expert parameters{}, "
                                 "beyond any machine and 64-bit counts (at most {:.3g})",
                                 experts,
                                 w.share_expert_parameters()
                                     ? ""
                                     : fmt::format(" ({} MoWE layers with "
                                                   "model.mowe.share_expert_parameters false)",
                                                   mowe_layers),
                                 limit));
  }
  // FLOPs of one sequence: every token meets every dense weight twice (2 FLOPs a multiply-add)
  // and attends over both lengths, plus the output projection.
  const data::SpanLengths spans = data::t5_span_lengths(
      c.data().input_length(), c.data().noise_density(), c.data().mean_noise_span_length());
  const double tokens =
      double(c.data().input_length()) +
      (c.data().target_length() ? c.data().target_length() : spans.targets_length);
  const double attention = layers * 8 * hd * tokens;
  const double flops = tokens * (layers * (24 * d * hd + 6 * d * f) + attention + 2 * d * v);
  if (flops > std::ldexp(1.0, 62))
    return violation(
        attention * tokens * 2 > flops ? "data.input_length" : "model.d_model",
        fmt::format("data.input_length = {} (and data.target_length) with model.d_model = {}, "
                    "model.d_ff = {} and model.vocab_size = {} gives about {:.3g} FLOPs per "
                    "sequence, beyond 64-bit counts",
                    c.data().input_length(), m.d_model(), m.d_ff(), m.vocab_size(), flops));
  return std::nullopt;
}

// T5's bucketing is logarithmic between num_buckets/2 (num_buckets/4 per direction when
// bidirectional) and max_distance; a max_distance at or below that start divides by log(<= 1).
Result check_position_buckets(const Config& c) {
  const ModelConfig& m = c.model();
  if (m.relative_attention_max_distance() > m.relative_attention_num_buckets() / 2)
    return std::nullopt;
  return violation(
      "model.relative_attention_max_distance",
      fmt::format("model.relative_attention_max_distance = {} must be > "
                  "model.relative_attention_num_buckets / 2 ({})",
                  m.relative_attention_max_distance(), m.relative_attention_num_buckets() / 2));
}

Result check_vocabulary(const Config& c) {
  if (c.model().vocab_size() >= c.data().sp_vocab_size()) return std::nullopt;
  return violation("model.vocab_size",
                   fmt::format("model.vocab_size = {} must be >= data.sp_vocab_size ({}): the "
                               "embedding needs a row for every piece",
                               c.model().vocab_size(), c.data().sp_vocab_size()));
}

}  // namespace

std::vector<std::string> config_warnings(const Config& c) {
  std::vector<std::string> warnings;
  const MoweConfig& w = c.model().mowe();
  if (!has_mowe_layers(w)) return warnings;
  for (int i = 0; i < w.buckets_size(); ++i) {
    const int64_t unreachable = bucket_unreachable_experts(w, i);
    if (unreachable == 0) continue;
    const BucketConfig& b = w.buckets(i);
    const int64_t copies = w.share_expert_parameters() ? 1 : mowe_layer_count(w);
    warnings.push_back(fmt::format(
        "model.mowe.buckets[{}] covers {} routing ids with num_blocks ({}) x experts_per_block "
        "({}) = {} experts: {} experts never receive a token ({} parameters allocated that never "
        "train); give the bucket at least {} routing ids or fewer experts to use them all",
        i, bucket_routing_ids(w, i), b.num_blocks(), b.experts_per_block(),
        int64_t(b.num_blocks()) * b.experts_per_block(), unreachable,
        bucket_unreachable_params(w, i, c.model().d_model()) * copies,
        int64_t(b.num_blocks()) * b.experts_per_block()));
  }
  return warnings;
}

config::Rules config_rules() {
  static constexpr config::Rule kRules[] = {
      check_position_buckets, check_mowe_layers, check_routing_vocab, check_buckets,
      check_expert_counts,    check_model_size,  check_vocabulary};
  return kRules;
}

}  // namespace mowe::model
