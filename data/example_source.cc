#include "data/example_source.h"

#include "runtime/check.h"
#include "runtime/hash.h"

namespace mowe::data {

void corrupt_chunk(const int32_t* chunk, int64_t g, const LoaderOptions& o,
                   const SpanLengths& lengths, int64_t target_length, std::vector<int32_t>* inputs,
                   std::vector<int32_t>* targets) {
  const uint64_t seed = hash_ints(o.seed, 0x5ba7, static_cast<uint64_t>(g));
  thread_local std::vector<uint8_t> noise;  // reused: building a batch allocates nothing
  random_spans_noise_mask(lengths.tokens_length, o.noise_density, o.mean_noise_span_length, seed,
                          &noise);
  inputs->clear();
  targets->clear();
  apply_noise_mask(chunk, noise.data(), lengths.tokens_length, o.sentinels, o.eos_id, inputs,
                   targets);
  MOWE_CHECK(static_cast<int64_t>(inputs->size()) <= o.input_length &&
                 static_cast<int64_t>(targets->size()) <= target_length,
             "span corruption gave {} inputs and {} targets for lengths {} and {}", inputs->size(),
             targets->size(), o.input_length, target_length);
}

}  // namespace mowe::data
