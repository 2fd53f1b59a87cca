// What a loader builds: one rank's share of a global batch (Batch), the examples it is made of
// (Example) and the settings it is built with (LoaderOptions), with the steps of building that
// the loader and whoever assembles a batch itself (greedy decoding) share: shaping the arrays,
// routing an example's tokens and writing an example into a row.
#pragma once

#include <any>
#include <cstdint>
#include <functional>
#include <vector>

#include "data/routing_tokenizer.h"

namespace mowe::data {

// One rank's share of a global batch. Arrays are row-major [B, T] with B = batch_size examples
// and T = input_length (encoder_*) or target_length (decoder_*, targets, loss_weights).
// Padding (only when a configured target_length exceeds the derived one) has id pad_id, mask 0,
// loss weight 0 and routing id -1. Pad (the decoder's start token), EOS and the sentinels are
// real positions with routing id -1 too: not words, so no expert sees them.
struct Batch {
  int64_t step = 0;
  int64_t first_example = 0;  // global index of this rank's first example
  int batch_size = 0;
  int input_length = 0;
  int target_length = 0;
  std::vector<int32_t> encoder_input_ids;    // corrupted inputs, sentinels, EOS
  std::vector<int32_t> encoder_routing_ids;  // routing tokenization of encoder_input_ids
  std::vector<int32_t> encoder_mask;         // 1 = real token
  std::vector<int32_t> decoder_input_ids;    // targets shifted right, starting with pad_id (0)
  std::vector<int32_t> decoder_routing_ids;  // routing tokenization of decoder_input_ids
  std::vector<int32_t> decoder_mask;         // 1 = real position (position 0 included)
  std::vector<int32_t> targets;              // sentinels and noise spans, EOS
  std::vector<float> loss_weights;           // 1 on real targets, 0 on padding
  // What LoaderOptions::prepare computed from this batch, of a type this library does not know
  // (the trainer's: model::RoutedBatch); read back with std::any_cast of that type, which gives
  // null for any other. Empty when no hook ran. A loader reuses its batches, and this with them,
  // so a hook can refill a value of its type in place.
  std::any prepared;
};

struct LoaderOptions {
  int64_t input_length = 512;   // data.input_length
  int64_t target_length = 0;    // data.target_length; 0 = derived as T5 does (114 for 512)
  double noise_density = 0.15;  // data.noise_density
  double mean_noise_span_length = 3.0;
  uint64_t seed = 0;              // data.seed
  int64_t global_batch_size = 1;  // training.global_batch_size, divisible by world_size
  int rank = 0;
  int world_size = 1;
  int prefetch_batches = 2;  // data.prefetch_batches
  int loader_threads = 0;    // data.loader_threads (streaming corpora)
  int32_t pad_id = 0;
  int32_t eos_id = 1;
  std::vector<int32_t> sentinels;  // ids of <extra_id_0>, <extra_id_1>, ...
  // Run on every built batch, on the thread that builds it (the prefetch thread for next()): the
  // trainer routes tokens with its dispatch plan here, so the step does no routing work. Must be
  // thread-safe with respect to the caller's other work; may fill Batch::prepared.
  std::function<void(Batch&)> prepare;
};

// One example before padding.
struct Example {
  std::vector<int32_t> inputs, input_routing;
  std::vector<int32_t> targets, decoder_inputs, decoder_routing;
};

// Sizes every array of `batch` for batch_size rows of input_length (encoder) and target_length
// (decoder) positions; vectors keep their capacity, so a reused batch allocates nothing.
void shape_batch(int batch_size, int input_length, int target_length, Batch* batch);

// The routing ids of an example's inputs and decoder inputs, by the routing tokenizer.
void route_example(const RoutingTokenizer& table, Example* example);

// Writes `example` into row `row` of a shaped batch: ids and routing ids, masks (1 on its
// positions), targets and loss weights (1 on its targets); the rest of the row is padding (id
// pad_id, routing id -1, mask 0, loss weight 0). Each part must fit its row.
void put_example(const Example& example, int64_t row, int32_t pad_id, Batch* batch);

}  // namespace mowe::data
