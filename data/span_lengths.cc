#include "data/span_lengths.h"

#include <algorithm>
#include <cmath>
#include <utility>

namespace mowe::data {

SpanLengths t5_span_lengths(int64_t input_length, double noise_density,
                            double mean_noise_span_length) {
  // The counts of the noise mask itself: T5's helper rounds without the mask's floor of one
  // noise token and one span, so at short lengths (input_length 4: 4 raw tokens, 0 spans) it
  // promises inputs the mask then overflows. The mask's numbers are what the loader produces.
  auto lengths = [&](int64_t tokens) {
    const NoiseCounts n = t5_noise_counts(tokens, noise_density, mean_noise_span_length);
    return std::pair<int64_t, int64_t>{tokens - n.noise_tokens + n.noise_spans + 1,
                                       n.noise_tokens + n.noise_spans + 1};
  };
  int64_t tokens_length = input_length - 1;
  while (lengths(tokens_length + 1).first <= input_length) ++tokens_length;
  auto [inputs, targets] = lengths(tokens_length);
  // T5's "minor hack" so that targets do not exceed inputs at noise density 0.5.
  if (noise_density == 0.5 && targets > inputs) --tokens_length, --targets;
  const NoiseCounts noise = t5_noise_counts(tokens_length, noise_density, mean_noise_span_length);
  return {tokens_length, inputs, targets, noise.noise_tokens, noise.noise_spans};
}

// Python's round() and tf.round round half to even: std::nearbyint in the default rounding mode.
NoiseCounts t5_noise_counts(int64_t length, double noise_density, double mean_noise_span_length) {
  length = std::max<int64_t>(length, 2);
  float noise_f = static_cast<float>(length) * static_cast<float>(noise_density);
  int64_t noise = static_cast<int64_t>(std::nearbyint(noise_f));
  noise = std::min(std::max<int64_t>(noise, 1), length - 1);
  float spans_f = static_cast<float>(noise) / static_cast<float>(mean_noise_span_length);
  int64_t spans = std::max<int64_t>(static_cast<int64_t>(std::nearbyint(spans_f)), 1);
  return {noise, spans};
}

}  // namespace mowe::data
