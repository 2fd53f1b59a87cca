// T5's span-corruption arithmetic (t5/data/preprocessors.py): how many raw tokens make an example
// of a given input length, how many targets and noise spans it gets. Pure functions the loader
// cuts its examples with, kept apart from the loader (library mowe_data_rules) so that the
// data section's config rules (data/config_rules.h) and the model's size estimates count
// exactly the loader's numbers. Rounding is Python's and TensorFlow's: half to even, with the
// mask's counts in float32 as T5 computes them.
#pragma once

#include <cstdint>

namespace mowe::data {

struct SpanLengths {
  int64_t tokens_length;   // raw tokens per example before corruption (568 for 512)
  int64_t inputs_length;   // encoder tokens after corruption, EOS included (<= input_length)
  int64_t targets_length;  // decoder tokens, EOS included (114 for 512)
  int64_t noise_tokens;    // raw tokens the noise mask corrupts (85 for 512)
  int64_t noise_spans;     // spans they form: each takes its own sentinel, so this is how many
                           // sentinels an example needs (28 for 512)
};

// t5.data.preprocessors.random_spans_helper with one extra token per span on each side. The one
// definition of these numbers: the loader cuts its examples with them and the data rules refuse
// too few sentinels with them, so the two cannot disagree.
SpanLengths t5_span_lengths(int64_t input_length, double noise_density,
                            double mean_noise_span_length);

struct NoiseCounts {
  int64_t noise_tokens;
  int64_t noise_spans;
};

// The counts random_spans_noise_mask uses for a chunk of `length` tokens.
NoiseCounts t5_noise_counts(int64_t length, double noise_density, double mean_noise_span_length);

}  // namespace mowe::data
