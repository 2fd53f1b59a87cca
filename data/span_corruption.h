// T5's span corruption (Raffel et al. 2020; t5/data/preprocessors.py), reproduced exactly:
// random_spans_helper derives the pre-corruption chunk length and the target length from the
// input length (512 -> 568 raw tokens, 114 targets); random_spans_noise_mask splits a chunk into
// alternating non-noise / noise spans (starting with non-noise, ending with noise); noise spans
// become <extra_id_0>, <extra_id_1>, ... in the inputs, non-noise spans become the same
// sentinels in the targets, and both get EOS. Rounding is Python's and TensorFlow's: half to
// even, with the mask's counts in float32 as T5 computes them.
#pragma once

#include <cstdint>
#include <vector>

#include "data/span_lengths.h"

namespace mowe::data {

// random_spans_noise_mask: 1 = noise. Deterministic in `seed`.
std::vector<uint8_t> random_spans_noise_mask(int64_t length, double noise_density,
                                             double mean_noise_span_length, uint64_t seed);
// The same into `mask` (its storage reused: no allocation once it has grown).
void random_spans_noise_mask(int64_t length, double noise_density, double mean_noise_span_length,
                             uint64_t seed, std::vector<uint8_t>* mask);

// Applies a noise mask: inputs = non-noise tokens with each noise span replaced by the next
// sentinel, then eos; targets = each non-noise span replaced by the next sentinel followed by the
// noise span, then eos. Appends to *inputs and *targets.
void apply_noise_mask(const int32_t* tokens, const uint8_t* noise, int64_t length,
                      const std::vector<int32_t>& sentinels, int32_t eos_id,
                      std::vector<int32_t>* inputs, std::vector<int32_t>* targets);

}  // namespace mowe::data
