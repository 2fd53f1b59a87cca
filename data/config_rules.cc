// The data section's rules: each returns the first field it refuses, with a one-line message
// naming the field, its value and what is allowed.
#include "data/config_rules.h"

#include <fmt/format.h>

#include <cstdint>

#include "data/span_lengths.h"

namespace mowe::data {
namespace {

using config::Config;
using config::DataConfig;
using config::Result;
using config::violation;

// The sentinels are SentencePiece ids (<extra_id_0> and on): they must leave room for the pieces.
Result check_sentinel_ids(const Config& c) {
  const DataConfig& d = c.data();
  if (d.num_sentinels() < d.sp_vocab_size()) return std::nullopt;
  return violation("data.num_sentinels",
                   fmt::format("data.num_sentinels = {} must be < data.sp_vocab_size ({})",
                               d.num_sentinels(), d.sp_vocab_size()));
}

// Span corruption numbers each corrupted span with its own sentinel (T5's
// random_spans_noise_mask), so the spans of one sequence must not outnumber the sentinels; and
// the mask must exist at all.
Result check_span_corruption(const Config& c) {
  const DataConfig& d = c.data();
  if (d.task() != DataConfig::SPAN_CORRUPTION) return std::nullopt;
  // The loader's own arithmetic (data/span_lengths.h): the spans of the raw chunk that makes
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

}  // namespace

config::Rules config_rules() {
  static constexpr config::Rule kRules[] = {check_sentinel_ids, check_span_corruption, check_corpus,
                                            check_streaming, check_task};
  return kRules;
}

}  // namespace mowe::data
