#include "data/span_corruption.h"

#include <algorithm>
#include <cmath>

#include "data/rng.h"
#include "runtime/check.h"

namespace mowe::data {
namespace {

// _random_segmentation: num_items split into num_segments non-empty runs, uniformly at random
// (shuffle num_segments - 1 "starts a new segment" marks over the num_items - 1 gaps).
// Into `lengths`, with `first` as working storage (both reused by the caller).
void random_segmentation(int64_t num_items, int64_t num_segments, Rng& rng,
                         std::vector<uint8_t>& first, std::vector<int64_t>& lengths) {
  first.assign(num_items > 0 ? num_items - 1 : 0, 0);
  for (int64_t i = 0; i < num_segments - 1 && i < static_cast<int64_t>(first.size()); ++i)
    first[i] = 1;
  shuffle(first.data(), first.size(), rng);
  lengths.assign(1, 1);
  for (uint8_t f : first) {
    if (f) lengths.push_back(0);
    ++lengths.back();
  }
}

}  // namespace

std::vector<uint8_t> random_spans_noise_mask(int64_t length, double noise_density,
                                             double mean_noise_span_length, uint64_t seed) {
  std::vector<uint8_t> mask;
  random_spans_noise_mask(length, noise_density, mean_noise_span_length, seed, &mask);
  return mask;
}

void random_spans_noise_mask(int64_t length, double noise_density, double mean_noise_span_length,
                             uint64_t seed, std::vector<uint8_t>* out) {
  const int64_t orig_length = length;
  length = std::max<int64_t>(length, 2);
  auto [noise, spans] = t5_noise_counts(length, noise_density, mean_noise_span_length);
  MOWE_REQUIRE(spans <= length - noise,
               "{} noise spans need at least as many non-noise tokens, but a chunk of {} tokens at "
               "noise density {} has {}: lower data.noise_density",
               spans, length, noise_density, length - noise);
  Rng rng(seed);
  // Working storage kept per thread: a loader builds every example with it.
  thread_local std::vector<uint8_t> first;
  thread_local std::vector<int64_t> noise_lengths, nonnoise_lengths;
  random_segmentation(noise, spans, rng, first, noise_lengths);
  random_segmentation(length - noise, spans, rng, first, nonnoise_lengths);
  std::vector<uint8_t>& mask = *out;
  mask.clear();
  for (int64_t s = 0; s < spans; ++s) {
    mask.insert(mask.end(), nonnoise_lengths[s], 0);
    mask.insert(mask.end(), noise_lengths[s], 1);
  }
  mask.resize(orig_length);
}

void apply_noise_mask(const int32_t* tokens, const uint8_t* noise, int64_t length,
                      const std::vector<int32_t>& sentinels, int32_t eos_id,
                      std::vector<int32_t>* inputs, std::vector<int32_t>* targets) {
  size_t input_sentinel = 0, target_sentinel = 0;
  for (int64_t i = 0; i < length; ++i) {
    const bool starts_span = i == 0 || noise[i] != noise[i - 1];
    if (noise[i]) {
      if (starts_span) {
        MOWE_REQUIRE(input_sentinel < sentinels.size(),
                     "span corruption needs more than {} sentinels: raise data.num_sentinels",
                     sentinels.size());
        inputs->push_back(sentinels[input_sentinel++]);
      }
      targets->push_back(tokens[i]);
    } else {
      if (starts_span) {
        MOWE_REQUIRE(target_sentinel < sentinels.size(),
                     "span corruption needs more than {} sentinels: raise data.num_sentinels",
                     sentinels.size());
        targets->push_back(sentinels[target_sentinel++]);
      }
      inputs->push_back(tokens[i]);
    }
  }
  inputs->push_back(eos_id);
  targets->push_back(eos_id);
}

}  // namespace mowe::data
