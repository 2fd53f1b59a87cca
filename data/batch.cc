#include "data/batch.h"

#include "runtime/check.h"

namespace mowe::data {
namespace {

// Copies `src` into row `row` of a [B, width] array, filling the rest of the row with `fill`.
template <typename T, typename S>
void put_row(std::vector<T>* dst, int64_t row, int64_t width, const std::vector<S>& src, T fill) {
  T* out = dst->data() + row * width;
  const int64_t n = static_cast<int64_t>(src.size());
  for (int64_t i = 0; i < width; ++i) out[i] = i < n ? static_cast<T>(src[i]) : fill;
}

void put_mask(std::vector<int32_t>* dst, int64_t row, int64_t width, int64_t n) {
  int32_t* out = dst->data() + row * width;
  for (int64_t i = 0; i < width; ++i) out[i] = i < n ? 1 : 0;
}

}  // namespace

void shape_batch(int batch_size, int input_length, int target_length, Batch* batch) {
  Batch& b = *batch;
  b.batch_size = batch_size;
  b.input_length = input_length;
  b.target_length = target_length;
  const int64_t B = batch_size, te = input_length, td = target_length;
  for (auto* v : {&b.encoder_input_ids, &b.encoder_routing_ids, &b.encoder_mask}) v->resize(B * te);
  for (auto* v : {&b.decoder_input_ids, &b.decoder_routing_ids, &b.decoder_mask, &b.targets})
    v->resize(B * td);
  b.loss_weights.resize(B * td);
}

void route_example(const RoutingTokenizer& table, Example* example) {
  Example& ex = *example;
  ex.input_routing.resize(ex.inputs.size());
  ex.decoder_routing.resize(ex.decoder_inputs.size());
  table.route(ex.inputs, ex.input_routing);
  table.route(ex.decoder_inputs, ex.decoder_routing);
}

void put_example(const Example& ex, int64_t row, int32_t pad, Batch* batch) {
  Batch& b = *batch;
  const int64_t te = b.input_length, td = b.target_length;
  MOWE_CHECK(row >= 0 && row < b.batch_size, "row {} of a batch of {}", row, b.batch_size);
  MOWE_CHECK(static_cast<int64_t>(ex.inputs.size()) <= te &&
                 static_cast<int64_t>(ex.decoder_inputs.size()) <= td &&
                 static_cast<int64_t>(ex.targets.size()) <= td,
             "an example of {} inputs, {} decoder inputs and {} targets does not fit lengths {} "
             "and {}",
             ex.inputs.size(), ex.decoder_inputs.size(), ex.targets.size(), te, td);
  put_row(&b.encoder_input_ids, row, te, ex.inputs, pad);
  put_row(&b.encoder_routing_ids, row, te, ex.input_routing, RoutingTokenizer::kNotRouted);
  put_mask(&b.encoder_mask, row, te, static_cast<int64_t>(ex.inputs.size()));
  put_row(&b.decoder_input_ids, row, td, ex.decoder_inputs, pad);
  put_row(&b.decoder_routing_ids, row, td, ex.decoder_routing, RoutingTokenizer::kNotRouted);
  put_mask(&b.decoder_mask, row, td, static_cast<int64_t>(ex.decoder_inputs.size()));
  put_row(&b.targets, row, td, ex.targets, pad);
  for (int64_t i = 0; i < td; ++i)
    b.loss_weights[row * td + i] = i < static_cast<int64_t>(ex.targets.size()) ? 1.0f : 0.0f;
}

}  // namespace mowe::data
