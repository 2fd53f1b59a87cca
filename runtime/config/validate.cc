// The one validation step: schema bounds on every field, then the rules relating fields.
#include <fmt/format.h>

#include <cmath>
#include <limits>
#include <set>

#include "runtime/check.h"
#include "runtime/config/config.h"
#include "runtime/config/schema.h"
#include "runtime/proto/options.pb.h"
#include "runtime/span_lengths.h"

namespace mowe::config {
namespace {

using Result = std::optional<Violation>;

Result violation(const std::string& path, const std::string& message) {
  return Violation{path, message};
}

bool is_numeric(const pb::FieldDescriptor* field) {
  switch (field->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32:
    case pb::FieldDescriptor::CPPTYPE_INT64:
    case pb::FieldDescriptor::CPPTYPE_UINT32:
    case pb::FieldDescriptor::CPPTYPE_UINT64:
    case pb::FieldDescriptor::CPPTYPE_DOUBLE:
    case pb::FieldDescriptor::CPPTYPE_FLOAT:
      return true;
    default:
      return false;
  }
}

// The value of a numeric field (index -1 for a singular one), as a double for the bound checks
// and as text for the message.
std::pair<double, std::string> numeric_value(const pb::Message& m, const pb::FieldDescriptor* f,
                                             int index) {
  const pb::Reflection* r = m.GetReflection();
  bool rep = index >= 0;
  switch (f->cpp_type()) {
    case pb::FieldDescriptor::CPPTYPE_INT32: {
      auto v = rep ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f);
      return {double(v), std::to_string(v)};
    }
    case pb::FieldDescriptor::CPPTYPE_INT64: {
      auto v = rep ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f);
      return {double(v), std::to_string(v)};
    }
    case pb::FieldDescriptor::CPPTYPE_UINT32: {
      auto v = rep ? r->GetRepeatedUInt32(m, f, index) : r->GetUInt32(m, f);
      return {double(v), std::to_string(v)};
    }
    case pb::FieldDescriptor::CPPTYPE_UINT64: {
      auto v = rep ? r->GetRepeatedUInt64(m, f, index) : r->GetUInt64(m, f);
      return {double(v), std::to_string(v)};
    }
    case pb::FieldDescriptor::CPPTYPE_FLOAT: {
      auto v = rep ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f);
      return {double(v), fmt::format("{}", v)};
    }
    default: {
      auto v = rep ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f);
      return {v, fmt::format("{}", v)};
    }
  }
}

bool in_range(double v, const pb::FieldOptions& o) {
  return !(o.HasExtension(minimum) && v < o.GetExtension(minimum)) &&
         !(o.HasExtension(maximum) && v > o.GetExtension(maximum)) &&
         !(o.HasExtension(exclusive_minimum) && v <= o.GetExtension(exclusive_minimum)) &&
         !(o.HasExtension(exclusive_maximum) && v >= o.GetExtension(exclusive_maximum));
}

Result check_number(const pb::Message& m, const pb::FieldDescriptor* f, int index,
                    const std::string& path) {
  auto [value, text] = numeric_value(m, f, index);
  if (!std::isfinite(value))
    return violation(path, fmt::format("{} = {} is not a finite number", path, text));
  if (in_range(value, f->options())) return std::nullopt;
  return violation(path,
                   fmt::format("{} = {} is out of range: must be {}", path, text, range_text(f)));
}

Result check_size(const pb::FieldDescriptor* f, int size, const std::string& path) {
  const pb::FieldOptions& o = f->options();
  bool too_few = o.HasExtension(min_items) && size < o.GetExtension(min_items);
  bool too_many = o.HasExtension(max_items) && size > o.GetExtension(max_items);
  if (!too_few && !too_many) return std::nullopt;
  return violation(path, fmt::format("{} has {} elements: must have {}", path, size, size_text(f)));
}

