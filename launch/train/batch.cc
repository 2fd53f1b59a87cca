#include "launch/train/batch.h"

#include "runtime/device.h"

namespace mowe::train {

std::function<void(data::Batch&)> route_with_plan(const model::DispatchPlan& plan, int rank,
                                                  int32_t deactivate_above) {
  return [&plan, rank, deactivate_above](data::Batch& b) {
    // A recycled batch brings its routing back: refilled in place, its storage reused.
    auto* routed = std::any_cast<model::RoutedBatch>(&b.prepared);
    if (routed == nullptr) routed = &b.prepared.emplace<model::RoutedBatch>();
    model::route_batch(plan, rank, b.encoder_routing_ids, b.decoder_routing_ids, deactivate_above,
                       routed);
  };
}

const model::RoutedBatch* attached_routing(const data::Batch& b) {
  return std::any_cast<model::RoutedBatch>(&b.prepared);
}

model::ModelInputs model_inputs(const data::Batch& b, Arena* device) {
  model::ModelInputs in;
  in.batch = b.batch_size;
  const int64_t bs = b.batch_size, te = b.input_length, td = b.target_length;
  in.enc_ids = host_i32_view(b.encoder_input_ids, {bs, te});
  in.enc_valid = host_i32_view(b.encoder_mask, {bs, te});
  in.enc_routing = host_i32_view(b.encoder_routing_ids, {bs, te});
  in.dec_ids = host_i32_view(b.decoder_input_ids, {bs, td});
  in.dec_valid = host_i32_view(b.decoder_mask, {bs, td});
  in.dec_routing = host_i32_view(b.decoder_routing_ids, {bs, td});
  in.targets = host_i32_view(b.targets, {bs, td});
  in.weights = Tensor(const_cast<float*>(b.loss_weights.data()), DType::F32, Device::CPU, {bs, td});
  in.routed = attached_routing(b);
  if (device != nullptr) {
    for (Tensor* t :
         {&in.enc_ids, &in.enc_valid, &in.dec_ids, &in.dec_valid, &in.targets, &in.weights})
      *t = upload_to(*device, *t);
  }
  return in;
}

TokenCounts real_tokens(const data::Batch& b) {
  TokenCounts n;
  for (int32_t m : b.encoder_mask) n.encoder += m != 0;
  for (int32_t m : b.decoder_mask) n.decoder += m != 0;
  return n;
}

}  // namespace mowe::train