// Walks every field, set or default (unset messages read as their default instance).
Result check_bounds(const pb::Message& m, const std::string& prefix) {
  const pb::Reflection* r = m.GetReflection();
  const pb::Descriptor* type = m.GetDescriptor();
  for (int i = 0; i < type->field_count(); ++i) {
    const pb::FieldDescriptor* f = type->field(i);
    std::string path = prefix.empty() ? f->name() : prefix + "." + f->name();
    bool message = f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE;
    if (!f->is_repeated()) {
      Result v = message         ? check_bounds(r->GetMessage(m, f), path)
                 : is_numeric(f) ? check_number(m, f, -1, path)
                                 : std::nullopt;
      if (v) return v;
      continue;
    }
    int size = r->FieldSize(m, f);
    if (Result v = check_size(f, size, path)) return v;
    for (int k = 0; k < size; ++k) {
      std::string element = fmt::format("{}[{}]", path, k);
      Result v = message         ? check_bounds(r->GetRepeatedMessage(m, f, k), element)
                 : is_numeric(f) ? check_number(m, f, k, element)
                                 : std::nullopt;
      if (v) return v;
    }
  }
  return std::nullopt;
}

// ---- rules relating fields to each other -----------------------------------------------------

Result check_layer_list(const pb::RepeatedField<int32_t>& layers, int num_blocks,
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
  if (w.encoder_layers().empty() && w.decoder_layers().empty()) return std::nullopt;
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
  const double mowe_layers = double(w.encoder_layers_size()) + w.decoder_layers_size();
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
  const SpanLengths spans = t5_span_lengths(c.data().input_length(), c.data().noise_density(),
                                            c.data().mean_noise_span_length());
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

Result check_vocabularies(const Config& c) {
  const DataConfig& d = c.data();
  if (c.model().vocab_size() < d.sp_vocab_size())
    return violation("model.vocab_size",
                     fmt::format("model.vocab_size = {} must be >= data.sp_vocab_size ({}): the "
                                 "embedding needs a row for every piece",
                                 c.model().vocab_size(), d.sp_vocab_size()));
  if (d.num_sentinels() >= d.sp_vocab_size())
    return violation("data.num_sentinels",
                     fmt::format("data.num_sentinels = {} must be < data.sp_vocab_size ({})",
                                 d.num_sentinels(), d.sp_vocab_size()));
  return std::nullopt;
}

// Span corruption numbers each corrupted span with its own sentinel (T5's
// random_spans_noise_mask), so the spans of one sequence must not outnumber the sentinels; and
// the mask must exist at all.
Result check_span_corruption(const Config& c) {
  const DataConfig& d = c.data();
  if (d.task() != DataConfig::SPAN_CORRUPTION) return std::nullopt;
  // The loader's own arithmetic (runtime/span_lengths.h): the spans of the raw chunk that makes
  // one example (568 tokens for an input length of 512 give 28 spans).
  const SpanLengths lengths =
      t5_span_lengths(d.input_length(), d.noise_density(), d.mean_noise_span_length());
  // The mask alternates non-noise and noise spans, so every noise span needs a non-noise token
  // before it: a high density of short spans cannot be laid out at all.
  const int64_t kept = lengths.tokens_length - lengths.noise_tokens;
  if (lengths.noise_spans > kept)
    return violation(
        "data.noise_density",
        fmt::format("data.noise_density = {} with data.mean_noise_span_length {} corrupts {} of "
                    "{} raw tokens in {} spans, but the spans must be separated by uncorrupted "
                    "tokens and only {} remain: lower data.noise_density or raise "
                    "data.mean_noise_span_length",
                    d.noise_density(), d.mean_noise_span_length(), lengths.noise_tokens,
                    lengths.tokens_length, lengths.noise_spans, kept));
  if (lengths.noise_spans <= d.num_sentinels()) return std::nullopt;
  return violation(
      "data.num_sentinels",
      fmt::format("data.num_sentinels = {} is too few: data.input_length {} at noise_density {} "
                  "and mean_noise_span_length {} corrupts {} raw tokens in {} spans, each needing "
                  "its own sentinel: set data.num_sentinels to at least {}",
                  d.num_sentinels(), d.input_length(), d.noise_density(),
                  d.mean_noise_span_length(), lengths.tokens_length, lengths.noise_spans,
                  lengths.noise_spans));
}

// SYNTHETIC draws its examples: a file to read or a model to load would be silently ignored.
Result check_synthetic(const Config& c) {
  const DataConfig& d = c.data();
  if (!d.corpus_path().empty())
    return violation("data.corpus_path",
                     fmt::format("data.corpus_path = \"{}\", but data.corpus = SYNTHETIC reads no "
                                 "file: remove data.corpus_path, or choose TEXT or JSONL",
                                 d.corpus_path()));
  if (!d.tokenizer_model().empty())
    return violation("data.tokenizer_model",
                     fmt::format("data.tokenizer_model = \"{}\", but data.corpus = SYNTHETIC has "
                                 "no SentencePiece model (its vocabulary is data.sp_vocab_size "
                                 "synthetic ids): remove data.tokenizer_model",
                                 d.tokenizer_model()));
  // pad, EOS, unk and the sentinels come first; at least one ordinary id must remain to draw.
  if (d.sp_vocab_size() <= 3 + d.num_sentinels())
    return violation("data.sp_vocab_size",
                     fmt::format("data.sp_vocab_size = {} leaves no ordinary token id for "
                                 "data.corpus = SYNTHETIC after pad, EOS, unk and {} sentinels: "
                                 "raise it above {}",
                                 d.sp_vocab_size(), d.num_sentinels(), 3 + d.num_sentinels()));
  return std::nullopt;
}

Result check_corpus(const Config& c) {
  const DataConfig& d = c.data();
  if (d.corpus() == DataConfig::SYNTHETIC) return check_synthetic(c);
  if (d.synthetic_zipf_exponent() != 1.0)
    return violation("data.synthetic_zipf_exponent",
                     fmt::format("data.synthetic_zipf_exponent = {} only applies to data.corpus = "
                                 "SYNTHETIC, but data.corpus = {}: remove it",
                                 d.synthetic_zipf_exponent(), DataConfig::Corpus_Name(d.corpus())));
  if (d.corpus() == DataConfig::WORDNET || !d.corpus_path().empty()) return std::nullopt;
  return violation("data.corpus_path",
                   fmt::format("data.corpus_path is empty, but data.corpus = {} reads from it",
                               DataConfig::Corpus_Name(d.corpus())));
}

// Streaming reads TEXT or JSONL files forward and is never split by documents; held-out
// documents come from their own files. Settings that would be silently ignored are refused.
Result check_streaming(const Config& c) {
  const DataConfig& d = c.data();
  const bool fraction = d.has_validation_fraction() && d.validation_fraction() > 0;
  if (!d.validation_path().empty() && fraction)
    return violation("data.validation_fraction",
                     fmt::format("data.validation_fraction = {} holds out a share of the corpus, "
                                 "but data.validation_path = \"{}\" names the held-out files: "
                                 "set one of them",
                                 d.validation_fraction(), d.validation_path()));
  if (!d.validation_path().empty() && d.corpus() != DataConfig::TEXT &&
      d.corpus() != DataConfig::JSONL)
    return violation("data.validation_path",
                     fmt::format("data.validation_path = \"{}\" is read like corpus_path, but "
                                 "data.corpus = {} reads no file: remove it",
                                 d.validation_path(), DataConfig::Corpus_Name(d.corpus())));
  if (!d.streaming()) {
    if (d.stream_shards() != 0)
      return violation("data.stream_shards",
                       fmt::format("data.stream_shards = {} only applies to data.streaming: "
                                   "remove it or set data.streaming: true",
                                   d.stream_shards()));
    if (d.loader_threads() != 0)
      return violation("data.loader_threads",
                       fmt::format("data.loader_threads = {} only applies to data.streaming (an "
                                   "in-memory corpus is tokenized at start-up on every core): "
                                   "remove it or set data.streaming: true",
                                   d.loader_threads()));
    return std::nullopt;
  }
  if (d.corpus() != DataConfig::TEXT && d.corpus() != DataConfig::JSONL)
    return violation("data.streaming",
                     fmt::format("data.streaming reads TEXT or JSONL files, but data.corpus = {}",
                                 DataConfig::Corpus_Name(d.corpus())));
  if (d.task() != DataConfig::SPAN_CORRUPTION)
    return violation("data.streaming", fmt::format("data.streaming serves data.task = "
                                                   "SPAN_CORRUPTION only, not {}",
                                                   DataConfig::Task_Name(d.task())));
  if (fraction)
    return violation("data.validation_fraction",
                     fmt::format("data.validation_fraction = {}, but a streaming corpus is never "
                                 "split: remove it and put held-out documents in "
                                 "data.validation_path",
                                 d.validation_fraction()));
  return std::nullopt;
}

// Question-answer examples are built from WordNet synsets and have no length to derive.
Result check_task(const Config& c) {
  const DataConfig& d = c.data();
  if (d.task() != DataConfig::WORDNET_QA) return std::nullopt;
  if (d.corpus() != DataConfig::WORDNET)
    return violation("data.task",
                     fmt::format("data.task = WORDNET_QA asks about WordNet synsets, but "
                                 "data.corpus = {}: set data.corpus to WORDNET",
                                 DataConfig::Corpus_Name(d.corpus())));
  if (d.target_length() == 0)
    return violation("data.target_length",
                     "data.target_length = 0, but data.task = WORDNET_QA needs it set: the "
                     "padded answer length in tokens, EOS included (e.g. 8)");
  return std::nullopt;
}

Result check_evaluation(const Config& c) {
  const DataConfig& d = c.data();
  if (c.training().eval_every() > 0 && d.streaming() && d.validation_path().empty())
    return violation("training.eval_every",
                     fmt::format("training.eval_every = {} evaluates on held-out documents, but "
                                 "a streaming corpus is never split: set data.validation_path, "
                                 "or training.eval_every to 0",
                                 c.training().eval_every()));
  if (c.training().eval_every() > 0 && d.validation_path().empty() && d.validation_fraction() == 0)
    return violation("training.eval_every",
                     fmt::format("training.eval_every = {} evaluates on the held-out split, but "
                                 "data.validation_fraction = 0 holds nothing out: set "
                                 "training.eval_every to 0, or hold out a share",
                                 c.training().eval_every()));
  return std::nullopt;
}

Result check_schedule(const Config& c) {
  const TrainingConfig& t = c.training();
  bool decays =
      t.lr_schedule() == TrainingConfig::COSINE || t.lr_schedule() == TrainingConfig::LINEAR;
  if (!decays || t.warmup_steps() < t.steps()) return std::nullopt;
  return violation(
      "training.warmup_steps",
      fmt::format("training.warmup_steps = {} must be < training.steps ({}) for the "
                  "{} schedule",
                  t.warmup_steps(), t.steps(), TrainingConfig::LrSchedule_Name(t.lr_schedule())));
}

}  // namespace

std::optional<Violation> find_violation(const Config& config) {
  if (Result v = check_bounds(config, "")) return v;
  for (auto rule :
       {check_position_buckets, check_mowe_layers, check_routing_vocab, check_buckets,
        check_expert_counts, check_model_size, check_vocabularies, check_span_corruption,
        check_corpus, check_streaming, check_task, check_schedule, check_evaluation})
    if (Result v = rule(config)) return v;
  return std::nullopt;
}

void validate(const Config& config) {
  if (auto v = find_violation(config)) throw UserError("config: " + v->message);
}

}  // namespace mowe::config
